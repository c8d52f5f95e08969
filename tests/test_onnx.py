"""ONNX export: the exported (and int8) models answer like the PyTorch model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, require_module, run_cli

require_module("onnxruntime")
require_module("onnxscript")


@pytest.mark.parametrize(("task", "data"), [("seriousness", "data/seriousness/test.jsonl"), ("ner", "data/ner/test.conll")])
def test_onnx_gives_the_same_labels_as_pytorch(trained_models: dict[str, Path], tmp_path: Path, task: str, data: str) -> None:
    from clintune.api import evaluate, export

    exported = tmp_path / "onnx"
    info = export(trained_models[task], exported)
    assert (exported / "model.onnx").is_file() and (exported / "labels.json").is_file()
    assert info["quantize"] == "none"
    original = evaluate(trained_models[task], data, resamples=0)
    onnx = evaluate(exported, data, resamples=0)
    assert onnx.predicted_ids.tolist() == original.predicted_ids.tolist()
    if original.probabilities is not None:
        assert abs(onnx.probabilities - original.probabilities).max() < 1e-4


def test_int8_export_reports_agreement_and_predicts_through_the_cli(trained_models: dict[str, Path], tmp_path: Path) -> None:
    from clintune.prediction import Predictor

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
    text = "Patients with cystic fibrosis were enrolled ."
    onnx = run_cli("predict", "--model", str(exported), "--text", text, "--json", "--threads", "1")
    assert onnx.returncode == 0, onnx.stderr
    for entity in json.loads(onnx.stdout)[0]["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
    again = run_cli("export", "--model", str(trained_models["ner"]), "--output", str(exported))
    assert again.returncode == 2 and "already exists" in again.stderr
