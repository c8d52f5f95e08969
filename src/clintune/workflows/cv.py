"""``clintune cv``: k-fold cross-validation over the training data, one model per fold by the normal training path.

Each fold's model is trained on the other folds (its checkpoint chosen on a
validation share carved from them, as ``train`` does without ``data.validation``)
and scored on its held-out fold, which it never saw. Every example is therefore
predicted once, out of fold; the report gives each metric's mean, standard
deviation and 95% interval across folds, and the metrics of the pooled
out-of-fold predictions. Thresholds tuned on those pooled predictions are the
honest way to choose a rule on small data.

Work happens in a folder beside ``--output``; each finished fold is recorded
there, so a killed run started again with ``--resume`` trains only the folds
not yet finished. The output folder is published whole at the end.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clintune.config.schema import Config
from clintune.data.examples import Examples, TaggedSentences, TextExamples
from clintune.data.labels import shown_labels
from clintune.errors import ClintuneError
from clintune.runtime import guards
from clintune.runtime.files import publish, remove_stale, staging_dir_for, write_json, write_jsonl
from clintune.training.tracking import tracked_run
from clintune.workflows.prepare import prepare_data, resolve_paths, training_inputs
from clintune.workflows.train import train

logger = logging.getLogger(__name__)

CV_FILE = "cv.json"
OOF_FILE = "oof_predictions.jsonl"
STATE_FILE = "cv-state.json"
OUTPUT_FILES = frozenset({CV_FILE, OOF_FILE, "decision.json", "folds"})


def default_output(config: Config) -> Path:
    return Path(config.output.dir).with_name(Path(config.output.dir).name + "-cv")


@dataclass(frozen=True)
class CrossValidationResult:
    """What ``cross_validate`` wrote: the report (the content of ``cv_report.json``) and the folder that holds it."""

    output_dir: Path
    report: dict[str, Any]


def cross_validate(
    config: Config, folds: int, *, output: str | Path | None = None, keep_models: bool = False,
    tune_thresholds: list[str] | None = None, resume: bool = False, overwrite: bool = False, seed: int | None = None,
    train_final: bool = False, on_fold: Callable[[int, dict[str, Any]], None] | None = None, run_name: str | None = None,
) -> CrossValidationResult:
    """Train ``folds`` models on stratified folds of ``data.train`` and report per-fold, summary and pooled metrics.

    ``tune_thresholds`` (``LABEL:recall=0.9``; default: the config's ``decision.must_not_miss``)
    are tuned on the pooled out-of-fold probabilities; the rule is written to the output
    folder as ``decision.json`` and the pooled metrics are reported under it.
    With ``train_final``, the config is then trained as ``train`` would (into ``output.dir``,
    replaced only with ``overwrite``) and that model stores the rule tuned out of fold.
    ``on_fold(fold, metrics)`` is called after each fold (``tune`` reports to its pruner through it).
    With ``tracking.mlflow`` (or inside ``tune``'s open run) the cross-validation is a run named
    ``run_name`` (default: the output folder's name) and each fold a child run.
    Returns the content of ``cv.json``.
    """
    config = resolve_paths(config)
    out = Path(output) if output is not None else default_output(config)
    work = staging_dir_for(out)
    outputs = [guards.Output("--output", out), guards.Output("--output's work folder", work)]
    if train_final:
        outputs.append(guards.Output("output.dir", Path(config.output.dir)))
    guards.check_outputs("cv", training_inputs(config), outputs)
    if train_final:
        from clintune.modeling.folder import check_output_dir

        check_output_dir(Path(config.output.dir), overwrite, False)  # before hours of folds, not after
    guards.check_replaceable(out, "--output", lambda name: name in OUTPUT_FILES, (CV_FILE,), "cross-validation folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ClintuneError(f"--output: {out} holds an earlier cross-validation\n  fix: pass --overwrite, or choose another folder")
    data = prepare_data(config)
    pooled_data, encoder = _whole_training_file(config, data), data.encoder
    seed = config.data.split_seed if seed is None else seed
    assignment = fold_assignment(pooled_data, folds, seed)
    settings = {key: value for key, value in config.to_dict().items() if key != "tracking"}  # not a setting of the folds
    state = {"config": settings, "folds": folds, "seed": seed, "fold_of": assignment.tolist()}
    _prepare_work(work, state, resume, overwrite)
    with tracked_run(config, run_name or out.name, "cv") as tracker:
        tracker.set_tags({"clintune.folds": str(folds)})
        results = []
        for fold in range(folds):
            results.append(_fold_result(config, encoder.classes, pooled_data, assignment, fold, folds, work, keep_models))
            if on_fold is not None:
                on_fold(fold, results[-1]["metrics"])
        report, records, rule = _report(config, encoder, pooled_data, assignment, results, tune_thresholds)
        tracker.log_metrics({key: spread["mean"] for key, spread in report["summary"].items() if "mean" in spread}, prefix="cv_mean/")
        tracker.log_metrics({key: spread["std"] for key, spread in report["summary"].items() if "std" in spread}, prefix="cv_std/")
        tracker.log_metrics(report["pooled"], prefix="pooled/")
    write_json(work / CV_FILE, report)
    write_jsonl(work / OOF_FILE, records)
    if rule is not None:
        rule.save(work)
    _tidy(work, keep_models)
    publish(work, out)
    logger.info("cross-validation written to %s", out)
    if train_final:
        _train_final(config, rule, overwrite, report)
    return CrossValidationResult(out, report)



def _whole_training_file(config: Config, data: Any) -> Examples:
    """Every row of the training file, in file order: the folds split the whole training file; data.validation
    and data.test are not used. Without ``data.validation``, ``prepare_data`` has carved a validation share off
    train, which the folds must not lose (each fold carves its own). Its label encoder covers that share too:
    a label found only there is an error before any of this."""
    if config.data.validation:
        return data.train
    from clintune.data.readers import read_split

    whole = read_split(config, config.data.train)
    if config.task.type == "multilabel":  # labels.unknown: ignore drops here what prepare_data dropped
        from clintune.workflows.prepare import check_label_set_splits

        check_label_set_splits(config, {"train": whole}, list(data.encoder.classes), "the model's labels", [])
    return whole


def _train_final(config: Config, rule: Any, overwrite: bool, report: dict[str, Any]) -> None:
    """The model trained on all the data, carrying the decision rule tuned on the out-of-fold predictions, and
    beside it the figures measured under that rule: the pooled out-of-fold ones it was tuned on."""
    from clintune.evaluation.figures import rule_check_record, store_rule_check
    from clintune.workflows.evaluate import refresh_model_card

    final = config.model_copy(deep=True)
    if rule is not None:
        final.decision.must_not_miss = {}  # the out-of-fold rule replaces one tuned on a single validation split
    logger.info("training the final model on all the data into %s", final.output.dir)
    train(final, overwrite=overwrite)
    if rule is not None:
        rule.save(Path(final.output.dir))
        store_rule_check(Path(final.output.dir), rule_check_record(
            report["decision"]["rule"], f"out-of-fold predictions of {report['data']}", report["pooled"],
            report.get("pooled_default_rule"), tuned_here=True))
        refresh_model_card(Path(final.output.dir))
        logger.info("%s: decision rule from the out-of-fold predictions stored", final.output.dir)


def fold_assignment(data: Examples, folds: int, seed: int) -> np.ndarray:
    """The fold of every example: stratified by label for classification, shuffled for NER; with groups
    (``data.group_column``, or the documents of brat data) every group stays in one fold."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    if folds < 2:
        raise ClintuneError(f"--folds {folds}: cross-validation needs at least 2 folds")
    if folds > len(data):
        raise ClintuneError(f"--folds {folds}: {data.source} has only {len(data)} examples")
    indices = np.arange(len(data))
    groups = data.groups
    if groups is not None and folds > len(set(groups)):
        raise ClintuneError(f"--folds {folds}: {data.source} has only {len(set(groups))} groups, and a group stays in one fold\n"
                            f"  fix: use at most --folds {len(set(groups))}")
    if isinstance(data, TextExamples) and data.labels and isinstance(data.labels[0], list):
        if groups is not None:
            raise ClintuneError("cv: multi-label folds do not keep data.group_column's groups together yet\n"
                                "  fix: leave data.group_column out for cv (each note its own group), or use clintune train")
        return _label_set_folds(data, folds, seed)
    if isinstance(data, TextExamples):
        _check_class_counts(Counter(data.labels or []), folds, data.source)
        with warnings.catch_warnings():  # scikit-learn's "least populated class" warning: said above, in clintune's words
            warnings.simplefilter("ignore", UserWarning)
            if groups is not None:
                splits = list(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(indices, data.labels, groups))
            else:
                splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(indices, data.labels))
    elif groups is not None:
        splits = GroupKFold(folds).split(indices, groups=groups)
    else:
        splits = KFold(folds, shuffle=True, random_state=seed).split(indices)
    assignment = np.empty(len(data), dtype=int)
    for fold, (_, held_out) in enumerate(splits):
        assignment[held_out] = fold
    return assignment


def _label_set_folds(data: TextExamples, folds: int, seed: int) -> np.ndarray:
    """Multi-label folds by iterative stratification, checked up front: every fold's training part (the other
    folds) must hold every label, or that fold's model could never learn it."""
    from clintune.modeling.multilabel import iterative_stratification, multi_hot
    from clintune.workflows.prepare import label_counts

    counts = label_counts(data)
    _check_class_counts(counts, folds, data.source)
    classes = sorted(counts)
    gold = multi_hot(data.labels or [], classes)
    assignment = iterative_stratification(gold, folds, seed)
    for fold in range(folds):
        missing = [label for j, label in enumerate(classes) if not gold[assignment != fold, j].any()]
        if missing:
            which = "that label" if len(missing) == 1 else "those labels"
            raise ClintuneError(f"--folds {folds}: fold {fold + 1} holds every note of {shown_labels(missing)}, so its training part "
                                f"has none\n  fix: use fewer folds, or add notes with {which}")
    return assignment


def _check_class_counts(counts: Counter[str], folds: int, source: str) -> None:
    """A class needs two examples, one to hold out and one to train on; with fewer examples than folds it is
    held out in only some folds, which is allowed and said."""
    rarest, count = min(counts.items(), key=lambda item: item[1])
    if count < 2:
        singles = sorted(label for label, n in counts.items() if n < 2)
        raise ClintuneError(
            f"--folds {folds}: class {shown_labels([rarest])} has only {count} example in {source}; a class needs at least 2, "
            f"one to hold out and one to train on (classes with 1: {shown_labels(singles)})\n"
            "  fix: add examples of it, merge it into another class with labels.map, or drop its rows")
    few = sorted((n, label) for label, n in counts.items() if n < folds)
    if few:
        logger.warning("--folds %d: %s have fewer examples than folds, so each is held out in only that many folds; "
                       "their per-class spread comes from those folds, the pooled out-of-fold metrics cover them whole",
                       folds, shown_labels([label for _, label in few], {label: n for n, label in few}))


def _prepare_work(work: Path, state: dict[str, Any], resume: bool, overwrite: bool) -> None:
    state_file = work / STATE_FILE
    if work.exists() and resume:
        previous = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else None
        if previous != state:
            raise ClintuneError(f"--resume: the interrupted run in {work} used other settings or data (config, --folds, "
                                "seed or the training file changed)\n  fix: run with the same settings, or --overwrite to start over")
        logger.info("resuming the cross-validation in %s", work)
        return
    if work.exists() and not overwrite:
        raise ClintuneError(f"an interrupted cross-validation is in {work}\n  fix: pass --resume to continue it, "
                            "or --overwrite to start over")
    if resume:
        raise ClintuneError(f"--resume: no interrupted cross-validation in {work}")
    remove_stale(work)
    work.mkdir(parents=True)
    write_json(state_file, state)


def _fold_result(config: Config, classes: tuple[str, ...], data: Examples, assignment: np.ndarray, fold: int, folds: int,
                 work: Path, keep_models: bool) -> dict[str, Any]:
    """The fold's metrics and out-of-fold outputs, trained now or read from an earlier, interrupted run."""
    folder = work / "folds" / f"fold-{fold + 1}"
    done = folder / "result.json"
    if done.is_file():
        logger.info("fold %d/%d: finished earlier, reused", fold + 1, folds)
        return json.loads(done.read_text(encoding="utf-8"))
    held_out = [int(i) for i in np.flatnonzero(assignment == fold)]
    kept = [int(i) for i in np.flatnonzero(assignment != fold)]
    train_file, test_file = folder / "train.jsonl", folder / "held_out.jsonl"
    _write_examples(train_file, data.subset(kept), config)
    _write_examples(test_file, data.subset(held_out), config)
    fold_config = config.model_copy(deep=True)
    fold_config.data.train, fold_config.data.validation, fold_config.data.test = str(train_file), None, str(test_file)
    fold_config.data.format = "jsonl"  # type: ignore[assignment]
    fold_config.data.on_empty = "error"
    fold_config.labels.classes = list(classes)  # every fold's model knows every class, seen in its folds or not
    fold_config.data.label_columns = None  # the fold's files hold each note's labels as one list
    fold_config.decision.must_not_miss = {}  # thresholds are tuned once, on the pooled out-of-fold predictions
    fold_config.evaluation.bootstrap_resamples = 0  # the spread across folds is the interval that matters here
    fold_config.data.tokenization_cache = False  # each fold's files are read once
    fold_config.output.dir = str(folder / "model")
    logger.info("fold %d/%d: training on %d examples, holding out %d", fold + 1, folds, len(kept), len(held_out))
    result = train(fold_config, overwrite=True, run_name=f"fold-{fold + 1}")
    outputs = _out_of_fold_outputs(folder / "model", data.subset(held_out), config.model.trust_remote_code)
    record = {"fold": fold + 1, "examples": held_out, "metrics": result.metrics["test"], "outputs": outputs}
    write_json(done, record)
    train_file.unlink()
    test_file.unlink()
    if not keep_models:
        shutil.rmtree(folder / "model")
    return record


def _write_examples(path: Path, examples: Examples, config: Config) -> None:
    """Examples as the JSON lines the normal readers take (raw texts: preprocessing happens when they are read)."""
    if isinstance(examples, TaggedSentences):
        records = [{config.data.tokens_column: tokens, config.data.tags_column: tags}
                   for tokens, tags in zip(examples.tokens, examples.tags or [])]
    else:
        records = [{config.data.text_column: text, config.data.label_column: label}
                   for text, label in zip(examples.texts, examples.labels or [])]
        if config.data.group_column and examples.groups is not None:  # the fold's own validation share keeps groups whole
            records = [{**record, config.data.group_column: group} for record, group in zip(records, examples.groups)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, records, private=True)  # the fold's texts, deleted once the fold is done


def _out_of_fold_outputs(model_dir: Path, held_out: Examples, trust_remote_code: bool) -> list[Any]:
    """Class probabilities (default rule, temperature 1) or predicted word tags for each held-out example.
    ``trust_remote_code``: the user's config's, as the fold's model was trained from it."""
    from clintune.inference.predictor import Predictor

    predictor = Predictor.from_folder(model_dir, trust_remote_code=trust_remote_code)
    if isinstance(held_out, TaggedSentences):
        return predictor.tag_sentences(held_out.tokens)[0]
    return predictor.window_logits(held_out.texts).probabilities().tolist()


def _report(config: Config, encoder: Any, data: Examples, assignment: np.ndarray, results: list[dict[str, Any]],
            tune_thresholds: list[str] | None) -> tuple[dict[str, Any], list[dict[str, Any]], Any]:
    from clintune.evaluation.metrics import CORRECTED_INTERVAL
    from clintune.evaluation.scores import evaluate_tagged, evaluate_texts
    from clintune.evaluation.thresholds import label_threshold_rule, recall_targets, tune_targets
    from clintune.modeling.decision import DecisionRule
    from clintune.workflows.prepare import decision_targets

    resamples, seed = config.evaluation.bootstrap_resamples, config.evaluation.seed
    order = [i for result in results for i in result["examples"]]
    outputs = [output for result in results for output in result["outputs"]]
    pooled = data.subset(order)
    rule = None
    if isinstance(pooled, TaggedSentences):
        evaluation = evaluate_tagged(pooled, outputs, encoder.classes, resamples, seed)
    else:
        probabilities = np.asarray(outputs, dtype=float)
        targets = tune_thresholds if tune_thresholds else decision_targets(config)
        if encoder.task_type == "multilabel":  # every label's threshold, from the pooled out-of-fold predictions
            rule = label_threshold_rule(probabilities, pooled.labels or [], encoder, recall_targets(targets, encoder),
                                        f"out-of-fold predictions ({len(results)} folds of {data.source})")
        elif targets:
            gold = np.asarray(encoder.encode(pooled.labels or []))
            source = f"out-of-fold predictions ({len(results)} folds of {data.source})"
            rule = tune_targets(DecisionRule(), probabilities, gold, encoder, targets, source)
        evaluation = evaluate_texts(pooled, probabilities, encoder, rule or DecisionRule(), resamples, seed)
        default = evaluate_texts(pooled, probabilities, encoder, DecisionRule(), resamples, seed) if rule is not None else None
    records = sorted(({**record, "fold": int(assignment[order[i]]) + 1, "_example": order[i]}
                      for i, record in enumerate(evaluation.records)), key=lambda record: record["_example"])
    records = [{k: v for k, v in record.items() if k != "_example"} for record in records]  # in the data file's order
    report = {
        "folds": [{"fold": r["fold"], "examples": len(r["examples"]), **r["metrics"]} for r in results],
        "summary": summarise([r["metrics"] for r in results], *fold_sizes(results, len(data))),
        "interval": CORRECTED_INTERVAL,
        "fold_sizes": dict(zip(("n_test", "n_train"), fold_sizes(results, len(data)))),
        "pooled": {key: value for key, value in evaluation.metrics.items() if key != "calibration"},
        "data": data.source,
        "seed": int(config.data.split_seed),
    }
    if rule is not None:
        report["decision"] = {"rule": rule.describe(encoder), "tuning": rule.tuning}
        report["pooled_default_rule"] = {key: value for key, value in default.metrics.items() if key != "calibration"}
    return report, records, rule


def fold_sizes(results: list[dict[str, Any]], n_examples: int) -> tuple[float, float]:
    """The mean held-out and training sizes of the folds (the training part includes its validation share)."""
    held_out = float(np.mean([len(result["examples"]) for result in results]))
    return held_out, n_examples - held_out


def summarise(fold_metrics: list[dict[str, Any]], n_test: float, n_train: float) -> dict[str, Any]:
    """For every numeric metric (and every per-class number): mean, standard deviation (n-1) and the 95%
    corrected resampled t interval of the mean across folds (``n_test`` / ``n_train``: the mean held-out and
    training sizes of a fold; see ``clintune.evaluation.metrics.corrected_t_interval``); a class's numbers over the
    folds that held it out (``folds``)."""
    from clintune.training.trainer import scalar_metrics

    scalars = [scalar_metrics(metrics) for metrics in fold_metrics]
    shared = [key for key in scalars[0] if all(key in s for s in scalars)]
    summary: dict[str, Any] = {key: _spread([s[key] for s in scalars], n_test, n_train) for key in shared}
    per_class: dict[str, dict[str, Any]] = {}
    for label in fold_metrics[0].get("per_class", {}):
        rows = [metrics.get("per_class", {}).get(label) for metrics in fold_metrics]
        held_out = [row for row in rows if row and row.get("support", 1) > 0]  # a fold that held none out says nothing of it
        if held_out:
            per_class[label] = {key: _spread([row[key] for row in held_out], n_test, n_train) for key in ("precision", "recall", "f1")}
            per_class[label]["folds"] = len(held_out)
    if per_class:
        summary["per_class"] = per_class
    return summary


def _spread(values: list[float], n_test: float, n_train: float) -> dict[str, Any]:
    """Mean, sample standard deviation and the corrected resampled t interval of the mean, clipped to [0, 1]
    where the values are proportions (every clintune metric but a count)."""
    from clintune.evaluation.metrics import corrected_t_interval

    n, mean = len(values), float(np.mean(values))
    std = float(np.std(values, ddof=1)) if n > 1 else 0.0
    _, low, high = corrected_t_interval(values, n_test, n_train) if n > 1 else (mean, mean, mean)
    if all(0 <= v <= 1 for v in values):
        low, high = max(low, 0.0), min(high, 1.0)
    return {"mean": mean, "std": std, "low": low, "high": high, "values": [float(v) for v in values]}


def _tidy(work: Path, keep_models: bool) -> None:
    """Leave the published folder holding the report, and the fold models only when asked."""
    (work / STATE_FILE).unlink()
    folds = work / "folds"
    if not keep_models:
        shutil.rmtree(folds, ignore_errors=True)
        return
    for result in folds.glob("fold-*/result.json"):
        result.unlink()
