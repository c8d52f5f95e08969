"""Tokenisation without padding, and word-tag to subword-label alignment.

Encoded examples keep their own length: batches are padded by the collator,
so no compute is spent on padding to ``max_length``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclass
class Encoded:
    """Tokenised examples (lists of ids, unpadded) and how many were truncated."""

    features: list[dict[str, list[int]]]
    truncated: int

    def __len__(self) -> int:
        return len(self.features)


def align_labels_to_subwords(
    word_ids: list[int | None],
    word_labels: list[int],
    label_all_subwords: bool = False,
    b_to_i: dict[int, int] | None = None,
) -> list[int]:
    """Per-subword labels: the first subword of a word carries its tag.

    Special tokens always get -100. Continuation subwords get -100 too, unless
    ``label_all_subwords``: then they get the word's tag with ``B-X`` turned
    into ``I-X`` (via ``b_to_i``), so the sequence stays valid BIO.
    """
    aligned = []
    previous = None
    for word_id in word_ids:
        if word_id is None:
            aligned.append(IGNORE_INDEX)
        elif word_id != previous:
            aligned.append(word_labels[word_id])
        elif label_all_subwords:
            label = word_labels[word_id]
            aligned.append((b_to_i or {}).get(label, label))
        else:
            aligned.append(IGNORE_INDEX)
        previous = word_id
    return aligned


def b_to_i_map(classes: tuple[str, ...]) -> dict[int, int]:
    """Ids of ``B-X`` mapped to the id of ``I-X`` where both exist."""
    index = {label: i for i, label in enumerate(classes)}
    return {i: index["I-" + label[2:]] for i, label in enumerate(classes) if label.startswith("B-") and "I-" + label[2:] in index}


def encode_texts(tokenizer: Any, texts: list[str], max_length: int, labels: list[int] | None = None) -> Encoded:
    """Tokenise texts for sequence classification, truncated at ``max_length``."""
    lengths = tokenizer(texts, add_special_tokens=True, return_length=True)["length"]
    truncated = sum(1 for n in lengths if n > max_length)
    batch = tokenizer(texts, truncation=True, max_length=max_length)
    features = []
    for i in range(len(texts)):
        feature = {"input_ids": batch["input_ids"][i], "attention_mask": batch["attention_mask"][i]}
        if "token_type_ids" in batch:
            feature["token_type_ids"] = batch["token_type_ids"][i]
        if labels is not None:
            feature["labels"] = labels[i]
        features.append(feature)
    return Encoded(features=features, truncated=truncated)


def encode_words(
    tokenizer: Any,
    sentences: list[list[str]],
    max_length: int,
    tag_ids: list[list[int]] | None = None,
    label_all_subwords: bool = False,
    b_to_i: dict[int, int] | None = None,
) -> tuple[Encoded, list[list[int | None]]]:
    """Tokenise pre-split words for token classification; also returns each example's word ids."""
    batch = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length)
    features = []
    all_word_ids = []
    truncated = 0
    for i, words in enumerate(sentences):
        word_ids = batch.word_ids(i)
        seen = [w for w in word_ids if w is not None]
        if len(word_ids) >= max_length and (not seen or max(seen) < len(words) - 1):
            truncated += 1
        feature = {"input_ids": batch["input_ids"][i], "attention_mask": batch["attention_mask"][i]}
        if "token_type_ids" in batch:
            feature["token_type_ids"] = batch["token_type_ids"][i]
        if tag_ids is not None:
            feature["labels"] = align_labels_to_subwords(word_ids, tag_ids[i], label_all_subwords, b_to_i)
        features.append(feature)
        all_word_ids.append(word_ids)
    return Encoded(features=features, truncated=truncated), all_word_ids


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Words and punctuation of a raw text with their character offsets."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]
