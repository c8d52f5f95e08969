"""What a split is once read: ``TextExamples`` (texts, labels or label sets) and ``TaggedSentences``
(words and BIO tags), each row remembering where it came from; the text preprocessing steps; and how
a message names rows (never their text).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from clintune.config.schema import PreprocessingSection
from clintune.errors import listed


@dataclass(frozen=True)
class FixHints:
    """How a user changes each data setting in the command at hand; error messages name these.

    ``train`` and ``validate`` read settings from the config; ``eval`` and
    ``predict`` take them as options, and some settings have no option there
    (an empty string leaves that part of the hint out).
    """

    path: str = "check the path in the config, or pass --set data.train=PATH"
    columns: str = "set data.text_column / data.label_column to the right names"
    on_empty: str = ", or set data.on_empty=drop"
    invalid_bio: str = ", or set data.invalid_bio=repair to turn them into B- tags"


CONFIG_HINTS = FixHints()


NER_COLUMN_HINTS = FixHints(columns="set data.tokens_column / data.tags_column to the right names")


EVAL_HINTS = FixHints(path="check the --data path", columns="pass --text-column / --label-column with the right names",
                      on_empty="", invalid_bio="")


PREDICT_HINTS = FixHints(path="check the --input path", columns="pass --text-column with the right name", on_empty="",
                         invalid_bio="")


@dataclass
class TextExamples:
    """Texts with optional gold labels, and where each came from."""

    texts: list[str]
    labels: list[str] | None
    rows: list[int]
    source: str
    row_kind: str = "row"
    groups: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: list[int]) -> TextExamples:
        return TextExamples(
            texts=[self.texts[i] for i in indices],
            labels=None if self.labels is None else [self.labels[i] for i in indices],
            rows=[self.rows[i] for i in indices],
            source=self.source,
            row_kind=self.row_kind,
            groups=None if self.groups is None else [self.groups[i] for i in indices],
        )


@dataclass
class TaggedSentences:
    """Word-tokenised sentences with optional BIO tags, and where each came from.

    Sentences made from documents (brat, doccano, Label Studio) are located as
    ``NAME@OFFSET`` (the document and the sentence's first character) and
    grouped by document.
    """

    tokens: list[list[str]]
    tags: list[list[str]] | None
    rows: list[Any]
    source: str
    row_kind: str = "sentence at line"
    repaired: int = field(default=0)
    groups: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, indices: list[int]) -> TaggedSentences:
        return TaggedSentences(
            tokens=[self.tokens[i] for i in indices],
            tags=None if self.tags is None else [self.tags[i] for i in indices],
            rows=[self.rows[i] for i in indices],
            source=self.source,
            row_kind=self.row_kind,
            groups=None if self.groups is None else [self.groups[i] for i in indices],
        )

    @property
    def labels(self) -> list[str] | None:
        """Every tag in order, for label-set checks."""
        if self.tags is None:
            return None
        return [tag for sentence in self.tags for tag in sentence]


Examples = TextExamples | TaggedSentences


def preprocess_text(text: str, steps: PreprocessingSection) -> str:
    """Apply the configured normalisation steps, in a fixed order.

    Not idempotent (a speaker-tag pattern can match again once a tag is gone),
    so it runs exactly once, where a text becomes model input: :func:`preprocessed`
    before training tokenisation and the baseline, and ``Predictor`` before
    inference. Data files are read as they are.
    """
    if steps.unicode_nfkc:
        text = unicodedata.normalize("NFKC", text)
    for pattern in steps.remove_patterns:
        text = re.sub(pattern, " ", text)
    if steps.collapse_whitespace:
        text = " ".join(text.split())
    if steps.lowercase:
        text = text.lower()
    return text


def preprocessed(data: Examples, steps: PreprocessingSection) -> Examples:
    """A copy of classification examples with their texts preprocessed (NER sentences unchanged)."""
    if not isinstance(data, TextExamples):
        return data
    return TextExamples([preprocess_text(t, steps) for t in data.texts], data.labels, data.rows, data.source, data.row_kind)


def describe_rows(data: Examples, indices: list[int]) -> str:
    """'rows 3, 4 and 2 more': where the given examples are, for messages."""
    shown = listed([str(data.rows[i]) for i in indices])
    return f"{data.row_kind}s {shown}" if len(indices) > 1 else f"{data.row_kind} {shown}"
