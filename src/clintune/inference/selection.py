"""Which unlabelled notes to label next (``clintune select``): how unsure the model is, and picks that differ.

Uncertainty is a number in [0, 1], higher for notes whose labels are likelier to teach the model
something, measured against the decision the model actually makes:

- binary: how close the positive probability is to the model's threshold (1 at it, 0 at 0 or 1);
- multiclass: ``margin`` (one minus the gap between the two most probable classes) or ``entropy``
  (normalised to [0, 1]);
- multi-label: how close the label nearest its own threshold is to it (the binary rule, per label);
- NER: the least confident word (one minus the lowest probability of any word's tag).

Spread: picks taken in order of uncertainty, skipping a note more alike than ``max_similarity`` (cosine of
character 4-gram TF-IDF, the leakage check's vectors) to one already picked, so 100 picks are not 100
near-copies of one template. It compares texts, not model states, so it works the same on ONNX folders.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clintune.data.labels import LabelEncoder
from clintune.data.leakage import similarity_vectors
from clintune.modeling.decision import DecisionRule
from clintune.modeling.tasks import Entity, Prediction

STRATEGIES = ("margin", "entropy")


def threshold_closeness(probability: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    """1 at the threshold, falling linearly to 0 at certainty on its side (0 below it, 1 above it)."""
    threshold = np.asarray(threshold, dtype=float)
    span = np.where(probability < threshold, threshold, 1.0 - threshold)
    return 1.0 - np.abs(probability - threshold) / np.maximum(span, 1e-12)


def classification_uncertainty(probabilities: np.ndarray, encoder: LabelEncoder, rule: DecisionRule,
                               strategy: str = "margin") -> np.ndarray:
    """Uncertainty of each row of an (n, classes) probability matrix, as the module docstring defines it."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    probabilities = np.atleast_2d(np.asarray(probabilities, dtype=float))
    task = encoder.task_type
    if task == "multilabel":
        thresholds = np.array([rule.class_thresholds.get(label, 0.5) for label in encoder.classes])
        return threshold_closeness(probabilities, thresholds).max(axis=1)
    if strategy == "entropy":
        clipped = np.clip(probabilities, 1e-12, 1.0)
        return -(clipped * np.log(clipped)).sum(axis=1) / np.log(probabilities.shape[1])
    if task == "binary":
        positive = encoder.classes.index(encoder.positive)
        return threshold_closeness(probabilities[:, positive], rule.threshold)
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    return 1.0 - (top_two[:, 1] - top_two[:, 0])


def ner_uncertainty(word_scores: list[float]) -> float:
    """One minus the probability of the least confident word's tag (0 for a note with no words)."""
    return 1.0 - min(word_scores) if word_scores else 0.0


@dataclass(order=True)
class Candidate:
    """A note of the pool the model is unsure about: where it is, how unsure, and what the model said."""

    uncertainty: float
    order: int  # later notes lose ties: the first of equals is kept, as a stable sort would
    row: Any = field(compare=False)
    id: Any = field(compare=False)
    text: str = field(compare=False, repr=False)
    result: Prediction | list[Entity] = field(compare=False, repr=False)


class MostUncertain:
    """The ``size`` most uncertain notes seen so far (a heap): a pool of any length, held in ``size`` notes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.heap: list[tuple[float, int, Candidate]] = []

    def offer(self, candidate: Candidate) -> None:
        item = (candidate.uncertainty, -candidate.order, candidate)
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, item)
        elif item[:2] > self.heap[0][:2]:
            heapq.heapreplace(self.heap, item)

    def ranked(self) -> list[Candidate]:
        """Most uncertain first; equal uncertainty in pool order."""
        return [item[2] for item in sorted(self.heap, key=lambda item: (-item[0], -item[1]))]


def spread_picks(ranked: list[Candidate], k: int, max_similarity: float) -> list[tuple[Candidate, float]]:
    """``k`` picks from ``ranked`` (most uncertain first), each with its highest similarity to an earlier pick.

    A note more alike than ``max_similarity`` to one already picked waits; when fewer than ``k`` notes pass,
    the waiting ones fill the rest, least alike first."""
    if not ranked:
        return []
    vectors = similarity_vectors([candidate.text for candidate in ranked])
    chosen: list[tuple[Candidate, float]] = []
    closest = np.zeros(len(ranked))  # each note's highest similarity to the picks so far
    waiting: list[int] = []
    for index in range(len(ranked)):
        if len(chosen) == k:
            break
        if chosen and closest[index] > max_similarity:
            waiting.append(index)
            continue
        chosen.append((ranked[index], float(closest[index])))
        closest = np.maximum(closest, (vectors @ vectors[index].T).toarray().ravel())
    if len(chosen) < k:
        for index in sorted(waiting, key=lambda i: closest[i])[: k - len(chosen)]:
            chosen.append((ranked[index], float(closest[index])))
    return chosen

