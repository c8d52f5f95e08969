"""Batched inference over a trained model: logits, labels and entities.

Features are sorted by length, cut into batches that waste little on
padding (``length_batches``), padded per batch and run under
``torch.inference_mode()`` on one of two backends, the PyTorch model or an
ONNX Runtime session (``OnnxModel``), both reached through one forward
function (a padded batch in, a numpy array of logits out). Results come back
in input order, with the windows of a long text merged back into one result.
Checkpoint selection, ``clintune eval`` and ``clintune predict`` all go
through this one path.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clintune.config.schema import Config
from clintune.data.examples import preprocess_text
from clintune.data.labels import LabelEncoder
from clintune.data.tokenization import Encoded, encode_texts, encode_words, split_words
from clintune.inference.backends import CPU_BATCH_SIZE, forward_batch_size, forward_function, load_backend
from clintune.modeling.decision import DecisionRule, WindowLogits
from clintune.modeling.folder import ModelFolder, check_remote_code, read_model_folder
from clintune.modeling.loading import load_tokenizer, out_of_memory
from clintune.modeling.tasks import (
    Entity,
    Prediction,
    SequenceClassification,
    TokenClassification,
    batch_collator,
    entities_from_words,
    padding_multiple,
    task_for,
)
from clintune.runtime.allocator import HeapTrim
from clintune.runtime.progress import progress_bar
from clintune.runtime.system import cpu_limit

logger = logging.getLogger(__name__)

# Texts (or sentences) tokenised and held at a time. Encodings, not texts, are what grows with the
# input, so eval and the end of training read a file of any size in this much memory; length-sorting
# within a chunk this size keeps the batches as tight (docs/benchmarks.md, "Prediction at scale").
ENCODE_CHUNK = 2048


# A forward pass computes every padded position. Texts are sorted by length and a batch is closed early
# rather than let padding exceed this share of its positions: texts gathered at random (a web service's
# requests) are often half padding, and one pass each then costs less (docs/benchmarks.md, "Serving").
MAX_PADDING_SHARE = 0.2


@dataclass
class Predictor:
    """A model, its tokenizer, labels and the config it was trained with, ready to predict."""

    model: Any
    tokenizer: Any
    encoder: LabelEncoder
    config: Config
    batch_size: int = CPU_BATCH_SIZE
    decision: DecisionRule = field(default_factory=DecisionRule)
    show_progress: bool = False
    # How the note on long texts names what was read ("test" -> "test: 3 of 40 ..."); None: no note, where
    # the caller has already counted them (training counts the validation split once, not at every evaluation)
    long_text_note_as: str | None = ""
    # batches padded to a multiple of this many tokens (tasks.padding_multiple; a GPU's few shapes), or to the longest row
    pad_multiple: int | None = None
    # after each batch: glibc's freed heap handed back once the process has grown (see clintune.runtime.allocator)
    trim_heap: HeapTrim = field(default_factory=HeapTrim, repr=False, compare=False)

    @property
    def task(self) -> SequenceClassification | TokenClassification:
        return task_for(self.encoder.task_type)

    @classmethod
    def from_folder(
        cls, folder: str | Path, batch_size: int | None = None, show_progress: bool = False, threads: int | None = None, *,
        trust_remote_code: bool = False,
    ) -> Predictor:
        """Load a model folder written by ``clintune train`` or ``clintune export``.

        A PyTorch model goes to the GPU when there is one; an exported folder runs on
        ONNX Runtime. ``threads`` caps the CPU threads used for inference (PyTorch and
        ONNX Runtime); ``batch_size`` defaults to 8 on CPU and 64 on a GPU, and to 1 for a
        dynamic-int8 folder, whose passes then run side by side (see ``OnnxModel``).
        A folder that ships Python code of its own loads only with ``trust_remote_code``
        (see ``clintune.modeling.folder.check_remote_code``); what its ``clintune.yaml`` says does not count.
        """
        return cls.from_model_folder(read_model_folder(Path(folder)), batch_size, show_progress, threads,
                                     trust_remote_code=trust_remote_code)

    @classmethod
    def from_model_folder(
        cls, folder: ModelFolder, batch_size: int | None = None, show_progress: bool = False, threads: int | None = None, *,
        trust_remote_code: bool = False,
    ) -> Predictor:
        """``from_folder`` for a folder already read (see ``clintune.modeling.folder.read_model_folder``)."""
        from transformers.utils import logging as hf_logging

        check_remote_code(folder, trust_remote_code)
        threads = threads or cpu_limit()  # a container's CPU limit, not the node's CPU count
        if threads:
            import torch

            torch.set_num_threads(threads)
        hf_logging.disable_progress_bar()
        tokenizer = load_tokenizer(str(folder.path), trust_remote_code, folder.tokenizer_config)
        model, on_gpu = load_backend(folder, threads, batch_size, trust_remote_code=trust_remote_code)
        batch_size = forward_batch_size(folder, batch_size, on_gpu)
        return cls(model, tokenizer, folder.encoder, folder.config, batch_size, folder.decision.copy(), show_progress,
                   pad_multiple=padding_multiple("auto", on_gpu))

    # -- raw model outputs -------------------------------------------------

    def logits(self, features: list[dict[str, Any]], progress: Any = None) -> list[np.ndarray]:
        """Per-feature logits (token-level ones trimmed to the feature's length), in input order.
        ``progress(n)`` is told after each batch how many features it held."""
        import torch

        collate = batch_collator(self.task, self.tokenizer, self.pad_multiple, self.config.model.max_length)
        results: list[np.ndarray | None] = [None] * len(features)
        batches = length_batches([len(f["input_ids"]) for f in features], self.batch_size)
        collated = (collate_rows(collate, [features[i] for i in batch]) for batch in batches)
        # side by side (see OnnxModel) when there are passes enough to fill every thread, else in turn on all of them
        passes = getattr(self.model, "passes", 1)
        passes = passes if 1 < passes <= len(batches) else 1
        forward = forward_function(self.model, side_by_side=passes > 1)
        try:
            with torch.inference_mode(), ThreadPoolExecutor(passes) if passes > 1 else nullcontext() as pool:
                outputs = pool.map(forward, collated) if pool is not None else map(forward, collated)  # in order either way
                for batch_indices, output in zip(batches, outputs):
                    for row, index in enumerate(batch_indices):
                        length = len(features[index]["input_ids"])
                        results[index] = output[row, :length] if output.ndim == 3 else output[row]
                    if progress is not None:
                        progress(len(batch_indices))
                    self.trim_heap()
        except torch.cuda.OutOfMemoryError as exc:
            raise out_of_memory("predicting", self.batch_size,
                                "--batch-size {smaller} (while training: --set training.eval_batch_size={smaller})") from exc
        return results  # type: ignore[return-value]

    def _chunked(self, examples: list[Any], encode: Any) -> Any:
        """For each chunk of ``ENCODE_CHUNK`` examples: its offset, its encoding and its features' logits; with
        one progress bar over all the examples and one note on the long ones at the end."""
        too_long = 0
        with progress_bar(len(examples), show=self.show_progress and len(examples) >= 2 * CPU_BATCH_SIZE, leave=False) as bar:
            for start in range(0, len(examples), ENCODE_CHUNK):
                chunk = examples[start : start + ENCODE_CHUNK]
                encoded = encode(chunk)
                too_long += encoded.too_long
                share = len(chunk) / max(len(encoded.features), 1)  # a long text's windows advance the bar by one text in all
                yield start, encoded, self.logits(encoded.features, lambda n, share=share: bar.update(n * share))
        note = long_text_note(too_long, len(examples), self.config)
        if note and self.long_text_note_as is not None:
            logger.warning(f"{self.long_text_note_as}: {note}" if self.long_text_note_as else note)

    # -- classification ----------------------------------------------------

    def window_logits(self, texts: list[str]) -> WindowLogits:
        """Logits of every window of every raw text (one window each unless ``model.long_text: chunk``).

        The texts are preprocessed here, with the model's ``data.preprocessing``, exactly
        once: callers pass texts as the user or the data file gives them. They are
        tokenised ``ENCODE_CHUNK`` at a time, so memory does not grow with their number.
        """
        settings = self.config.model

        def encode(chunk: list[str]) -> Encoded:
            chunk = [preprocess_text(text, self.config.data.preprocessing) for text in chunk]
            return encode_texts(self.tokenizer, chunk, settings.max_length, long_text=settings.long_text, stride=settings.stride)

        logits, example_index = [], []
        for start, encoded, rows in self._chunked(texts, encode):
            logits += rows
            example_index.append(np.asarray(encoded.example_index, dtype=int) + start)
        stacked = np.stack(logits) if logits else np.zeros((0, len(self.encoder.classes)))
        index = np.concatenate(example_index) if example_index else np.zeros(0, dtype=int)
        return WindowLogits(stacked.astype(float), index, len(texts), multilabel=self.encoder.task_type == "multilabel")

    def class_probabilities(self, texts: list[str]) -> np.ndarray:
        """Class probabilities per raw text, after the model's temperature (windows averaged, see ``WindowLogits``)."""
        return self.window_logits(texts).probabilities(self.decision.temperature)

    def classify(self, texts: list[str]) -> list[Prediction]:
        """Label, confidence and class probabilities for each text, by the model's decision rule."""
        task = self.task
        assert isinstance(task, SequenceClassification), "classify() needs a classification model"
        return [task.decode(row, self.encoder, self.decision) for row in self.class_probabilities(texts)]

    # -- NER ---------------------------------------------------------------

    def tag_sentences(self, sentences: list[list[str]]) -> tuple[list[list[str]], list[list[float]]]:
        """A tag and a probability for every word of every pre-split sentence (``ENCODE_CHUNK`` sentences at a time)."""
        task = self.task
        assert isinstance(task, TokenClassification), "tag_sentences() needs an NER model"
        settings = self.config.model
        tags, scores = [], []
        for start, encoded, logits in self._chunked(
                sentences, lambda chunk: encode_words(self.tokenizer, chunk, settings.max_length, stride=settings.stride)):
            by_example: list[list[int]] = [[] for _ in range(encoded.n_examples)]
            for feature, example in enumerate(encoded.example_index):
                by_example[example].append(feature)
            for example, features in enumerate(by_example):
                sentence_tags, sentence_scores = task.word_tags(
                    [logits[f] for f in features], [encoded.word_ids[f] for f in features],
                    [encoded.word_starts[f] for f in features], len(sentences[start + example]), self.encoder,
                )
                tags.append(sentence_tags)
                scores.append(sentence_scores)
        return tags, scores

    def extract_entities(self, texts: list[str]) -> list[list[Entity]]:
        """Entities with character offsets into each raw text."""
        return [entities for entities, _ in self.entities_and_word_scores(texts)]

    def entities_and_word_scores(self, texts: list[str]) -> list[tuple[list[Entity], list[float]]]:
        """Each raw text's entities, with the probability of every word's tag (how sure the model is of each word)."""
        words = [split_words(text) for text in texts]
        tags, scores = self.tag_sentences([[w for w, _, _ in sentence] for sentence in words])
        return [(entities_from_words(text, w, t, s), s) for text, w, t, s in zip(texts, words, tags, scores)]


def collate_rows(collate: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One forward pass's inputs (labels left out), by the task's ``collate``. A lone row needs no padding:
    its lists become one-row int64 arrays directly, at a fraction of the collator's cost, which counts for an
    int8 folder's one-text passes."""
    rows = [{k: v for k, v in row.items() if k != "labels"} for row in rows]
    if len(rows) == 1:
        return {k: np.asarray([v], dtype=np.int64) for k, v in rows[0].items()}
    return collate(rows)


def length_batches(lengths: list[int], batch_size: int, max_padding: float = MAX_PADDING_SHARE) -> list[list[int]]:
    """Indices of ``lengths`` in forward batches: shortest first, at most ``batch_size`` each, and a batch
    closed before the next (longer) item would make padding more than ``max_padding`` of its positions."""
    batches: list[list[int]] = []
    batch: list[int] = []
    tokens = 0
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        length = lengths[index]
        positions = length * (len(batch) + 1)  # sorted: the newcomer is the longest, every row is padded to it
        if batch and (len(batch) == batch_size or positions - (tokens + length) > max_padding * positions):
            batches.append(batch)
            batch, tokens = [], 0
        batch.append(index)
        tokens += length
    if batch:
        batches.append(batch)
    return batches


def long_text_note(too_long: int, n_examples: int, config: Config) -> str | None:
    """How many examples exceed ``max_length`` and what was done with them (None if none)."""
    if not too_long:
        return None
    settings = config.model
    if config.task.type == "ner" or settings.long_text == "chunk":
        how = f"read in overlapping windows (stride {settings.stride} tokens)"
    else:
        how = "truncated (set model.long_text=chunk to read them whole)"
    return f"{too_long} of {n_examples} example(s) exceed model.max_length={settings.max_length} tokens and were {how}"
