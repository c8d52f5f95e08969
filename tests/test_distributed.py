"""Two data-parallel processes on CPU (gloo) through torchrun write one model folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli


def test_torchrun_two_processes_write_one_folder(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "clintune", "train", "configs/tiny/ner.yaml", "--set", f"output.dir={out / 'ner'}",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(p.name for p in out.iterdir()) == ["ner"], "only rank 0 writes, and only the model folder"
    assert result.stderr.count("model folder written to") == 1

    metrics = json.loads((out / "ner" / "metrics.json").read_text())["validation"]
    report = tmp_path / "report"
    evaluated = run_cli("eval", "--model", str(out / "ner"), "--data", "data/ner/validation.conll", "--output", str(report))
    assert evaluated.returncode == 0, evaluated.stderr
    again = json.loads((report / "metrics.json").read_text())
    for key in ("precision", "recall", "f1", "accuracy", "n_entities", "n_sentences"):
        assert again[key] == pytest.approx(metrics[key]), key
    assert metrics["n_sentences"] == 50, "metrics cover the whole validation set, not one shard"
    selection = json.loads((out / "ner" / "metrics.json").read_text())["selection"]
    assert selection["kept_value"] == pytest.approx(again["f1"]), "the checkpoint is chosen by what eval prints"

    log = json.loads((out / "ner" / "training_log.json").read_text())
    # 200 sentences, batch 16 per process, 2 processes, 4 epochs: ceil(200 / 32) * 4 steps
    assert log[-1]["step"] == 28, "each process trains on its own shard of the data"

    predicted = run_cli("predict", "--model", str(out / "ner"), "--text", "Patients with cystic fibrosis were enrolled .", "--json")
    assert predicted.returncode == 0
    assert "entities" in json.loads(predicted.stdout)[0]


def test_nproc_option_starts_torchrun(tmp_path: Path) -> None:
    result = run_cli("train", "configs/tiny/diagnosis.yaml", "--nproc", "2", "--set", f"output.dir={tmp_path / 'd'}",
                     "--set", "training.epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch.distributed.run" in result.stderr
    assert (tmp_path / "d" / "model.safetensors").is_file()
