"""A predictor's outputs on labelled data, scored: the one path that checkpoint selection,
the end of training and ``clintune eval`` share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clintune.config.schema import Config
from clintune.data.examples import Examples, TaggedSentences
from clintune.data.labels import LabelEncoder, with_both_bio_tags
from clintune.evaluation.scores import Evaluation, evaluate_tagged, evaluate_texts
from clintune.inference.predictor import Predictor
from clintune.modeling.decision import WindowLogits
from clintune.modeling.tasks import padding_multiple
from clintune.training.trainer import scalar_metrics


def score(predictor: Predictor, data: Examples, resamples: int = 1000, seed: int = 0, logits: WindowLogits | None = None) -> Evaluation:
    """Score ``predictor`` on labelled ``data`` as read from its file (``logits`` may be passed if already computed)."""
    if isinstance(data, TaggedSentences):
        predicted, _ = predictor.tag_sentences(data.tokens)
        # a folder trained before tag sets came from entity types may lack I-X beside B-X: gold data may hold it
        return evaluate_tagged(data, predicted, tuple(with_both_bio_tags(predictor.encoder.classes)), resamples, seed)
    if logits is None:
        logits = predictor.window_logits(data.texts)
    probabilities = logits.probabilities(predictor.decision.temperature)
    return evaluate_texts(data, probabilities, predictor.encoder, predictor.decision, resamples, seed)


def validation_scorer(tokenizer: Any, encoder: LabelEncoder, config: Config, validation: Examples) -> Callable[[Any], dict[str, float]]:
    """A function scoring a model on the validation examples exactly as ``clintune eval`` scores a folder.

    Checkpoint selection and early stopping use it, so the epoch kept is the best by
    the metric that ``metrics.json`` reports (words and entities for NER, whole
    documents for chunked classification), not by a per-window or per-subword proxy.
    """

    def scorer(model: Any) -> dict[str, float]:
        # training has already said how many validation texts are long: not again at every evaluation
        on_gpu = next(model.parameters()).device.type == "cuda"
        predictor = Predictor(model, tokenizer, encoder, config, config.training.eval_batch_size, long_text_note_as=None,
                              pad_multiple=padding_multiple(config.training.pad_to_multiple_of, on_gpu))
        return scalar_metrics(score(predictor, validation, resamples=0).metrics)

    return scorer
