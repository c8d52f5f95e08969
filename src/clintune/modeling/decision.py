"""How class probabilities become a label: thresholds, "must not miss" classes, temperature.

A model folder may hold ``decision.json``; without it, a binary model predicts
the positive class at probability >= 0.5 and a multiclass model takes the
most probable class. ``clintune eval --tune-threshold`` and
``--fit-temperature`` write it, and ``predict`` applies it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from clintune.data.labels import LabelEncoder
from clintune.errors import ClintuneError
from clintune.modeling.multilabel import sigmoid
from clintune.runtime.files import write_json

DECISION_FILE = "decision.json"


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
    # multi-label: a sigmoid per label, and a text's probability of a label is the maximum over its windows
    # (a finding mentioned in any window counts), not the mean of softmaxes
    multilabel: bool = False

    @classmethod
    def one_per_example(cls, logits: np.ndarray) -> WindowLogits:
        """Logits of texts read in one window each."""
        logits = np.asarray(logits, dtype=float)
        return cls(logits, np.arange(len(logits)), len(logits))

    def log_probabilities(self, temperature: float = 1.0) -> np.ndarray:
        """log of :meth:`probabilities`, computed stably (n_examples, classes)."""
        scaled = self.logits / temperature
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        window_log = special.log_softmax(scaled, axis=1)
        peak = np.full((self.n_examples, window_log.shape[1]), -np.inf)
        np.maximum.at(peak, self.example_index, window_log)
        sums = np.zeros_like(peak)
        np.add.at(sums, self.example_index, np.exp(window_log - peak[self.example_index]))
        counts = np.bincount(self.example_index, minlength=self.n_examples)[:, None]
        return np.log(sums) + peak - np.log(counts)

    def probabilities(self, temperature: float = 1.0) -> np.ndarray:
        """Class probabilities per text: the mean of its windows' ``softmax(logits / temperature)``; multi-label,
        the maximum of its windows' ``sigmoid(logits / temperature)``."""
        if self.multilabel:
            peak = np.full((self.n_examples, self.logits.shape[1]), -np.inf)
            np.maximum.at(peak, self.example_index, self.logits / temperature)
            return sigmoid(peak)
        return np.exp(self.log_probabilities(temperature))


def class_ids(key: str, encoder: LabelEncoder) -> list[int]:
    """The class ids a threshold key names: one class, or a group of classes joined by ``+``.

    A group such as ``D/LT+Serious`` ("serious or worse") is for nested classes, where the
    costly miss is missing the group: its threshold applies to the summed probability of its
    classes, and the more probable class of the group is predicted.
    """
    if key in encoder.classes:
        return [encoder.classes.index(key)]
    parts = [part.strip() for part in key.split("+")]
    unknown = [part for part in parts if part not in encoder.classes]
    if len(parts) < 2 or unknown or len(set(parts)) < len(parts):
        raise ClintuneError(f"{key!r} is not one of the classes {list(encoder.classes)}, nor a group of them joined by '+' "
                            "(e.g. 'D/LT+Serious')")
    return [encoder.classes.index(part) for part in parts]


def key_scores(probabilities: np.ndarray, ids: list[int]) -> np.ndarray:
    """The probability that a threshold key compares with its threshold: its class's, or its group's sum."""
    return np.atleast_2d(probabilities)[:, ids].sum(axis=1)


def group_keys(rule: DecisionRule, encoder: LabelEncoder) -> list[str]:
    """The threshold keys of ``rule`` that name a group of classes (``D/LT+Serious``), in order."""
    if encoder.task_type != "multiclass":
        return []
    return [key for key in rule.class_thresholds if len(class_ids(key, encoder)) > 1]


@dataclass
class DecisionRule:
    """Temperature for the logits, a binary threshold, and per-class minimum probabilities.

    ``class_thresholds`` (multiclass): a class whose probability reaches its
    threshold is predicted even if another class is more probable; classes
    are checked in the order given. A key may name a group of classes
    (``D/LT+Serious``): when their summed probability reaches the threshold,
    the group's most probable class is predicted. ``tuning`` records how each
    was chosen.
    """

    temperature: float = 1.0
    threshold: float = 0.5
    class_thresholds: dict[str, float] = field(default_factory=dict)
    tuning: list[dict[str, Any]] = field(default_factory=list)

    def predict(self, probabilities: np.ndarray, encoder: LabelEncoder) -> np.ndarray:
        """Class ids for a (n, k) matrix of probabilities."""
        return self.decide(probabilities, encoder)[0]

    def decide(self, probabilities: np.ndarray, encoder: LabelEncoder) -> tuple[np.ndarray, list[dict[str, Any] | None]]:
        """Class ids for a (n, k) matrix of probabilities and, for each row, why: ``{"rule", "group",
        "group_probability"}`` where a threshold chose the label (multiclass: a class threshold reached; binary: a
        threshold that gives another label than 0.5 would), with the probability that drove it (a group's summed
        probability); None where the label is simply the most probable class."""
        probabilities = np.atleast_2d(probabilities)
        most_probable = probabilities.argmax(axis=1)
        keys: list[str | None] = [None] * len(probabilities)
        if encoder.task_type == "binary":
            predicted = binary_predictions(probabilities[:, encoder.positive_id], encoder.positive_id, self.threshold)
            keys = [encoder.positive] * len(probabilities)
            minimums = {encoder.positive: self.threshold}
        else:
            predicted = most_probable.copy()
            decided = np.zeros(len(predicted), dtype=bool)
            for label, minimum in self.class_thresholds.items():
                ids = class_ids(label, encoder)
                hit = ~decided & (key_scores(probabilities, ids) >= minimum)
                predicted[hit] = np.asarray(ids)[probabilities[hit][:, ids].argmax(axis=1)]
                decided |= hit
                for row in np.flatnonzero(hit):
                    keys[row] = label
            minimums = dict(self.class_thresholds)
        reasons: list[dict[str, Any] | None] = []
        for row, key in enumerate(keys):
            if key is None or (encoder.task_type == "binary" and predicted[row] == most_probable[row]):
                reasons.append(None)
                continue
            score = float(key_scores(probabilities[row], class_ids(key, encoder))[0])
            reasons.append({"rule": f"{key} >= {minimums[key]:.4g}" if score >= minimums[key] else f"{key} < {minimums[key]:.4g}",
                            "group": key, "group_probability": score})
        return predicted, reasons

    def thresholded_classes(self, encoder: LabelEncoder) -> list[str]:
        """The classes this rule decides by a threshold rather than by the default (0.5 / most probable)."""
        if encoder.task_type == "binary":
            return [encoder.positive] if self.threshold != 0.5 else []
        return list(self.class_thresholds)

    def copy(self, **changes: Any) -> DecisionRule:
        """An independent copy (its mappings and lists are not shared), with ``changes`` applied."""
        fields = {"temperature": self.temperature, "threshold": self.threshold,
                  "class_thresholds": dict(self.class_thresholds), "tuning": list(self.tuning)}
        return DecisionRule(**(fields | changes))

    def describe(self, encoder: LabelEncoder) -> str:
        if encoder.task_type == "multilabel":
            return self._describe_label_thresholds(encoder)
        parts = []
        if encoder.task_type == "binary":
            parts.append(f"predict {encoder.positive!r} when its probability >= {self.threshold:.4g}")
        for label, minimum in self.class_thresholds.items():
            members = [encoder.classes[i] for i in class_ids(label, encoder)]
            if len(members) == 1:
                parts.append(f"predict {label!r} when its probability >= {minimum:.4g}")
            else:
                parts.append(f"predict the more probable of {', '.join(map(repr, members))} when their summed probability "
                             f">= {minimum:.4g}")
        if not parts:
            parts.append("most probable class")
        if self.temperature != 1.0:
            parts.append(f"temperature {self.temperature:.4g}")
        return "; ".join(parts)

    def _describe_label_thresholds(self, encoder: LabelEncoder) -> str:
        """'a threshold per label: 47 tuned (0.21-0.68), 3 at 0.5, set 3f9a2c': short enough for a title with 50
        labels. The set's fingerprint (of every threshold) tells two sets apart that the summary would not: figures
        are shown as measured under the rule in force only where the descriptions match (``clintune.evaluation.figures``)."""
        import hashlib

        values = [self.class_thresholds.get(label, 0.5) for label in encoder.classes]
        tuned = [v for label, v in zip(encoder.classes, values) if label in self.class_thresholds]
        if not tuned:
            text = "every label at probability >= 0.5"
        else:
            at_default = len(values) - len(tuned)
            fingerprint = hashlib.sha256(json.dumps([round(v, 6) for v in values]).encode()).hexdigest()[:6]
            text = (f"a threshold per label: {len(tuned)} tuned ({min(tuned):.2g}-{max(tuned):.2g})"
                    + (f", {at_default} at 0.5" if at_default else "") + f", set {fingerprint}")
        return text + (f"; temperature {self.temperature:.4g}" if self.temperature != 1.0 else "")

    def save(self, folder: Path) -> None:
        write_json(folder / DECISION_FILE, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> DecisionRule:
        path = folder / DECISION_FILE
        if not path.is_file():
            return cls()
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ClintuneError(f"{path}: unreadable decision file ({exc})") from exc


def binary_predictions(positive_scores: np.ndarray, positive_id: int, threshold: float) -> np.ndarray:
    """Class ids of a two-class task: the positive id where its score reaches ``threshold``."""
    negative_id = 1 - positive_id
    return np.where(np.asarray(positive_scores) >= threshold, positive_id, negative_id)
