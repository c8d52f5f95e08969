"""Checks of a split before anything trains: empty texts and labels, token/tag mismatches, invalid BIO
sequences, and labels seen outside training but not in it. Messages name rows, never their text.
"""

from __future__ import annotations

import logging
import re
from collections import Counter

from clintune.config.schema import Config
from clintune.data.examples import CONFIG_HINTS, Examples, FixHints, TaggedSentences, TextExamples, describe_rows, preprocess_text
from clintune.data.labels import did_you_mean, shown_labels
from clintune.data.splits import examples_with
from clintune.errors import DataError

logger = logging.getLogger(__name__)


def check_texts(data: TextExamples, config: Config, hints: FixHints = CONFIG_HINTS) -> TextExamples:
    """Empty texts (also: empty once preprocessed) and labels: an error, or dropped with a count (data.on_empty)."""
    steps = config.data.preprocessing
    empty_text = [i for i, t in enumerate(data.texts) if not preprocess_text(t, steps).strip()]
    # a multi-label note's labels are a list, which may be empty (a note with no findings)
    empty_label = [] if data.labels is None else [i for i, label in enumerate(data.labels) if isinstance(label, str) and not label.strip()]
    bad = sorted(set(empty_text) | set(empty_label))
    if not bad:
        return data
    details = []
    if empty_text:
        details.append(f"{len(empty_text)} empty text(s) in column {config.data.text_column!r} ({describe_rows(data, empty_text)})")
    if empty_label:
        details.append(f"{len(empty_label)} empty label(s) in column {config.data.label_column!r} ({describe_rows(data, empty_label)})")
    if config.data.on_empty == "error":
        raise DataError(
            f"{data.source}: " + "; ".join(details) + f"\n  fix: fill or remove those rows{hints.on_empty}"
        )
    logger.warning("%s: dropped %d row(s): %s", data.source, len(bad), "; ".join(details))
    keep = [i for i in range(len(data)) if i not in set(bad)]
    if not keep:
        raise DataError(f"{data.source}: no usable rows left after dropping empty ones")
    return data.subset(keep)


_TAG = re.compile(r"^(O|[BI]-.+)$")


def check_tagged(data: TaggedSentences, config: Config, hints: FixHints = CONFIG_HINTS) -> TaggedSentences:
    """Token/tag counts, tag syntax, and BIO order (error or repair, data.invalid_bio)."""
    if data.tags is None:
        return data
    mismatched = [i for i, (w, t) in enumerate(zip(data.tokens, data.tags)) if len(w) != len(t)]
    if mismatched:
        i = mismatched[0]
        raise DataError(
            f"{data.source}: {len(mismatched)} sentence(s) have a different number of tokens and tags "
            f"({describe_rows(data, mismatched)}; the first has {len(data.tokens[i])} tokens, {len(data.tags[i])} tags)"
        )
    empty = [i for i, words in enumerate(data.tokens) if not words]
    if empty:
        raise DataError(f"{data.source}: {len(empty)} empty sentence(s) ({describe_rows(data, empty)})")
    malformed = [i for i, sentence in enumerate(data.tags) if any(not _TAG.match(t) for t in sentence)]
    if malformed:
        found = [t for i in malformed for t in data.tags[i] if not _TAG.match(t)]
        raise DataError(
            f"{data.source}: {len(malformed)} sentence(s) hold tags that are not O, B-TYPE or I-TYPE "
            f"({describe_rows(data, malformed)}; found: {shown_labels(found)})\n"
            "  fix: give every token an O, B-TYPE or I-TYPE tag (tags that read like words: are the token "
            "and tag columns swapped?)"
        )
    invalid = [i for i, sentence in enumerate(data.tags) if repair_bio(sentence) != sentence]
    if invalid:
        if config.data.invalid_bio == "error":
            raise DataError(
                f"{data.source}: {len(invalid)} sentence(s) have an I- tag that does not continue an entity "
                f"of the same type ({describe_rows(data, invalid)})\n"
                f"  fix: correct the tags{hints.invalid_bio}"
            )
        data.tags = [repair_bio(sentence) for sentence in data.tags]
        data.repaired = len(invalid)
        logger.warning("%s: repaired BIO tags in %d sentence(s)", data.source, len(invalid))
    return data


def repair_bio(tags: list[str]) -> list[str]:
    """Turn every ``I-X`` that does not follow ``B-X``/``I-X`` into ``B-X``."""
    repaired = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        repaired.append(tag)
        previous = tag
    return repaired


def check_label_sets(train: Examples, others: dict[str, Examples], classes: list[str]) -> None:
    """Training must hold two or more classes; other splits only labels that training knows."""
    train_labels = set(train.labels or [])
    if len(train_labels) < 2:
        raise DataError(
            f"{train.source}: the training data holds {len(train_labels)} distinct label(s) "
            f"({shown_labels(sorted(train_labels))}); at least two are needed"
        )
    known = set(classes)
    for name, split in others.items():
        unseen = sorted(set(split.labels or []) - known)
        if unseen:
            counts = Counter(label for label in split.labels or [] if label in set(unseen))
            raise DataError(
                f"{split.source}: the {name} data holds labels that training never saw: {shown_labels(unseen, counts)} "
                f"({describe_rows(split, examples_with(split, set(unseen)))}){did_you_mean(unseen, classes)}\n"
                "  fix: correct the spelling, add the labels to the training data, or drop those rows"
            )
