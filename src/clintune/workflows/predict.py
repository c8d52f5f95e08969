"""``clintune predict``: labels or entities for raw texts, from the command line or a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clintune import guards
from clintune.data import TextExamples, describe_rows
from clintune.errors import DataError


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
