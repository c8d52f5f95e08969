"""``clintune eval`` report folders and model cards, checked against the predictions."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli
from scipy import stats


def copy_model(trained_models: dict[str, Path], task: str, tmp_path: Path) -> Path:
    folder = tmp_path / task
    shutil.copytree(trained_models[task], folder)
    return folder


def read_confusion(path: Path) -> dict[str, dict[str, int]]:
    rows = list(csv.reader(path.open()))
    header = rows[0][1:]
    return {row[0]: dict(zip(header, map(int, row[1:]))) for row in rows[1:]}


def expected_calibration_error(predictions: list[dict], n_bins: int = 10) -> float:
    """Top-label ECE over equal-width confidence bins (low, high], from the report's own rows."""
    confidence = np.array([max(p["probabilities"].values()) for p in predictions])
    correct = np.array([p["correct"] for p in predictions], dtype=float)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    return sum(abs(confidence[bins == b].mean() - correct[bins == b].mean()) * np.sum(bins == b)
               for b in range(n_bins) if np.any(bins == b)) / len(predictions)


def seqeval_f1(predictions_file: Path) -> float:
    from seqeval.metrics import f1_score

    rows = [json.loads(line) for line in predictions_file.read_text().splitlines()]
    return f1_score([r["gold"] for r in rows], [r["predicted"] for r in rows])


def entity_counts(predictions_file: Path) -> np.ndarray:
    """Per sentence: exactly matched, predicted and gold entities."""
    from seqeval.metrics.sequence_labeling import get_entities

    counts = []
    for line in predictions_file.read_text().splitlines():
        row = json.loads(line)
        gold, predicted = set(get_entities(row["gold"])), set(get_entities(row["predicted"]))
        counts.append((len(gold & predicted), len(predicted), len(gold)))
    return np.array(counts, dtype=float)


def micro_f1(counts: np.ndarray) -> float:
    hits, predicted, gold = counts.sum(axis=0)
    return 2 * hits / (predicted + gold) if predicted + gold else 0.0


def test_multiclass_report_is_consistent(trained_models: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = run_cli("eval", "--model", str(trained_models["seriousness"]), "--data", "data/seriousness/test.csv",
                     "--output", str(report))
    assert result.returncode == 0, result.stderr
    assert {"metrics.json", "per_class.csv", "predictions.jsonl", "confusion_matrix.png", "confusion_matrix.csv", "reliability.png"} <= {
        p.name for p in report.iterdir()
    }
    gold_counts = Counter(row["Seriousness"] for row in csv.DictReader((REPO / "data/seriousness/test.csv").open()))
    metrics = json.loads((report / "metrics.json").read_text())
    predictions = [json.loads(line) for line in (report / "predictions.jsonl").read_text().splitlines()]
    confusion = read_confusion(report / "confusion_matrix.csv")
    assert sum(sum(row.values()) for row in confusion.values()) == len(predictions) == sum(gold_counts.values())
    for label, row in confusion.items():
        assert sum(row.values()) == gold_counts[label] == metrics["per_class"][label]["support"]
    predicted_counts = Counter(p["predicted"] for p in predictions)
    for label in confusion:
        assert sum(row[label] for row in confusion.values()) == predicted_counts[label]
    assert metrics["accuracy"] == pytest.approx(sum(p["correct"] for p in predictions) / len(predictions))
    correct = np.array([p["correct"] for p in predictions], dtype=float)
    expected = stats.bootstrap((correct,), np.mean, method="percentile", n_resamples=1000, random_state=0).confidence_interval
    interval = metrics["confidence_intervals"]["accuracy"]
    # 40 examples: accuracy moves in steps of 0.025; two bootstraps of 1000 resamples agree to about one step
    assert (interval["low"], interval["high"]) == pytest.approx((expected.low, expected.high), abs=0.03)
    assert metrics["ece"] == pytest.approx(expected_calibration_error(predictions), abs=1e-9)
    assert all(sum(p["probabilities"].values()) == pytest.approx(1.0) for p in predictions)
    assert "95% CI" in result.stdout


def test_binary_threshold_tuning_is_stored_and_used(trained_models: dict[str, Path], tmp_path: Path) -> None:
    model = copy_model(trained_models, "diagnosis", tmp_path)
    report = tmp_path / "report"
    result = run_cli("eval", "--model", str(model), "--data", "data/diagnosis/validation.csv", "--output", str(report),
                     "--tune-threshold", "recall=0.95")
    assert result.returncode == 0, result.stderr
    assert {"roc.png", "precision_recall.png"} <= {p.name for p in report.iterdir()}
    decision = json.loads((model / "decision.json").read_text())
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["recall"] >= 0.95
    assert metrics["threshold"] == decision["threshold"]
    assert f"{decision['threshold']:.4g}" in metrics["decision_rule"]
    assert f"{decision['threshold']:.4g}" in (model / "README.md").read_text()

    predictions = [json.loads(line) for line in (report / "predictions.jsonl").read_text().splitlines()]
    assert all((p["predicted"] == "valid") == (p["probabilities"]["valid"] >= decision["threshold"]) for p in predictions)
    texts = [row["text"] for row in csv.DictReader((REPO / "data/diagnosis/validation.csv").open())][:10]
    args = ["predict", "--model", str(model), "--json", "--probabilities"]
    for text in texts:
        args += ["--text", text]
    predicted = json.loads(run_cli(*args).stdout)
    assert [p["label"] for p in predicted] == [p["predicted"] for p in predictions[:10]]


def test_must_not_miss_class(trained_models: dict[str, Path], tmp_path: Path) -> None:
    model = copy_model(trained_models, "seriousness", tmp_path)
    report = tmp_path / "report"
    result = run_cli("eval", "--model", str(model), "--data", "data/seriousness/validation.csv", "--output", str(report),
                     "--tune-threshold", "D/LT:recall=1.0", "--fit-temperature")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["per_class"]["D/LT"]["recall"] == 1.0
    decision = json.loads((model / "decision.json").read_text())
    assert set(decision["class_thresholds"]) == {"D/LT"} and decision["temperature"] > 0


def test_threshold_tuning_is_refused_for_ner(trained_models: dict[str, Path]) -> None:
    result = run_cli("eval", "--model", str(trained_models["ner"]), "--data", "data/ner/test.conll", "--tune-threshold", "recall=0.9")
    assert result.returncode == 2 and "not NER" in result.stderr


def test_ner_report_lists_errors(trained_models: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = run_cli("eval", "--model", str(trained_models["ner"]), "--data", "data/ner/test.conll", "--output", str(report))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((report / "metrics.json").read_text())
    errors = [json.loads(line) for line in (report / "errors.jsonl").read_text().splitlines()]
    assert Counter(e["kind"] for e in errors) == {k: v for k, v in metrics["errors"].items() if v}
    assert set(metrics["per_class"]) == {"Disease"}
    assert metrics["f1"] == pytest.approx(seqeval_f1(report / "predictions.jsonl"))
    counts = entity_counts(report / "predictions.jsonl")
    expected = stats.bootstrap((np.arange(len(counts)),), lambda rows: micro_f1(counts[rows.astype(int)]), vectorized=False,
                               method="percentile", n_resamples=1000, random_state=0).confidence_interval
    interval = metrics["confidence_intervals"]["f1"]
    assert (interval["low"], interval["high"]) == pytest.approx((expected.low, expected.high), abs=0.03)


def test_model_card_renders_with_the_metrics(trained_models: dict[str, Path]) -> None:
    from markdown_it import MarkdownIt

    for task in ("section_header", "ner"):
        folder = trained_models[task]
        card = (folder / "README.md").read_text()
        metrics = json.loads((folder / "metrics.json").read_text())
        html = MarkdownIt("commonmark").enable("table").render(card)
        assert html.count("<table>") >= 4
        headline = "f1_macro" if task == "section_header" else "f1"
        assert f"| {headline} | {metrics['validation'][headline]:.4f} |" in card
        interval = metrics["validation"]["confidence_intervals"][headline]
        assert f"{interval['low']:.3f} – {interval['high']:.3f}" in card
        run = json.loads((folder / "run.json").read_text())
        assert run["data"]["train"]["sha256"] in card
        assert "clintune train" in card and "Intended use" in card
        # The command names the folder where it was published, not the staging folder it was written in.
        assert f"clintune train {folder.absolute()}/clintune.yaml --set output.dir=NEW_DIR" in card
        assert "final/clintune.yaml" not in card
        # The card holds no figures, so it must not send the reader to any.
        assert "figure" not in card.lower() and "![" not in card
