"""Metrics computed locally with scikit-learn and seqeval (no Hub access).

Each function returns a flat dict of headline numbers plus a ``per_class``
table, which is what ``metrics.json`` holds and the console prints.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clintune.modeling.decision import binary_predictions


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
        "classes_predicted": len(set(predicted_positive.tolist())),
        "n_examples": int(len(y_true)),
        "per_class": multiclass_metrics(y_true, binary_predictions(positive_scores, positive_id, threshold), classes)["per_class"],
    }


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
    """Entity-level precision/recall/F1, overall and per entity type: strict (seqeval, IOB2: type and both
    edges must match) in the flat keys, and overlap (see :func:`overlap_entity_scores`) under ``overlap``."""
    from seqeval.metrics import accuracy_score, classification_report
    from seqeval.metrics.sequence_labeling import get_entities

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
    overlap = overlap_entity_scores(gold, predicted)
    for name, row in per_type.items():
        row["overlap_f1"] = overlap["per_class"].get(name, {}).get("f1", 0.0)
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "accuracy": float(accuracy_score(gold, predicted)),
        "n_entities": int(micro["support"]),
        "n_predicted_entities": len(get_entities(predicted)),
        "n_sentences": len(gold),
        "per_class": per_type,
        "overlap": overlap,
    }


def overlap_entity_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, Any]:
    """Lenient entity scores: a predicted entity is right if it shares a word with a gold entity of its type.

    Precision is the share of predicted entities that overlap a gold entity of
    the same type; recall the share of gold entities that a predicted one of
    the same type overlaps (so one long prediction covering two gold entities
    finds both). Entities are read as seqeval reads IOB2.
    """
    from seqeval.metrics.sequence_labeling import get_entities

    counts: dict[str, list[int]] = {}  # type -> [predicted that overlap, predicted, gold that overlap, gold]
    for gold_tags, predicted_tags in zip(gold, predicted):
        gold_entities, predicted_entities = get_entities(gold_tags), get_entities(predicted_tags)
        for kind, first, last in predicted_entities:
            row = counts.setdefault(kind, [0, 0, 0, 0])
            row[1] += 1
            row[0] += any(k == kind and f <= last and first <= e for k, f, e in gold_entities)
        for kind, first, last in gold_entities:
            row = counts.setdefault(kind, [0, 0, 0, 0])
            row[3] += 1
            row[2] += any(k == kind and f <= last and first <= e for k, f, e in predicted_entities)
    per_type = {}
    for kind, (hit_predicted, n_predicted, hit_gold, n_gold) in sorted(counts.items()):
        per_type[kind] = _overlap_prf(hit_predicted, n_predicted, hit_gold, n_gold) | {"support": n_gold}
    totals = [sum(row[i] for row in counts.values()) for i in range(4)]
    return _overlap_prf(*totals) | {"per_class": per_type}


def _overlap_prf(hit_predicted: int, n_predicted: int, hit_gold: int, n_gold: int) -> dict[str, float]:
    precision = hit_predicted / n_predicted if n_predicted else 0.0
    recall = hit_gold / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def calibration_bins(probabilities: np.ndarray, y_true: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Top-label reliability: per confidence bin, mean confidence, accuracy and count; plus the ECE.

    The expected calibration error is the count-weighted mean gap between
    confidence and accuracy over the bins.
    """
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == np.asarray(y_true)).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    rows = []
    ece = 0.0
    for b in range(n_bins):
        members = bins == b
        count = int(members.sum())
        if count:
            gap = abs(confidence[members].mean() - correct[members].mean())
            ece += gap * count / len(confidence)
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": count,
                         "confidence": float(confidence[members].mean()), "accuracy": float(correct[members].mean())})
    # accuracy minus confidence over every example: above 0 the model is right more often than it says
    gap = float(correct.mean() - confidence.mean()) if len(confidence) else 0.0
    return {"ece": float(ece), "n_bins": n_bins, "bins": rows, "accuracy_minus_confidence": gap,
            "verdict": confidence_verdict(gap)}


def confidence_verdict(gap: float, tolerance: float = 0.02) -> str:
    """In words, what accuracy minus mean confidence says about the probabilities."""
    if gap > tolerance:
        return f"under-confident: right {gap:.0%} more often than its probabilities say"
    if gap < -tolerance:
        return f"over-confident: right {-gap:.0%} less often than its probabilities say"
    return "about as often right as its probabilities say"


def bootstrap_intervals(
    statistic: Any, n_items: int, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap intervals (``scipy.stats.bootstrap``) for every number ``statistic(indices)`` returns.

    The items (notes, sentences) are resampled with replacement, ``resamples`` times; each interval is
    the percentile one, not scipy's default BCa, whose jackknife would score every leave-one-out set.
    """
    from scipy import stats

    whole = statistic(np.arange(n_items))
    keys = list(whole)
    if n_items < 2:  # one item: every resample is that item, the whole sample
        return {key: {"low": float(whole[key]), "high": float(whole[key]), "level": level, "resamples": resamples,
                      "seed": seed} for key in keys}

    def vector(indices: np.ndarray) -> np.ndarray:
        values = statistic(indices.astype(int))
        return np.array([values[key] for key in keys], dtype=float)

    result = stats.bootstrap((np.arange(n_items),), vector, n_resamples=resamples, batch=100, vectorized=False,
                             confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    low, high = np.atleast_1d(result.confidence_interval.low), np.atleast_1d(result.confidence_interval.high)
    return {key: {"low": float(low[i]), "high": float(high[i]), "level": level, "resamples": resamples, "seed": seed}
            for i, key in enumerate(keys)}


def classification_statistic(y_true: np.ndarray, y_pred: np.ndarray, positive_id: int | None) -> Any:
    """Headline numbers of a resample: accuracy and macro-F1, or the positive class's P/R/F1."""
    from sklearn.metrics import f1_score

    def statistic(indices: np.ndarray) -> dict[str, float]:
        gold, pred = y_true[indices], y_pred[indices]
        values = {"accuracy": float(np.mean(gold == pred))}
        if positive_id is None:
            values["f1_macro"] = float(f1_score(gold, pred, average="macro", zero_division=0))
            return values
        hits = np.sum((pred == positive_id) & (gold == positive_id))
        return values | _prf(hits, np.sum(pred == positive_id), np.sum(gold == positive_id))

    return statistic


def entity_statistic(true_positives: np.ndarray, predicted: np.ndarray, gold: np.ndarray) -> Any:
    """Micro entity precision/recall/F1 of a resample of sentences, from per-sentence counts."""

    def statistic(indices: np.ndarray) -> dict[str, float]:
        return _prf(true_positives[indices].sum(), predicted[indices].sum(), gold[indices].sum())

    return statistic


def _prf(true_positives: float, predicted: float, gold: float) -> dict[str, float]:
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


CORRECTED_INTERVAL = ("95% corrected resampled t (Nadeau & Bengio 2003): the fold scores' variance times "
                      "1/k + n_test/n_train, t with k - 1 degrees of freedom")


def corrected_t_interval(values: list[float], n_test: float, n_train: float, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-fold scores (or of paired differences) and its corrected resampled t interval.

    Folds share most of their training data, so their scores are correlated and the plain
    ``s / sqrt(k)`` interval is too narrow; Nadeau & Bengio (2003) widen the variance of the mean
    from ``s^2 / k`` to ``s^2 (1/k + n_test/n_train)``. Returns (mean, low, high); NaN bounds for one fold.
    """
    from scipy import stats

    k = len(values)
    mean = float(np.mean(values))
    if k < 2:
        return mean, float("nan"), float("nan")
    variance = float(np.var(values, ddof=1)) * (1 / k + n_test / n_train)
    half = float(stats.t.ppf(0.5 + level / 2, k - 1)) * variance ** 0.5
    return mean, mean - half, mean + half
