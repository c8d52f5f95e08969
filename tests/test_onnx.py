"""ONNX export: the exported (and int8) models answer like the PyTorch model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


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
    card = (exported / "README.md").read_text()
    assert card.splitlines()[0].endswith(", ONNX export")
    assert f"ONNX export (`model.onnx`, float32 weights) of the PyTorch model folder `{trained_models[task]}`" in card
    assert "Not checked: exported without `--check-data`" in card
    assert f"clintune train {exported.absolute()}/clintune.yaml" in card


def test_int8_export_reports_agreement_and_predicts_through_the_cli(trained_models: dict[str, Path], tmp_path: Path) -> None:
    exported = tmp_path / "int8"
    result = run_cli("export", "--model", str(trained_models["ner"]), "--quantize", "int8", "--output", str(exported),
                     "--check-data", "data/ner/validation.conll")
    assert result.returncode == 0, result.stderr[-3000:]
    check = json.loads((exported / "export.json").read_text())["check"]
    assert 0 <= check["agreement"] <= 1 and check["metric"] == "f1"
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
