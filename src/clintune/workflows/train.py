"""``clintune train``: fine-tune the configured model and publish a complete model folder."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clintune.config.schema import Config
from clintune.data.examples import Examples, preprocessed
from clintune.data.labels import LabelEncoder, shown_labels
from clintune.errors import ClintuneError
from clintune.modeling.folder import (
    WEIGHT_FILES,
    check_output_dir,
    has_checkpoints,
    record_run_config,
    save_model_folder,
    save_training_record,
    work_dir_for,
)
from clintune.runtime import guards
from clintune.runtime.files import publish, sha256_of, write_json
from clintune.runtime.system import is_main_process
from clintune.training.tracking import check_store, tracked_run
from clintune.workflows.prepare import PreparedData, prepare_data, resolve_paths, training_inputs

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    output_dir: Path
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: the model folder and its ``metrics.json`` content."""
        return {"output_dir": str(self.output_dir), "metrics": self.metrics}


def train(config: Config, *, overwrite: bool = False, resume: bool = False, command: str | None = None,
          callbacks: list[Any] | None = None, run_name: str | None = None) -> TrainResult:
    """Fine-tune the configured model and write a complete model folder to ``output.dir``.

    ``command`` (the CLI line, when there is one) is recorded in the model card.
    ``callbacks`` are added to the Trainer's (``tune`` prunes through one). With
    ``tracking.mlflow``, or inside an open run of ``cv`` or ``tune``, the run is recorded
    as ``run_name`` (default: the output folder's name).
    """
    from clintune.modeling.loading import detect_hardware, resolve_precision

    config = resolve_paths(config)
    output_dir = Path(config.output.dir)
    guards.check_outputs("train", training_inputs(config), [
        guards.Output("output.dir", output_dir), guards.Output("output.dir's work folder", work_dir_for(output_dir)),
    ])
    check_output_dir(output_dir, overwrite, resume)
    data = prepare_data(config)
    check_store(config)  # a tracking store that cannot be opened stops the run before any folder is made
    if config.training.deepspeed and not Path(config.training.deepspeed).is_file():
        raise ClintuneError(f"training.deepspeed: config file not found: {config.training.deepspeed}")
    precision = resolve_precision(config.training.precision, detect_hardware())
    work = work_dir_for(output_dir)
    if is_main_process():
        if overwrite and not resume and work.exists():
            shutil.rmtree(work)
        record_run_config(work, config, resume)
    for line in _describe_data(data):
        logger.info(line)
    try:
        with tracked_run(config, run_name or output_dir.name, "train") as tracker:
            result = _train_and_publish(config, data, precision, work, resume, command, [*(callbacks or []), tracker.trainer_callback()])
            for split in ("validation", "test"):
                if split in result.metrics:
                    tracker.log_metrics(result.metrics[split], prefix=f"{split}/")
            if result.metrics:
                tracker.log_model_folder(output_dir)
    except BaseException:
        if is_main_process() and not has_checkpoints(output_dir):
            shutil.rmtree(work, ignore_errors=True)  # nothing to resume from: leave nothing beside output.dir
        raise
    _leave_process_group()
    return result


def _train_and_publish(config: Config, data: PreparedData, precision: str, work: Path, resume: bool, command: str | None,
                       callbacks: list[Any]) -> TrainResult:
    """Fit, then (on the main process) save, score and publish the model folder."""
    from clintune.evaluation.scores import warn_if_failed
    from clintune.inference.predictor import Predictor

    output_dir = Path(config.output.dir)
    trainer, tokenizer, weights = _fit(config, data, precision, work, resume, [c for c in callbacks if c is not None])
    staging = work / "final"
    _save_weights(trainer, staging)
    if not trainer.is_world_process_zero():
        return TrainResult(output_dir, {})
    save_model_folder(staging, tokenizer, data.encoder, config)
    predictor = Predictor.from_folder(staging, batch_size=config.training.eval_batch_size,  # the saved model, as eval loads it
                                      trust_remote_code=config.model.trust_remote_code)
    predictor.long_text_note_as = None  # validation's long texts were counted before training; _final_metrics names the test's
    if config.task.type == "multilabel":
        unmet, validation_logits = _store_label_thresholds(config, data, predictor, staging)
    elif config.decision.must_not_miss:
        unmet, validation_logits = _store_decision_rule(config, data, predictor, staging)
    else:
        unmet, validation_logits = None, None
    metrics = _final_metrics(config, data, predictor, precision, weights, validation_logits)
    if unmet:
        metrics["must_not_miss_unmet"] = unmet
    warn_if_failed(metrics["validation"], "validation", metrics)
    metrics["selection"] = _selection(config, trainer)
    save_training_record(staging, metrics, trainer.state.log_history)
    _write_provenance(staging, config, data, precision, command)
    publish(staging, output_dir)
    shutil.rmtree(work, ignore_errors=True)
    logger.info("model folder written to %s", output_dir)
    return TrainResult(output_dir, metrics)


def _save_weights(trainer: Any, staging: Path) -> None:
    """The best model's weights, through ``Trainer.save_model`` on every rank: under DeepSpeed ZeRO-3 or
    FSDP the weights are spread over the processes and only a collective call gathers them; rank 0 writes."""
    import torch.distributed as dist

    if trainer.is_world_process_zero() and staging.exists():
        shutil.rmtree(staging)
    trainer.save_model(str(staging))
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    if not trainer.is_world_process_zero():
        return
    (staging / "training_args.bin").unlink(missing_ok=True)  # the Trainer's pickled arguments; no pickle in a model folder
    if not any((staging / name).is_file() for name in WEIGHT_FILES):
        raise ClintuneError(
            f"training.deepspeed: the trained weights were not written as one model ({staging} has no model.safetensors)\n"
            '  fix: set "stage3_gather_16bit_weights_on_model_save": true under zero_optimization in the DeepSpeed config'
        )


def _selection(config: Config, trainer: Any) -> dict[str, Any] | None:
    """The evaluation that chose the kept checkpoint, and the last one, as the training log records them."""
    from clintune.config.schema import default_metric
    from clintune.training.trainer import selection_summary

    metric = config.training.metric_for_best_model or default_metric(config.task.type)
    return selection_summary(trainer.state.log_history, metric, trainer.state.best_global_step)


def _leave_process_group() -> None:
    """Close a torchrun process group once this process is done with it. A rank that exits with
    the group still open can abort at interpreter shutdown ("terminate called without an active
    exception", seen with gloo on CPU) and torchrun then reports the whole run as failed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _fit(config: Config, data: PreparedData, precision: str, work: Path, resume: bool,
         callbacks: list[Any]) -> tuple[Any, Any, list[float] | None]:
    """Tokenise (once, cached), build the model and run the Trainer; returns it, the tokenizer and the class weights."""
    import torch
    from transformers import set_seed

    from clintune.data.labels import class_weights_from_config
    from clintune.modeling.loading import detect_hardware, load_model, load_tokenizer, out_of_memory
    from clintune.modeling.tasks import label_counts, task_for
    from clintune.training.trainer import run_trainer, training_arguments
    from clintune.workflows.scoring import validation_scorer

    task = task_for(config.task.type)
    tokenizer = load_tokenizer(config.model.name_or_path, config.model.trust_remote_code)
    hardware = detect_hardware()
    args = training_arguments(config, work / "checkpoints", precision, True, hardware.device)
    with args.main_process_first(desc="tokenising"):
        cache = usable_cache(config, data)
        train_encoded = _encode(task, data.train, tokenizer, data.encoder, config, "train", cache)
        validation_encoded = _encode(task, data.validation, tokenizer, data.encoder, config, "validation", cache)
    weights = class_weights_from_config(
        config.training.class_weights, data.encoder, label_counts(train_encoded.labels()), config.training.class_weights_power,
        n_examples=len(train_encoded),
    )
    if weights is not None:
        logger.info("class weights: %s", ", ".join(f"{c}={w:.3g}" for c, w in zip(data.encoder.classes, weights)))
    set_seed(config.training.seed)  # the new classification head is drawn from this seed
    model = load_model(task, config.model.name_or_path, data.encoder, config.model.trust_remote_code, config.model.pooling)
    # the Trainer's device (the model is still on the CPU here): cuda:N, or cpu
    logger.info("training on %s%s in %s", args.device, f" ({hardware.name})" if hardware.name else "", precision)
    score = validation_scorer(tokenizer, data.encoder, config, data.validation)
    try:
        trainer = run_trainer(args, config, task, model, tokenizer, train_encoded, validation_encoded, score, weights, resume, callbacks)
    except torch.cuda.OutOfMemoryError as exc:
        raise out_of_memory("training", config.training.batch_size, "--set training.batch_size={smaller} (and "
                            "training.gradient_accumulation_steps to keep the effective batch)") from exc
    return trainer, tokenizer, weights


def usable_cache(config: Config, data: PreparedData) -> Path | None:
    """The tokenisation cache folder this run may use, checked once for all its splits: none when the cache is
    off, when a data file changed since it was read (said), or when the folder cannot be written (said)."""
    from clintune.data.features import usable_cache_folder

    if not config.data.tokenization_cache:
        return None
    changed = data.changed_files()
    if changed:
        logger.warning("%s changed while this run read it (its SHA-256 no longer matches the one taken when it "
                       "was read); the tokenisation cache is not used", " and ".join(changed))
        return None
    return usable_cache_folder(tokenization_cache_dir(config))


def _encode(task: Any, examples: Examples, tokenizer: Any, encoder: LabelEncoder, config: Config, name: str,
            cache: Path | None = None) -> Any:
    """Tokenise one split into a memory-mapped Arrow file (texts preprocessed here, once), reusing an identical
    earlier tokenisation from ``cache`` (:func:`usable_cache`); without it, into a temporary folder."""
    from clintune.data.features import arrow_features, build_features, encoding_key, scratch_folder
    from clintune.inference.predictor import long_text_note

    examples = preprocessed(examples, config.data.preprocessing)
    model_settings = config.model.model_dump(exclude={"name_or_path", "trust_remote_code"})
    settings = {"task": config.task.type, "classes": list(encoder.classes), **model_settings}
    columns = task.source_columns(examples)
    schema = arrow_features("token_type_ids" in tokenizer.model_input_names,
                            task.label_kind if examples.labels is not None else None)
    features = build_features(columns, lambda batch: task.encode_batch(batch, tokenizer, encoder, config.model), schema,
                              cache or scratch_folder(), encoding_key(tokenizer, settings, columns), f"tokenising {name}")
    logger.info("%s: %d examples -> %d features%s", name, features.n_examples, len(features),
                " (tokenisation cache)" if features.from_cache else "")
    note = long_text_note(features.too_long, features.n_examples, config)
    if note:
        logger.warning("%s: %s", name, note)
    return features


def tokenization_cache_dir(config: Config) -> Path:
    """``$CLINTUNE_CACHE_DIR/tokenized`` when set, else ``.clintune-cache/tokenized`` beside ``output.dir``.

    Token ids can be turned back into the clinical text they encode, so the
    cache stays where the user keeps the run, never in a home-folder cache.
    """
    import os

    root = os.environ.get("CLINTUNE_CACHE_DIR")
    base = Path(root) if root else Path(config.output.dir).expanduser().absolute().parent / ".clintune-cache"
    return base / "tokenized"


def clear_tokenization_cache(config: Config | None) -> tuple[Path, int, int]:
    """Delete the cached tokenisations that runs of ``config`` use (no config: ``$CLINTUNE_CACHE_DIR``'s).

    Returns the folder, the number of files removed and their bytes. Only
    clintune's own entry files are removed; the folder goes once empty.
    """
    from clintune.data.features import remove_cache_entries

    folder = _cache_folder(config, "cache clear")
    files, size = remove_cache_entries(folder)
    return folder, files, size


def tokenization_cache_size(config: Config | None) -> tuple[Path, int, int]:
    """The cache folder that runs of ``config`` use (no config: ``$CLINTUNE_CACHE_DIR``'s), how many split
    tokenisations it holds and their bytes."""
    from clintune.data.features import cache_size

    folder = _cache_folder(config, "cache")
    entries, size = cache_size(folder)
    return folder, entries, size


def _cache_folder(config: Config | None, verb: str) -> Path:
    import os

    if config is not None:
        return tokenization_cache_dir(config)
    if not os.environ.get("CLINTUNE_CACHE_DIR"):
        raise ClintuneError(f"{verb}: give the config whose runs' cache you mean (or set $CLINTUNE_CACHE_DIR)")
    return Path(os.environ["CLINTUNE_CACHE_DIR"]) / "tokenized"


def _store_decision_rule(config: Config, data: PreparedData, predictor: Any, folder: Path) -> tuple[str | None, Any]:
    """Tune ``decision.must_not_miss`` on the validation split with the kept model and store it in ``folder``
    (and in ``predictor``); ``predict`` applies it. Returns why no rule was stored, when a target cannot be
    reached, and the validation logits, which the final scoring reuses rather than predicting them again."""
    from clintune.workflows.evaluate import tuned_rule
    from clintune.workflows.prepare import decision_targets

    logits = predictor.window_logits(data.validation.texts)
    try:
        rule = tuned_rule(predictor, logits, data.validation, decision_targets(config), False, data.validation_source)
    except ClintuneError as exc:  # the trained model is kept: it is the rule that failed, not the training
        reason = str(exc).split(": ", 1)[-1]
        logger.warning("decision.must_not_miss: %s; the model keeps the default rule (choose a lower target and run "
                       "'clintune eval --model %s --data VALIDATION --tune-threshold LABEL:recall=VALUE')", reason, config.output.dir)
        return reason, logits
    rule.save(folder)
    predictor.decision = rule
    logger.info("decision rule, tuned on the validation split: %s", rule.describe(data.encoder))
    return None, logits


def _store_label_thresholds(config: Config, data: PreparedData, predictor: Any, folder: Path) -> tuple[str | None, Any]:
    """Multi-label: a threshold per label, tuned on the validation split with the kept model (best F1, or the
    recall target of ``decision.must_not_miss``; too few positives: 0.5), stored in ``folder`` and ``predictor``.
    Returns the unmet recall targets (or None) and the validation logits, for the final scoring."""
    from clintune.evaluation.thresholds import label_threshold_rule
    from clintune.modeling.multilabel import MIN_POSITIVES_TO_TUNE

    logits = predictor.window_logits(data.validation.texts)
    temperature = predictor.decision.temperature
    rule = label_threshold_rule(logits.probabilities(temperature), data.validation.labels or [], data.encoder,
                                config.decision.must_not_miss, data.validation_source, temperature)
    records = rule.tuning
    rule.save(folder)
    predictor.decision = rule
    few = [r["class"] for r in records if r["target"] == "default"]
    logger.info("thresholds, tuned on the validation split: %s", rule.describe(data.encoder))
    if few:
        logger.warning("%d label(s) have fewer than %d validation positives and keep threshold 0.5: %s", len(few),
                       MIN_POSITIVES_TO_TUNE, shown_labels(few))
    unmet = [r for r in records if r.get("met") is False]
    for record in unmet:
        logger.warning("decision.must_not_miss: no threshold reaches %s for %r on validation; it gets the lowest (recall %.3f)",
                       record["target"], record["class"], record["achieved"])
    return ("; ".join(f"{r['class']}: {r['target']} not reached" for r in unmet) or None), logits


def _final_metrics(config: Config, data: PreparedData, predictor: Any, precision: str, weights: list[float] | None,
                   validation_logits: Any = None) -> dict[str, Any]:
    """Validation (and test) metrics of the saved best model, scored as ``clintune eval`` scores its folder,
    under the decision rule stored with it. A tuned rule's cost is kept beside it: the same splits scored by
    the default rule, under ``default_rule``."""
    from clintune.workflows.evaluate import default_rule_metrics
    from clintune.workflows.scoring import score

    resamples, seed = config.evaluation.bootstrap_resamples, config.evaluation.seed
    splits = {"validation": data.validation} | ({"test": data.test} if data.test is not None else {})
    tuned = bool(predictor.decision.tuning)
    metrics: dict[str, Any] = {}
    default: dict[str, Any] = {}
    for name, examples in splits.items():
        predictor.long_text_note_as = None if name == "validation" else name  # validation's were counted before training
        logits = validation_logits if name == "validation" else None
        if logits is None and tuned:
            logits = predictor.window_logits(examples.texts)  # type: ignore[union-attr]
        metrics[name] = score(predictor, examples, resamples, seed, logits).metrics
        if tuned:
            default[name] = default_rule_metrics(predictor, examples, resamples, seed, logits)
    if default:
        metrics["default_rule"] = default
    metrics |= {"data": data.summary(), "precision": precision}
    if weights is not None:
        metrics["class_weights"] = dict(zip(data.encoder.classes, weights))
    return metrics


def _write_provenance(folder: Path, config: Config, data: PreparedData, precision: str, command: str | None) -> None:
    """``run.json`` (data hashes, versions, command) and the model card."""
    import datetime
    import platform

    import torch
    import transformers

    from clintune import __version__
    from clintune.evaluation.model_card import RUN_FILE, write_model_card

    splits = {"train": (config.data.train, data.train), "validation": (config.data.validation, data.validation),
              "test": (config.data.test, data.test)}
    files = {
        split: {"path": path, "examples": len(examples), "sha256": data.file_hashes.get(path) or sha256_of(Path(path))}
        for split, (path, examples) in splits.items() if path is not None and examples is not None
    }
    if config.data.validation is None:
        files["validation"] = {"path": data.validation_source, "examples": len(data.validation), "sha256": files["train"]["sha256"]}
    write_json(folder / RUN_FILE, {
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data": files,
        "precision": precision,
        "versions": {"clintune": __version__, "transformers": transformers.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    })
    write_model_card(folder, published=Path(config.output.dir))


def _describe_data(data: PreparedData) -> list[str]:
    summary = data.summary()
    lines = [
        f"data: {summary['train_examples']} train, {summary['validation_examples']} validation"
        + (f", {summary['test_examples']} test" if summary["test_examples"] is not None else "")
    ]
    counts = summary["train_label_counts"]
    lines.append("train labels: " + ", ".join(f"{label}={n}" for label, n in counts.items()))
    return lines + [f"note: {note}" for note in data.notes]


def _device_of(model: Any) -> str:
    return str(next(model.parameters()).device)


