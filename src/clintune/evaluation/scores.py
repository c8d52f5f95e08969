"""Scoring predictions on labelled data: metrics, intervals, calibration and error lists.

Functions of arrays (class probabilities or word tags) and the labelled data
they answer; no model in sight. Checkpoint selection, the end of training and
``clintune eval`` all score through these (see ``clintune.workflows.scoring``),
so they report the same numbers for the same data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clintune.data.examples import TaggedSentences, TextExamples
from clintune.data.labels import LabelEncoder, shown_labels
from clintune.evaluation.metrics import (
    binary_metrics,
    bootstrap_intervals,
    calibration_bins,
    classification_statistic,
    entity_statistic,
    multiclass_metrics,
    ner_metrics,
)
from clintune.modeling.decision import DecisionRule, class_ids, group_keys
from clintune.modeling.multilabel import f1_statistic, given_labels, multi_hot, multilabel_metrics, predicted_matrix

logger = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """Everything a report needs: metrics, per-example records and the arrays behind the plots."""

    metrics: dict[str, Any]
    records: list[dict[str, Any]]
    classes: tuple[str, ...]
    gold_ids: np.ndarray
    predicted_ids: np.ndarray
    probabilities: np.ndarray | None = None
    positive_id: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    records_quote_text: bool = False  # NER records carry each sentence's tokens: the report keeps them owner-only

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: what the report folder's metrics.json, predictions.jsonl and errors.jsonl hold."""
        return {"metrics": self.metrics, "records": self.records, "errors": self.errors}


def evaluate_texts(
    data: TextExamples, probabilities: np.ndarray, encoder: LabelEncoder, rule: DecisionRule, resamples: int = 1000, seed: int = 0
) -> Evaluation:
    """Score a classifier's class ``probabilities`` (one row per text of ``data``) under the decision ``rule``."""
    if encoder.task_type == "multilabel":
        return evaluate_label_sets(data, probabilities, encoder, rule, resamples, seed)
    gold = np.asarray(encoder.encode(data.labels or []))
    predicted = rule.predict(probabilities, encoder)
    metrics = classification_metrics(probabilities, gold, encoder, rule)
    calibration = calibration_bins(probabilities, gold)
    metrics["ece"] = calibration["ece"]
    metrics["calibration"] = calibration
    metrics["decision_rule"] = rule.describe(encoder)
    metrics["temperature"] = rule.temperature
    if group_keys(rule, encoder):
        metrics["per_group"] = group_metrics(gold, predicted, encoder, group_keys(rule, encoder))
    positive = encoder.positive_id if encoder.task_type == "binary" else None
    if resamples:
        metrics["confidence_intervals"] = bootstrap_intervals(
            classification_statistic(gold, predicted, positive), len(gold), resamples, seed
        )
    records = [
        {
            data.row_kind: data.rows[i],
            "gold": data.labels[i] if data.labels else None,
            "predicted": encoder.classes[predicted[i]],
            "correct": bool(predicted[i] == gold[i]),
            "probabilities": {label: float(p) for label, p in zip(encoder.classes, probabilities[i])},
        }
        for i in range(len(gold))
    ]
    return Evaluation(metrics, records, encoder.classes, gold, predicted, probabilities, positive)


def evaluate_label_sets(
    data: TextExamples, probabilities: np.ndarray, encoder: LabelEncoder, rule: DecisionRule, resamples: int = 1000, seed: int = 0,
) -> Evaluation:
    """Score a multi-label model: each label at its own threshold (``rule.class_thresholds``, else 0.5); bootstrap
    intervals resample notes. ``gold_ids`` and ``predicted_ids`` are 0/1 matrices (notes x labels)."""
    gold = multi_hot(data.labels or [], encoder.classes)
    predicted = predicted_matrix(probabilities, rule.class_thresholds, encoder.classes)
    metrics = multilabel_metrics(gold, probabilities, predicted, encoder.classes, rule.class_thresholds)
    metrics["ece"] = float(np.mean([row["ece"] for row in metrics["per_class"].values()]))  # mean over labels
    metrics["decision_rule"] = rule.describe(encoder)
    metrics["temperature"] = rule.temperature
    if resamples:
        metrics["confidence_intervals"] = bootstrap_intervals(f1_statistic(gold, predicted), len(gold), resamples, seed)
    records = []
    for i in range(len(gold)):
        records.append({
            data.row_kind: data.rows[i],
            "gold": list(data.labels[i]) if data.labels else None,
            "predicted": given_labels(probabilities[i], predicted[i], encoder.classes),
            "correct": bool(np.array_equal(gold[i], predicted[i])),
            "probabilities": {label: float(p) for label, p in zip(encoder.classes, probabilities[i])},
        })
    return Evaluation(metrics, records, encoder.classes, gold, predicted, probabilities)


def group_metrics(gold: np.ndarray, predicted: np.ndarray, encoder: LabelEncoder, keys: list[str]) -> dict[str, dict[str, float]]:
    """Recall and precision of each group of classes (``D/LT+Serious``): a gold member predicted as any member counts."""
    scores = {}
    for key in keys:
        ids = class_ids(key, encoder)
        in_gold, in_predicted = np.isin(gold, ids), np.isin(predicted, ids)
        hits = int(np.sum(in_gold & in_predicted))
        scores[key] = {"recall": hits / int(in_gold.sum()) if in_gold.any() else 0.0,
                       "precision": hits / int(in_predicted.sum()) if in_predicted.any() else 0.0,
                       "support": int(in_gold.sum()), "predicted": int(in_predicted.sum())}
    return scores


def classification_metrics(probabilities: np.ndarray, gold: np.ndarray, encoder: LabelEncoder, rule: DecisionRule) -> dict[str, Any]:
    """Headline and per-class metrics of class probabilities under ``rule`` (binary: at its threshold)."""
    if encoder.task_type == "binary":
        positive = encoder.positive_id
        return binary_metrics(gold, probabilities[:, positive], positive, encoder.classes, rule.threshold)
    return multiclass_metrics(gold, rule.predict(probabilities, encoder), encoder.classes)


def evaluate_tagged(
    data: TaggedSentences, predicted: list[list[str]], classes: tuple[str, ...], resamples: int = 1000, seed: int = 0
) -> Evaluation:
    """Score ``predicted`` word tags (one list per sentence of ``data``): entity metrics, intervals and error taxonomy."""
    from seqeval.metrics.sequence_labeling import get_entities

    gold = data.tags or []
    metrics = ner_metrics(gold, predicted)
    gold_entities = [set(get_entities(tags)) for tags in gold]
    predicted_entities = [set(get_entities(tags)) for tags in predicted]
    if resamples:
        counts = np.array([(len(g & p), len(p), len(g)) for g, p in zip(gold_entities, predicted_entities)]).reshape(-1, 3)
        metrics["confidence_intervals"] = bootstrap_intervals(
            entity_statistic(counts[:, 0], counts[:, 1], counts[:, 2]), len(gold), resamples, seed
        )
    errors = []
    for index, (g, p) in enumerate(zip(gold_entities, predicted_entities)):
        errors += [{data.row_kind: data.rows[index], **error} for error in entity_errors(data.tokens[index], g, p)]
    metrics["errors"] = {kind: sum(1 for e in errors if e["kind"] == kind) for kind in ERROR_KINDS}
    records = [
        {data.row_kind: row, "tokens": tokens, "gold": g, "predicted": p}
        for row, tokens, g, p in zip(data.rows, data.tokens, gold, predicted)
    ]
    index = {label: i for i, label in enumerate(classes)}
    gold_ids = np.array([index[t] for tags in gold for t in tags])
    predicted_ids = np.array([index[t] for tags in predicted for t in tags])
    return Evaluation(metrics, records, classes, gold_ids, predicted_ids, errors=errors, records_quote_text=True)


ERROR_KINDS = ("missed", "false_positive", "boundary", "type")


def entity_errors(tokens: list[str], gold: set[tuple[str, int, int]], predicted: set[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """Classify the entities that do not match exactly.

    ``boundary``: a predicted span of the right type overlaps a gold span but
    with other extent; ``type``: an overlapping span of another type;
    ``missed``: a gold span no prediction overlaps; ``false_positive``: a
    predicted span that overlaps no gold span. Entities are
    ``(type, first_token, last_token)``, inclusive, as seqeval returns them.
    """

    def overlaps(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
        return a[1] <= b[2] and b[1] <= a[2]

    def describe(entity: tuple[str, int, int] | None) -> dict[str, Any] | None:
        if entity is None:
            return None
        kind, first, last = entity
        return {"text": " ".join(tokens[first : last + 1]), "type": kind, "tokens": [first, last + 1]}

    sentence = " ".join(tokens)
    errors = []
    unmatched_gold = gold - predicted
    unmatched_predicted = predicted - gold
    for g in sorted(unmatched_gold, key=lambda e: e[1]):
        touching = sorted((p for p in unmatched_predicted if overlaps(g, p)), key=lambda e: e[1])
        same_type = [p for p in touching if p[0] == g[0]]
        if same_type:
            kind, match = "boundary", same_type[0]
        elif touching:
            kind, match = "type", touching[0]
        else:
            kind, match = "missed", None
        errors.append({"kind": kind, "gold": describe(g), "predicted": describe(match), "sentence": sentence})
    for p in sorted(unmatched_predicted, key=lambda e: e[1]):
        if not any(overlaps(p, g) for g in gold):
            errors.append({"kind": "false_positive", "gold": None, "predicted": describe(p), "sentence": sentence})
    return errors


FAILURE_ADVICE = ("  try: more epochs (training.epochs), a higher learning rate for the new head (training.head_learning_rate), "
                  "or class weights for rare classes (training.class_weights: balanced)")


def failure_signs(metrics: dict[str, Any]) -> list[str]:
    """What says a model learnt little or nothing, from one split's metrics: classes it never predicts
    (fewer than the data holds), a class whose recall is 0, or an NER model that finds no entity at all.
    Empty for a model that at least tries every class; a warning's text ends with what to try."""
    signs = []
    if "n_predicted_entities" in metrics:
        if metrics["n_predicted_entities"] == 0 and metrics.get("n_entities", 0) > 0:
            signs.append(f"it found no entity in {metrics.get('n_sentences', 0)} sentences that hold {metrics['n_entities']}")
        return signs
    per_class = metrics.get("per_class") or {}
    present = [label for label, row in per_class.items() if row.get("support", 0) > 0]
    predicted = metrics.get("classes_predicted")
    if predicted is not None and predicted < len(present):
        signs.append(f"it predicts only {predicted} of the {len(present)} classes in the data")
    missed = [label for label in present if per_class[label].get("recall", 0.0) == 0.0]
    if missed:  # class names as every message shows labels: few and short (a label column of notes prints none)
        signs.append(f"recall is 0 for {shown_labels(missed)}")
    return signs


def warn_if_failed(split_metrics: dict[str, Any], where: str, into: dict[str, Any]) -> None:
    """Say loudly when the model learnt little (``failure_signs`` of ``split_metrics``, measured on ``where``) and
    keep the signs in ``into["warnings"]``: ``train`` on validation, ``eval`` on its data; the model card shows them."""
    signs = failure_signs(split_metrics)
    if signs:
        into["warnings"] = [f"on {where}: {sign}" for sign in signs]
        logger.warning("WARNING: this model may have learnt little: on %s, %s\n%s", where, "; ".join(signs), FAILURE_ADVICE)
