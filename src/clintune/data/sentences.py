"""Words and sentences of a clinical document: the word pattern shared by readers and predict, and a
sentence splitter that knows clinical abbreviations and never cuts through an annotated span.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clintune.data.documents import Span

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
# A sentence may end after . ! ? (and closing quotes or brackets) when whitespace and a capital,
# a digit or an opening bracket or quote follow.
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*(?=\s+[\"'(\[]?[A-Z0-9])")
ABBREVIATIONS = frozenset(
    "e.g i.e etc al vs cf approx fig figs eq no nos vol dr mr mrs ms prof st jr sr inc ltd co dept ca resp "
    "mg ml kg dl pt pts hr hrs min sec wk wks mo yr yrs ref refs".split()
)


def split_words(text: str, start: int = 0, end: int | None = None) -> list[tuple[str, int, int]]:
    """Words and punctuation of ``text[start:end]`` with their character offsets into ``text``."""
    pattern_end = len(text) if end is None else end
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text, start, pattern_end)]


def sentence_bounds(text: str, spans: list[Span] | tuple[Span, ...] = ()) -> list[tuple[int, int]]:
    """(start, end) of each sentence, whitespace trimmed; no sentence boundary falls inside a span."""
    cuts = set()
    for line in re.finditer(r"[^\n]+", text):
        cuts.add(line.start())
        cuts.add(line.end())
        for boundary in _BOUNDARY.finditer(text, line.start(), line.end()):
            if not _after_abbreviation(text, boundary.start()):
                cuts.add(boundary.end())
    for span in spans:
        cuts -= {c for c in cuts if span.start < c < span.end}
    ordered = sorted(cuts | {0, len(text)})
    bounds = []
    for start, end in zip(ordered, ordered[1:]):
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            bounds.append((start, end))
    return bounds


def _after_abbreviation(text: str, dot: int) -> bool:
    """Whether the full stop at ``dot`` ends an abbreviation, an initial or a decimal (``0 . 5``) rather than a sentence."""
    if text[dot] != ".":
        return False
    before = text[max(0, dot - 20):dot].rstrip(" ")
    after = text[dot + 1:dot + 4].lstrip(" ")
    if before[-1:].isdigit() and after[:1].isdigit():
        return True
    word = re.search(r"[\w.]*$", before)
    token = word.group() if word else ""
    initial = len(token) == 1 and token.isupper()  # J. Smith; a lower-case letter ends sentences (hemophilia a.)
    return token.lower() in ABBREVIATIONS or initial or bool(re.fullmatch(r"(\w\.)+\w", token))
