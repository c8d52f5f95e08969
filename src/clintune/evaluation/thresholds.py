"""Choosing a decision rule on labelled data: threshold targets and temperature scaling.

``clintune eval --tune-threshold`` and ``--fit-temperature`` call these with a
model's probabilities (or logits) and the gold labels; the rule they return is
stored in the model folder as ``decision.json`` (see ``clintune.modeling.decision``).
"""

from __future__ import annotations

import logging
import re

import numpy as np

from clintune.data.labels import LabelEncoder
from clintune.errors import ClintuneError
from clintune.modeling.decision import DecisionRule, WindowLogits, class_ids, key_scores

logger = logging.getLogger(__name__)

_TARGET = re.compile(r"^(?:(?P<label>.+):)?(?P<metric>recall|precision)=(?P<value>[0-9.]+)$")


def parse_target(text: str, encoder: LabelEncoder) -> tuple[str, str, float]:
    """``recall=0.95`` (binary: the positive class) or ``LABEL:recall=0.95`` -> (label, metric, value).
    A multiclass target may name a group of classes, ``D/LT+Serious:recall=0.9`` (see ``decision.class_ids``)."""
    if encoder.task_type == "multilabel" and text.strip() == "f1":
        return "*", "f1", 0.0  # every label for its best F1
    match = _TARGET.match(text.strip())
    if not match:
        raise ClintuneError(f"--tune-threshold {text!r}: expected recall=0.95, precision=0.9 or LABEL:recall=0.95")
    value = float(match["value"])
    if not 0 < value <= 1:
        raise ClintuneError(f"--tune-threshold {text!r}: the target must be in (0, 1]")
    label = match["label"]
    if encoder.task_type == "binary":
        label = label or encoder.positive
        if label != encoder.positive:
            raise ClintuneError(f"--tune-threshold: a binary model's threshold is for its positive class {encoder.positive!r}")
    elif encoder.task_type == "multilabel":
        if label is None or match["metric"] != "recall" or label not in encoder.classes:
            raise ClintuneError(f"--tune-threshold {text!r}: for a multi-label model, give 'f1' (every label for its best F1) "
                                f"or a label's recall target, e.g. '{encoder.classes[0]}:recall=0.95'")
        return label, "recall", value
    elif encoder.task_type == "multiclass":
        if label is None:
            raise ClintuneError(f"--tune-threshold {text!r}: name the class, e.g. '{encoder.classes[0]}:recall=0.95'")
        if match["metric"] != "recall":
            raise ClintuneError("--tune-threshold: for a multiclass model, set a recall target for a must-not-miss class")
    else:
        raise ClintuneError("--tune-threshold applies to classification models, not NER")
    if encoder.task_type == "binary" and label not in encoder.classes:
        raise ClintuneError(f"--tune-threshold: {label!r} is not one of the model's classes {list(encoder.classes)}")
    try:
        class_ids(label, encoder)
    except ClintuneError as exc:
        raise ClintuneError(f"--tune-threshold: {exc}") from exc
    return label, match["metric"], value


def tune(rule: DecisionRule, probabilities: np.ndarray, gold: np.ndarray, encoder: LabelEncoder, target: str, source: str) -> DecisionRule:
    """A copy of ``rule`` whose threshold for the target's class meets the target on this data.

    Recall targets take the highest threshold that reaches the recall (the
    fewest extra positives); precision targets take the lowest threshold that
    reaches the precision (the most recall). If no threshold reaches the
    target, that is an error rather than a silent best effort.
    """
    label, metric, value = parse_target(target, encoder)
    tuned = rule.copy(tuning=[entry for entry in rule.tuning if entry["class"] != label])
    if encoder.task_type == "binary" and np.any(gold == encoder.positive_id):
        found = _binary_threshold(probabilities[:, encoder.positive_id], gold == encoder.positive_id, metric, value)
    else:
        found = _searched_threshold(tuned, probabilities, gold, encoder, label, metric, value)
    if found is None:
        raise ClintuneError(f"--tune-threshold {target}: no threshold reaches {metric} {value} for {label!r} on {source}")
    threshold, achieved = found
    _set(tuned, encoder, label, threshold)
    tuned.tuning.append({"class": label, "target": f"{metric}>={value}", "threshold": threshold,
                         "achieved": achieved, "data": source, "n_examples": int(len(gold))})
    return tuned


def tune_targets(
    rule: DecisionRule, probabilities: np.ndarray, gold: np.ndarray, encoder: LabelEncoder, targets: list[str], source: str,
) -> DecisionRule:
    """``rule`` with every target tuned in the order given, then what the final rule achieves restated."""
    for target in targets:
        rule = tune(rule, probabilities, gold, encoder, target, source)
    restate_achieved(rule, probabilities, gold, encoder, source)
    return rule


def _binary_threshold(scores: np.ndarray, is_positive: np.ndarray, metric: str, value: float) -> tuple[float, float] | None:
    """The positive class's threshold for a target, read off scikit-learn's precision-recall curve
    (every distinct score is a threshold there; a binary model predicts positive at score >= threshold)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(is_positive, scores, drop_intermediate=False)
    achieved = (recall if metric == "recall" else precision)[: len(thresholds)]
    reaching = np.flatnonzero(achieved >= value)  # thresholds ascend
    if not len(reaching):
        return None
    best = reaching[-1] if metric == "recall" else reaching[0]
    return float(thresholds[best]), float(achieved[best])


def _searched_threshold(
    tuned: DecisionRule, probabilities: np.ndarray, gold: np.ndarray, encoder: LabelEncoder, label: str, metric: str, value: float
) -> tuple[float, float] | None:
    """The class's threshold for a target, found by trying every distinct probability under the whole rule:
    a multiclass must-not-miss threshold acts with the other classes' thresholds, checked in order."""
    ids = class_ids(label, encoder)
    candidates = np.unique(key_scores(probabilities, ids))
    for candidate in candidates[::-1] if metric == "recall" else candidates:
        _set(tuned, encoder, label, float(candidate))
        achieved = _score(tuned.predict(probabilities, encoder), gold, ids, metric)
        if achieved >= value:
            return float(candidate), achieved
    return None


def refit_temperature(
    rule: DecisionRule, logits: WindowLogits, gold: np.ndarray, encoder: LabelEncoder, source: str, replaced: set[str] = frozenset()
) -> DecisionRule:
    """A copy of ``rule`` with its temperature fitted on this data and every threshold in force re-tuned at it.

    Thresholds are probabilities, and probabilities move with the temperature, so a
    threshold tuned at the old temperature no longer does what its target says. Each
    threshold with a recorded target is tuned again for that target, on this data;
    one without a target (set by hand), or for a class in ``replaced`` (about to be
    tuned afresh), is dropped. Both are logged.
    """
    temperature = fit_temperature(logits, gold)
    fresh = rule.copy(temperature=temperature, threshold=0.5, class_thresholds={}, tuning=[])
    targets = {entry["class"]: entry["target"] for entry in rule.tuning}
    in_force = list(rule.class_thresholds)
    if encoder.task_type == "binary" and (rule.threshold != 0.5 or encoder.positive in targets):
        in_force = [encoder.positive]
    probabilities = logits.probabilities(temperature)
    for label in in_force:
        old = rule.threshold if encoder.task_type == "binary" else rule.class_thresholds[label]
        if label in replaced:
            continue
        if label not in targets:
            logger.warning("the %r threshold %.4g has no recorded target, so it cannot be re-tuned at temperature %.4g; "
                           "dropped (tune it again with --tune-threshold)", label, old, temperature)
            continue
        metric, value = targets[label].split(">=")
        fresh = tune(fresh, probabilities, gold, encoder, f"{label}:{metric}={value}", source)
        logger.info("re-tuned the %r threshold for %s at temperature %.4g on %s: %.4g (was %.4g)",
                    label, targets[label], temperature, source, fresh.tuning[-1]["threshold"], old)
    return fresh


def restate_achieved(rule: DecisionRule, probabilities: np.ndarray, gold: np.ndarray, encoder: LabelEncoder, source: str) -> None:
    """Record, for each threshold tuned on ``source``, what the final rule achieves there.

    Tuning one class's threshold can move another's recall (a class checked earlier
    takes the examples first), so the numbers are taken once every threshold is set;
    a target the final rule misses is logged.
    """
    predicted = rule.predict(probabilities, encoder)
    for entry in rule.tuning:
        if entry["data"] != source or entry["n_examples"] != len(gold):
            continue
        metric, value = entry["target"].split(">=")
        entry["achieved"] = _score(predicted, gold, class_ids(entry["class"], encoder), metric)
        if entry["achieved"] < float(value):
            logger.warning("with every threshold set, %r reaches %s %.3f on %s, below its target %s",
                           entry["class"], metric, entry["achieved"], source, value)


def _set(rule: DecisionRule, encoder: LabelEncoder, label: str, value: float) -> None:
    if encoder.task_type == "binary":
        rule.threshold = value
    else:
        rule.class_thresholds[label] = value


def _score(predicted: np.ndarray, gold: np.ndarray, ids: int | list[int], metric: str) -> float:
    """Recall or precision of one class, or of a group (a prediction inside the group counts for a gold label inside it)."""
    in_predicted, in_gold = np.isin(predicted, ids), np.isin(gold, ids)
    hits = np.sum(in_predicted & in_gold)
    denominator = np.sum(in_gold) if metric == "recall" else np.sum(in_predicted)
    return float(hits / denominator) if denominator else 0.0


def fit_temperature(logits: np.ndarray | WindowLogits, gold: np.ndarray) -> float:
    """The temperature that minimises negative log-likelihood on held-out data.

    ``logits`` is one row per example, or a ``WindowLogits`` whose texts may span
    several windows; the likelihood is that of the probabilities ``predict`` reports.
    """
    from scipy.optimize import minimize_scalar

    scores = logits if isinstance(logits, WindowLogits) else WindowLogits.one_per_example(logits)

    def nll(log_t: float) -> float:
        log_probs = scores.log_probabilities(float(np.exp(log_t)))
        return float(-log_probs[np.arange(len(gold)), gold].mean())

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def label_threshold_rule(
    probabilities: np.ndarray, label_sets: list[list[str]], encoder: LabelEncoder, recall_targets: dict[str, float], source: str,
    temperature: float = 1.0,
) -> DecisionRule:
    """Multi-label: the rule of a threshold per label chosen on this data (``multilabel.tune_thresholds``: best F1,
    the recall targets given, 0.5 with too few positives). Only the tuned labels are stored in
    ``class_thresholds`` (the others are 0.5 by default); ``tuning`` records how every label's was chosen."""
    from clintune.modeling.multilabel import multi_hot, tune_thresholds

    thresholds, records = tune_thresholds(probabilities, multi_hot(label_sets, encoder.classes), encoder.classes, recall_targets,
                                          source=source)
    tuned = {r["class"]: thresholds[r["class"]] for r in records if r["target"] != "default"}
    return DecisionRule(temperature=temperature, class_thresholds=tuned, tuning=records)


def recall_targets(targets: list[str], encoder: LabelEncoder) -> dict[str, float]:
    """``LABEL:recall=V`` targets (``--tune-threshold``, ``decision.must_not_miss``) as label -> recall."""
    return {label: value for label, metric, value in (parse_target(t, encoder) for t in targets) if metric == "recall"}
