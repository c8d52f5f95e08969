"""Metrics computed locally with scikit-learn and seqeval (no Hub access).

Each function returns a flat dict of headline numbers plus a ``per_class``
table, which is what ``metrics.json`` holds and the console prints.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def binary_metrics(
    y_true: np.ndarray, positive_scores: np.ndarray, positive_id: int, classes: tuple[str, ...], threshold: float = 0.5
) -> dict[str, Any]:
    """Accuracy, positive-class precision/recall/F1 at ``threshold``, ROC-AUC and a per-class table."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

    y_true = np.asarray(y_true)
    is_positive = (y_true == positive_id).astype(int)
    predicted_positive = (np.asarray(positive_scores) >= threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(
        is_positive, predicted_positive, average="binary", pos_label=1, zero_division=0
    )
    roc_auc = float(roc_auc_score(is_positive, positive_scores)) if len(set(is_positive)) == 2 else None
    return {
        "accuracy": float(accuracy_score(is_positive, predicted_positive)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": roc_auc,
        "threshold": threshold,
        "n_examples": int(len(y_true)),
        "per_class": multiclass_metrics(y_true, binary_predictions(positive_scores, positive_id, threshold), classes)["per_class"],
    }


def binary_predictions(positive_scores: np.ndarray, positive_id: int, threshold: float) -> np.ndarray:
    """Class ids of a two-class task: the positive id where its score reaches ``threshold``."""
    negative_id = 1 - positive_id
    return np.where(np.asarray(positive_scores) >= threshold, positive_id, negative_id)


def multiclass_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, macro/weighted F1 and a per-class table.

    Macro averages run over the classes present in the gold labels or the
    predictions, so a class absent from both does not pull the mean down.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    present = sorted(set(np.asarray(y_true).tolist()) | set(np.asarray(y_pred).tolist()))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(classes))), zero_division=0
    )
    per_class = {
        label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, label in enumerate(classes)
    }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
        "precision_macro": float(np.mean([precision[i] for i in present])),
        "recall_macro": float(np.mean([recall[i] for i in present])),
        "classes_predicted": len(set(np.asarray(y_pred).tolist())),
        "n_examples": int(len(y_true)),
        "per_class": per_class,
    }


def ner_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, Any]:
    """Entity-level precision/recall/F1 (seqeval), overall and per entity type."""
    from seqeval.metrics import accuracy_score, classification_report

    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    per_type = {
        name: {
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1-score"]),
            "support": int(row["support"]),
        }
        for name, row in report.items()
        if not name.endswith(" avg")
    }
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "accuracy": float(accuracy_score(gold, predicted)),
        "n_entities": int(micro["support"]),
        "n_sentences": len(gold),
        "per_class": per_type,
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
