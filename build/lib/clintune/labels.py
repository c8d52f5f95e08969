"""Label encoding (saved as JSON, never pickled) and class weights."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from clintune.errors import ModelFolderError

LABELS_FILE = "labels.json"


@dataclass(frozen=True)
class LabelEncoder:
    """An ordered list of class names; a class's id is its index."""

    classes: tuple[str, ...]
    task_type: str
    positive: str | None = None

    @classmethod
    def fit(
        cls,
        labels: Iterable[str],
        task_type: str,
        explicit: list[str] | None = None,
        positive: str | None = None,
    ) -> LabelEncoder:
        """Explicit classes if given, else the sorted unique labels (NER always includes ``O``)."""
        if explicit is not None:
            classes = list(explicit)
        else:
            classes = sorted(set(labels))
            if task_type == "ner" and "O" not in classes:
                classes = ["O", *classes]
        if task_type == "binary" and positive is None and len(classes) == 2:
            positive = classes[1]
        return cls(classes=tuple(classes), task_type=task_type, positive=positive)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.classes))

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.classes)}

    def encode(self, labels: Iterable[str]) -> list[int]:
        mapping = self.label2id
        return [mapping[label] for label in labels]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.classes[i] for i in ids]

    @property
    def positive_id(self) -> int | None:
        return None if self.positive is None else self.classes.index(self.positive)

    def save(self, folder: Path) -> None:
        payload = {"task_type": self.task_type, "classes": list(self.classes), "positive": self.positive}
        (folder / LABELS_FILE).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> LabelEncoder:
        path = folder / LABELS_FILE
        if not path.is_file():
            raise ModelFolderError(f"{folder}: no {LABELS_FILE}; this is not a folder written by 'clintune train'")
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            return cls(classes=tuple(payload["classes"]), task_type=payload["task_type"], positive=payload.get("positive"))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ModelFolderError(f"{path}: unreadable label file ({exc})") from None


def balanced_class_weights(counts: Mapping[int, int], n_classes: int) -> list[float]:
    """sklearn's 'balanced' weights, n / (k * count); an unseen class gets the largest weight."""
    total = sum(counts.values())
    weights = [total / (n_classes * counts[c]) if counts.get(c) else 0.0 for c in range(n_classes)]
    largest = max(weights) if any(weights) else 1.0
    return [w if w > 0 else largest for w in weights]


def class_weights_from_config(
    setting: str | Mapping[str, float], encoder: LabelEncoder, counts: Mapping[int, int], power: float = 1.0
) -> list[float] | None:
    """The loss weights for a ``training.class_weights`` setting, or None for an unweighted loss.

    ``power`` < 1 softens balanced weights (0.5: square roots), which keeps
    rare classes visible without flooding the predictions with them.
    """
    if setting == "none":
        return None
    if setting == "balanced":
        return [w**power for w in balanced_class_weights(counts, len(encoder.classes))]
    assert isinstance(setting, Mapping)
    return [float(setting.get(label, 1.0)) for label in encoder.classes]
