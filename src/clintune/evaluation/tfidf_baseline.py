"""Cheap baselines on the same splits and metrics as the transformer.

Classification: TF-IDF (word 1-2 grams) + logistic regression, with
balanced class weights when the config weights the transformer's loss.
NER: a dictionary of the entity strings seen in training, matched greedily
(longest first, case-insensitive) over the words of each sentence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from clintune.config.schema import Config
from clintune.data.examples import Examples, TaggedSentences, TextExamples, preprocessed
from clintune.data.labels import LabelEncoder
from clintune.evaluation.metrics import binary_metrics, multiclass_metrics, ner_metrics
from clintune.evaluation.thresholds import label_threshold_rule
from clintune.modeling.multilabel import multi_hot, multilabel_metrics, predicted_matrix


@dataclass
class BaselineResult:
    name: str
    metrics: dict[str, dict[str, Any]]
    seconds: float


def run_baseline(config: Config, train: Examples, evaluated: dict[str, Examples], encoder: LabelEncoder) -> BaselineResult:
    """Fit on ``train`` and score every split in ``evaluated`` (name -> examples), as read from their files.

    Classification texts are preprocessed here, as the transformer's are.
    """
    started = time.perf_counter()
    train = preprocessed(train, config.data.preprocessing)
    evaluated = {name: preprocessed(data, config.data.preprocessing) for name, data in evaluated.items()}
    if isinstance(train, TaggedSentences):
        gazetteer = fit_gazetteer(train)
        metrics = {name: ner_metrics(data.tags or [], [tag_with_gazetteer(s, gazetteer) for s in data.tokens])
                   for name, data in evaluated.items() if isinstance(data, TaggedSentences)}
        return BaselineResult("dictionary (training entity strings)", metrics, time.perf_counter() - started)
    assert isinstance(train, TextExamples)
    if encoder.task_type == "multilabel":
        return label_set_baseline(train, evaluated, encoder, config.training.class_weights != "none", started)
    model = fit_tfidf_logistic_regression(train, encoder, balanced=config.training.class_weights != "none")
    metrics = {name: score_classifier(model, data, encoder) for name, data in evaluated.items() if isinstance(data, TextExamples)}
    return BaselineResult("TF-IDF + logistic regression", metrics, time.perf_counter() - started)


def fit_tfidf_logistic_regression(train: TextExamples, encoder: LabelEncoder, balanced: bool) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        LogisticRegression(max_iter=2000, C=10.0, class_weight="balanced" if balanced else None),
    )
    model.fit(train.texts, encoder.encode(train.labels or []))
    return model


def score_classifier(model: Any, data: TextExamples, encoder: LabelEncoder) -> dict[str, Any]:
    """The transformer's metrics for the baseline's predictions (all classes, even unseen ones)."""
    probabilities = np.zeros((len(data), len(encoder.classes)))
    probabilities[:, model.classes_] = model.predict_proba(data.texts)
    gold = np.asarray(encoder.encode(data.labels or []))
    if encoder.task_type == "binary":
        return binary_metrics(gold, probabilities[:, encoder.positive_id], encoder.positive_id, encoder.classes)
    return multiclass_metrics(gold, probabilities.argmax(axis=1), encoder.classes)


def label_set_baseline(train: TextExamples, evaluated: dict[str, Examples], encoder: LabelEncoder, balanced: bool,
                       started: float) -> BaselineResult:
    """Multi-label: TF-IDF + one logistic regression per label, each label's threshold tuned on the validation
    split as the transformer's are (best F1; fewer than 10 positives: 0.5), every split scored under them."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        OneVsRestClassifier(LogisticRegression(max_iter=2000, C=10.0, class_weight="balanced" if balanced else None)),
    )
    model.fit(train.texts, multi_hot(train.labels or [], encoder.classes))
    splits = {name: data for name, data in evaluated.items() if isinstance(data, TextExamples)}
    probabilities = {name: model.predict_proba(data.texts) for name, data in splits.items()}
    gold = {name: multi_hot(data.labels or [], encoder.classes) for name, data in splits.items()}
    tuned = label_threshold_rule(probabilities["validation"], splits["validation"].labels or [], encoder, {}, "validation").class_thresholds
    metrics = {name: multilabel_metrics(gold[name], probabilities[name], predicted_matrix(probabilities[name], tuned, encoder.classes),
                                        encoder.classes, tuned) for name in splits}
    return BaselineResult("TF-IDF + one-vs-rest logistic regression, thresholds tuned on validation", metrics,
                          time.perf_counter() - started)


def fit_gazetteer(train: TaggedSentences) -> dict[tuple[str, ...], str]:
    """Lower-cased entity word sequences seen in training, with their most frequent type."""
    from collections import Counter

    from seqeval.metrics.sequence_labeling import get_entities

    seen: dict[tuple[str, ...], Counter[str]] = {}
    for words, tags in zip(train.tokens, train.tags or []):
        for kind, first, last in get_entities(tags):
            key = tuple(w.lower() for w in words[first : last + 1])
            seen.setdefault(key, Counter())[kind] += 1
    return {key: counts.most_common(1)[0][0] for key, counts in seen.items()}


def tag_with_gazetteer(words: list[str], gazetteer: dict[tuple[str, ...], str]) -> list[str]:
    """BIO tags from greedy longest matches of the gazetteer's entries."""
    lowered = [w.lower() for w in words]
    longest = max((len(k) for k in gazetteer), default=0)
    tags = ["O"] * len(words)
    position = 0
    while position < len(words):
        for length in range(min(longest, len(words) - position), 0, -1):
            kind = gazetteer.get(tuple(lowered[position : position + length]))
            if kind is not None:
                tags[position : position + length] = [f"B-{kind}"] + [f"I-{kind}"] * (length - 1)
                position += length
                break
        else:
            position += 1
    return tags
