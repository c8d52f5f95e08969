"""Classification heads: model.pooling: mean, and a separate head learning rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL, require_module, run_cli


def _encoder():
    from clintune.data.labels import LabelEncoder

    return LabelEncoder(("ALLERGY", "GENHX", "ROS"), "multiclass")


def test_fresh_head_keeps_the_pretrained_encoder_and_ignores_padding() -> None:
    from transformers import AutoModel

    from clintune.modeling.heads import MeanPooledClassifier
    from clintune.modeling.loading import load_model
    from clintune.modeling.tasks import task_for

    model = load_model(task_for("multiclass"), str(TINY_MODEL), _encoder(), pooling="mean").eval()
    assert isinstance(model, MeanPooledClassifier)
    pretrained = AutoModel.from_pretrained(str(TINY_MODEL)).state_dict()
    for name, weight in model.backbone.state_dict().items():
        assert torch.equal(weight, pretrained[name]), name
    assert model.backbone.pooler is None
    with torch.inference_mode():
        short = model(input_ids=torch.tensor([[2, 9, 10, 3]]), attention_mask=torch.ones(1, 4, dtype=torch.long)).logits
        batch = model(
            input_ids=torch.tensor([[2, 9, 10, 3, 0, 0], [2, 11, 12, 13, 14, 3]]),
            attention_mask=torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]),
        ).logits
    assert torch.allclose(short[0], batch[0], atol=1e-5)
    assert not torch.allclose(batch[0], batch[1])


@pytest.fixture(scope="module")
def mean_pooled_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mean") / "model"
    result = run_cli("train", "configs/tiny/section_header.yaml", "--set", f"output.dir={folder}", "--set", "model.pooling=mean")
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def test_trained_mean_pooled_folder_reloads_and_predicts(mean_pooled_model: Path) -> None:
    from clintune.api import evaluate

    config = json.loads((mean_pooled_model / "config.json").read_text())
    assert config["clintune_pooling"] == "mean"
    written = json.loads((mean_pooled_model / "metrics.json").read_text())["validation"]
    again = evaluate(mean_pooled_model, "data/section_header/validation.csv", resamples=0)
    assert again.metrics["accuracy"] == pytest.approx(written["accuracy"])
    assert again.metrics["f1_macro"] > 0.5, "the tiny mean-pooled model should learn the synthetic sections"


def test_mean_pooled_onnx_export_gives_the_same_labels(mean_pooled_model: Path, tmp_path: Path) -> None:
    require_module("onnxruntime")
    require_module("onnxscript")
    from clintune.api import evaluate, export

    export(mean_pooled_model, tmp_path / "onnx")
    original = evaluate(mean_pooled_model, "data/section_header/test.csv", resamples=0)
    onnx = evaluate(tmp_path / "onnx", "data/section_header/test.csv", resamples=0)
    assert onnx.predicted_ids.tolist() == original.predicted_ids.tolist()
    assert abs(onnx.probabilities - original.probabilities).max() < 1e-4


def test_head_learning_rate_groups_split_head_from_encoder() -> None:
    from clintune.modeling.loading import load_model
    from clintune.modeling.tasks import task_for
    from clintune.training.trainer import parameter_groups

    for pooling in ("cls", "mean"):
        model = load_model(task_for("multiclass"), str(TINY_MODEL), _encoder(), pooling=pooling)
        names = {id(p): n for n, p in model.named_parameters()}
        decay = {n for n in names.values() if not n.endswith("bias") and "LayerNorm" not in n}
        groups = parameter_groups(model, decay, 0.01, 1e-4, 3e-3)
        head = {names[id(p)] for g in groups if g["lr"] == 3e-3 for p in g["params"]}
        assert head == {"classifier.weight", "classifier.bias"}
        assert sum(len(g["params"]) for g in groups) == len(names)
        assert all(g["weight_decay"] == (0.01 if names[id(g["params"][0])] in decay else 0.0) for g in groups)


def test_trainer_optimizer_uses_the_head_learning_rate(tmp_path: Path) -> None:
    from transformers import TrainingArguments

    from clintune.modeling.loading import load_model
    from clintune.modeling.tasks import task_for
    from clintune.training.trainer import _trainer_class

    model = load_model(task_for("multiclass"), str(TINY_MODEL), _encoder(), pooling="mean")
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-4, use_cpu=True, report_to=[])
    optimizer = _trainer_class()(model=model, args=args, head_learning_rate=5e-3).create_optimizer()
    head = {id(model.classifier.weight), id(model.classifier.bias)}
    rates = {(id(p) in head, g["lr"]) for g in optimizer.param_groups for p in g["params"]}
    assert rates == {(True, 5e-3), (False, 1e-4)}
    plain = _trainer_class()(model=model, args=args).create_optimizer()
    assert {g["lr"] for g in plain.param_groups} == {1e-4}
