"""The ``clintune`` command: a thin shell over ``clintune.api``.

Each verb parses its arguments, calls one library function and prints the
result. ``ClintuneError`` becomes a plain message and exit status 2; any
other exception keeps its traceback (exit status 1). torch and transformers
are imported only by the verbs that need them.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from clintune.errors import ClintuneError

app = typer.Typer(
    name="clintune",
    help="Fine-tune BERT-family models on clinical and biomedical text from a YAML config.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ConfigArg = Annotated[Path, typer.Argument(help="Task config (YAML).", show_default=False)]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="<key=value>", help="Override a config value: dotted.key=value (repeatable).",
                 show_default=False),
]
ModelOption = Annotated[Path, typer.Option("--model", "-m", help="Model folder written by 'clintune train'.", show_default=False)]
BatchOption = Annotated[
    int | None, typer.Option("--batch-size", min=1, help="Examples per inference batch (default: 8 on CPU, 64 on a GPU).")
]
ThreadsOption = Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads for inference (default: all).")]
TrustRemoteCodeOption = Annotated[bool, typer.Option(
    "--trust-remote-code", help="Let the model folder run the Python code it ships (an auto_map in its config.json): "
                                "only for a folder whose maker you trust. Without it such a folder is refused.")]


LIBRARY_VERBS = ("train", "eval", "predict", "export", "serve")  # the verbs that load transformers
_verbose = False  # --verbose: a ClintuneError also shows its traceback and causes
MAX_CLASSES_LISTED = 60  # validate lists every class up to this many (50 coding labels fit), if each is short


def _print_version(value: bool) -> None:
    if value:
        from clintune import __version__

        typer.echo(f"clintune {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="Also show everything the libraries print (Trainer log dictionaries, load reports, warnings, progress bars).",
    )] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print clintune's version and exit.")] = False,
) -> None:
    """Fine-tune BERT-family models on clinical and biomedical text from a YAML config."""
    global _verbose
    _verbose = verbose
    _setup_logging(verbose)
    if not verbose:
        _quiet_libraries(load_transformers=ctx.invoked_subcommand in LIBRARY_VERBS)


def _setup_logging(verbose: bool = False) -> None:
    """Messages to stderr; under torchrun only rank 0 reports progress, other ranks only problems."""
    import os

    from clintune.runtime.system import process_rank

    rank = process_rank()
    if rank and not verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("clintune: %(message)s" if rank == 0 else f"clintune[rank {rank}]: %(message)s"))
    root = logging.getLogger("clintune")
    root.handlers = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO if rank == 0 else logging.WARNING)
    root.propagate = False


def _quiet_libraries(load_transformers: bool) -> None:
    """Keep what libraries print on their own off the console; clintune's own messages are untouched.

    Hidden: transformers' notices and load reports (errors still show), its weight
    loading/saving progress bars, the ONNX exporter's and quantiser's warnings, other
    libraries' log warnings, and deprecation and internal warnings raised in library
    code. An environment variable the user set wins.
    """
    import os
    import warnings

    logging.getLogger().setLevel(logging.ERROR)  # libraries logging through the root logger (onnxruntime's quantiser)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TORCH_LOGS", "-onnx")  # torch.onnx's logger at ERROR ('torchvision is not installed')
    outside_clintune = r"(?!clintune(\.|$))"
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=outside_clintune)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|transformers|onnxscript|onnx|onnxruntime)(\.|$)")
    if load_transformers:
        from huggingface_hub.utils import enable_progress_bars
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # "Loading weights", "Writing model shards"; this also ...
        enable_progress_bars()  # ... switches off the Hub's download bars, which stay


@app.command()
def train(
    config: ConfigArg,
    set_: SetOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")] = False,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="Data-parallel processes on this machine (starts torchrun).")] = 1,
) -> None:
    """Fine-tune a model and write a model folder to output.dir."""
    if nproc > 1:
        _launch_torchrun(nproc)
    from clintune.api import train as train_model
    from clintune.config.loading import load_config
    from clintune.console import format_metrics, format_rule_cost

    cfg = load_config(config, set_ or [])
    try:
        result = train_model(cfg, overwrite=overwrite, resume=resume, command=_command_line())
    except KeyboardInterrupt:
        typer.echo(_interrupted_message(Path(cfg.output.dir)), err=True)
        raise SystemExit(130) from None
    if result.metrics:
        default = result.metrics.get("default_rule", {})
        for split in ("validation", "test"):
            if split in result.metrics:
                typer.echo(f"\n{split} metrics" + (f" ({result.output_dir}):" if split == "validation" else ":"))
                typer.echo(format_metrics(result.metrics[split]))
            if split in default:
                rule = "per-label thresholds" if cfg.task.type == "multilabel" else "must-not-miss rule"
                typer.echo(f"\nwhat the {rule} change{'' if rule.endswith('s') else 's'} on {split}"
                           + (" (its thresholds were tuned here: optimistic)" if split == "validation" else "") + ":")
                typer.echo(format_rule_cost(result.metrics[split], default[split]))


@app.command()
def validate(config: ConfigArg, set_: SetOption = None) -> None:
    """Check a config and its data files without training."""
    from clintune.api import validate as validate_config_and_data
    from clintune.config.loading import load_config
    from clintune.data.labels import is_short_label, shown_labels

    cfg = load_config(config, set_ or [])
    summary = validate_config_and_data(cfg).summary()
    typer.echo(f"{config}: config and data are valid")
    typer.echo(f"  train: {summary['train_examples']}, validation: {summary['validation_examples']}"
               + (f", test: {summary['test_examples']}" if summary["test_examples"] is not None else ""))
    counts = summary["train_label_counts"]
    if len(counts) <= MAX_CLASSES_LISTED and all(is_short_label(str(label)) for label in counts):
        typer.echo(f"  classes ({len(summary['classes'])}): " + ", ".join(f"{label} ({n})" for label, n in counts.items()))
    else:  # a label column pointed at the notes must not print them here either
        typer.echo(f"  classes ({len(summary['classes'])}): {shown_labels(list(counts), counts)}")
        typer.echo("  note: that many labels, or labels that read like text: check data.label_column", err=True)
    for note in summary["notes"]:
        typer.echo(f"  note: {note}")


@app.command()
def baseline(
    config: ConfigArg,
    set_: SetOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the baseline's metrics as JSON here.")] = None,
) -> None:
    """Train a cheap baseline (TF-IDF + logistic regression; NER: dictionary) on the same splits and metrics."""
    from clintune.api import baseline as run_baseline
    from clintune.config.loading import load_config
    from clintune.console import format_comparison

    cfg = load_config(config, set_ or [])
    comparison = run_baseline(cfg, output=output)
    result, transformer = comparison.baseline, comparison.transformer
    for split, metrics in result.metrics.items():
        columns = {"baseline": metrics}
        if transformer and split in transformer:
            columns["transformer"] = transformer[split]
        typer.echo(f"\n{split} ({result.name}, fitted in {result.seconds:.1f} s):")
        typer.echo(format_comparison(columns))
    if not transformer:
        typer.echo(f"\n(no trained model at {cfg.output.dir} yet; train it to see both columns)")
    if output is not None:
        typer.echo(f"baseline metrics written to {output}")


@app.command("eval")
def eval_(
    model: ModelOption,
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled data file, or a brat folder (NER).", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Report folder (metrics.json, predictions.jsonl).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier report at --output.")] = False,
    data_format: Annotated[str | None, typer.Option(
        "--format", help="Override the saved data.format (csv, tsv, jsonl, parquet, conll, brat, spans).")] = None,
    text_column: Annotated[str | None, typer.Option(help="Override the saved data.text_column.")] = None,
    label_column: Annotated[str | None, typer.Option(help="Override the saved data.label_column.")] = None,
    label_map: Annotated[list[str] | None, typer.Option(
        "--label-map", metavar="<NAME=CLASS>",
        help="Rename a label or entity type of --data before scoring, e.g. Modifier=Disease (repeatable).",
        show_default=False)] = None,
    batch_size: BatchOption = None,
    tune_threshold: Annotated[list[str] | None, typer.Option(
        "--tune-threshold", metavar="<target>",
        help="Choose and store a threshold on this data: recall=0.95 or precision=0.9 (binary), "
             "LABEL:recall=0.95 (multiclass must-not-miss class). Repeatable.",
        show_default=False)] = None,
    fit_temperature: Annotated[
        bool, typer.Option("--fit-temperature", help="Fit and store a calibration temperature on this data.")
    ] = False,
    bootstrap: Annotated[int | None, typer.Option(
        "--bootstrap", min=0, help="Bootstrap resamples for 95% intervals (0: none; default: the model's evaluation.bootstrap_resamples).",
        show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Bootstrap seed (default: the model's evaluation.seed).",
                                             show_default=False)] = None,
    threads: ThreadsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
    trust_remote_code: TrustRemoteCodeOption = False,
) -> None:
    """Score a model folder on a labelled data file; optionally tune its decision threshold."""
    from clintune.api import evaluate
    from clintune.console import format_metrics, format_rule_cost

    mapping = {}
    for pair in label_map or []:
        name, sep, target = pair.partition("=")
        if not sep or not name or not target:
            raise ClintuneError(f"--label-map {pair!r}: expected NAME=CLASS, e.g. Modifier=Disease")
        mapping[name] = target
    evaluation = evaluate(model, data, output_dir=output, data_format=data_format, text_column=text_column,
                          label_column=label_column, batch_size=batch_size, tune_thresholds=tune_threshold or [],
                          fit_temperature=fit_temperature, resamples=bootstrap, seed=seed, threads=threads,
                          overwrite=overwrite, label_map=mapping, trust_remote_code=trust_remote_code)
    metrics = evaluation.metrics
    if as_json:
        typer.echo(json.dumps(metrics, indent=2, ensure_ascii=False))
        return
    typer.echo(format_metrics(metrics))
    if "default_rule" in metrics:
        typer.echo("\nwhat the decision rule in force changes here:")
        typer.echo(format_rule_cost(metrics, metrics["default_rule"]))
    if output is not None:
        typer.echo(f"\nreport written to {output}")


@app.command()
def cv(
    config: ConfigArg,
    folds: Annotated[int, typer.Option("--folds", "-k", help="Number of folds (stratified by label).")] = 5,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Folder for cv.json and oof_predictions.jsonl (default: output.dir + '-cv').", show_default=False)] = None,
    set_: SetOption = None,
    keep_models: Annotated[bool, typer.Option("--keep-models", help="Keep each fold's model folder (under OUTPUT/folds).")] = False,
    tune_threshold: Annotated[list[str] | None, typer.Option(
        "--tune-threshold", help="LABEL:recall=0.9 (repeatable), tuned on the pooled out-of-fold predictions "
        "(default: the config's decision.must_not_miss).", show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run: train only the folds not finished.")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an earlier cross-validation or interrupted run (and, with --train-final, output.dir).")] = False,
    train_final: Annotated[bool, typer.Option(
        "--train-final", help="Then train on all the data into output.dir, storing the out-of-fold decision rule there.")] = False,
) -> None:
    """Cross-validate a config: a model per fold, out-of-fold predictions, each metric's mean, spread and interval."""
    from clintune.api import cross_validate
    from clintune.config.loading import load_config
    from clintune.console import format_cross_validation

    cfg = load_config(config, set_ or [])
    result = cross_validate(cfg, folds, output=output, keep_models=keep_models, tune_thresholds=tune_threshold, resume=resume,
                            overwrite=overwrite, train_final=train_final)
    typer.echo(format_cross_validation(result.report))


@app.command()
def tune(
    config: ConfigArg,
    trials: Annotated[int, typer.Option("--trials", "-n", help="Finished trials the study should hold (a rerun completes the rest).")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Folder for best.yaml, trials.csv, tune.json and plots (default: output.dir + '-tune').",
        show_default=False)] = None,
    storage: Annotated[str | None, typer.Option(
        "--storage", help="Optuna database URL shared by every worker (default: sqlite file OUTPUT.optuna.db beside --output).",
        show_default=False)] = None,
    study_name: Annotated[str | None, typer.Option("--study-name", help="Study name in the storage (default: the output folder's name).",
                                                   show_default=False)] = None,
    cv_folds: Annotated[int | None, typer.Option("--cv", help="Objective: the mean over K cross-validation folds of the training data.",
                                                 show_default=False)] = None,
    set_: SetOption = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Sampler seed (leave out when several workers share a study).",
                                             show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Delete an earlier study of this name and start over.")] = False,
) -> None:
    """Search the config's search: section with Optuna; resumable, and shareable by several workers through --storage."""
    from clintune.api import tune as run_search
    from clintune.config.loading import load_config
    from clintune.console import format_search
    from clintune.workflows.tune import default_output

    cfg = load_config(config, set_ or [])
    out = output or default_output(cfg)
    search = run_search(cfg, trials, output=out, storage=storage, study_name=study_name, cv_folds=cv_folds, overwrite=overwrite,
                        seed=seed)
    typer.echo(format_search(search.summary, str(search.output_dir)))


@app.command()
def predict(
    model: ModelOption,
    text: Annotated[list[str] | None, typer.Option("--text", "-t", metavar="<text>", help="A text to label (repeatable).",
                                                      show_default=False)] = None,
    input_path: Annotated[Path | None, typer.Option(
        "--input", "-i", help="File of texts (.txt one per line, csv, tsv, jsonl, parquet; or a folder of .parquet files), "
                              "read in chunks; or a folder of .txt documents.", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write results here instead of printing: JSON lines, or Parquet for a .parquet name; "
                               "published when complete (--format brat: a new folder of .ann files).", show_default=False)] = None,
    output_format: Annotated[str, typer.Option(
        "--format", help="jsonl, or brat (NER on a folder of documents: NAME.ann beside a copy of NAME.txt).")] = "jsonl",
    text_column: Annotated[str | None, typer.Option(help="Text column of --input (default: the model's data.text_column).")] = None,
    id_column: Annotated[str | None, typer.Option(
        "--id-column", help="Copy this column of --input into every result, to join results back to the source.")] = None,
    probabilities: Annotated[bool, typer.Option("--probabilities", help="Include every class probability.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, one object per text.")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted --input/--output run of the same command after its last finished chunk.")] = False,
    chunk_size: Annotated[int, typer.Option("--chunk-size", min=1, help="Rows read, predicted and written at a time.")] = 1000,
    on_empty: Annotated[str | None, typer.Option(
        "--on-empty", metavar="[error|drop]",
        help="A row whose text is empty or not text: stop with an error, or skip it (default: the model's data.on_empty).",
        show_default=False)] = None,
    engine: Annotated[str, typer.Option(
        "--engine", metavar="[local|ray]", help="ray: predict a Parquet dataset on a Ray cluster (RAY_ADDRESS, or a local one); "
                                                 "needs clintune[ray].")] = "local",
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="--engine ray: model copies (actors), one model load each (default: the cluster's CPUs).")] = None,
    batch_size: BatchOption = None,
    threads: ThreadsOption = None,
    trust_remote_code: TrustRemoteCodeOption = False,
) -> None:
    """Label texts (classification) or find entities (NER) with a trained model."""
    from clintune.api import PredictRequest, run_predict
    from clintune.runtime.files import staging_dir_for

    request = PredictRequest(model, texts=list(text or []) or None, input_path=input_path, output_path=output,
                             output_format=output_format, text_column=text_column, id_column=id_column,
                             probabilities=probabilities, resume=resume, chunk_size=chunk_size, on_empty=on_empty,
                             engine=engine, workers=workers, batch_size=batch_size, threads=threads, show_progress=True,
                             trust_remote_code=trust_remote_code)
    printed = 0

    def emit(records: list[dict[str, Any]]) -> None:  # a file's results, printed a chunk at a time
        nonlocal printed
        for record in records:
            row_key = next(iter(record))
            if as_json:
                typer.echo(("[" if printed == 0 else ",") + json.dumps(record, ensure_ascii=False))
            else:
                typer.echo(_human_line(f"{row_key} {record[row_key]}", {k: v for k, v in record.items() if k != id_column}))
            printed += 1

    try:
        outcome = run_predict(request, on_records=emit)
    except KeyboardInterrupt:
        if output is not None and staging_dir_for(output).is_dir():
            typer.echo(f"\ninterrupted; the finished chunks are kept in {staging_dir_for(output)} and {output} was not touched.\n"
                       f"  continue: {_command_line().replace(' --resume', '')} --resume", err=True)
        raise SystemExit(130) from None
    _print_predictions(outcome, request, as_json, printed)


def _print_predictions(outcome: Any, request: Any, as_json: bool, printed: int) -> None:
    """What ``predict`` says once ``run_predict`` is done: where results went, or the results themselves."""
    output = request.output_path
    if outcome.kind == "texts":
        if outcome.skipped:
            typer.echo(f"skipped (--on-empty drop): text {', '.join(map(str, outcome.skipped))}: nothing to predict", err=True)
        if as_json:  # with texts skipped, each object says which --text it answers
            records = [record if outcome.skipped else {k: v for k, v in record.items() if k != "text"} for record in outcome.records]
            typer.echo(json.dumps(records, indent=2, ensure_ascii=False))
        else:
            for record in outcome.records:
                typer.echo(_human_line(f"text {record['text']}", {k: v for k, v in record.items() if k != "text"}))
    elif outcome.kind == "documents":
        if output is not None:
            brat = request.output_format == "brat"
            typer.echo(f"{outcome.written} " + (f"document(s) written to {output} (NAME.ann beside a copy of NAME.txt)" if brat
                                                else f"prediction(s) written to {output}"))
        elif as_json:
            typer.echo(json.dumps(outcome.records, indent=2, ensure_ascii=False))
        else:
            for record in outcome.records:
                typer.echo(_human_line(f"document {record.pop('document')}", record))
    elif outcome.kind == "ray":
        typer.echo(f"{outcome.written} prediction(s) written to {output}")
    elif output is not None:
        run = outcome.run
        typer.echo(f"{run.predicted} prediction(s) written to {output}" + (f" ({run.skipped} row(s) skipped)" if run.skipped else ""))
    elif as_json:
        typer.echo("[]" if printed == 0 else "]")


@app.command()
def export(
    model: ModelOption,
    fmt: Annotated[str, typer.Option("--format", help="Export format.")] = "onnx",
    quantize: Annotated[str | None, typer.Option("--quantize", help="int8: dynamic int8 weights (smaller, faster on CPU).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Target folder (default: MODEL-onnx[-int8]).")] = None,
    check_data: Annotated[Path | None, typer.Option(
        "--check-data", help="Labelled file: compare exported and original predictions.")] = None,
    trust_remote_code: TrustRemoteCodeOption = False,
) -> None:
    """Export a model folder to ONNX for ONNX Runtime; predict and eval accept the result."""
    from clintune.api import export as export_model
    from clintune.data.labels import shown_labels

    exported = export_model(model, output, fmt=fmt, quantize=quantize, check_data=check_data, trust_remote_code=trust_remote_code)
    info = exported.info
    typer.echo(f"exported ({info['quantize']}) to {exported.output_dir}")
    check = info.get("check")
    if check:
        typer.echo(f"on {check['data']}: {check['agreement']:.2%} of {check['agreement_unit']} agree with PyTorch; "
                   f"{check['metric']} {check['pytorch']:.4f} -> {check['exported']:.4f} ({check['difference']:+.4f})")
        if "f1_macro" in check:
            lowest = sorted(check["label_agreement"].items(), key=lambda kv: kv[1])[:3]
            typer.echo(f"  f1_macro {check['f1_macro']['pytorch']:.4f} -> {check['f1_macro']['exported']:.4f}; lowest label "
                       f"agreement: {', '.join(f'{v:.2%}' for _, v in lowest)} ({shown_labels([k for k, _ in lowest])})")
        for key, recall in check.get("must_not_miss_recall", {}).items():
            typer.echo(f"  recall of {key} (must not miss): {recall['pytorch']:.4f} -> {recall['exported']:.4f} "
                       f"({recall['difference']:+.4f})")


@app.command()
def serve(
    model: Annotated[Path, typer.Option("--model", "-m", help="Model folder ('clintune train', or 'clintune export' for ONNX).",
                                        show_default=False)],
    host: Annotated[str, typer.Option(help="Address to listen on; any but 127.0.0.1/localhost needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one, printed at start).")] = 8000,
    api_key_file: Annotated[Path | None, typer.Option(
        "--api-key-file", help="File whose first line is the API key that /v1/ requests must send (or set $CLINTUNE_API_KEY).",
        show_default=False)] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", metavar="<origin>", help="Let web pages from this origin call the API (repeatable; default: none).",
        show_default=False)] = None,
    max_batch_texts: Annotated[int, typer.Option(min=1, help="Texts gathered from concurrent requests into one batch.")] = 32,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="Longest wait for more requests once one is waiting (ms).")] = 5.0,
    max_texts: Annotated[int, typer.Option(min=1, help="Texts per request (more: 413).")] = 256,
    max_bytes: Annotated[int, typer.Option(min=1, help="Bytes per request body (more: 413).")] = 1_000_000,
    max_queued_texts: Annotated[int, typer.Option(
        min=1, help="Texts waiting or running at once; a request past it gets 503 with Retry-After.")] = 1024,
    label_studio: Annotated[bool, typer.Option(
        "--label-studio", help="Also answer as a Label Studio ML backend (/health, /setup, /predict, /webhook): "
                               "pre-annotation in Label Studio. With an API key, Label Studio sends it as the Basic auth "
                               "password.")] = False,
    batch_size: BatchOption = None,
    threads: ThreadsOption = None,
    trust_remote_code: TrustRemoteCodeOption = False,
) -> None:
    """Serve a model over HTTP: POST /v1/predict, GET /v1/model, a page at / and API docs at /docs."""
    from clintune.api import ServeSettings
    from clintune.api import serve as serve_model
    from clintune.serve import read_api_key

    settings = ServeSettings(max_batch_texts=max_batch_texts, max_wait_ms=max_wait_ms, max_texts=max_texts, max_bytes=max_bytes,
                             max_queued_texts=max_queued_texts, batch_size=batch_size, threads=threads,
                             cors_origins=tuple(cors_origin or ()), label_studio=label_studio)
    try:
        serve_model(model, host=host, port=port, settings=settings, api_key=read_api_key(api_key_file), trust_remote_code=trust_remote_code)
    except KeyboardInterrupt:
        raise SystemExit(130) from None


@app.command("select")
def select_(
    model: ModelOption,
    input_path: Annotated[Path, typer.Option(
        "--input", "-i", help="The unlabelled notes: any file predict --input reads (.txt, csv, tsv, jsonl, parquet), read in chunks.",
        show_default=False)],
    k: Annotated[int, typer.Option("--k", min=1, help="How many notes to pick.", show_default=False)],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="The picks (.csv or .jsonl): rank, row, id, uncertainty; never text.", show_default=False)],
    text_column: Annotated[str | None, typer.Option(help="Text column of --input (default: the model's data.text_column).")] = None,
    id_column: Annotated[str | None, typer.Option("--id-column", help="Copy this column of --input into every pick.")] = None,
    strategy: Annotated[str, typer.Option(
        metavar="[margin|entropy]", help="Classification uncertainty: the gap between the two likeliest labels (binary: the "
                                         "distance to the model's threshold), or the entropy.")] = "margin",
    spread: Annotated[bool, typer.Option(
        "--spread/--no-spread", help="Skip notes too alike to an earlier pick, so the picks are not near-copies.")] = True,
    max_similarity: Annotated[float, typer.Option(
        help="--spread: the highest text similarity (cosine of character 4-gram TF-IDF) allowed between two picks.")] = 0.5,
    exclude: Annotated[list[Path] | None, typer.Option(
        "--exclude", help="A file of notes already labelled (repeatable): never picked, nor their near copies.",
        show_default=False)] = None,
    exclude_training_data: Annotated[bool, typer.Option(
        "--exclude-training-data/--no-exclude-training-data",
        help="Keep the model's own training and validation notes (and their near copies) out of the picks.")] = True,
    label_studio_tasks: Annotated[Path | None, typer.Option(
        "--label-studio-tasks", help="Also write the picks as Label Studio tasks with the model's pre-annotations (.json, "
                                     "owner-only: it holds the notes).", show_default=False)] = None,
    label_config: Annotated[Path | None, typer.Option(
        "--label-config", help="The Label Studio project's labelling config (XML), whose names the tasks use.",
        show_default=False)] = None,
    chunk_size: Annotated[int, typer.Option("--chunk-size", min=1, help="Rows read and scored at a time.")] = 1000,
    on_empty: Annotated[str | None, typer.Option(
        "--on-empty", metavar="[error|drop]", help="A row whose text is empty: stop with an error, or skip it "
                                                   "(default: the model's data.on_empty).", show_default=False)] = None,
    batch_size: BatchOption = None,
    threads: ThreadsOption = None,
    trust_remote_code: TrustRemoteCodeOption = False,
) -> None:
    """Pick the unlabelled notes the model is least sure about, to label next (active learning)."""
    from clintune.api import select

    chosen = select(model, input_path, output, k=k, text_column=text_column, id_column=id_column, strategy=strategy, spread=spread,
                    max_similarity=max_similarity, exclude=list(exclude or []), exclude_training_data=exclude_training_data,
                    label_studio_tasks=label_studio_tasks, label_config=label_config, chunk_size=chunk_size, on_empty=on_empty,
                    batch_size=batch_size, threads=threads, show_progress=True, trust_remote_code=trust_remote_code)
    kept_out = f"; {chosen.excluded} kept out as already labelled or near copies of labelled notes" if chosen.excluded else ""
    skipped = f"; {chosen.skipped} empty row(s) skipped" if chosen.skipped else ""
    typer.echo(f"{len(chosen.picks)} of {chosen.pool} note(s) picked to {chosen.output}{kept_out}{skipped}")
    for record in chosen.picks[:10]:
        typer.echo("  " + "  ".join(f"{key} {value}" for key, value in record.items()))
    if len(chosen.picks) > 10:
        typer.echo(f"  ... and {len(chosen.picks) - 10} more in {chosen.output}")
    if chosen.label_studio_tasks is not None:
        typer.echo(f"Label Studio tasks with pre-annotations: {chosen.label_studio_tasks} (owner-only: it holds the notes; "
                   "import it into the project)")


@app.command()
def schema() -> None:
    """Print the JSON Schema of config files (for editors: completion and checks while you write YAML)."""
    from clintune.config.json_schema import shipped_schema_text

    typer.echo(shipped_schema_text(), nl=False)


cache_app = typer.Typer(help="The tokenisation cache (token ids of your data, kept beside your runs). "
                        "Alone: how big $CLINTUNE_CACHE_DIR's cache is.", rich_markup_mode=None)
app.add_typer(cache_app, name="cache")


@cache_app.callback(invoke_without_command=True)
def cache_main(context: typer.Context) -> None:
    """The tokenisation cache: `clintune cache` alone says how big $CLINTUNE_CACHE_DIR's is."""
    if context.invoked_subcommand is None:
        cache_info(None)


@cache_app.command("info")
def cache_info(
    config: Annotated[Path | None, typer.Argument(help="Config whose runs' cache to measure (default: $CLINTUNE_CACHE_DIR).",
                                                  show_default=False)] = None,
    set_: SetOption = None,
) -> None:
    """How many tokenised splits the cache of a config's runs holds, and how big it is."""
    from clintune.api import tokenization_cache_size
    from clintune.config.loading import load_config

    cfg = load_config(config, set_ or []) if config is not None else None
    folder, entries, size = tokenization_cache_size(cfg)
    typer.echo(f"{folder}: {entries} tokenised split(s), {size / 1e6:.1f} MB" + ("" if folder.is_dir() else " (no cache yet)"))


@cache_app.command("clear")
def cache_clear(
    config: Annotated[Path | None, typer.Argument(help="Config whose runs' cache to clear (default: $CLINTUNE_CACHE_DIR).",
                                                  show_default=False)] = None,
    set_: SetOption = None,
) -> None:
    """Delete the cached tokenisations of a config's runs."""
    from clintune.api import clear_tokenization_cache
    from clintune.config.loading import load_config

    cfg = load_config(config, set_ or []) if config is not None else None
    folder, files, size = clear_tokenization_cache(cfg)
    typer.echo(f"removed {files} tokenised split(s), {size / 1e6:.1f} MB, from {folder}")


def _launch_torchrun(nproc: int) -> None:
    """Re-run this command under torchrun with ``nproc`` processes, and exit with its status."""
    import subprocess

    arguments = _without_option(sys.argv[1:], "--nproc")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "clintune", *arguments]
    logging.getLogger("clintune").info("starting: %s", " ".join(command[2:]))
    raise SystemExit(subprocess.call(command))


def _without_option(arguments: list[str], name: str) -> list[str]:
    """``arguments`` less ``name VALUE`` / ``name=VALUE``."""
    kept: list[str] = []
    skip_value = False
    for argument in arguments:
        if skip_value:
            skip_value = False
        elif argument == name:
            skip_value = True
        elif not argument.startswith(name + "="):
            kept.append(argument)
    return kept


def _interrupted_message(output_dir: Path) -> str:
    """What an interrupted training run left behind and the two ways on."""
    import shlex

    from transformers.trainer_utils import get_last_checkpoint

    from clintune.modeling.folder import has_checkpoints, work_dir_for

    if not has_checkpoints(output_dir):
        return ("\ninterrupted before the first checkpoint was written; nothing was kept and "
                f"{output_dir} was not touched. Run the same command again to start over.")
    last = get_last_checkpoint(str(work_dir_for(output_dir) / "checkpoints"))  # the one --resume continues from
    arguments = [a for a in sys.argv[1:] if a not in ("--overwrite", "--resume")]
    again = "clintune " + " ".join(shlex.quote(a) for a in arguments)
    return (f"\ninterrupted; the last checkpoint is kept in {last} and {output_dir} was not touched.\n"
            f"  continue it:  {again} --resume\n"
            f"  discard it:   {again} --overwrite")


def _command_line() -> str:
    import shlex

    return "clintune " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])


def _human_line(name: str, record: dict[str, Any]) -> str:
    """One tab-separated line per result (NER: per entity), each starting with the input it answers
    (``text 2``, ``line 14``, ``row 5``), so results stay matched to inputs when read or grepped."""
    if "entities" in record:
        if not record["entities"]:
            return f"{name}\tno entities"
        return "\n".join(
            f"{name}\t{e['label']}\t{e['start']}-{e['end']}\t{e['score']:.3f}\t{e['text']}" for e in record["entities"]
        )
    if "labels" in record:  # multi-label: every label over its threshold on one line, most probable first
        found = " ".join(f"{label}={record['scores'][label]:.3f} (>= {record['thresholds'][label]:.3g})"
                         for label in record["labels"]) or "no labels"
        line = f"{name}\t{found}"
        if "probabilities" in record:
            line += "\t" + " ".join(f"{k}={v:.3f}" for k, v in record["probabilities"].items())
        return line
    line = f"{name}\t{record['label']}\t{record['score']:.3f}"
    if "probabilities" in record:
        line += "\t" + " ".join(f"{k}={v:.3f}" for k, v in record["probabilities"].items())
    reason = record.get("decided_by")
    if reason:  # the rule, not the most probable class, chose the label: say so, with the probability that drove it
        line += f"\tby rule: P({reason['group']}) = {reason['group_probability']:.3f}, {reason['rule']}"
    return line


def main() -> None:
    """The ``clintune`` command: run the app, turning user errors into messages."""
    try:
        app()
    except ClintuneError as exc:
        if _verbose:
            import traceback

            typer.echo("clintune: the traceback below is for diagnosis; a library's message in it may quote your data, "
                       "so check it before sharing", err=True)
            typer.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
