"""Batched inference over a trained model: predictions, entities and metrics.

Examples are sorted by length, padded per batch and run under
``torch.inference_mode()``; results come back in input order. Training,
``clintune eval`` and ``clintune predict`` all go through this one path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clintune.config import PreprocessingSection
from clintune.data import Examples, preprocess_text, TaggedSentences, TextExamples
from clintune.labels import LabelEncoder
from clintune.tasks import Entity, Prediction, SequenceClassification, TokenClassification, entities_from_words, task_for
from clintune.tokenization import encode_texts, encode_words, split_words

logger = logging.getLogger(__name__)


@dataclass
class Predictor:
    """A model, its tokenizer and labels, ready to predict."""

    model: Any
    tokenizer: Any
    encoder: LabelEncoder
    max_length: int
    batch_size: int = 32
    threshold: float = 0.5
    show_progress: bool = False
    preprocessing: PreprocessingSection | None = None

    @property
    def task(self) -> SequenceClassification | TokenClassification:
        return task_for(self.encoder.task_type)

    @classmethod
    def from_folder(cls, folder: str | Path, batch_size: int = 32, show_progress: bool = False) -> Predictor:
        """Load a model folder written by ``clintune train``."""
        from clintune.artifacts import load_model_folder

        return load_model_folder(Path(folder), batch_size=batch_size, show_progress=show_progress)

    # -- raw model outputs -------------------------------------------------

    def logits(self, features: list[dict[str, Any]]) -> list[np.ndarray]:
        """Per-example logits (token-level ones trimmed to the example's length), in input order."""
        import torch

        collate = self.task.collator(self.tokenizer)
        order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
        results: list[np.ndarray | None] = [None] * len(features)
        device = next(self.model.parameters()).device
        self.model.eval()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        with torch.inference_mode():
            for batch_indices in _progress(batches, self.show_progress):
                batch = collate([{k: v for k, v in features[i].items() if k != "labels"} for i in batch_indices])
                batch = {k: v.to(device) for k, v in batch.items()}
                output = self.model(**batch).logits.float().cpu().numpy()
                for row, index in enumerate(batch_indices):
                    length = len(features[index]["input_ids"])
                    results[index] = output[row, :length] if output.ndim == 3 else output[row]
        return results  # type: ignore[return-value]

    # -- classification ----------------------------------------------------

    def classify(self, texts: list[str]) -> list[Prediction]:
        """Label, confidence and class probabilities for each text."""
        task = self.task
        assert isinstance(task, SequenceClassification), "classify() needs a classification model"
        if self.preprocessing is not None:
            texts = [preprocess_text(text, self.preprocessing) for text in texts]
        encoded = encode_texts(self.tokenizer, texts, self.max_length)
        self._report_truncation(encoded.truncated, len(texts))
        return [task.decode(row, self.encoder, self.threshold) for row in self.logits(encoded.features)]

    # -- NER ---------------------------------------------------------------

    def tag_sentences(self, sentences: list[list[str]]) -> tuple[list[list[str]], list[list[float]]]:
        """A tag and a probability for every word of every pre-split sentence."""
        task = self.task
        assert isinstance(task, TokenClassification), "tag_sentences() needs an NER model"
        encoded, word_ids = encode_words(self.tokenizer, sentences, self.max_length)
        self._report_truncation(encoded.truncated, len(sentences))
        tags, scores = [], []
        for logits, ids, words in zip(self.logits(encoded.features), word_ids, sentences):
            sentence_tags, sentence_scores = task.word_tags(logits, ids, len(words), self.encoder)
            tags.append(sentence_tags)
            scores.append(sentence_scores)
        return tags, scores

    def extract_entities(self, texts: list[str]) -> list[list[Entity]]:
        """Entities with character offsets into each raw text."""
        words = [split_words(text) for text in texts]
        tags, scores = self.tag_sentences([[w for w, _, _ in sentence] for sentence in words])
        return [entities_from_words(text, w, t, s) for text, w, t, s in zip(texts, words, tags, scores)]

    # -- evaluation --------------------------------------------------------

    def evaluate(self, data: Examples) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Metrics on labelled data, and one prediction record per example."""
        if isinstance(data, TaggedSentences):
            return self._evaluate_tagged(data)
        return self._evaluate_texts(data)

    def _evaluate_texts(self, data: TextExamples) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        encoded = encode_texts(self.tokenizer, data.texts, self.max_length)
        self._report_truncation(encoded.truncated, len(data))
        logits = self.logits(encoded.features)
        metrics = self.task.metrics(logits, self.encoder.encode(data.labels or []), self.encoder, self.threshold)
        metrics["truncated"] = encoded.truncated
        records = []
        for index, row in enumerate(logits):
            prediction = self.task.decode(row, self.encoder, self.threshold)  # type: ignore[union-attr]
            records.append(
                {"row": data.rows[index], "gold": data.labels[index] if data.labels else None, "predicted": prediction.label,
                 "score": prediction.score, "probabilities": prediction.probabilities}
            )
        return metrics, records

    def _evaluate_tagged(self, data: TaggedSentences) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        from clintune.metrics import ner_metrics

        predicted, _ = self.tag_sentences(data.tokens)
        gold = data.tags or []
        metrics = ner_metrics(gold, predicted)
        records = [
            {"row": row, "tokens": tokens, "gold": g, "predicted": p}
            for row, tokens, g, p in zip(data.rows, data.tokens, gold, predicted)
        ]
        return metrics, records

    def _report_truncation(self, truncated: int, total: int) -> None:
        if truncated:
            logger.warning(
                "%d of %d example(s) are longer than model.max_length=%d tokens and were truncated",
                truncated, total, self.max_length,
            )


def _progress(batches: list[Any], show: bool) -> Any:
    if not show or len(batches) < 2:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc="predicting", unit="batch", leave=False)
