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
sparse and blocked, its memory bounded by the smaller split.
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
    """(index in a, index in b, cosine) of each text of b whose nearest text of a reaches ``threshold``.

    TF-IDF as scikit-learn's ``TfidfVectorizer(analyzer="char_wb", ngram_range=(4, 4), sublinear_tf=True)``
    computes it over both sides, but with hashed features: one pass counts document frequencies, a second
    compares ``BLOCK_ROWS`` texts at a time against the smaller side, so memory stays bounded by that side
    and a block, however large the other.
    """
    import numpy as np

    vectorizer = _Hashed(texts_a, texts_b)
    hold_a = len(texts_a) <= len(texts_b)
    held = vectorizer.tfidf(texts_a if hold_a else texts_b)
    streamed = texts_b if hold_a else texts_a
    best_score = np.full(len(texts_b), -1.0, dtype=np.float32)
    best_index = np.zeros(len(texts_b), dtype=np.int64)
    for start in range(0, len(streamed), BLOCK_ROWS):
        block = vectorizer.tfidf(streamed[start:start + BLOCK_ROWS])
        if hold_a:  # rows of b against every a: each row's best is final
            similarity = (block @ held.T).toarray()
            rows = np.arange(start, start + similarity.shape[0])
            best_index[rows] = similarity.argmax(axis=1)
            best_score[rows] = similarity[np.arange(len(rows)), best_index[rows]]
        else:  # a block of a against every b: keep the first of equal bests, as one argmax over all of a would
            similarity = (held @ block.T).toarray()
            local = similarity.argmax(axis=1)
            scores = similarity[np.arange(len(local)), local]
            better = scores > best_score
            best_score[better], best_index[better] = scores[better], start + local[better]
    return [(int(best_index[row]), int(row), float(min(best_score[row], 1.0))) for row in np.nonzero(best_score >= threshold)[0]]


def near_copies(reference: list[str], texts: list[str], threshold: float) -> dict[int, int]:
    """Index in ``texts`` -> index in ``reference`` of each text with an exact or near duplicate there (the
    checks above; ``clintune select`` keeps notes already labelled, and their copies, out of its picks)."""
    index: dict[str, int] = {}
    for i, text in enumerate(reference):
        index.setdefault(normalise(text), i)
    found = {j: index[normalise(text)] for j, text in enumerate(texts) if normalise(text) in index}
    rest = [j for j in range(len(texts)) if j not in found and len(normalise(texts[j])) >= MIN_CHARACTERS]
    kept = [i for i, text in enumerate(reference) if len(normalise(text)) >= MIN_CHARACTERS]
    if rest and kept and threshold <= 1.0:
        for i, j, _ in _near_pairs([reference[i] for i in kept], [texts[j] for j in rest], threshold):
            found[rest[j]] = kept[i]
    return found


def similarity_vectors(texts: list[str]) -> Any:
    """L2-normalised TF-IDF rows of ``texts`` (the near-duplicate check's): row products are cosine similarities."""
    return _Hashed(texts, []).tfidf(texts)


N_FEATURES = 1 << 22  # hashed character 4-grams: collisions are rare enough to move a cosine by less than 0.01


class _Hashed:
    """Sublinear TF-IDF over hashed character 4-grams, its IDF counted over ``texts_a`` and ``texts_b`` together."""

    def __init__(self, texts_a: list[str], texts_b: list[str]) -> None:
        import numpy as np
        from sklearn.feature_extraction.text import HashingVectorizer

        self.hashing = HashingVectorizer(analyzer="char_wb", ngram_range=(4, 4), lowercase=True, alternate_sign=False,
                                         norm=None, n_features=N_FEATURES, dtype=np.float32)
        frequency = np.zeros(N_FEATURES, dtype=np.int64)
        for texts in (texts_a, texts_b):
            for start in range(0, len(texts), BLOCK_ROWS):
                frequency += np.bincount(self.hashing.transform(texts[start:start + BLOCK_ROWS]).indices, minlength=N_FEATURES)
        documents = len(texts_a) + len(texts_b)
        self.idf = (np.log((1 + documents) / (1 + frequency)) + 1).astype(np.float32)  # scikit-learn's smoothed IDF

    def tfidf(self, texts: list[str]) -> Any:
        import numpy as np
        from sklearn.preprocessing import normalize

        counts = self.hashing.transform(texts)
        counts.data = (np.log(counts.data) + 1) * self.idf[counts.indices]
        return normalize(counts, copy=False)
