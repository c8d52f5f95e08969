"""Leakage between data splits: the same text, or nearly the same, on both sides.

Clinical notes of one patient are often near copies of each other; when one
copy trains and another validates, every number is inflated. Two checks run
across every pair of splits:

- **exact duplicates**: texts equal once case is folded and whitespace runs
  are collapsed;
- **near duplicates**: cosine similarity of TF-IDF vectors over character
  4-grams (within word boundaries) at or above a threshold (default 0.9,
  ``data.near_duplicate_threshold``). At 0.9 a narrative that differs by a
  date, a dose or a few words is found, while two notes that merely share a
  template's phrasing score well below it.

Texts shorter than ``MIN_CHARACTERS`` after normalisation (``Results .``,
``Abstract``) are left out: their repeats are not leakage. The comparison is
sparse and blocked, so 15,000 rows take seconds.
This module imports nothing of clintune's but ``errors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clintune.errors import listed

MIN_CHARACTERS = 30
BLOCK_ROWS = 512


@dataclass
class Leak:
    """Pairs of examples across two splits: (place in the first split, place in the second, similarity)."""

    first: str
    second: str
    exact: list[tuple[str, str]] = field(default_factory=list)
    near: list[tuple[str, str, float]] = field(default_factory=list)

    def describe(self) -> str:
        parts = []
        if self.exact:
            parts.append(f"{len(self.exact)} exact duplicate(s) ({listed([f'{a} = {b}' for a, b in self.exact])})")
        if self.near:
            parts.append(f"{len(self.near)} near duplicate(s) ({listed([f'{a} ~ {b} ({s:.2f})' for a, b, s in self.near])})")
        return f"{self.first} / {self.second}: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"splits": [self.first, self.second], "exact": len(self.exact), "near": len(self.near),
                "exact_pairs": [list(p) for p in self.exact[:50]],
                "near_pairs": [[a, b, round(s, 4)] for a, b, s in self.near[:50]]}


def normalise(text: str) -> str:
    """Case folded, whitespace runs collapsed: the form in which exact duplicates are compared."""
    return " ".join(text.casefold().split())


def find_leaks(
    first: tuple[str, list[str], list[str]], second: tuple[str, list[str], list[str]], threshold: float = 0.9,
) -> Leak | None:
    """Duplicates between two splits, each given as (split name, texts, place names); None if there are none.

    A text of the second split is reported once: as an exact duplicate if it has
    one, else with its most similar near duplicate at or above ``threshold``.
    """
    name_a, texts_a, places_a = first
    name_b, texts_b, places_b = second
    keep_a = [i for i, t in enumerate(texts_a) if len(normalise(t)) >= MIN_CHARACTERS]
    keep_b = [i for i, t in enumerate(texts_b) if len(normalise(t)) >= MIN_CHARACTERS]
    leak = Leak(name_a, name_b)
    if not keep_a or not keep_b:
        return None
    index: dict[str, int] = {}
    for i in keep_a:
        index.setdefault(normalise(texts_a[i]), i)
    remaining = []
    for j in keep_b:
        match = index.get(normalise(texts_b[j]))
        if match is None:
            remaining.append(j)
        else:
            leak.exact.append((str(places_a[match]), str(places_b[j])))
    if remaining and threshold <= 1.0:
        for i, j, similarity in _near_pairs([texts_a[i] for i in keep_a], [texts_b[j] for j in remaining], threshold):
            leak.near.append((str(places_a[keep_a[i]]), str(places_b[remaining[j]]), similarity))
    return leak if leak.exact or leak.near else None


def _near_pairs(texts_a: list[str], texts_b: list[str], threshold: float) -> list[tuple[int, int, float]]:
    """(index in a, index in b, cosine) of each text of b whose nearest text of a reaches ``threshold``."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(4, 4), lowercase=True, sublinear_tf=True, dtype=np.float32)
    vectorizer.fit(texts_a + texts_b)
    matrix_a = vectorizer.transform(texts_a).T.tocsr()
    matrix_b = vectorizer.transform(texts_b)
    pairs = []
    for block in range(0, len(texts_b), BLOCK_ROWS):
        similarity = (matrix_b[block:block + BLOCK_ROWS] @ matrix_a).toarray()
        best = similarity.argmax(axis=1)
        scores = similarity[np.arange(len(best)), best]
        for row in np.nonzero(scores >= threshold)[0]:
            pairs.append((int(best[row]), block + int(row), float(min(scores[row], 1.0))))
    return pairs
