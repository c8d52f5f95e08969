"""Multi-label coding (``task.type: multilabel``): label sets, a threshold per label, and the metrics.

A note gets every label whose probability (a sigmoid per label, independent of the others) reaches that
label's threshold: none, one or many. Thresholds are chosen on validation data for each label's F1, or to
reach a recall target (``decision.must_not_miss``); a label with too few validation positives to choose
from keeps 0.5. Functions of arrays; no model in sight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import special

# A label with fewer validation positives than this keeps the default threshold: F1 tuned on a handful
# of examples follows their noise (the model card lists such labels).
MIN_POSITIVES_TO_TUNE = 10
DEFAULT_THRESHOLD = 0.5
DEFAULT_K = 5


def multi_hot(label_sets: Sequence[Sequence[str]], classes: Sequence[str]) -> np.ndarray:
    """An (n, k) 0/1 int matrix: row i has a 1 in the column of each label of ``label_sets[i]``."""
    index = {label: j for j, label in enumerate(classes)}
    matrix = np.zeros((len(label_sets), len(classes)), dtype=np.int64)
    for i, labels in enumerate(label_sets):
        for label in labels:
            matrix[i, index[label]] = 1
    return matrix


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function (``scipy.special.expit``), in float64."""
    return special.expit(np.asarray(logits, dtype=float))


def threshold_vector(thresholds: Mapping[str, float], classes: Sequence[str]) -> np.ndarray:
    """Each class's threshold in class order; a class not in ``thresholds`` has 0.5."""
    return np.array([float(thresholds.get(label, DEFAULT_THRESHOLD)) for label in classes])


def predicted_matrix(probabilities: np.ndarray, thresholds: Mapping[str, float], classes: Sequence[str]) -> np.ndarray:
    """0/1 predictions: a label is predicted where its probability reaches its threshold."""
    return (np.atleast_2d(probabilities) >= threshold_vector(thresholds, classes)).astype(np.int64)


def given_labels(probabilities: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> list[str]:
    """One note's predicted labels (``predicted``: its 0/1 row), most probable first."""
    return [classes[int(j)] for j in np.argsort(-probabilities, kind="stable") if predicted[j]]


def _best_f1_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """The threshold (one of the scores; predicted at score >= threshold) with the highest F1, and that F1.
    Ties go to the highest threshold: the fewest extra labels for the same F1."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(positive, scores, drop_intermediate=False)
    precision, recall = precision[: len(thresholds)], recall[: len(thresholds)]
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.flatnonzero(f1 == f1.max())[-1])  # thresholds ascend
    return float(thresholds[best]), float(f1[best])


def _recall_threshold(scores: np.ndarray, positive: np.ndarray, target: float) -> tuple[float, float] | None:
    """The highest threshold whose recall reaches ``target`` (the fewest extra labels), and that recall."""
    from sklearn.metrics import precision_recall_curve

    _, recall, thresholds = precision_recall_curve(positive, scores, drop_intermediate=False)
    reaching = np.flatnonzero(recall[: len(thresholds)] >= target)
    if not len(reaching):
        return None
    return float(thresholds[reaching[-1]]), float(recall[reaching[-1]])


def tune_thresholds(
    probabilities: np.ndarray, gold: np.ndarray, classes: Sequence[str], recall_targets: Mapping[str, float] | None = None,
    min_positives: int = MIN_POSITIVES_TO_TUNE, source: str = "validation",
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """A threshold per label, and how each was chosen (one record per label).

    Labels with a recall target take the highest threshold that reaches it (unmet targets are recorded
    with ``met: False`` and keep the threshold of the highest recall); labels with fewer than
    ``min_positives`` positives keep 0.5; every other label takes the threshold of its best F1 here."""
    recall_targets = dict(recall_targets or {})
    thresholds: dict[str, float] = {}
    records: list[dict[str, Any]] = []
    for j, label in enumerate(classes):
        scores, positive = probabilities[:, j], gold[:, j].astype(bool)
        n_positive = int(positive.sum())
        record: dict[str, Any] = {"class": label, "positives": n_positive, "data": source, "n_examples": int(len(gold))}
        if label in recall_targets:
            target = recall_targets[label]
            found = _recall_threshold(scores, positive, target) if n_positive else None
            if found is None:
                lowest = float(scores.min()) if n_positive else DEFAULT_THRESHOLD
                thresholds[label] = lowest
                record |= {"target": f"recall>={target}", "threshold": lowest, "met": False,
                           "achieved": float(positive[scores >= lowest].sum() / n_positive) if n_positive else 0.0}
            else:
                thresholds[label] = found[0]
                record |= {"target": f"recall>={target}", "threshold": found[0], "achieved": found[1], "met": True}
        elif n_positive < min_positives:
            thresholds[label] = DEFAULT_THRESHOLD
            record |= {"target": "default", "threshold": DEFAULT_THRESHOLD,
                       "reason": f"{n_positive} positive(s) in {source}, fewer than {min_positives} to tune on"}
        else:
            threshold, f1 = _best_f1_threshold(scores, positive)
            thresholds[label] = threshold
            record |= {"target": "best f1", "threshold": threshold, "achieved": f1}
        records.append(record)
    return thresholds, records


def at_k(gold: np.ndarray, probabilities: np.ndarray, k: int) -> tuple[float, float]:
    """Mean precision@k and recall@k over notes: of each note's k most probable labels, the share that are
    gold (precision, over k) and the share of its gold labels among them (recall; notes without gold labels
    are left out of the recall mean)."""
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(gold, top, axis=1).sum(axis=1)
    n_gold = gold.sum(axis=1)
    precision = float(np.mean(hits / k)) if len(gold) else 0.0
    recall = float(np.mean(hits[n_gold > 0] / n_gold[n_gold > 0])) if np.any(n_gold > 0) else 0.0
    return precision, recall


def multilabel_metrics(
    gold: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray, classes: Sequence[str], thresholds: Mapping[str, float],
    k: int = DEFAULT_K,
) -> dict[str, Any]:
    """Headline metrics (micro, macro and samples F1 / precision / recall, subset accuracy, P@k and R@k,
    label cardinality) and the per-label table (support, threshold, precision, recall, F1, ROC-AUC, average
    precision, calibration error)."""
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

    metrics: dict[str, Any] = {"n_examples": int(len(gold))}
    for average in ("micro", "macro", "samples"):
        p, r, f, _ = precision_recall_fscore_support(gold, predicted, average=average, zero_division=0)
        metrics |= {f"precision_{average}": float(p), f"recall_{average}": float(r), f"f1_{average}": float(f)}
    metrics["subset_accuracy"] = float(np.mean(np.all(gold == predicted, axis=1))) if len(gold) else 0.0
    precision_k, recall_k = at_k(gold, probabilities, k)
    metrics[f"precision_at_{k}"], metrics[f"recall_at_{k}"] = precision_k, recall_k
    metrics["label_cardinality"] = {"gold": float(gold.sum(axis=1).mean()), "predicted": float(predicted.sum(axis=1).mean())}
    metrics["notes_without_labels"] = {"gold": int(np.sum(gold.sum(axis=1) == 0)), "predicted": int(np.sum(predicted.sum(axis=1) == 0))}
    p, r, f, support = precision_recall_fscore_support(gold, predicted, average=None, zero_division=0)
    per_class = {}
    for j, label in enumerate(classes):
        both = 0 < gold[:, j].sum() < len(gold)
        per_class[label] = {
            "support": int(support[j]), "predicted": int(predicted[:, j].sum()),
            "threshold": float(thresholds.get(label, DEFAULT_THRESHOLD)),
            "precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]),
            "roc_auc": float(roc_auc_score(gold[:, j], probabilities[:, j])) if both else None,
            "average_precision": float(average_precision_score(gold[:, j], probabilities[:, j])) if gold[:, j].any() else None,
            "ece": label_calibration_error(probabilities[:, j], gold[:, j]),
        }
    metrics["per_class"] = per_class
    metrics["never_predicted"] = [label for label in classes if per_class[label]["predicted"] == 0 and per_class[label]["support"] > 0]
    return metrics


def label_calibration_error(scores: np.ndarray, positive: np.ndarray, n_bins: int = 10) -> float:
    """One label's expected calibration error: over equal-width probability bins, the count-weighted gap
    between the mean probability and the share of positives."""
    if not len(scores):
        return 0.0
    bins = np.clip((scores * n_bins).astype(int), 0, n_bins - 1)
    error = 0.0
    for b in np.unique(bins):
        members = bins == b
        error += abs(float(scores[members].mean()) - float(positive[members].mean())) * members.sum() / len(scores)
    return float(error)


def f1_statistic(gold: np.ndarray, predicted: np.ndarray) -> Any:
    """Micro- and macro-F1 of a resample of notes, for ``metrics.bootstrap_intervals``."""

    def statistic(indices: np.ndarray) -> dict[str, float]:
        g, p = gold[indices], predicted[indices]
        tp, fp, fn = (g & p).sum(axis=0), ((1 - g) & p).sum(axis=0), (g & (1 - p)).sum(axis=0)
        denominator = 2 * tp + fp + fn
        per_label = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
        micro = 2 * tp.sum() / max(1, denominator.sum())
        return {"f1_micro": float(micro), "f1_macro": float(per_label.mean())}

    return statistic


def iterative_stratification(gold: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold of every note, so that each label's notes spread over the folds in proportion (Sechidis, Tsoumakas
    and Vlahavas 2011, "On the stratification of multi-label data"): the label with the fewest notes left is placed
    first, each of its notes going to the fold that most lacks that label (then the emptiest fold, then at random);
    notes without labels fill the emptiest folds."""
    rng = np.random.default_rng(seed)
    n = len(gold)
    assignment = np.full(n, -1)
    capacity = np.full(folds, n / folds)
    wanted = np.tile(gold.sum(axis=0) / folds, (folds, 1)).astype(float)  # folds x labels: how many each fold still lacks
    left = gold.astype(bool).copy()
    while left.any():
        counts = left.sum(axis=0).astype(float)
        counts[counts == 0] = np.inf
        label = int(rng.choice(np.flatnonzero(counts == counts.min())))
        for i in rng.permutation(np.flatnonzero(left[:, label])):
            need = wanted[:, label]
            candidates = np.flatnonzero(need == need.max())
            candidates = candidates[capacity[candidates] == capacity[candidates].max()]
            fold = int(rng.choice(candidates))
            assignment[i] = fold
            capacity[fold] -= 1
            wanted[fold] -= gold[i]
            left[i] = False
    for i in rng.permutation(np.flatnonzero(assignment < 0)):
        fold = int(rng.choice(np.flatnonzero(capacity == capacity.max())))
        assignment[i] = fold
        capacity[fold] -= 1
    return assignment
