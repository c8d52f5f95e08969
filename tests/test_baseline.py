from __future__ import annotations

import json
from pathlib import Path

from conftest import invoke_cli, run_cli

from clintune.data.examples import TaggedSentences
from clintune.evaluation.tfidf_baseline import fit_gazetteer, tag_with_gazetteer


def test_gazetteer_prefers_the_longest_match() -> None:
    train = TaggedSentences(
        tokens=[["breast", "cancer", "risk"], ["Cancer", "cells"]],
        tags=[["B-Disease", "I-Disease", "O"], ["B-Disease", "O"]],
        rows=[1, 5], source="t",
    )
    gazetteer = fit_gazetteer(train)
    assert gazetteer == {("breast", "cancer"): "Disease", ("cancer",): "Disease"}
    assert tag_with_gazetteer(["Breast", "cancer", "and", "cancer", "."], gazetteer) == ["B-Disease", "I-Disease", "O", "B-Disease", "O"]


def test_baseline_command_beside_the_transformer(trained_models: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "baseline.json"
    result = run_cli("baseline", "configs/tiny/section_header.yaml", "--set", f"output.dir={trained_models['section_header']}",
                     "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert "baseline  transformer" in result.stdout
    metrics = json.loads(output.read_text())
    assert metrics["baseline"].startswith("TF-IDF")
    assert {"validation", "test"} <= set(metrics)
    assert 0 <= metrics["validation"]["f1_macro"] <= 1
    assert sum(row["support"] for row in metrics["validation"]["per_class"].values()) == 40


def test_ner_baseline(tmp_path: Path) -> None:
    result = invoke_cli("baseline", "configs/tiny/ner.yaml", "--set", f"output.dir={tmp_path / 'none'}")
    assert result.returncode == 0, result.stderr
    assert "dictionary" in result.stdout and "no trained model" in result.stdout
