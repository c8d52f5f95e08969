"""Label encoding (saved as JSON, never pickled) and class weights."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from clintune.errors import ModelFolderError

LABELS_FILE = "labels.json"
# A label value appears in a message only when it is short: a label column pointed at the notes by
# mistake, or swapped CoNLL columns, must not print the notes (see ``shown_labels``).
SHOWN_LABELS = 5
SHORT_LABEL_CHARACTERS = 30
SHORT_LABEL_WORDS = 3


def is_short_label(value: str) -> bool:
    """Whether a label value may appear in a message: one printable line of at most 30 characters and 3 words."""
    return len(value) <= SHORT_LABEL_CHARACTERS and len(value.split()) <= SHORT_LABEL_WORDS and value.isprintable()


def shown_labels(values: Iterable[str], counts: Mapping[str, int] | None = None) -> str:
    """Label values for a message: the first five short ones (``is_short_label``), quoted, with their
    counts when given; the rest only counted (``'A' (3), 'B' (1), 2 more and 1 value that looks like
    text, not shown``). A label column pointed at the notes by mistake must not print the notes."""
    distinct = list(dict.fromkeys(str(value) for value in values))
    short = [value for value in distinct if is_short_label(value)]
    items = [f"{value!r}" + (f" ({counts[value]})" if counts is not None else "") for value in short[:SHOWN_LABELS]]
    extras = [f"{len(short) - SHOWN_LABELS} more"] if len(short) > SHOWN_LABELS else []
    hidden = len(distinct) - len(short)
    if hidden:
        extras.append(f"{hidden} value{' that looks' if hidden == 1 else 's that look'} like text, not shown")
    if not extras:
        return ", ".join(items) or "none"
    everything = items + extras
    return ", ".join(everything[:-1]) + (" and " if len(everything) > 1 else "") + everything[-1]


def with_both_bio_tags(tags: Iterable[str]) -> list[str]:
    """``tags`` with ``B-X`` and ``I-X`` for every entity type ``X`` among them, the added ones at the end.

    A tag set comes from entity types, not from the tags that happened to occur: a type whose mentions
    were all one word in training (``B-Drug`` only) still has ``I-Drug``, so a two-word mention
    elsewhere is a valid tag sequence, not a label the model never saw."""
    tags = list(dict.fromkeys(tags))
    types = sorted({tag[2:] for tag in tags if tag[:2] in ("B-", "I-")})
    return tags + [f"{prefix}-{kind}" for kind in types for prefix in "BI" if f"{prefix}-{kind}" not in tags]


def did_you_mean(unknown: Iterable[str], classes: Iterable[str]) -> str:
    """'; did you mean 'Serious' for 'serious'?': the known class nearest each short unknown label (case
    differences first), for messages; empty when none is near. Values that look like text are never named."""
    import difflib

    known = list(classes)
    by_case = {name.casefold(): name for name in known}
    pairs = []
    for value in unknown:
        if not is_short_label(value):
            continue
        match = by_case.get(value.casefold()) or next(iter(difflib.get_close_matches(value, known, n=1, cutoff=0.6)), None)
        if match is not None and match != value:
            pairs.append(f"{match!r} for {value!r}")
    return f"; did you mean {', '.join(pairs[:SHOWN_LABELS])}?" if pairs else ""


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
            classes = sorted(set(with_both_bio_tags(labels) if task_type == "ner" else labels))
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
            raise ModelFolderError(f"{path}: unreadable label file ({exc})") from exc


def balanced_class_weights(counts: Mapping[int, int], n_classes: int) -> list[float]:
    """scikit-learn's 'balanced' weights, n / (k * count), with k all ``n_classes``; a class with no example
    (NER's ``I-X`` beside a ``B-X``) gets the largest weight, where scikit-learn would refuse it."""
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    seen = [c for c in range(n_classes) if counts.get(c)]
    if not seen:
        return [1.0] * n_classes
    y = np.repeat(seen, [counts[c] for c in seen])
    # scikit-learn divides by the classes it is given; scaled to all n_classes, as the loss sees them
    weights = dict(zip(seen, compute_class_weight("balanced", classes=np.array(seen), y=y) * len(seen) / n_classes))
    largest = max(weights.values())
    return [float(weights.get(c, largest)) for c in range(n_classes)]


def balanced_positive_weights(counts: Mapping[int, int], n_classes: int, n_examples: int) -> list[float]:
    """Multi-label 'balanced' weights: per label, its negatives over its positives (each label's positives then
    weigh as much in the loss as its negatives), as ``BCEWithLogitsLoss``'s ``pos_weight`` documents."""
    return [(n_examples - counts[j]) / counts[j] if counts.get(j) else 1.0 for j in range(n_classes)]


def class_weights_from_config(
    setting: str | Mapping[str, float], encoder: LabelEncoder, counts: Mapping[int, int], power: float = 1.0,
    n_examples: int = 0,
) -> list[float] | None:
    """The loss weights for a ``training.class_weights`` setting, or None for an unweighted loss.
    Multi-label: each label's positive weight (``n_examples``: the training notes).

    ``power`` < 1 softens balanced weights (0.5: square roots), which keeps
    rare classes visible without flooding the predictions with them.
    """
    if setting == "none":
        return None
    if setting == "balanced" and encoder.task_type == "multilabel":
        return [w**power for w in balanced_positive_weights(counts, len(encoder.classes), n_examples)]
    if setting == "balanced":
        return [w**power for w in balanced_class_weights(counts, len(encoder.classes))]
    assert isinstance(setting, Mapping)
    return [float(setting.get(label, 1.0)) for label in encoder.classes]
