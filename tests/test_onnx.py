"""ONNX export: the exported (and int8) models answer like the PyTorch model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, TINY_MODEL, require_module, run_cli

require_module("onnxruntime")
require_module("onnxscript")


@pytest.mark.parametrize(("task", "data"), [("seriousness", "data/seriousness/test.csv"), ("ner", "data/ner/test.conll")])
def test_onnx_gives_the_same_labels_as_pytorch(trained_models: dict[str, Path], tmp_path: Path, task: str, data: str) -> None:
    from clintune.api import evaluate, export

    exported = tmp_path / "onnx"
    info = export(trained_models[task], exported).info
    assert (exported / "model.onnx").is_file() and (exported / "labels.json").is_file()
    assert info["quantize"] == "none"
    original = evaluate(trained_models[task], data, resamples=0)
    onnx = evaluate(exported, data, resamples=0)
    assert onnx.predicted_ids.tolist() == original.predicted_ids.tolist()
    if original.probabilities is not None:
        assert abs(onnx.probabilities - original.probabilities).max() < 1e-4
    card = (exported / "README.md").read_text()
    assert card.splitlines()[0].endswith(", ONNX export")
    assert f"ONNX export (`model.onnx`, float32 weights) of the PyTorch model folder `{trained_models[task]}`" in card
    assert "Not checked: exported without `--check-data`" in card
    assert f"clintune train {exported.absolute()}/clintune.yaml" in card


def test_int8_export_reports_agreement_and_predicts_through_the_cli(trained_models: dict[str, Path], tmp_path: Path) -> None:
    from clintune.inference.predictor import Predictor

    exported = tmp_path / "int8"
    result = run_cli("export", "--model", str(trained_models["ner"]), "--quantize", "int8", "--output", str(exported),
                     "--check-data", "data/ner/validation.conll")
    assert result.returncode == 0, result.stderr[-3000:]
    check = json.loads((exported / "export.json").read_text())["check"]
    assert check["metric"] == "f1"
    # The reported agreement, recomputed word by word from each model's own tags; and the int8 drop on
    # this fixed tiny model bounded (measured: 100% agreement, F1 difference 0.0).
    sentences = [[line.split("\t")[0] for line in block.splitlines()]
                 for block in (REPO / "data/ner/validation.conll").read_text().strip().split("\n\n")]
    original_tags = [t for tags in Predictor.from_folder(trained_models["ner"]).tag_sentences(sentences)[0] for t in tags]
    int8_tags = [t for tags in Predictor.from_folder(exported).tag_sentences(sentences)[0] for t in tags]
    assert len(original_tags) == len(int8_tags) > 300
    agreement = sum(a == b for a, b in zip(original_tags, int8_tags)) / len(original_tags)
    assert check["agreement"] == pytest.approx(agreement)
    assert agreement >= 0.98
    assert abs(check["difference"]) <= 0.02 and check["exported"] - check["pytorch"] == pytest.approx(check["difference"])
    assert "agree with PyTorch" in result.stdout
    for chatter in ("Warning: ", "torchvision is not installed", "WARNING:root:", "Loading weights"):  # torch.onnx, onnxruntime
        assert chatter not in result.stderr
    card = (exported / "README.md").read_text()
    assert card.splitlines()[0].endswith(", ONNX export") and "dynamic int8 weights" in card
    assert (f"Checked at export (`--check-data`) on `{check['data']}`: {check['agreement']:.2%} of word tags agree "
            f"with the PyTorch model; f1 {check['pytorch']:.4f} (PyTorch) and {check['exported']:.4f} (ONNX)") in card
    assert "--quantize int8 --output NEW_DIR-onnx" in card
    text = "Patients with cystic fibrosis were enrolled ."
    onnx = run_cli("predict", "--model", str(exported), "--text", text, "--json", "--threads", "1")
    assert onnx.returncode == 0, onnx.stderr
    for entity in json.loads(onnx.stdout)[0]["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
    again = run_cli("export", "--model", str(trained_models["ner"]), "--output", str(exported))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_an_encoder_without_token_types_exports_with_the_inputs_its_tokenizer_gives(tmp_path: Path) -> None:
    """DistilBERT (like RoBERTa-style encoders) takes no token_type_ids: the ONNX graph asks only for what the tokenizer makes."""
    import onnxruntime
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    from clintune.api import evaluate, export

    encoder = tmp_path / "tiny-distilbert"
    tokenizer = AutoTokenizer.from_pretrained(str(TINY_MODEL), model_input_names=["input_ids", "attention_mask"])
    tokenizer.save_pretrained(encoder)
    config = DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=256,
                              pad_token_id=tokenizer.pad_token_id)
    DistilBertModel(config).save_pretrained(encoder)
    model = tmp_path / "model"
    trained = run_cli("train", "configs/tiny/seriousness.yaml", "--set", f"model.name_or_path={encoder}", "--set", "training.epochs=1",
                      "--set", f"output.dir={model}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    export(model, tmp_path / "onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    original = evaluate(model, "data/seriousness/test.csv", resamples=0)
    onnx = evaluate(tmp_path / "onnx", "data/seriousness/test.csv", resamples=0)
    assert onnx.predicted_ids.tolist() == original.predicted_ids.tolist()
    assert abs(onnx.probabilities - original.probabilities).max() < 1e-4


def test_an_int8_folder_runs_its_one_text_passes_side_by_side_and_answers_in_input_order(
        trained_models: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """One text per pass leaves a core idle unless passes run side by side. The answers must still be each
    text's own, in input order: checked against an ONNX Runtime session called by hand, one text at a time."""
    import threading
    import time

    import numpy as np
    import onnxruntime

    from clintune import api
    from clintune.inference.predictor import Predictor

    exported = tmp_path / "int8"
    api.export(trained_models["section_header"], exported, quantize="int8")
    predictor = Predictor.from_folder(exported, threads=2)
    assert predictor.batch_size == 1 and predictor.model.passes == 2
    assert predictor.model.side_session.get_session_options().intra_op_num_threads == 1
    assert predictor.model.session.get_session_options().intra_op_num_threads == 2  # a lone text's pass
    caplog.clear()
    assert Predictor.from_folder(exported, batch_size=4).model.passes == 1  # batched passes keep ONNX's own threads
    assert sum("will depend on the other texts" in r.message for r in caplog.records) == 1  # said once

    session, running, most = predictor.model.side_session, [0], [0]
    lock = threading.Lock()

    class Watched:  # the session, counting how many passes are under way at once
        def __getattr__(self, name: str) -> object:
            return getattr(session, name)

        def run(self, *args: object) -> object:
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.01)
            try:
                return session.run(*args)
            finally:
                with lock:
                    running[0] -= 1

    predictor.model.side_session = Watched()
    words = "patient reports chest pain and shortness of breath since yesterday evening".split()
    texts = [f"note {k}: " + " ".join(words[: 1 + (7 * k) % len(words)]) for k in range(24)]  # lengths shuffled
    got = predictor.window_logits(texts)
    assert most[0] == 2, "the passes ran one after another"
    # by hand: the exported graph with ONNX Runtime's rewrites, less the one clintune leaves out for int8
    alone = onnxruntime.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"],
                                         disabled_optimizers=["SkipLayerNormFusion"])
    names = [i.name for i in alone.get_inputs()]
    for k, text in enumerate(texts):
        encoded = predictor.tokenizer(text, return_tensors="np")
        by_hand = alone.run(None, {name: encoded[name].astype(np.int64) for name in names})[0][0]
        assert got.example_index[k] == k
        np.testing.assert_allclose(got.logits[k], by_hand, atol=1e-5)
    # that rewrite is one ONNX Runtime knows by that name: the graph it runs then holds no fused layer norm
    import onnx

    def fused_layer_norms(disabled: list[str] | None) -> int:
        options = onnxruntime.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / "as-run.onnx")
        onnxruntime.InferenceSession(str(exported / "model.onnx"), options, providers=["CPUExecutionProvider"],
                                     disabled_optimizers=disabled)
        return sum(node.op_type == "SkipLayerNormalization" for node in onnx.load(str(tmp_path / "as-run.onnx")).graph.node)

    assert fused_layer_norms(None) > 0 and fused_layer_norms(["SkipLayerNormFusion"]) == 0
    # and both of the predictor's sessions are built without it
    built: list[object] = []
    real_session = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession",
                        lambda *args, **kwargs: built.append(kwargs.get("disabled_optimizers")) or real_session(*args, **kwargs))
    Predictor.from_folder(exported, threads=2)
    assert built == [["SkipLayerNormFusion"], ["SkipLayerNormFusion"]]
    most[0] = 0
    lone = predictor.window_logits(texts[:1])
    assert most[0] == 0, "a lone text took the one-thread session"
    np.testing.assert_allclose(lone.logits[0], got.logits[0], atol=1e-5)


def test_the_export_check_compares_the_must_not_miss_groups_recall(trained_models: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    import numpy as np

    from clintune.api import evaluate, export
    from clintune.modeling.decision import DecisionRule

    source = tmp_path / "seriousness"
    shutil.copytree(trained_models["seriousness"], source)
    DecisionRule(class_thresholds={"D/LT+Serious": 0.3}).save(source)
    data = "data/seriousness/test.csv"
    info = export(source, tmp_path / "onnx", check_data=data).info
    recall = info["check"]["must_not_miss_recall"]["D/LT+Serious"]
    # the group's recall, recomputed from each side's own labels: gold D/LT or Serious predicted as either
    group = [0, 1]  # D/LT, Serious in labels.classes order
    for side, folder in (("pytorch", source), ("exported", tmp_path / "onnx")):
        result = evaluate(folder, data, resamples=0)
        gold, predicted = np.asarray(result.gold_ids), np.asarray(result.predicted_ids)
        in_group = np.isin(gold, group)
        assert recall[side] == pytest.approx(np.isin(predicted[in_group], group).mean())
    card = (tmp_path / "onnx" / "README.md").read_text()
    assert f"Recall of `D/LT+Serious` (must not miss): {recall['pytorch']:.4f} with PyTorch" in card
    assert f"the source folder's as of the export ({info['exported']})" in card
