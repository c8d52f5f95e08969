"""``clintune eval``: score a model folder on a labelled file, optionally tuning and storing its decision rule."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clintune.config.schema import Config
from clintune.data.checks import check_label_sets
from clintune.data.examples import EVAL_HINTS, TextExamples
from clintune.data.labels import LabelEncoder, with_both_bio_tags
from clintune.data.readers import read_split
from clintune.errors import ClintuneError
from clintune.modeling.folder import check_remote_code, read_model_folder
from clintune.runtime import guards
from clintune.workflows.prepare import check_label_set_splits

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from clintune.evaluation.scores import Evaluation


def evaluate(
    model_dir: str | Path,
    data_path: str | Path,
    *,
    output_dir: str | Path | None = None,
    data_format: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    batch_size: int | None = None,
    tune_thresholds: list[str] | None = None,
    fit_temperature: bool = False,
    resamples: int | None = None,
    seed: int | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    label_map: dict[str, str] | None = None,
    trust_remote_code: bool = False,
) -> Evaluation:
    """Score a model folder on a labelled file, read with the folder's own data settings.

    ``tune_thresholds`` (``recall=0.95``, ``precision=0.9``, ``LABEL:recall=0.95``)
    and ``fit_temperature`` choose a decision rule on this data and store it in
    the model folder, where ``predict`` uses it from then on. With
    ``output_dir``, writes the report folder (see ``clintune.evaluation.reports``); an
    earlier report there is replaced only with ``overwrite``, and a folder that
    is not a clintune report never. ``label_map`` renames labels or entity types
    of the data before scoring, over the folder's own ``labels.map`` (e.g. a
    model trained on CoNLL ``Disease`` scored on brat files that hold NCBI's four
    types). ``trust_remote_code``: let a folder that ships Python code of its own run it; without it
    such a folder is refused (``clintune.modeling.folder.check_remote_code``). Returns an ``Evaluation``.
    """
    from clintune.evaluation.figures import rule_check_record, store_rule_check
    from clintune.evaluation.reports import check_report_dir, write_report
    from clintune.evaluation.scores import warn_if_failed
    from clintune.evaluation.thresholds import parse_target
    from clintune.inference.predictor import Predictor
    from clintune.workflows.scoring import score

    folder = Path(model_dir)
    if output_dir is not None:
        guards.check_outputs("eval", [guards.Input("--model", folder, whole=True),
                                      guards.Input("--data", Path(data_path), whole=Path(data_path).is_dir())],
                             [guards.Output("--output", Path(output_dir))])
        check_report_dir(Path(output_dir), overwrite)
    found = read_model_folder(folder)
    check_remote_code(found, trust_remote_code)  # before the data is read, not after
    # one bootstrap default: the model's own settings, so eval gives the interval train gave
    resamples = found.config.evaluation.bootstrap_resamples if resamples is None else resamples
    seed = found.config.evaluation.seed if seed is None else seed
    encoder = found.encoder
    config = _with_data_overrides(found.config, data_format, text_column, label_column, Path(data_path))
    if label_map:
        config.labels.map = {**(config.labels.map or {}), **label_map}
    data = read_split(config, str(data_path), hints=EVAL_HINTS)
    for note in data.notes:
        logger.info("%s", note)
    known = with_both_bio_tags(encoder.classes) if encoder.task_type == "ner" else list(encoder.classes)  # I-X where B-X is known
    if encoder.task_type == "multilabel":
        notes: list[str] = []
        check_label_set_splits(config, {"evaluation": data}, known, "the model's labels", notes)
        for note in notes:
            logger.warning("%s", note)
    else:
        check_label_sets(_stand_in_train(encoder), {"evaluation": data}, known)
    if fit_temperature and encoder.task_type == "multilabel":
        raise ClintuneError("--fit-temperature: not yet for multi-label models (one temperature for all labels is planned); "
                            "each label's threshold already absorbs its calibration: use --tune-threshold")
    if (tune_thresholds or fit_temperature) and encoder.task_type == "ner":
        raise ClintuneError("--tune-threshold and --fit-temperature apply to classification models, not NER")
    for target in tune_thresholds or []:  # a malformed target is an error before the predictions, not after them
        parse_target(target, encoder)
    predictor = Predictor.from_model_folder(found, batch_size=batch_size, show_progress=True, threads=threads,
                                            trust_remote_code=trust_remote_code)
    logits = None
    if tune_thresholds or fit_temperature:
        logits = predictor.window_logits(data.texts)  # type: ignore[union-attr]
        predictor.decision = tuned_rule(predictor, logits, data, tune_thresholds or [], fit_temperature, str(data_path))
        predictor.decision.save(folder)
        logger.info("decision rule stored in %s: %s", folder, predictor.decision.describe(encoder))
    if encoder.task_type != "ner" and predictor.decision.thresholded_classes(encoder) and logits is None:
        logits = predictor.window_logits(data.texts)  # type: ignore[union-attr]
    evaluation = score(predictor, data, resamples, seed, logits)
    if logits is not None and predictor.decision.thresholded_classes(encoder):
        evaluation.metrics["default_rule"] = default_rule_metrics(predictor, data, resamples, seed, logits)
    warn_if_failed(evaluation.metrics, Path(data_path).name, evaluation.metrics)
    if tune_thresholds or fit_temperature:  # the folder's figures beside its rule: measured under it, here
        store_rule_check(folder, rule_check_record(predictor.decision.describe(encoder), str(Path(data_path).absolute()),
                                                   evaluation.metrics, evaluation.metrics.get("default_rule"), tuned_here=True))
        refresh_model_card(folder)
    evaluation.metrics["data"] = str(Path(data_path).absolute())
    evaluation.metrics["model"] = str(folder.absolute())
    if output_dir is not None:
        write_report(Path(output_dir), evaluation, f"{config.task.name} on {Path(data_path).name}")
    return evaluation


def default_rule_metrics(predictor: Any, data: Any, resamples: int, seed: int, logits: Any) -> dict[str, Any]:
    """The same data scored by the default rule (at the rule's temperature): what the thresholds gain and cost.
    The calibration bins are left out: the probabilities, and so the bins, are those of the rule in force.
    Groups the rule in force names (``D/LT+Serious``) are scored too, as the most probable class catches them."""
    from clintune.evaluation.scores import group_metrics
    from clintune.modeling.decision import DecisionRule, group_keys
    from clintune.workflows.scoring import score

    tuned = predictor.decision
    predictor.decision = DecisionRule(temperature=tuned.temperature)
    try:
        evaluation = score(predictor, data, resamples, seed, logits)
    finally:
        predictor.decision = tuned
    metrics = {key: value for key, value in evaluation.metrics.items() if key not in ("calibration",)}
    groups = group_keys(tuned, predictor.encoder)
    if groups:
        metrics["per_group"] = group_metrics(evaluation.gold_ids, evaluation.predicted_ids, predictor.encoder, groups)
    return metrics


def tuned_rule(predictor: Any, logits: Any, data: Any, targets: list[str], fit_temperature: bool, source: str) -> Any:
    """The predictor's decision rule with a refitted temperature (and its thresholds re-tuned) and/or new targets."""
    import numpy as np

    from clintune.evaluation.thresholds import parse_target, refit_temperature, tune_targets

    encoder = predictor.encoder
    if encoder.task_type == "multilabel":
        return _tuned_label_thresholds(predictor, logits, data, targets, source)
    gold = np.asarray(encoder.encode(data.labels))
    rule = predictor.decision
    if fit_temperature:
        replaced = {parse_target(target, encoder)[0] for target in targets}
        rule = refit_temperature(rule, logits, gold, encoder, source, replaced)
    return tune_targets(rule, logits.probabilities(rule.temperature), gold, encoder, targets, source)


def _tuned_label_thresholds(predictor: Any, logits: Any, data: Any, targets: list[str], source: str) -> Any:
    """Multi-label ``--tune-threshold``: every label's threshold chosen again on this data, for its best F1 or the
    recall target given for it (``LABEL:recall=V``); too few positives here: 0.5 (see ``multilabel.tune_thresholds``)."""
    from clintune.evaluation.thresholds import label_threshold_rule, recall_targets

    temperature = predictor.decision.temperature
    return label_threshold_rule(logits.probabilities(temperature), data.labels, predictor.encoder,
                                recall_targets(targets, predictor.encoder), source, temperature)


def refresh_model_card(folder: Path) -> None:
    """Rewrite the model card of a folder that has one to describe (a folder without ``metrics.json`` has none)."""
    from clintune.evaluation.model_card import write_model_card

    if (folder / "metrics.json").is_file():
        write_model_card(folder)


def _stand_in_train(encoder: LabelEncoder) -> TextExamples:
    """The model's classes in the shape of training data, for the unseen-label check."""
    return TextExamples(texts=list(encoder.classes), labels=list(encoder.classes), rows=[], source="model")


def _with_data_overrides(
    config: Config, data_format: str | None, text_column: str | None, label_column: str | None, data_path: Path,
) -> Config:
    config = config.model_copy(deep=True)
    config.data.group_column = None  # groups matter to splits, not to scoring: the scored file need not hold them
    if data_format is not None:
        config.data.format = data_format  # type: ignore[assignment]
    elif data_path.is_dir():
        config.data.format = "brat"  # a model trained on CoNLL scores a brat folder, and the other way round
    elif config.data.format == "brat":
        config.data.format = "auto"
    if text_column is not None:
        config.data.text_column = text_column
    if label_column is not None:
        config.data.label_column = label_column
    return config


