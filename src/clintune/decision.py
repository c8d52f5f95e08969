"""How class probabilities become a label: thresholds, "must not miss" classes, temperature.

A model folder may hold ``decision.json``; without it, a binary model predicts
the positive class at probability >= 0.5 and a multiclass model takes the
most probable class. ``clintune eval --tune-threshold`` and
``--fit-temperature`` write it, and ``predict`` applies it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clintune.errors import ClintuneError
from clintune.labels import LabelEncoder
from clintune.metrics import binary_predictions

DECISION_FILE = "decision.json"
_TARGET = re.compile(r"^(?:(?P<label>.+):)?(?P<metric>recall|precision)=(?P<value>[0-9.]+)$")


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


def _set(rule: DecisionRule, encoder: LabelEncoder, label: str, value: float) -> None:
    if encoder.task_type == "binary":
        rule.threshold = value
    else:
        rule.class_thresholds[label] = value


def _score(predicted: np.ndarray, gold: np.ndarray, index: int, metric: str) -> float:
    hits = np.sum((predicted == index) & (gold == index))
    denominator = np.sum(gold == index) if metric == "recall" else np.sum(predicted == index)
    return float(hits / denominator) if denominator else 0.0


def fit_temperature(logits: np.ndarray, gold: np.ndarray) -> float:
    """The temperature that minimises negative log-likelihood on held-out data."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        scaled = logits / np.exp(log_t)
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        log_probs = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return float(-log_probs[np.arange(len(gold)), gold].mean())

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))
