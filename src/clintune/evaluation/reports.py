"""The evaluation report folder written by ``clintune eval --output DIR``.

| file | content |
|---|---|
| metrics.json | headline metrics, per-class table, intervals, calibration, decision rule |
| per_class.csv | precision, recall, F1 and support per class (per entity type for NER, with overlap_f1 beside the strict f1) |
| predictions.jsonl | each row's gold label, prediction and class probabilities (NER: tokens and tags, owner-only) |
| confusion_matrix.png, .csv | gold (rows) against predicted (columns) classes (NER: word tags); binary cells named |
| roc.png, precision_recall.png | binary models: curves with the decision threshold marked |
| reliability.png | classification: calibration diagram with the ECE and the examples in each bin |
| errors.jsonl | NER: missed, false-positive, boundary and type errors with their sentence (owner-only) |
| per_label_f1.png | multi-label: each label's F1, support and threshold (no confusion matrix or reliability diagram) |

The folder is assembled beside its destination and renamed into place whole.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from clintune.errors import ClintuneError
from clintune.evaluation.scores import Evaluation
from clintune.runtime.files import publish, remove_stale, staging_dir_for, write_json, write_jsonl
from clintune.runtime.guards import check_replaceable

# Every file a report folder may hold; a folder with any other file is not a report and is never replaced.
REPORT_FILES = frozenset({
    "metrics.json", "per_class.csv", "predictions.jsonl", "confusion_matrix.png", "confusion_matrix.csv", "roc.png",
    "precision_recall.png", "reliability.png", "errors.jsonl", "per_label_f1.png",
})


def check_report_dir(output_dir: Path, overwrite: bool) -> None:
    """An earlier report at ``output_dir`` is replaced only with ``overwrite``; any other non-empty folder never."""
    check_replaceable(output_dir, "--output", lambda name: name in REPORT_FILES, ("metrics.json", "predictions.jsonl"),
                      "report folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise ClintuneError(
            f"--output: {output_dir} holds an earlier report\n  fix: pass --overwrite to replace it, or choose another folder"
        )


def write_report(output_dir: Path, evaluation: Evaluation, title: str) -> list[str]:
    """Write every report file for ``evaluation``; returns the file names."""
    from clintune.evaluation import plots

    staging = staging_dir_for(output_dir)
    remove_stale(staging)
    staging.mkdir(parents=True)
    write_json(staging / "metrics.json", evaluation.metrics)
    (staging / "per_class.csv").write_text(per_class_csv(evaluation.metrics.get("per_class", {})), encoding="utf-8")
    write_jsonl(staging / "predictions.jsonl", evaluation.records, private=evaluation.records_quote_text)
    rule = evaluation.metrics.get("decision_rule", "")  # every figure says which rule made its labels
    if evaluation.gold_ids.ndim == 2:  # multi-label: no confusion between labels; each label's F1 instead
        plots.save(plots.per_label_f1_figure(evaluation.metrics["per_class"], title + (f"\nrule: {rule}" if rule else "")),
                   staging / "per_label_f1.png")
        return _publish(staging, output_dir)
    (staging / "confusion_matrix.csv").write_text(
        confusion_csv(evaluation.gold_ids, evaluation.predicted_ids, evaluation.classes), encoding="utf-8"
    )
    figure = plots.confusion_matrix_figure(evaluation.gold_ids, evaluation.predicted_ids, evaluation.classes,
                                           title + (f"\nrule: {rule}" if rule else ""), evaluation.positive_id)
    plots.save(figure, staging / "confusion_matrix.png")
    if evaluation.positive_id is not None and evaluation.probabilities is not None:
        is_positive = (evaluation.gold_ids == evaluation.positive_id).astype(int)
        if 0 < is_positive.sum() < len(is_positive):
            scores = evaluation.probabilities[:, evaluation.positive_id]
            positive = evaluation.classes[evaluation.positive_id]
            threshold = evaluation.metrics["threshold"]
            plots.save(plots.roc_figure(is_positive, scores, threshold, positive, rule), staging / "roc.png")
            plots.save(plots.precision_recall_figure(is_positive, scores, threshold, positive, rule), staging / "precision_recall.png")
    if "calibration" in evaluation.metrics:
        plots.save(plots.reliability_figure(evaluation.metrics["calibration"]), staging / "reliability.png")
    if evaluation.errors or "errors" in evaluation.metrics:
        write_jsonl(staging / "errors.jsonl", evaluation.errors, private=True)  # each error quotes its sentence
    return _publish(staging, output_dir)


def _publish(staging: Path, output_dir: Path) -> list[str]:
    names = sorted(p.name for p in staging.iterdir())
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    publish(staging, output_dir)
    return names


def confusion_csv(gold: Any, predicted: Any, classes: tuple[str, ...]) -> str:
    """Gold classes as rows, predicted classes as columns."""
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(gold, predicted, labels=list(range(len(classes))))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["gold \\ predicted", *classes])
    for label, row in zip(classes, matrix):
        writer.writerow([label, *row.tolist()])
    return buffer.getvalue()


def per_class_csv(per_class: dict[str, dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    overlap = bool(per_class) and all("overlap_f1" in row for row in per_class.values())
    thresholds = bool(per_class) and all("threshold" in row for row in per_class.values())  # multi-label
    writer.writerow(["class", "precision", "recall", "f1", *(["overlap_f1"] if overlap else []), "support",
                     *(["threshold", "roc_auc", "average_precision", "ece"] if thresholds else [])])
    for label, row in per_class.items():
        extra = [f"{row['overlap_f1']:.4f}"] if overlap else []
        if thresholds:
            writer.writerow([label, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", row["support"],
                             f"{row['threshold']:.4f}", *("" if row[k] is None else f"{row[k]:.4f}"
                                                          for k in ("roc_auc", "average_precision", "ece"))])
            continue
        writer.writerow([label, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", *extra, row["support"]])
    return buffer.getvalue()
