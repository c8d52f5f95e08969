"""clintune's library API: the functions behind each CLI verb.

A notebook user gets exactly the CLI's behaviour by calling these:
``train(load_config("configs/ner.yaml"))``, ``evaluate("runs/ner", "test.conll")``,
``predict("runs/ner", ["text ..."])``.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clintune import guards
from clintune.config import Config
from clintune.data import (
    EVAL_HINTS,
    Examples,
    TextExamples,
    check_label_sets,
    count_overlap,
    describe_rows,
    preprocessed,
    read_split,
    stratified_split,
)
from clintune.errors import ClintuneError, DataError
from clintune.labels import LabelEncoder

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Checked splits and the label encoder fitted on training data."""

    train: Examples
    validation: Examples
    test: Examples | None
    encoder: LabelEncoder
    validation_source: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        counts = Counter(self.train.labels or [])
        return {
            "train_examples": len(self.train),
            "validation_examples": len(self.validation),
            "validation_source": self.validation_source,
            "test_examples": len(self.test) if self.test is not None else None,
            "classes": list(self.encoder.classes),
            "train_label_counts": {label: counts.get(label, 0) for label in self.encoder.classes},
            "notes": self.notes,
        }


@dataclass
class TrainResult:
    output_dir: Path
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: the model folder and its ``metrics.json`` content."""
        return {"output_dir": str(self.output_dir), "metrics": self.metrics}


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a torchrun / accelerate launch."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def resolve_paths(config: Config) -> Config:
    """The config with data and output paths made absolute (relative to the current folder).

    ``model.name_or_path`` becomes absolute only when it names an existing
    local folder; otherwise it stays a Hub id.
    """
    resolved = config.model_copy(deep=True)
    for split in ("train", "validation", "test"):
        value = getattr(resolved.data, split)
        if value is not None:
            setattr(resolved.data, split, str(Path(value).expanduser().absolute()))
    if resolved.training.deepspeed:
        resolved.training.deepspeed = str(Path(resolved.training.deepspeed).expanduser().absolute())
    local_model = Path(resolved.model.name_or_path).expanduser()
    if local_model.exists():
        resolved.model.name_or_path = str(local_model.absolute())
    resolved.output.dir = str(Path(resolved.output.dir).expanduser().absolute())
    return resolved


def prepare_data(config: Config) -> PreparedData:
    """Read and check every split, fit the labels and split off validation data if needed."""
    train = read_split(config, config.data.train)
    notes: list[str] = []
    if config.data.validation:
        validation = read_split(config, config.data.validation)
        validation_source = config.data.validation
    else:
        train, validation = stratified_split(train, config.data.validation_fraction, config.data.split_seed)
        validation_source = f"{config.data.validation_fraction:.0%} of {config.data.train} (seed {config.data.split_seed})"
        notes.append(f"validation: split off {validation_source}")
    test = read_split(config, config.data.test) if config.data.test else None
    encoder = LabelEncoder.fit(train.labels or [], config.task.type, config.labels.classes, config.labels.positive)
    if config.labels.classes is not None:
        unknown = sorted(set(train.labels or []) - set(encoder.classes))
        if unknown:
            raise ClintuneError(
                f"{train.source}: labels not listed in labels.classes: {', '.join(unknown)}\n"
                "  fix: add them to labels.classes or correct the data"
            )
    others = {"validation": validation} | ({"test": test} if test is not None else {})
    check_label_sets(train, others, list(encoder.classes))
    if test is not None and isinstance(train, TextExamples) and isinstance(test, TextExamples):
        steps = config.data.preprocessing
        overlap = count_overlap(preprocessed(train, steps), preprocessed(test, steps))  # type: ignore[arg-type]
        if overlap:
            notes.append(f"{overlap} test text(s) also appear in the training data; test metrics may be optimistic")
    return PreparedData(train, validation, test, encoder, validation_source, notes)


def training_inputs(config: Config) -> list[guards.Input]:
    """Every path a run of ``config`` reads: its config files, data files, a local model folder, a DeepSpeed file."""
    inputs = [guards.Input("config", Path(path)) for path in config.source_files]
    inputs += [guards.Input(f"data.{split}", Path(getattr(config.data, split)))
               for split in ("train", "validation", "test") if getattr(config.data, split)]
    if Path(config.model.name_or_path).exists():
        inputs.append(guards.Input("model.name_or_path", Path(config.model.name_or_path), whole=True))
    if config.training.deepspeed:
        inputs.append(guards.Input("training.deepspeed", Path(config.training.deepspeed)))
    return inputs


def validate(config: Config) -> dict[str, Any]:
    """Check config and data without loading a model; returns a summary of the data."""
    config = resolve_paths(config)
    return prepare_data(config).summary()


def train(config: Config, overwrite: bool = False, resume: bool = False, command: str | None = None) -> TrainResult:
    """Fine-tune the configured model and write a complete model folder to ``output.dir``.

    ``command`` (the CLI line, when there is one) is recorded in the model card.
    """
    from clintune import artifacts
    from clintune.modeling import detect_hardware, resolve_precision

    config = resolve_paths(config)
    output_dir = Path(config.output.dir)
    guards.check_outputs("train", training_inputs(config), [
        guards.Output("output.dir", output_dir), guards.Output("output.dir's work folder", artifacts.work_dir_for(output_dir)),
    ])
    artifacts.check_output_dir(output_dir, overwrite, resume)
    data = prepare_data(config)
    if config.training.deepspeed and not Path(config.training.deepspeed).is_file():
        raise ClintuneError(f"training.deepspeed: config file not found: {config.training.deepspeed}")
    precision = resolve_precision(config.training.precision, detect_hardware())
    work = artifacts.work_dir_for(output_dir)
    if is_main_process():
        if overwrite and not resume and work.exists():
            shutil.rmtree(work)
        artifacts.record_run_config(work, config, resume)
    for line in _describe_data(data):
        logger.info(line)
    trainer, tokenizer, weights = _fit(config, data, precision, work, resume)
    staging = work / "final"
    _save_weights(trainer, staging)
    if not trainer.is_world_process_zero():
        _leave_process_group()
        return TrainResult(output_dir, {})
    artifacts.save_model_folder(staging, tokenizer, data.encoder, config)
    metrics = _final_metrics(config, data, staging, precision, weights)
    metrics["selection"] = _selection(config, trainer)
    artifacts.save_training_record(staging, metrics, trainer.state.log_history)
    _write_provenance(staging, config, data, precision, command)
    artifacts.publish(staging, output_dir)
    shutil.rmtree(work, ignore_errors=True)
    logger.info("model folder written to %s", output_dir)
    _leave_process_group()
    return TrainResult(output_dir, metrics)


def _save_weights(trainer: Any, staging: Path) -> None:
    """The best model's weights, through ``Trainer.save_model`` on every rank: under DeepSpeed ZeRO-3 or
    FSDP the weights are spread over the processes and only a collective call gathers them; rank 0 writes."""
    import torch.distributed as dist

    from clintune.artifacts import WEIGHT_FILES

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
    from clintune.config import default_metric
    from clintune.training import selection_summary

    metric = config.training.metric_for_best_model or default_metric(config.task.type)
    return selection_summary(trainer.state.log_history, metric, trainer.state.best_global_step)


def _leave_process_group() -> None:
    """Close a torchrun process group once this process is done with it. A rank that exits with
    the group still open can abort at interpreter shutdown ("terminate called without an active
    exception", seen with gloo on CPU) and torchrun then reports the whole run as failed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _fit(config: Config, data: PreparedData, precision: str, work: Path, resume: bool) -> tuple[Any, Any, list[float] | None]:
    """Tokenise (once, cached), build the model and run the Trainer; returns it, the tokenizer and the class weights."""
    from transformers import set_seed

    from clintune.labels import class_weights_from_config
    from clintune.modeling import detect_hardware, load_model, load_tokenizer
    from clintune.tasks import label_counts, task_for
    from clintune.training import run_trainer, training_arguments, validation_scorer

    task = task_for(config.task.type)
    tokenizer = load_tokenizer(config.model.name_or_path, config.model.trust_remote_code)
    args = training_arguments(config, work / "checkpoints", precision, True, detect_hardware().device)
    with args.main_process_first(desc="tokenising"):
        train_encoded = _encode(task, data.train, tokenizer, data.encoder, config, "train")
        validation_encoded = _encode(task, data.validation, tokenizer, data.encoder, config, "validation")
    weights = class_weights_from_config(
        config.training.class_weights, data.encoder, label_counts(train_encoded), config.training.class_weights_power
    )
    if weights is not None:
        logger.info("class weights: %s", ", ".join(f"{c}={w:.3g}" for c, w in zip(data.encoder.classes, weights)))
    set_seed(config.training.seed)  # the new classification head is drawn from this seed
    model = load_model(task, config.model.name_or_path, data.encoder, config.model.trust_remote_code, config.model.pooling)
    logger.info("training on %s in %s", _device_of(model), precision)
    score = validation_scorer(tokenizer, data.encoder, config, data.validation)
    trainer = run_trainer(args, config, task, model, tokenizer, train_encoded, validation_encoded, score, weights, resume)
    return trainer, tokenizer, weights


def _encode(task: Any, examples: Examples, tokenizer: Any, encoder: LabelEncoder, config: Config, name: str) -> Any:
    """Tokenise one split (texts preprocessed here, once), reusing an identical earlier tokenisation from the cache."""
    from clintune.prediction import long_text_note
    from clintune.tokenization import cached_encoding, encoding_key

    examples = preprocessed(examples, config.data.preprocessing)
    model_settings = config.model.model_dump(exclude={"name_or_path", "trust_remote_code"})
    settings = {"task": config.task.type, "classes": list(encoder.classes), **model_settings}
    inputs, labels = task.fingerprint_inputs(examples)
    cache_dir = tokenization_cache_dir(config) if config.data.tokenization_cache else None
    encoded, from_cache = cached_encoding(
        cache_dir, encoding_key(tokenizer, settings, inputs, labels),
        lambda: task.encode(examples, tokenizer, encoder, config.model),
    )
    logger.info("%s: %d examples -> %d features%s", name, encoded.n_examples, len(encoded), " (tokenisation cache)" if from_cache else "")
    note = long_text_note(encoded, config)
    if note:
        logger.warning("%s: %s", name, note)
    return encoded


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
    import os

    from clintune.tokenization import remove_cache_entries

    if config is None:
        if not os.environ.get("CLINTUNE_CACHE_DIR"):
            raise ClintuneError("cache clear: give the config whose runs' cache to clear (or set $CLINTUNE_CACHE_DIR)")
        folder = Path(os.environ["CLINTUNE_CACHE_DIR"]) / "tokenized"
    else:
        folder = tokenization_cache_dir(config)
    files, size = remove_cache_entries(folder)
    return folder, files, size


def _final_metrics(config: Config, data: PreparedData, folder: Path, precision: str, weights: list[float] | None) -> dict[str, Any]:
    """Validation (and test) metrics of the saved best model, loaded from its folder and scored as
    ``clintune eval`` scores it."""
    from clintune.evaluation import evaluate as score
    from clintune.prediction import Predictor

    predictor = Predictor.from_folder(folder, batch_size=config.training.eval_batch_size)
    resamples, seed = config.evaluation.bootstrap_resamples, config.evaluation.seed
    metrics: dict[str, Any] = {"validation": score(predictor, data.validation, resamples, seed).metrics}
    if data.test is not None:
        metrics["test"] = score(predictor, data.test, resamples, seed).metrics
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
    from clintune.artifacts import write_json
    from clintune.model_card import RUN_FILE, sha256_of, write_model_card

    splits = {"train": (config.data.train, data.train), "validation": (config.data.validation, data.validation),
              "test": (config.data.test, data.test)}
    files = {
        split: {"path": path, "examples": len(examples), "sha256": sha256_of(Path(path))}
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


def evaluate(
    model_dir: str | Path,
    data_path: str | Path,
    output_dir: str | Path | None = None,
    data_format: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    batch_size: int | None = None,
    tune_thresholds: list[str] | None = None,
    fit_temperature: bool = False,
    resamples: int = 1000,
    seed: int = 0,
    threads: int | None = None,
    overwrite: bool = False,
) -> Any:
    """Score a model folder on a labelled file, read with the folder's own data settings.

    ``tune_thresholds`` (``recall=0.95``, ``precision=0.9``, ``LABEL:recall=0.95``)
    and ``fit_temperature`` choose a decision rule on this data and store it in
    the model folder, where ``predict`` uses it from then on. With
    ``output_dir``, writes the report folder (see ``clintune.reports``); an
    earlier report there is replaced only with ``overwrite``, and a folder that
    is not a clintune report never. Returns an ``Evaluation``.
    """
    from clintune import artifacts
    from clintune.evaluation import evaluate as score
    from clintune.prediction import Predictor
    from clintune.reports import check_report_dir, write_report

    folder = Path(model_dir)
    if output_dir is not None:
        guards.check_outputs("eval", [guards.Input("--model", folder, whole=True), guards.Input("--data", Path(data_path))],
                             [guards.Output("--output", Path(output_dir))])
        check_report_dir(Path(output_dir), overwrite)
    encoder, config = artifacts.check_model_folder(folder)
    config = _with_data_overrides(config, data_format, text_column, label_column)
    data = read_split(config, str(data_path), hints=EVAL_HINTS)
    check_label_sets(_stand_in_train(encoder), {"evaluation": data}, list(encoder.classes))
    if (tune_thresholds or fit_temperature) and encoder.task_type == "ner":
        raise ClintuneError("--tune-threshold and --fit-temperature apply to classification models, not NER")
    predictor = Predictor.from_folder(folder, batch_size=batch_size, show_progress=True, threads=threads)
    logits = None
    if tune_thresholds or fit_temperature:
        logits = predictor.window_logits(data.texts)  # type: ignore[union-attr]
        predictor.decision = _tuned_rule(predictor, logits, data, tune_thresholds or [], fit_temperature, str(data_path))
        predictor.decision.save(folder)
        _refresh_model_card(folder)
        logger.info("decision rule stored in %s: %s", folder, predictor.decision.describe(encoder))
    evaluation = score(predictor, data, resamples, seed, logits)
    evaluation.metrics["data"] = str(Path(data_path).absolute())
    evaluation.metrics["model"] = str(folder.absolute())
    if output_dir is not None:
        write_report(Path(output_dir), evaluation, f"{config.task.name} on {Path(data_path).name}")
    return evaluation


def _tuned_rule(predictor: Any, logits: Any, data: Any, targets: list[str], fit_temperature: bool, source: str) -> Any:
    """The folder's decision rule with a refitted temperature (and its thresholds re-tuned) and/or new targets."""
    import numpy as np

    from clintune.decision import parse_target, refit_temperature, restate_achieved, tune

    encoder = predictor.encoder
    gold = np.asarray(encoder.encode(data.labels))
    rule = predictor.decision
    if fit_temperature:
        replaced = {parse_target(target, encoder)[0] for target in targets}
        rule = refit_temperature(rule, logits, gold, encoder, source, replaced)
    for target in targets:
        rule = tune(rule, logits.probabilities(rule.temperature), gold, encoder, target, source)
    restate_achieved(rule, logits.probabilities(rule.temperature), gold, encoder, source)
    return rule


def _refresh_model_card(folder: Path) -> None:
    from clintune.model_card import write_model_card

    if (folder / "metrics.json").is_file():
        write_model_card(folder)


def _stand_in_train(encoder: LabelEncoder) -> TextExamples:
    """The model's classes in the shape of training data, for the unseen-label check."""
    return TextExamples(texts=list(encoder.classes), labels=list(encoder.classes), rows=[], source="model")


def _with_data_overrides(config: Config, data_format: str | None, text_column: str | None, label_column: str | None) -> Config:
    config = config.model_copy(deep=True)
    if data_format is not None:
        config.data.format = data_format  # type: ignore[assignment]
    if text_column is not None:
        config.data.text_column = text_column
    if label_column is not None:
        config.data.label_column = label_column
    return config


def export(
    model_dir: str | Path, output_dir: str | Path | None = None, fmt: str = "onnx", quantize: str | None = None,
    check_data: str | Path | None = None,
) -> dict[str, Any]:
    """Export a model folder to ONNX; with ``check_data``, compare the exported model with the original on it."""
    from clintune.artifacts import write_json
    from clintune.onnx_export import EXPORT_FILE, read_export_info
    from clintune.onnx_export import export as export_onnx

    if fmt != "onnx":
        raise ClintuneError(f"export --format {fmt}: only onnx is supported")
    if quantize not in (None, "int8"):
        raise ClintuneError(f"export --quantize {quantize}: only int8 is supported")
    source = Path(model_dir)
    target = Path(output_dir) if output_dir else source.with_name(source.name + ("-onnx-int8" if quantize else "-onnx"))
    guards.check_outputs("export", [guards.Input("--model", source, whole=True),
                                    guards.Input("--check-data", Path(check_data)) if check_data is not None else None],
                         [guards.Output("--output", target)])
    if target.exists() or target.is_symlink():
        raise ClintuneError(f"{target} already exists; choose another --output or remove it")
    export_onnx(source, target, quantize)
    info = read_export_info(target)
    if check_data is not None:
        original = evaluate(source, check_data, resamples=0)
        exported = evaluate(target, check_data, resamples=0)
        key = _headline_key(original.metrics)
        info["check"] = {
            "data": str(Path(check_data).absolute()),
            "agreement": float((original.predicted_ids == exported.predicted_ids).mean()),
            "agreement_unit": "word tags" if "n_entities" in original.metrics else "labels",
            "metric": key,
            "pytorch": original.metrics[key],
            "exported": exported.metrics[key],
            "difference": exported.metrics[key] - original.metrics[key],
        }
        write_json(target / EXPORT_FILE, info)
    _refresh_model_card(target)
    return {"output": str(target), **info}


def _headline_key(metrics: dict[str, Any]) -> str:
    return "f1_macro" if "f1_macro" in metrics else "f1"


def baseline(config: Config, output: str | Path | None = None) -> tuple[Any, dict[str, Any] | None]:
    """Train the cheap baseline on the config's splits; also return the transformer's metrics if its folder exists.

    With ``output``, the baseline's metrics are written there as JSON.
    """
    import json

    from clintune.baseline import run_baseline
    from clintune.files import write_json

    config = resolve_paths(config)
    metrics_file = Path(config.output.dir) / "metrics.json"
    if output is not None:
        guards.check_outputs("baseline", [*training_inputs(config), guards.Input("output.dir", Path(config.output.dir), whole=True)],
                             [guards.Output("--output", Path(output))])
    data = prepare_data(config)
    evaluated = {"validation": data.validation} | ({"test": data.test} if data.test is not None else {})
    result = run_baseline(config, data.train, evaluated, data.encoder)
    transformer = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else None
    if output is not None:
        write_json(Path(output), {"baseline": result.name, "seconds": result.seconds, **result.metrics})
    return result, transformer


def check_prediction_paths(model_dir: str | Path, input_path: str | Path | None, output_path: str | Path | None) -> None:
    """Refuse a prediction output that is, or would overwrite, the model folder or the input file."""
    guards.check_outputs("predict", [guards.Input("--model", Path(model_dir), whole=True),
                                     guards.Input("--input", Path(input_path)) if input_path is not None else None],
                         [guards.Output("--output", Path(output_path)) if output_path is not None else None])


def predict(
    model_dir: str | Path, texts: list[str], batch_size: int | None = None, show_progress: bool = False, threads: int | None = None
) -> list[Any]:
    """Predictions for raw texts: a ``Prediction`` per text, or a list of ``Entity`` for NER."""
    from clintune.prediction import Predictor

    predictor = Predictor.from_folder(model_dir, batch_size=batch_size, show_progress=show_progress, threads=threads)
    if predictor.encoder.task_type == "ner":
        return predictor.extract_entities(texts)
    return predictor.classify(texts)


def read_texts_for_prediction(model_dir: str | Path, input_path: str | Path, text_column: str | None = None) -> TextExamples:
    """Texts from a file (csv/tsv/jsonl/parquet, or plain text with one text per line)."""
    from clintune import artifacts
    from clintune.config import CLASSIFICATION_FORMATS, FORMAT_BY_SUFFIX
    from clintune.data import PREDICT_HINTS, _read_text, check_file, read_text_table

    path = Path(input_path)
    check_file(path, PREDICT_HINTS)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        lines = _read_text(path).split("\n")
        keep = [i for i, line in enumerate(lines) if line.strip()]
        return TextExamples([lines[i] for i in keep], None, [i + 1 for i in keep], str(path), "line")
    fmt = FORMAT_BY_SUFFIX.get(suffix)
    if fmt not in CLASSIFICATION_FORMATS:
        what = suffix or "a file without a suffix"
        kind = "CoNLL (word<TAB>tag lines) is labelled training data, not" if fmt == "conll" else f"{what} is not"
        raise DataError(
            f"{path}: {kind} a prediction input\n"
            "  fix: give raw texts as .txt (one per line), .csv, .tsv, .jsonl or .parquet; "
            "to score labelled data use 'clintune eval --data FILE'"
        )
    _, config = artifacts.check_model_folder(Path(model_dir))
    column = text_column or config.data.text_column
    data = read_text_table(path, fmt, column, config.data.label_column, require_labels=False, hints=PREDICT_HINTS)
    empty = [i for i, text in enumerate(data.texts) if not text.strip()]
    if empty:
        raise DataError(f"{path}: {len(empty)} empty text(s) in column {column!r} ({describe_rows(data, empty)})\n"
                        "  fix: remove those rows or fill them; every output line must answer one input row")
    return data
