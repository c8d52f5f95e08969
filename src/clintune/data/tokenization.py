"""Tokenisation without padding, long-text windows, and word-to-subword label alignment.

Encoded features keep their own length: batches are padded by the collator,
so no compute is spent padding to ``max_length``. A text longer than
``max_length`` is either truncated or cut into overlapping windows
(``stride`` tokens of overlap); every feature records which example it came
from, so predictions can be merged back per example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# the one word split, for raw texts and annotated documents alike (re-exported)
from clintune.data.sentences import split_words as split_words

IGNORE_INDEX = -100


@dataclass
class Encoded:
    """Tokenised features (lists of ids, unpadded) and their bookkeeping.

    ``example_index[i]`` is the example that feature ``i`` came from;
    ``word_ids``/``word_starts`` are set for word-level (NER) encodings;
    ``too_long`` counts examples longer than ``max_length``.
    """

    features: list[dict[str, Any]]
    example_index: list[int]
    n_examples: int
    too_long: int
    word_ids: list[list[int | None]] = field(default_factory=list)
    word_starts: list[list[bool]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.features)


def align_labels_to_subwords(
    word_ids: list[int | None],
    word_labels: list[int],
    label_all_subwords: bool = False,
    b_to_i: dict[int, int] | None = None,
    word_starts: list[bool] | None = None,
) -> list[int]:
    """Per-subword labels: the first subword of a word carries its tag.

    Special tokens always get -100. Continuation subwords get -100 too, unless
    ``label_all_subwords``: then they get the word's tag with ``B-X`` turned
    into ``I-X`` (via ``b_to_i``), so the sequence stays valid BIO.
    ``word_starts`` marks true first subwords; it matters when a window
    begins in the middle of a word. Without it, a change of word id marks one.
    """
    aligned = []
    previous = None
    for position, word_id in enumerate(word_ids):
        if word_id is None:
            aligned.append(IGNORE_INDEX)
            previous = None
            continue
        starts = word_starts[position] if word_starts is not None else word_id != previous
        label = word_labels[word_id]
        if starts:
            aligned.append(label)
        elif label_all_subwords:
            aligned.append((b_to_i or {}).get(label, label))
        else:
            aligned.append(IGNORE_INDEX)
        previous = word_id
    return aligned


def b_to_i_map(classes: tuple[str, ...]) -> dict[int, int]:
    """Ids of ``B-X`` mapped to the id of ``I-X`` where both exist."""
    index = {label: i for i, label in enumerate(classes)}
    return {i: index["I-" + label[2:]] for i, label in enumerate(classes) if label.startswith("B-") and "I-" + label[2:] in index}


def _tokenize(tokenizer: Any, inputs: list[Any], max_length: int, stride: int, **kwargs: Any) -> Any:
    return tokenizer(
        inputs,
        truncation=True,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        **kwargs,
    )


def _feature(batch: Any, index: int) -> dict[str, Any]:
    feature = {"input_ids": batch["input_ids"][index], "attention_mask": batch["attention_mask"][index]}
    if "token_type_ids" in batch:
        feature["token_type_ids"] = batch["token_type_ids"][index]
    return feature


def encode_texts(
    tokenizer: Any,
    texts: list[str],
    max_length: int,
    labels: list[int] | None = None,
    long_text: str = "truncate",
    stride: int = 0,
) -> Encoded:
    """Tokenise texts for sequence classification.

    ``long_text="truncate"`` keeps the first ``max_length`` tokens;
    ``"chunk"`` keeps every overlapping window, each carrying the text's label.
    """
    if long_text != "chunk" and getattr(tokenizer, "is_fast", False):
        # one feature per text: the windows past the first are not built, only counted (a fast tokenizer's
        # encodings keep what truncation cut off)
        batch = tokenizer(texts, truncation=True, max_length=max_length)
        features = [_feature(batch, index) for index in range(len(texts))]
        if labels is not None:
            for feature, label in zip(features, labels):
                feature["labels"] = label
        too_long = sum(1 for encoding in batch.encodings if encoding.overflowing)
        return Encoded(features, list(range(len(texts))), len(texts), too_long)
    batch = _tokenize(tokenizer, texts, max_length, stride if long_text == "chunk" else 0)
    mapping = batch["overflow_to_sample_mapping"]
    windows = [0] * len(texts)
    features, example_index = [], []
    for position, example in enumerate(mapping):
        windows[example] += 1
        if long_text != "chunk" and windows[example] > 1:
            continue
        feature = _feature(batch, position)
        if labels is not None:
            feature["labels"] = labels[example]
        features.append(feature)
        example_index.append(example)
    return Encoded(features, example_index, len(texts), sum(1 for n in windows if n > 1))


def encode_words(
    tokenizer: Any,
    sentences: list[list[str]],
    max_length: int,
    tag_ids: list[list[int]] | None = None,
    label_all_subwords: bool = False,
    b_to_i: dict[int, int] | None = None,
    stride: int = 0,
) -> Encoded:
    """Tokenise pre-split words for token classification, in overlapping windows.

    A sentence longer than ``max_length`` becomes several windows that share
    ``stride`` tokens, so no word is dropped.
    """
    batch = _tokenize(tokenizer, sentences, max_length, stride, is_split_into_words=True, return_offsets_mapping=True)
    mapping = batch["overflow_to_sample_mapping"]
    windows = [0] * len(sentences)
    encoded = Encoded([], [], len(sentences), 0)
    for position, example in enumerate(mapping):
        windows[example] += 1
        word_ids = batch.word_ids(position)
        starts = [w is not None and offset[0] == 0 for w, offset in zip(word_ids, batch["offset_mapping"][position])]
        feature = _feature(batch, position)
        if tag_ids is not None:
            feature["labels"] = align_labels_to_subwords(word_ids, tag_ids[example], label_all_subwords, b_to_i, starts)
        encoded.features.append(feature)
        encoded.example_index.append(example)
        encoded.word_ids.append(word_ids)
        encoded.word_starts.append(starts)
    encoded.too_long = sum(1 for n in windows if n > 1)
    return encoded
