"""How class probabilities become a label: thresholds, "must not miss" classes, temperature.

A model folder may hold ``decision.json``; without it, a binary model predicts
the positive class at probability >= 0.5 and a multiclass model takes the
most probable class. ``clintune eval --tune-threshold`` and
``--fit-temperature`` write it, and ``predict`` applies it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clintune.errors import ClintuneError
from clintune.labels import LabelEncoder
from clintune.metrics import binary_predictions

logger = logging.getLogger(__name__)

DECISION_FILE = "decision.json"
_TARGET = re.compile(r"^(?:(?P<label>.+):)?(?P<metric>recall|precision)=(?P<value>[0-9.]+)$")


@dataclass
class WindowLogits:
    """A classifier's logits for every window of every text, and the rule that turns them into probabilities.

    A text's class probabilities are the mean over its windows of ``softmax(logits / T)``:
    the temperature applies to each window before the average, and thresholds apply to
    the averaged probabilities. A text read in one window (the usual case) simply gets
    ``softmax(logits / T)``; one read in overlapping windows (``model.long_text: chunk``)
    gets the average of what its windows say.
    """

    logits: np.ndarray  # (windows, classes)
    example_index: np.ndarray  # (windows,): the text each window belongs to
    n_examples: int

    @classmethod
    def one_per_example(cls, logits: np.ndarray) -> WindowLogits:
        """Logits of texts read in one window each."""
        logits = np.asarray(logits, dtype=float)
        return cls(logits, np.arange(len(logits)), len(logits))

    def log_probabilities(self, temperature: float = 1.0) -> np.ndarray:
        """log of :meth:`probabilities`, computed stably (n_examples, classes)."""
        scaled = self.logits / temperature
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        window_log = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        peak = np.full((self.n_examples, window_log.shape[1]), -np.inf)
        np.maximum.at(peak, self.example_index, window_log)
        sums = np.zeros_like(peak)
        np.add.at(sums, self.example_index, np.exp(window_log - peak[self.example_index]))
        counts = np.bincount(self.example_index, minlength=self.n_examples)[:, None]
        return np.log(sums) + peak - np.log(counts)

    def probabilities(self, temperature: float = 1.0) -> np.ndarray:
        """Class probabilities per text: the mean of its windows' ``softmax(logits / temperature)``."""
        return np.exp(self.log_probabilities(temperature))


@dataclass
class DecisionRule:
    """Temperature for the logits, a binary threshold, and per-class minimum probabilities.

    ``class_thresholds`` (multiclass): a class whose probability reaches its
    threshold is predicted even if another class is more probable; classes
    are checked in the order given. ``tuning`` records how each was chosen.
    """

    temperature: float = 1.0
    threshold: float = 0.5
    class_thresholds: dict[str, float] = field(default_factory=dict)
    tuning: list[dict[str, Any]] = field(default_factory=list)

    def predict(self, probabilities: np.ndarray, encoder: LabelEncoder) -> np.ndarray:
        """Class ids for a (n, k) matrix of probabilities."""
        probabilities = np.atleast_2d(probabilities)
        if encoder.task_type == "binary":
            return binary_predictions(probabilities[:, encoder.positive_id], encoder.positive_id, self.threshold)
        predicted = probabilities.argmax(axis=1)
        decided = np.zeros(len(predicted), dtype=bool)
        for label, minimum in self.class_thresholds.items():
            index = encoder.classes.index(label)
            hit = ~decided & (probabilities[:, index] >= minimum)
            predicted[hit] = index
            decided |= hit
        return predicted

    def copy(self, **changes: Any) -> DecisionRule:
        """An independent copy (its mappings and lists are not shared), with ``changes`` applied."""
        fields = {"temperature": self.temperature, "threshold": self.threshold,
                  "class_thresholds": dict(self.class_thresholds), "tuning": list(self.tuning)}
        return DecisionRule(**(fields | changes))

    def describe(self, encoder: LabelEncoder) -> str:
        parts = []
        if encoder.task_type == "binary":
            parts.append(f"predict {encoder.positive!r} when its probability >= {self.threshold:.4g}")
        for label, minimum in self.class_thresholds.items():
            parts.append(f"predict {label!r} when its probability >= {minimum:.4g}")
        if not parts:
            parts.append("most probable class")
        if self.temperature != 1.0:
            parts.append(f"temperature {self.temperature:.4g}")
        return "; ".join(parts)

    def save(self, folder: Path) -> None:
        from clintune.artifacts import write_json

        write_json(folder / DECISION_FILE, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> DecisionRule:
        path = folder / DECISION_FILE
        if not path.is_file():
            return cls()
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ClintuneError(f"{path}: unreadable decision file ({exc})") from None


def parse_target(text: str, encoder: LabelEncoder) -> tuple[str, str, float]:
    """``recall=0.95`` (binary: the positive class) or ``LABEL:recall=0.95`` -> (label, metric, value)."""
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
    elif encoder.task_type == "multiclass":
        if label is None:
            raise ClintuneError(f"--tune-threshold {text!r}: name the class, e.g. '{encoder.classes[0]}:recall=0.95'")
        if match["metric"] != "recall":
            raise ClintuneError("--tune-threshold: for a multiclass model, set a recall target for a must-not-miss class")
    else:
        raise ClintuneError("--tune-threshold applies to classification models, not NER")
    if label not in encoder.classes:
        raise ClintuneError(f"--tune-threshold: {label!r} is not one of the model's classes {list(encoder.classes)}")
    return label, match["metric"], value


def tune(rule: DecisionRule, probabilities: np.ndarray, gold: np.ndarray, encoder: LabelEncoder, target: str, source: str) -> DecisionRule:
    """A copy of ``rule`` whose threshold for the target's class meets the target on this data.

    Recall targets take the highest threshold that reaches the recall (the
    fewest extra positives); precision targets take the lowest threshold that
    reaches the precision (the most recall). If no threshold reaches the
    target, that is an error rather than a silent best effort.
    """
    label, metric, value = parse_target(target, encoder)
    index = encoder.classes.index(label)
    tuned = rule.copy(tuning=[entry for entry in rule.tuning if entry["class"] != label])
    candidates = np.unique(probabilities[:, index])
    order = candidates[::-1] if metric == "recall" else candidates
    for candidate in order:
        _set(tuned, encoder, label, float(candidate))
        achieved = _score(tuned.predict(probabilities, encoder), gold, index, metric)
        if achieved >= value:
            tuned.tuning.append({"class": label, "target": f"{metric}>={value}", "threshold": float(candidate),
                                 "achieved": achieved, "data": source, "n_examples": int(len(gold))})
            return tuned
    raise ClintuneError(f"--tune-threshold {target}: no threshold reaches {metric} {value} for {label!r} on {source}")


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
        entry["achieved"] = _score(predicted, gold, encoder.classes.index(entry["class"]), metric)
        if entry["achieved"] < float(value):
            logger.warning("with every threshold set, %r reaches %s %.3f on %s, below its target %s",
                           entry["class"], metric, entry["achieved"], source, value)


def _set(rule: DecisionRule, encoder: LabelEncoder, label: str, value: float) -> None:
    if encoder.task_type == "binary":
        rule.threshold = value
    else:
        rule.class_thresholds[label] = value


def _score(predicted: np.ndarray, gold: np.ndarray, index: int, metric: str) -> float:
    hits = np.sum((predicted == index) & (gold == index))
    denominator = np.sum(gold == index) if metric == "recall" else np.sum(predicted == index)
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
