"""``clintune predict``: labels or entities for raw texts, from the command line or a whole corpus.

A file is read twice, a chunk at a time, never whole: a first pass counts its
rows and finds those whose text cannot be predicted (empty, missing, not
text), so that ``data.on_empty: error`` stops before any work and the progress
bar knows the total; the second pass predicts chunk by chunk (sorted by length
within a chunk) and hands each chunk's records to the output as it finishes
(``clintune.inference.sinks.ChunkedOutput``: published atomically at the end, resumable
with ``resume=True``). Memory therefore depends on the chunk size, not on the
input's size. ``engine="ray"`` runs the same model over a Parquet dataset on a
Ray cluster instead (``clintune.inference.on_ray``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clintune.config.schema import PreprocessingSection
from clintune.data.examples import TextExamples
from clintune.errors import MAX_LISTED, ClintuneError, DataError, listed
from clintune.inference.sinks import check_prediction_output, result_record
from clintune.inference.sources import DEFAULT_CHUNK_SIZE, TextSource, chunks, empty_text_steps, open_source, text_problem
from clintune.runtime import guards
from clintune.runtime.allocator import allocator_in_use
from clintune.runtime.files import sha256_of
from clintune.runtime.progress import progress_bar

if TYPE_CHECKING:
    from clintune.modeling.folder import ModelFolder

logger = logging.getLogger(__name__)

__all__ = ["PredictionRun", "check_prediction_paths", "predict", "predict_file", "read_texts_for_prediction", "result_record"]


def check_prediction_paths(model_dir: str | Path, input_path: str | Path | None, output_path: str | Path | None) -> None:
    """Refuse a prediction output that is, or would overwrite, the model folder or the input file (or folder),
    or an existing file that is not clintune's own prediction file."""
    folder_input = input_path is not None and Path(input_path).is_dir()
    guards.check_outputs("predict", [guards.Input("--model", Path(model_dir), whole=True),
                                     guards.Input("--input", Path(input_path), whole=folder_input) if input_path is not None else None],
                         [guards.Output("--output", Path(output_path)) if output_path is not None else None])
    if output_path is not None:
        check_prediction_output(Path(output_path))


def predict(
    model_dir: str | Path, texts: list[str], *, batch_size: int | None = None, show_progress: bool = False,
    threads: int | None = None, on_empty: str | None = None, trust_remote_code: bool = False,
) -> list[Any]:
    """Predictions for raw texts: a ``Prediction`` per text, or a list of ``Entity`` for NER.

    A text that is empty, blank, not a string, or emptied by the model's preprocessing (``Doctor:``
    alone, once speaker tags are removed) has nothing to label: by ``on_empty`` (default: the model's
    ``data.on_empty``) a ``DataError`` naming its position (``"error"``), or None in its place
    (``"drop"``), so results stay aligned with ``texts``. Never a label for an empty note.
    ``trust_remote_code``: let a folder that ships Python code of its own run it; without it such a
    folder is refused (``clintune.modeling.folder.check_remote_code``).
    """
    from clintune.inference.predictor import Predictor

    predictor = Predictor.from_folder(model_dir, batch_size=batch_size, show_progress=show_progress, threads=threads,
                                      trust_remote_code=trust_remote_code)
    steps = empty_text_steps(predictor.encoder.task_type, predictor.config)
    rule = empty_rule(on_empty, predictor.config)
    problems = {number: why for number, text in enumerate(texts, start=1) if (why := text_problem(text, steps))}
    if problems and rule == "error":
        shown = listed([f"text {number} ({why})" for number, why in problems.items()])
        raise DataError(f"{len(problems)} of {len(texts)} text(s) have nothing to predict: {shown}\n"
                        "  fix: give every text some words (an empty note has no label), or skip them: "
                        "on_empty='drop' (--on-empty drop)")
    kept = [text for number, text in enumerate(texts, start=1) if number not in problems]
    results = iter(_results(predictor, kept) if kept else [])
    return [None if number in problems else next(results) for number in range(1, len(texts) + 1)]


def empty_rule(on_empty: str | None, config: Any) -> str:
    """``on_empty`` as asked, else the model's ``data.on_empty``; ``error`` or ``drop``."""
    rule = on_empty or config.data.on_empty
    if rule not in ("error", "drop"):
        raise ClintuneError(f"--on-empty {rule}: must be 'error' or 'drop'")
    return rule


def _results(predictor: Any, texts: list[str]) -> list[Any]:
    if predictor.encoder.task_type == "ner":
        return predictor.extract_entities(texts)
    return predictor.classify(texts)


# -- rows whose text cannot be predicted ------------------------------------


@dataclass
class InputScan:
    """What the first pass over an input found: row counts, unpredictable rows, id types."""

    rows: int = 0
    predictable_per_chunk: list[int] = field(default_factory=list)
    problems: dict[str, list[Any]] = field(default_factory=dict)  # reason -> the first rows with it
    problem_counts: dict[str, int] = field(default_factory=dict)
    non_text_types: set[str] = field(default_factory=set)
    id_types: dict[str, Any] = field(default_factory=dict)  # python type name -> the first row with it
    row_type: type = int

    @property
    def predictable(self) -> int:
        return sum(self.predictable_per_chunk)

    @property
    def skipped(self) -> int:
        return sum(self.problem_counts.values())

    def describe_problems(self, source: TextSource) -> str:
        """'1 empty text(s) in column 'x' (row 3); 2 missing text(s) (rows 5, 9)' for messages."""
        column = f" in column {source.text_column!r}" if source.text_column else ""
        parts = []
        for reason in ("empty", "missing", "non-text"):
            count = self.problem_counts.get(reason, 0)
            if not count:
                continue
            shown = self.problems[reason]
            kind = source.row_kind
            where = (f"{kind}s " if count > 1 else f"{kind} ") + ", ".join(str(r) for r in shown)
            where += f" and {count - len(shown)} more" if count > len(shown) else ""
            what = "non-text value(s) (" + ", ".join(sorted(self.non_text_types)) + ")" if reason == "non-text" else f"{reason} text(s)"
            parts.append(f"{count} {what}{column} ({where})")
        return "; ".join(parts)


def scan_input(source: TextSource, chunk_size: int, steps: PreprocessingSection | None) -> InputScan:
    """One pass over ``source`` (see ``InputScan``); memory stays that of one chunk."""
    scan = InputScan()
    for chunk in chunks(source, chunk_size):
        if chunk.index == 0 and chunk.rows:
            scan.row_type = type(chunk.rows[0])
        good = 0
        for position, (row, value) in enumerate(zip(chunk.rows, chunk.texts)):
            problem = text_problem(value, steps)
            if problem is None:
                good += 1
            else:
                scan.problem_counts[problem] = scan.problem_counts.get(problem, 0) + 1
                rows = scan.problems.setdefault(problem, [])
                if len(rows) < MAX_LISTED:
                    rows.append(row)
                if problem == "non-text":
                    scan.non_text_types.add(type(value).__name__)
            if chunk.ids is not None and chunk.ids[position] is not None:
                scan.id_types.setdefault(type(chunk.ids[position]).__name__, row)
        scan.rows += len(chunk)
        scan.predictable_per_chunk.append(good)
    return scan


# -- a whole file ------------------------------------------------------------


@dataclass
class PredictionRun:
    """What ``predict_file`` did: rows predicted and skipped, chunks taken over from an interrupted run."""

    output: Path | None
    predicted: int
    skipped: int
    chunks: int
    resumed_chunks: int
    seconds: float


RESERVED_FIELDS = ("label", "score", "probabilities", "entities", "labels", "scores", "thresholds")


def predict_file(
    model_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path | None = None,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    probabilities: bool = False,
    batch_size: int | None = None,
    threads: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    resume: bool = False,
    on_empty: str | None = None,
    show_progress: bool = False,
    on_records: Callable[[list[dict[str, Any]]], None] | None = None,
    trust_remote_code: bool = False,
) -> PredictionRun:
    """Predict every row of a file, a chunk at a time, into ``output_path`` (JSON lines, or ``.parquet``).

    Each record names its input row (``row``/``line`` number) and, with ``id_column``, that
    column's value; rows whose text is empty, missing or not text are an error or skipped
    (``on_empty``, default: the model's ``data.on_empty``), never answered by another row's
    result. The output appears only when complete; ``resume`` continues an interrupted run of
    the same command after its last finished chunk. Without ``output_path`` each chunk's
    records go to ``on_records``. ``trust_remote_code``: as for ``predict``.
    """
    from clintune.modeling.folder import check_remote_code, read_model_folder

    if chunk_size < 1:
        raise ClintuneError("--chunk-size must be at least 1")
    if resume and output_path is None:
        raise ClintuneError("--resume needs --output: only a run that writes a file keeps finished chunks to resume from")
    if output_path is not None and Path(output_path).is_dir():
        raise ClintuneError(f"--output {output_path} is a folder\n  fix: give a file name (OUT.jsonl, or OUT.parquet for Parquet)")
    folder = read_model_folder(Path(model_dir))
    check_remote_code(folder, trust_remote_code)  # before the input is read, not after
    config = folder.config
    source = open_source(Path(input_path), text_column or config.data.text_column, id_column)
    rule = empty_rule(on_empty, config)
    if id_column in (source.row_kind, *RESERVED_FIELDS):
        raise ClintuneError(f"--id-column {id_column}: clashes with the output field of that name\n"
                            "  fix: rename that column in the input")
    steps = empty_text_steps(folder.encoder.task_type, config)
    scan = scan_input(source, chunk_size, steps)
    check_scan(scan, source, rule)

    from clintune.inference.predictor import Predictor

    predictor = Predictor.from_model_folder(folder, batch_size=batch_size, threads=threads, trust_remote_code=trust_remote_code)
    out = None
    if output_path is not None:
        from clintune.inference.sinks import ChunkedOutput, output_format, record_schema

        output = Path(output_path)
        schema = None
        if output_format(output) == "parquet":
            keys = [(source.row_kind, _arrow_type(scan.row_type))]
            if id_column is not None:
                keys.append((id_column, _id_type(source, scan)))
            schema = record_schema(keys, folder.encoder.task_type, list(folder.encoder.classes), probabilities)
        options = {"text_column": source.text_column, "id_column": id_column, "probabilities": probabilities,
                   "chunk_size": chunk_size, "batch_size": predictor.batch_size, "on_empty": rule, "format": output_format(output)}
        state = {"input": source.fingerprint(), "model": sha256_of(folder.path), "options": options}
        out = ChunkedOutput(output, state, resume, schema)
        if resume and not out.resumed:
            logger.info("--resume: no finished chunk to continue from in %s; starting at the first", out.partial)
    start = out.resumed if out is not None else 0
    if start:
        logger.info("resuming after %d finished chunk(s) of %d", start, len(scan.predictable_per_chunk))
    started = time.perf_counter()
    progress = progress_bar(scan.predictable, show=show_progress, done=sum(scan.predictable_per_chunk[:start]))
    try:
        for chunk in chunks(source, chunk_size):
            if chunk.index < start:
                continue
            good = [i for i, text in enumerate(chunk.texts) if text_problem(text, steps) is None]
            results = _results(predictor, [chunk.texts[i] for i in good]) if good else []
            records = []
            for i, result in zip(good, results):
                key = {source.row_kind: chunk.rows[i]}
                if chunk.ids is not None:
                    key[id_column] = chunk.ids[i]  # type: ignore[index]
                records.append({**key, **result_record(result, probabilities)})
            if out is not None:
                out.write(chunk.index, records)
            elif on_records is not None:
                on_records(records)
            progress.update(len(good))
    finally:
        progress.close()
    seconds = time.perf_counter() - started
    if out is not None:
        out.publish(len(scan.predictable_per_chunk))
    done = scan.predictable - sum(scan.predictable_per_chunk[:start])
    logger.info("%d text(s) predicted in %.1f s (%.1f texts/s); memory allocator: %s%s", done, seconds,
                done / seconds if seconds else 0.0, allocator_in_use(), f"; {scan.skipped} row(s) skipped" if scan.skipped else "")
    return PredictionRun(Path(output_path) if output_path else None, scan.predictable, scan.skipped,
                         len(scan.predictable_per_chunk), start, seconds)


def check_scan(scan: InputScan, source: TextSource, rule: str) -> None:
    """Stop before any prediction when the input has rows without text (``rule`` ``error``; ``drop`` warns and goes
    on) or nothing to predict at all. Shared with ``select``, which scans its pool the same way."""
    if scan.skipped:
        details = scan.describe_problems(source)
        if rule == "error":
            raise DataError(f"{source.path}: {details}\n"
                            "  fix: fill or remove those rows, or pass --on-empty drop to skip them "
                            "(every result names its row, so none moves to another row)")
        logger.warning("%s: skipped (--on-empty drop): %s", source.path, details)
    if not scan.predictable:
        raise DataError(f"{source.path}: no text to predict ({scan.rows} row(s) read)")


def _arrow_type(kind: type) -> Any:
    import pyarrow as pa

    return pa.int64() if kind is int else pa.string()


def _id_type(source: TextSource, scan: InputScan) -> Any:
    """The id column's Parquet type: the input's own (Parquet), text (csv/tsv), or the JSON values' one type."""
    import pyarrow as pa

    known = getattr(source, "id_type", None)
    if known is not None:
        return known
    kinds = set(scan.id_types)
    if kinds <= {"int"}:
        return pa.int64() if kinds else pa.string()
    if kinds <= {"int", "float"}:
        return pa.float64()
    if kinds == {"str"}:
        return pa.string()
    if kinds == {"bool"}:
        return pa.bool_()
    listed = ", ".join(f"{kind} ({source.row_kind} {row})" for kind, row in sorted(scan.id_types.items(), key=lambda kv: kv[1]))
    raise DataError(f"{source.path}: the id column {source.id_column!r} mixes value types: {listed}\n"
                    "  fix: give every row an id of one type (all numbers or all text) for a Parquet output, or write JSON lines")


def read_texts_for_prediction(model_dir: str | Path, input_path: str | Path, text_column: str | None = None) -> TextExamples:
    """Every text of a file (csv/tsv/jsonl/parquet, or plain text with one text per line), read whole.

    For small inputs and notebooks; ``predict_file`` reads any size in chunks. An empty or
    non-text row is an error naming the row.
    """
    from clintune.modeling.folder import read_model_folder

    folder = read_model_folder(Path(model_dir))
    encoder, config = folder.encoder, folder.config
    source = open_source(Path(input_path), text_column or config.data.text_column)
    steps = empty_text_steps(encoder.task_type, config)
    scan = scan_input(source, DEFAULT_CHUNK_SIZE, steps)
    check_scan(scan, source, "error")
    texts, rows = [], []
    for chunk in chunks(source, DEFAULT_CHUNK_SIZE):
        texts += chunk.texts
        rows += chunk.rows
    return TextExamples(texts, None, rows, str(input_path), source.row_kind)


# --------------------------------------------------------------------------
# A folder of documents in (.txt, as brat keeps them); JSON lines or brat .ann files out


def predict_documents(
    model_dir: str | Path | ModelFolder, input_dir: str | Path, *, batch_size: int | None = None, show_progress: bool = False,
    threads: int | None = None, trust_remote_code: bool = False,
) -> list[tuple[Any, Any]]:
    """(``Document``, result) for every ``.txt`` document of a folder, in name order.

    NER: the document is split into sentences as training data is (see
    ``clintune.data.documents``) and the result is a list of ``Entity`` with
    character offsets into the whole ``.txt``. Classification: one
    ``Prediction`` for the whole document. ``trust_remote_code``: as for ``predict``. ``model_dir`` may be a
    folder already read (``read_model_folder``).
    """
    from dataclasses import replace

    from clintune.data.documents import read_text_folder
    from clintune.data.examples import PREDICT_HINTS
    from clintune.data.readers import check_file
    from clintune.data.sentences import sentence_bounds
    from clintune.inference.predictor import Predictor

    folder = Path(input_dir)
    check_file(folder, PREDICT_HINTS, folder=True)
    documents = read_text_folder(folder)
    predictor = Predictor.from_model_folder(_model_folder(model_dir), batch_size=batch_size, show_progress=show_progress,
                                            threads=threads, trust_remote_code=trust_remote_code)
    if predictor.encoder.task_type != "ner":
        return list(zip(documents, predictor.classify([d.text for d in documents])))
    split = predictor.config.data.split_sentences
    pieces = [(index, start, end) for index, document in enumerate(documents)
              for start, end in (sentence_bounds(document.text) if split else [(0, len(document.text))])]
    found = predictor.extract_entities([documents[index].text[start:end] for index, start, end in pieces])
    entities: list[list[Any]] = [[] for _ in documents]
    for (index, start, _), sentence_entities in zip(pieces, found):
        entities[index] += [replace(e, start=e.start + start, end=e.end + start) for e in sentence_entities]
    return list(zip(documents, entities))


def _model_folder(model: str | Path | ModelFolder) -> ModelFolder:
    """``model`` as a folder read and checked: as given when already read, else read now."""
    from clintune.modeling.folder import ModelFolder, read_model_folder

    return model if isinstance(model, ModelFolder) else read_model_folder(Path(model))


_BRAT_NEEDS_NER = ("--format brat writes entities; this is a classification model\n"
                   "  fix: leave --format out to write one JSON line per document")


def check_brat_output(output_dir: str | Path, model_dir: str | Path | ModelFolder | None = None) -> None:
    """Refuse a ``--format brat`` output that is not a new or empty folder, or a model (a path, or a folder
    already read) that finds no entities.

    Called before any prediction (a refusal after predicting a whole corpus wastes the run) and
    again when writing."""
    target = Path(output_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ClintuneError(f"--output: {target} already exists and is not an empty folder; .ann files there may be "
                            "someone's annotations, so predictions are never written into it\n"
                            "  fix: choose a new folder for --output")
    if model_dir is not None and _model_folder(model_dir).encoder.task_type != "ner":
        raise ClintuneError(_BRAT_NEEDS_NER)


def write_brat_predictions(output_dir: str | Path, results: list[tuple[Any, Any]]) -> None:
    """Write ``NAME.ann`` (and a copy of ``NAME.txt``, which brat opens beside it) for every document.

    The folder must be new or empty: a folder of ``.ann`` files may hold
    someone's annotations, so it is never written into.
    """
    from clintune.data.tagging import ann_text
    from clintune.runtime.files import PRIVATE_FILE, make_private_dirs, publish, remove_stale, staging_dir_for

    target = Path(output_dir)
    check_brat_output(target)
    if any(not isinstance(result, list) for _, result in results):
        raise ClintuneError(_BRAT_NEEDS_NER)
    staging = staging_dir_for(target)
    remove_stale(staging)
    make_private_dirs(staging)  # the documents' text: owner-only, like every file that quotes a note
    for document, entities in results:
        path = staging / f"{document.name}.ann"
        path.write_text(ann_text([(e.label, e.start, e.end) for e in entities], document.text), encoding="utf-8")
        path.with_suffix(".txt").write_bytes(document.text.encode("utf-8"))
        for written in (path, path.with_suffix(".txt")):  # in an owner-only folder meanwhile; flushed once, by publish
            os.chmod(written, PRIVATE_FILE)
    publish(staging, target)  # flushed, then put in place whole


@dataclass(frozen=True)
class PredictRequest:
    """What ``clintune predict`` is asked: texts (``texts``) or a file or folder (``input_path``), and how."""

    model_dir: Path
    texts: list[str] | None = None
    input_path: Path | None = None
    output_path: Path | None = None
    output_format: str = "jsonl"  # or brat: NER on a folder of documents, NAME.ann beside a copy of NAME.txt
    text_column: str | None = None
    id_column: str | None = None
    probabilities: bool = False
    resume: bool = False
    chunk_size: int = DEFAULT_CHUNK_SIZE
    on_empty: str | None = None
    engine: str = "local"  # or ray: a Parquet dataset on a Ray cluster
    workers: int | None = None
    batch_size: int | None = None
    threads: int | None = None
    show_progress: bool = False
    trust_remote_code: bool = False


@dataclass
class PredictOutcome:
    """What a ``PredictRequest`` did. ``kind``: ``texts`` (``records``, one per text answered, ``skipped`` their
    numbers left out), ``file`` (``run``; records went to ``on_records`` or ``output_path``), ``documents``
    (``records`` one per document, or ``written`` .ann files) or ``ray`` (``written`` predictions)."""

    kind: str
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    written: int = 0
    run: PredictionRun | None = None


def run_predict(request: PredictRequest, on_records: Callable[[list[dict[str, Any]]], None] | None = None) -> PredictOutcome:
    """``clintune predict``: route the request to texts, a file (a chunk at a time; each chunk's records to
    ``on_records`` when there is no output file), a folder of documents, or Ray, and say what was done."""
    r = request
    if bool(r.texts) == bool(r.input_path):
        raise ClintuneError("predict: give either --text (one or more) or --input FILE")
    if r.engine not in ("local", "ray"):
        raise ClintuneError(f"--engine {r.engine}: must be 'local' or 'ray'")
    check_prediction_paths(r.model_dir, r.input_path, r.output_path)
    if (r.input_path is not None and _is_document_folder(r.input_path)) or r.output_format != "jsonl":
        return _predict_document_folder(r)
    if r.engine == "ray":
        from clintune.inference.on_ray import predict_parquet_on_ray

        if r.input_path is None or r.output_path is None:
            raise ClintuneError("--engine ray reads --input (Parquet) and writes --output (a Parquet dataset folder); give both")
        written = predict_parquet_on_ray(r.model_dir, r.input_path, r.output_path, text_column=r.text_column,
                                         id_column=r.id_column, probabilities=r.probabilities, batch_size=r.batch_size,
                                         threads=r.threads, workers=r.workers, on_empty=r.on_empty, chunk_size=r.chunk_size,
                                         trust_remote_code=r.trust_remote_code)
        return PredictOutcome("ray", written=written)
    if r.input_path is None:
        results = predict(r.model_dir, list(r.texts or []), batch_size=r.batch_size, threads=r.threads, on_empty=r.on_empty,
                          trust_remote_code=r.trust_remote_code)
        skipped = [number for number, result in enumerate(results, start=1) if result is None]
        records = [{"text": number} | result_record(result, r.probabilities)
                   for number, result in enumerate(results, start=1) if result is not None]
        return PredictOutcome("texts", records=records, skipped=skipped)
    run = predict_file(r.model_dir, r.input_path, r.output_path, text_column=r.text_column, id_column=r.id_column,
                       probabilities=r.probabilities, batch_size=r.batch_size, threads=r.threads, chunk_size=r.chunk_size,
                       resume=r.resume, on_empty=r.on_empty, show_progress=r.show_progress,
                       on_records=None if r.output_path is not None else on_records, trust_remote_code=r.trust_remote_code)
    return PredictOutcome("file", run=run, written=run.predicted)


def _is_document_folder(path: Path) -> bool:
    """A folder of documents (``.txt``), not a Parquet dataset folder."""
    return path.is_dir() and not any(path.rglob("*.parquet"))


def _predict_document_folder(r: PredictRequest) -> PredictOutcome:
    """``predict --input FOLDER``: one result per .txt document; ``--format brat`` writes .ann files."""
    if r.output_format not in ("jsonl", "brat"):
        raise ClintuneError(f"--format: {r.output_format!r} is not an output format; choose jsonl or brat")
    if r.input_path is None or not r.input_path.is_dir():
        raise ClintuneError("--format brat: give --input FOLDER, a folder of NAME.txt documents")
    if r.output_format == "brat" and r.output_path is None:
        raise ClintuneError("--format brat: give --output FOLDER, a new folder for the .ann files")
    model = _model_folder(r.model_dir)  # read once, for the brat check and the predictor
    if r.output_format == "brat":
        check_brat_output(r.output_path, model)
    results = predict_documents(model, r.input_path, batch_size=r.batch_size, show_progress=r.show_progress,
                                threads=r.threads, trust_remote_code=r.trust_remote_code)
    if r.output_format == "brat":
        assert r.output_path is not None
        write_brat_predictions(r.output_path, results)
        return PredictOutcome("documents", written=len(results))
    records = [{"document": document.name, **result_record(result, r.probabilities)} for document, result in results]
    if r.output_path is not None:
        from clintune.runtime.files import write_jsonl

        write_jsonl(r.output_path, records, private=True)
        return PredictOutcome("documents", written=len(records))
    return PredictOutcome("documents", records=records)
