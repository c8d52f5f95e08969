"""``clintune predict``: labels or entities for raw texts, from the command line or a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clintune import guards
from clintune.data import TextExamples, describe_rows
from clintune.errors import DataError


def check_prediction_paths(model_dir: str | Path, input_path: str | Path | None, output_path: str | Path | None) -> None:
    """Refuse a prediction output that is, or would overwrite, the model folder or the input file (or folder)."""
    folder_input = input_path is not None and Path(input_path).is_dir()
    guards.check_outputs("predict", [guards.Input("--model", Path(model_dir), whole=True),
                                     guards.Input("--input", Path(input_path), whole=folder_input) if input_path is not None else None],
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


def result_record(result: Any, probabilities: bool = False) -> dict[str, Any]:
    """The JSON object ``clintune predict --json`` prints for one result: label, score (and every class's
    probability when asked), or the entities with their offsets."""
    if isinstance(result, list):
        return {"entities": [entity.to_dict() for entity in result]}
    record = result.to_dict()
    if not probabilities:
        del record["probabilities"]
    return record


def read_texts_for_prediction(model_dir: str | Path, input_path: str | Path, text_column: str | None = None) -> TextExamples:
    """Texts from a file (csv/tsv/jsonl/parquet, or plain text with one text per line)."""
    from clintune.artifacts import check_model_folder
    from clintune.config import CLASSIFICATION_FORMATS, FORMAT_BY_SUFFIX
    from clintune.data import PREDICT_HINTS, check_file, read_text, read_text_table

    path = Path(input_path)
    check_file(path, PREDICT_HINTS)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        lines = read_text(path).split("\n")
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
    _, config = check_model_folder(Path(model_dir))
    column = text_column or config.data.text_column
    data = read_text_table(path, fmt, column, config.data.label_column, require_labels=False, hints=PREDICT_HINTS)
    empty = [i for i, text in enumerate(data.texts) if not text.strip()]
    if empty:
        raise DataError(f"{path}: {len(empty)} empty text(s) in column {column!r} ({describe_rows(data, empty)})\n"
                        "  fix: remove those rows or fill them; every output line must answer one input row")
    return data


# --------------------------------------------------------------------------
# A folder of documents in (.txt, as brat keeps them); JSON lines or brat .ann files out


def predict_documents(
    model_dir: str | Path, input_dir: str | Path, batch_size: int | None = None, show_progress: bool = False,
    threads: int | None = None,
) -> list[tuple[Any, Any]]:
    """(``Document``, result) for every ``.txt`` document of a folder, in name order.

    NER: the document is split into sentences as training data is (see
    ``clintune.documents``) and the result is a list of ``Entity`` with
    character offsets into the whole ``.txt``. Classification: one
    ``Prediction`` for the whole document.
    """
    from dataclasses import replace

    from clintune.data import PREDICT_HINTS, check_file
    from clintune.documents import read_text_folder, sentence_bounds
    from clintune.prediction import Predictor

    folder = Path(input_dir)
    check_file(folder, PREDICT_HINTS, folder=True)
    documents = read_text_folder(folder)
    predictor = Predictor.from_folder(model_dir, batch_size=batch_size, show_progress=show_progress, threads=threads)
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


def write_brat_predictions(output_dir: str | Path, results: list[tuple[Any, Any]]) -> None:
    """Write ``NAME.ann`` (and a copy of ``NAME.txt``, which brat opens beside it) for every document.

    The folder must be new or empty: a folder of ``.ann`` files may hold
    someone's annotations, so it is never written into.
    """
    from clintune.documents import ann_text
    from clintune.errors import ClintuneError
    from clintune.files import publish, remove_stale, staging_dir_for

    target = Path(output_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ClintuneError(f"--output: {target} already exists and is not an empty folder; .ann files there may be "
                            "someone's annotations, so predictions are never written into it\n"
                            "  fix: choose a new folder for --output")
    if any(not isinstance(result, list) for _, result in results):
        raise ClintuneError("--format brat writes entities; this is a classification model\n"
                            "  fix: leave --format out to write one JSON line per document")
    staging = staging_dir_for(target)
    remove_stale(staging)
    staging.mkdir(parents=True)
    for document, entities in results:
        path = staging / f"{document.name}.ann"
        path.write_text(ann_text([(e.label, e.start, e.end) for e in entities], document.text), encoding="utf-8")
        path.with_suffix(".txt").write_bytes(document.text.encode("utf-8"))
    publish(staging, target)  # flushed, then put in place whole
