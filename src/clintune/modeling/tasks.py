"""What differs between sequence and token classification, behind one interface.

The pipeline asks a ``Task`` for its model class, how to encode examples,
how to pad a batch and how to turn logits into predictions (scores come from
``clintune.evaluation.scores``); it never asks which task it is running.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import special

from clintune.config.schema import ModelSection
from clintune.data.examples import Examples, TaggedSentences, TextExamples
from clintune.data.labels import LabelEncoder
from clintune.data.tokenization import IGNORE_INDEX, Encoded, b_to_i_map, encode_texts, encode_words
from clintune.modeling.decision import DecisionRule
from clintune.modeling.multilabel import given_labels, multi_hot, predicted_matrix


@dataclass
class Prediction:
    """One classification result."""

    label: str
    score: float
    probabilities: dict[str, float]
    # Set where the decision rule, not the most probable class, chose the label: the threshold ("rule"), the
    # class or group it names ("group") and that group's probability, the number that drove the decision.
    decided_by: dict[str, Any] | None = None
    # multi-label: every label at or over its threshold, most probable first (``label`` joins them with "; "),
    # and those labels' thresholds: why each was given
    labels: list[str] | None = None
    thresholds: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: ``{"label", "score", "probabilities"}``, and ``decided_by`` where the rule chose;
        multi-label: ``{"labels", "scores", "thresholds", "probabilities"}``, ``scores`` and ``thresholds`` holding the
        predicted labels' probabilities and the thresholds they reached."""
        if self.labels is not None:
            return {"labels": list(self.labels), "scores": {label: float(self.probabilities[label]) for label in self.labels},
                    "thresholds": {label: float((self.thresholds or {}).get(label, 0.5)) for label in self.labels},
                    "probabilities": {k: float(v) for k, v in self.probabilities.items()}}
        record = {"label": self.label, "score": float(self.score), "probabilities": {k: float(v) for k, v in self.probabilities.items()}}
        if self.decided_by is not None:
            record["decided_by"] = dict(self.decided_by)
        return record


@dataclass
class Entity:
    """One entity found in a text; ``text == input[start:end]``."""

    text: str
    label: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: ``{"text", "label", "start", "end", "score"}``."""
        return {"text": self.text, "label": self.label, "start": int(self.start), "end": int(self.end), "score": float(self.score)}


# Batches on a GPU are padded to a multiple of this many tokens. With dynamic padding every new batch length
# is a new shape, and PyTorch's cuDNN attention plans each new shape on the host, which costs a step several
# times its GPU work (docs/benchmarks.md, "First GPU run"; scripts/gpu_probe.py).
GPU_PAD_MULTIPLE = 64


def padding_multiple(setting: int | str | None, on_gpu: bool) -> int | None:
    """The multiple batches are padded to: ``auto`` is ``GPU_PAD_MULTIPLE`` on a GPU and none on a CPU
    (where every padded token costs arithmetic); a number is used as it is; None pads to the longest row."""
    if setting == "auto":
        return GPU_PAD_MULTIPLE if on_gpu else None
    return int(setting) if setting is not None else None


class RoundedPadding:
    """A task's collator that pads each batch to its longest row rounded up to ``multiple`` tokens, never
    past ``limit`` (the longest a row may be: model.max_length), so that a GPU sees a few batch shapes
    instead of one per length."""

    def __init__(self, task: Task, tokenizer: Any, multiple: int, limit: int) -> None:
        self.task, self.tokenizer, self.multiple, self.limit = task, tokenizer, multiple, limit
        self._by_length: dict[int, Any] = {}

    def __call__(self, rows: list[dict[str, Any]]) -> Any:
        longest = max(len(row["input_ids"]) for row in rows)
        target = max(longest, min(-(-longest // self.multiple) * self.multiple, self.limit))
        if target not in self._by_length:
            self._by_length[target] = self.task.collator(self.tokenizer, padding="max_length", max_length=target)
        return self._by_length[target](rows)


def batch_collator(task: Task, tokenizer: Any, multiple: int | None, limit: int) -> Any:
    """The task's collator: padding to the longest row, or (``multiple``) rounded up as ``RoundedPadding`` does."""
    return RoundedPadding(task, tokenizer, multiple, limit) if multiple else task.collator(tokenizer)


class Task(Protocol):
    """The per-task pieces of the shared pipeline."""

    auto_model_name: str

    def labels_of(self, data: Examples) -> list[str]: ...

    # how training labels are stored: "id" (one per text), "ids" (one per subword) or "multi_hot"
    label_kind: str

    def source_columns(self, data: Examples) -> dict[str, list[Any]]: ...

    def encode_batch(self, batch: dict[str, list[Any]], tokenizer: Any, encoder: LabelEncoder, settings: ModelSection) -> Encoded: ...

    def collator(self, tokenizer: Any, **padding: Any) -> Any: ...


class SequenceClassification:
    """Binary and multiclass text classification."""

    auto_model_name = "AutoModelForSequenceClassification"
    label_kind = "id"

    def labels_of(self, data: Examples) -> list[str]:
        return list(data.labels or [])

    def source_columns(self, data: Examples) -> dict[str, list[Any]]:
        """What a training split is tokenised from: its texts and (where given) their labels."""
        assert isinstance(data, TextExamples)
        return {"text": data.texts} | ({"label": data.labels} if data.labels is not None else {})

    def encode_batch(self, batch: dict[str, list[Any]], tokenizer: Any, encoder: LabelEncoder, settings: ModelSection) -> Encoded:
        labels = encoder.encode(batch["label"]) if "label" in batch else None
        return encode_texts(tokenizer, batch["text"], settings.max_length, labels, settings.long_text, settings.stride)

    def collator(self, tokenizer: Any, **padding: Any) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, **padding)

    def decode(self, probabilities: np.ndarray, encoder: LabelEncoder, rule: DecisionRule) -> Prediction:
        """Label, confidence and all class probabilities for one example."""
        indices, reasons = rule.decide(probabilities, encoder)
        index = int(indices[0])
        return Prediction(
            label=encoder.classes[index],
            score=float(probabilities[index]),
            probabilities={label: float(p) for label, p in zip(encoder.classes, probabilities)},
            decided_by=reasons[0],
        )


class TokenClassification:
    """BIO-tagged named-entity recognition over words."""

    auto_model_name = "AutoModelForTokenClassification"
    label_kind = "ids"

    def labels_of(self, data: Examples) -> list[str]:
        return list(data.labels or [])

    def source_columns(self, data: Examples) -> dict[str, list[Any]]:
        """What a training split is tokenised from: its sentences' words and (where given) their tags."""
        assert isinstance(data, TaggedSentences)
        return {"words": data.tokens} | ({"tags": data.tags} if data.tags is not None else {})

    def encode_batch(self, batch: dict[str, list[Any]], tokenizer: Any, encoder: LabelEncoder, settings: ModelSection) -> Encoded:
        tag_ids = [encoder.encode(tags) for tags in batch["tags"]] if "tags" in batch else None
        return encode_words(
            tokenizer, batch["words"], settings.max_length, tag_ids, settings.label_all_subwords,
            b_to_i_map(encoder.classes), settings.stride,
        )

    def collator(self, tokenizer: Any, **padding: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer, **padding)

    def word_tags(
        self, window_logits: list[np.ndarray], window_word_ids: list[list[int | None]], window_starts: list[list[bool]],
        n_words: int, encoder: LabelEncoder,
    ) -> tuple[list[str], list[float]]:
        """Tag and probability of every word of one sentence, from all windows that cover it.

        A word's distribution is read at its first subword and averaged over the
        windows that hold that subword; a word no window holds (it produced no
        subwords) is tagged ``O``.
        """
        totals = np.zeros((n_words, len(encoder.classes)))
        seen = np.zeros(n_words)
        for logits, word_ids, starts in zip(window_logits, window_word_ids, window_starts):
            probabilities = special.softmax(logits, axis=-1)
            for position, (word_id, is_start) in enumerate(zip(word_ids, starts)):
                if word_id is not None and is_start and word_id < n_words:
                    totals[word_id] += probabilities[position]
                    seen[word_id] += 1
        tags, scores = [], []
        for word in range(n_words):
            if not seen[word]:
                tags.append("O")
                scores.append(1.0)
                continue
            mean = totals[word] / seen[word]
            index = int(mean.argmax())
            tags.append(encoder.classes[index])
            scores.append(float(mean[index]))
        return tags, scores


def bio_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """Entities in a BIO sequence as ``(type, first_word, last_word + 1)``, decoded by seqeval.

    An ``I-X`` that does not continue an ``X`` entity starts a new one (seqeval's
    default mode), so the entities predicted are those the entity metrics count.
    """
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, first, last + 1) for kind, first, last in get_entities(tags)]


def entities_from_words(text: str, words: list[tuple[str, int, int]], tags: list[str], scores: list[float]) -> list[Entity]:
    """Character-offset entities from word tags; the score is the mean word probability."""
    entities = []
    for kind, first, stop in bio_spans(tags):
        start, end = words[first][1], words[stop - 1][2]
        entities.append(Entity(text=text[start:end], label=kind, start=start, end=end, score=float(np.mean(scores[first:stop]))))
    return entities


def label_counts(features: Iterable[Any]) -> Counter[int]:
    """How often each label id is trained on, from each feature's labels (subword labels for NER, -100 excluded;
    multi-label: notes holding it)."""
    counts: Counter[int] = Counter()
    for labels in features:
        if labels and isinstance(labels, list) and isinstance(labels[0], float):
            counts.update(j for j, flag in enumerate(labels) if flag)
        elif isinstance(labels, int):
            counts[labels] += 1
        else:
            counts.update(label for label in labels if label != IGNORE_INDEX)
    return counts


class MultiLabelClassification(SequenceClassification):
    """Multi-label coding: a sigmoid per label, and every label at or over its own threshold."""

    def labels_of(self, data: Examples) -> list[str]:
        return sorted({label for labels in data.labels or [] for label in labels})

    label_kind = "multi_hot"

    def encode_batch(self, batch: dict[str, list[Any]], tokenizer: Any, encoder: LabelEncoder, settings: ModelSection) -> Encoded:
        """Texts with multi-hot float labels. With labels (training, validation loss) a note is read in its first
        window only, even under ``long_text: chunk``: a window must not be taught a finding that only another
        window mentions. Prediction reads every window and takes each label's maximum (``WindowLogits``)."""
        if "label" not in batch:
            return encode_texts(tokenizer, batch["text"], settings.max_length, None, settings.long_text, settings.stride)
        labels = multi_hot(batch["label"], encoder.classes).astype(float).tolist()
        return encode_texts(tokenizer, batch["text"], settings.max_length, labels, "truncate", settings.stride)

    def decode(self, probabilities: np.ndarray, encoder: LabelEncoder, rule: DecisionRule) -> Prediction:
        """Every label whose probability reaches its threshold, most probable first."""
        labels = given_labels(probabilities, predicted_matrix(probabilities, rule.class_thresholds, encoder.classes)[0], encoder.classes)
        return Prediction(label="; ".join(labels), score=float(probabilities[encoder.classes.index(labels[0])]) if labels else 0.0,
                          probabilities={label: float(p) for label, p in zip(encoder.classes, probabilities)}, labels=labels,
                          thresholds={label: float(rule.class_thresholds.get(label, 0.5)) for label in labels})


def task_for(task_type: str) -> SequenceClassification | TokenClassification:
    """The task implementation for a ``task.type``."""
    if task_type == "multilabel":
        return MultiLabelClassification()
    return TokenClassification() if task_type == "ner" else SequenceClassification()
