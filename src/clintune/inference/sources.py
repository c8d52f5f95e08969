"""Texts to predict, read in chunks so that memory does not grow with the input.

A source turns one input (a csv/tsv/jsonl file, a Parquet file or dataset
folder, a ``.txt`` file with one text a line) into ``TextChunk`` objects of a
fixed number of rows: where each row came from (its row or line number), the
``--id-column`` value when one is asked for, and the raw text cell as the file
holds it. Cells are not judged here: an empty or non-string text stays in its
chunk, at its row, and the caller decides (``data.on_empty``) what to do, so a
bad row can never shift the results of the rows after it.

Every source has ``chunks(size)`` and ``fingerprint()`` (a hash of what it
reads, which a resumed run must match); a new kind of input (a folder of
documents) is one more class with those two methods, registered in
``open_source``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from clintune.config.schema import Config, PreprocessingSection
from clintune.data.examples import PREDICT_HINTS, FixHints, preprocess_text
from clintune.data.readers import _missing_columns_message, check_file, jsonl_record, unreadable_table
from clintune.errors import DataError
from clintune.runtime.files import sha256_of

# Rows a chunk holds by default: small enough that a chunk's texts, encodings and results
# stay a few MB, large enough that length-sorting inside it still pads little.
DEFAULT_CHUNK_SIZE = 1000


@dataclass
class TextChunk:
    """Consecutive rows of an input: ``rows[i]``, ``ids[i]`` (or None) and ``texts[i]`` belong together."""

    index: int
    rows: list[Any]
    ids: list[Any] | None
    texts: list[Any]

    def __len__(self) -> int:
        return len(self.rows)


class TextSource(Protocol):
    """An input that yields its rows in chunks of a fixed size, always in the same order."""

    path: Path
    row_kind: str  # how a row is named in messages and output: "row", "line", "document"
    text_column: str | None
    id_column: str | None

    def pieces(self) -> Iterator[tuple[list[Any], list[Any] | None, list[Any]]]:
        """(rows, ids, texts) in file order, in pieces of any size."""
        ...

    def fingerprint(self) -> str:
        """A hash of everything read (content, not just names and dates)."""
        ...


def empty_text_steps(task_type: str, config: Config) -> PreprocessingSection | None:
    """The preprocessing ``text_problem`` applies for a model: a classifier's ``data.preprocessing``
    (a text it empties is empty, as in training); None for NER, which reads the text as it is."""
    return None if task_type == "ner" else config.data.preprocessing


def text_problem(value: Any, steps: PreprocessingSection | None) -> str | None:
    """Why a text cell cannot be predicted ("empty", "missing", "non-text"), or None when it can.

    ``steps``: the classification model's preprocessing (a text that it empties counts as
    empty, as in training); None for NER, which reads the text as it is.
    """
    if value is None or (isinstance(value, float) and value != value):
        return "missing"
    if not isinstance(value, str):
        return "non-text"
    if not (preprocess_text(value, steps) if steps is not None else value).strip():
        return "empty"
    return None


def chunks(source: TextSource, size: int) -> Iterator[TextChunk]:
    """The source's rows in chunks of exactly ``size`` rows (the last may be shorter)."""
    rows: list[Any] = []
    ids: list[Any] = []
    texts: list[Any] = []
    index = 0
    for piece_rows, piece_ids, piece_texts in source.pieces():
        rows += piece_rows
        texts += piece_texts
        if source.id_column is not None:
            ids += piece_ids or []
        while len(rows) >= size:
            yield TextChunk(index, rows[:size], ids[:size] if source.id_column else None, texts[:size])
            rows, ids, texts = rows[size:], ids[size:], texts[size:]
            index += 1
    if rows:
        yield TextChunk(index, rows, ids if source.id_column else None, texts)


def is_text_table(path: Path) -> bool:
    """Whether ``path`` is an input read by column (not a ``.txt`` file of lines)."""
    return path.suffix.lower() != ".txt"


def open_source(path: Path, text_column: str, id_column: str | None = None, hints: FixHints = PREDICT_HINTS) -> TextSource:
    """The source for a prediction input, by its suffix; a clear error for anything else."""
    from clintune.config.schema import CLASSIFICATION_FORMATS, FORMAT_BY_SUFFIX

    if path.is_dir():
        if any(path.glob("*.parquet")):
            return ParquetSource(path, text_column, id_column, hints)
        raise DataError(f"{path} is a folder without .parquet files\n"
                        "  fix: give a file (.txt, .csv, .tsv, .jsonl, .parquet) or a folder of .parquet files (a Parquet dataset)")
    check_file(path, hints)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        if id_column is not None:
            raise DataError(f"--id-column {id_column}: {path} is plain text (one text a line) and has no columns\n"
                            "  fix: drop --id-column (each result names its line number) or give a csv/jsonl/parquet file")
        return LinesSource(path)
    fmt = FORMAT_BY_SUFFIX.get(suffix)
    if fmt not in CLASSIFICATION_FORMATS:
        what = suffix or "a file without a suffix"
        kind = "CoNLL (word<TAB>tag lines) is labelled training data, not" if fmt == "conll" else f"{what} is not"
        raise DataError(
            f"{path}: {kind} a prediction input\n"
            "  fix: give raw texts as .txt (one per line), .csv, .tsv, .jsonl or .parquet; "
            "to score labelled data use 'clintune eval --data FILE'"
        )
    if fmt == "jsonl":
        return JsonLinesSource(path, text_column, id_column, hints)
    if fmt == "parquet":
        return ParquetSource(path, text_column, id_column, hints)
    return DelimitedSource(path, text_column, id_column, hints, "," if fmt == "csv" else "\t")


def _check_columns(path: Path, columns: list[str], text_column: str, id_column: str | None, hints: FixHints,
                   first_row: bool = False) -> None:
    """The text and id columns are there; ``first_row``: ``columns`` is a csv/tsv file's first row (see
    ``_missing_columns_message``: a row that names none of them may be data, and is not shown)."""
    needed = [c for c in (text_column, id_column) if c is not None]
    fix = hints if text_column not in columns else FixHints(columns="pass --id-column with the right name")
    message = _missing_columns_message(str(path), needed, columns, fix, first_row=first_row)
    if message:
        raise DataError(message)


def _utf8_error(path: Path, exc: UnicodeDecodeError) -> DataError:
    return DataError(f"{path}: not UTF-8 text ({exc.reason} at a byte of value 0x{exc.object[exc.start]:02x})\n"
                     "  fix: re-save the file as UTF-8 (Excel: 'CSV UTF-8')")


class LinesSource:
    """A ``.txt`` file: one text a line; blank lines separate nothing and are skipped."""

    row_kind = "line"
    text_column = None
    id_column = None

    def __init__(self, path: Path) -> None:
        self.path = path

    def pieces(self) -> Iterator[tuple[list[Any], list[Any] | None, list[Any]]]:
        rows: list[int] = []
        texts: list[str] = []
        try:
            with open(self.path, encoding="utf-8-sig", newline=None) as handle:
                for number, line in enumerate(handle, start=1):
                    line = line.rstrip("\n")
                    if line.strip():
                        rows.append(number)
                        texts.append(line)
                    if len(rows) >= 4096:
                        yield rows, None, texts
                        rows, texts = [], []
        except UnicodeDecodeError as exc:
            raise _utf8_error(self.path, exc) from exc
        if rows:
            yield rows, None, texts

    def fingerprint(self) -> str:
        return sha256_of(self.path)


class DelimitedSource:
    """A csv or tsv file with a header; cells are read as text (an id ``0012`` stays ``0012``)."""

    row_kind = "row"

    def __init__(self, path: Path, text_column: str, id_column: str | None, hints: FixHints, separator: str) -> None:
        self.path, self.text_column, self.id_column, self.separator = path, text_column, id_column, separator
        header = self._reader(nrows=0)
        _check_columns(path, [str(c) for c in header.columns], text_column, id_column, hints, first_row=True)

    def _reader(self, **options: Any) -> Any:
        import pandas as pd

        try:
            with open(self.path, encoding="utf-8-sig", newline="") as handle:
                return pd.read_csv(handle, sep=self.separator, dtype=str, keep_default_na=False, **options)
        except UnicodeDecodeError as exc:
            raise _utf8_error(self.path, exc) from exc
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
            raise unreadable_table(self.path, self._format, exc) from exc

    def pieces(self) -> Iterator[tuple[list[Any], list[Any] | None, list[Any]]]:
        import pandas as pd

        columns = [c for c in (self.text_column, self.id_column) if c is not None]
        first = 2  # the header is row 1, as a spreadsheet shows it
        try:
            with open(self.path, encoding="utf-8-sig", newline="") as handle:
                reader = pd.read_csv(handle, sep=self.separator, dtype=str, keep_default_na=False, usecols=columns, chunksize=4096)
                for frame in reader:
                    rows = list(range(first, first + len(frame)))
                    first += len(frame)
                    ids = frame[self.id_column].tolist() if self.id_column else None
                    yield rows, ids, frame[self.text_column].tolist()
        except UnicodeDecodeError as exc:
            raise _utf8_error(self.path, exc) from exc
        except (pd.errors.ParserError, ValueError) as exc:
            raise unreadable_table(self.path, self._format, exc) from exc

    @property
    def _format(self) -> str:
        return "csv" if self.separator == "," else "tsv"

    def fingerprint(self) -> str:
        return sha256_of(self.path)


class JsonLinesSource:
    """A JSON-lines file, one object a line; values keep their JSON types (a number id stays a number)."""

    row_kind = "line"

    def __init__(self, path: Path, text_column: str, id_column: str | None, hints: FixHints) -> None:
        self.path, self.text_column, self.id_column = path, text_column, id_column
        first = next(self._records(), None)
        if first is None:
            raise DataError(f"{path}: no JSON records found")
        _check_columns(path, list(first[1]), text_column, id_column, hints)

    def _records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        try:
            with open(self.path, encoding="utf-8-sig", newline=None) as handle:
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        yield number, jsonl_record(self.path, number, line)
        except UnicodeDecodeError as exc:
            raise _utf8_error(self.path, exc) from exc

    def pieces(self) -> Iterator[tuple[list[Any], list[Any] | None, list[Any]]]:
        rows: list[int] = []
        ids: list[Any] = []
        texts: list[Any] = []
        for number, record in self._records():
            rows.append(number)
            texts.append(record.get(self.text_column))
            if self.id_column is not None:
                ids.append(record.get(self.id_column))
            if len(rows) >= 4096:
                yield rows, ids if self.id_column else None, texts
                rows, ids, texts = [], [], []
        if rows:
            yield rows, ids if self.id_column else None, texts

    def fingerprint(self) -> str:
        return sha256_of(self.path)


class ParquetSource:
    """A Parquet file or a folder of them (a Parquet dataset), read by pyarrow's dataset scanner,
    only the columns needed, a record batch at a time."""

    row_kind = "row"

    def __init__(self, path: Path, text_column: str, id_column: str | None, hints: FixHints) -> None:
        self.path, self.text_column, self.id_column = path, text_column, id_column
        schema = self._dataset().schema
        _check_columns(path, list(schema.names), text_column, id_column, hints)
        self.id_type = schema.field(id_column).type if id_column else None

    def _files(self) -> list[Path]:
        if not self.path.is_dir():
            return [self.path]
        hidden = (".", "_")  # Spark's _SUCCESS, staging folders
        return sorted(p for p in self.path.rglob("*.parquet")
                      if not any(part.startswith(hidden) for part in p.relative_to(self.path).parts))

    def _dataset(self) -> Any:
        import pyarrow.dataset as ds

        try:
            return ds.dataset([str(p) for p in self._files()], format="parquet")
        except (OSError, ValueError) as exc:
            raise unreadable_table(self.path, "parquet", exc) from exc

    def pieces(self) -> Iterator[tuple[list[Any], list[Any] | None, list[Any]]]:
        columns = [c for c in (self.text_column, self.id_column) if c is not None]
        first = 2  # as data.py numbers parquet rows: the header is row 1
        batches = self._dataset().to_batches(columns=columns, batch_size=4096)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (OSError, ValueError) as exc:  # a damaged file of a dataset, found when its turn comes
                raise unreadable_table(self.path, "parquet", exc) from exc
            rows = list(range(first, first + batch.num_rows))
            first += batch.num_rows
            ids = batch.column(self.id_column).to_pylist() if self.id_column else None
            yield rows, ids, batch.column(self.text_column).to_pylist()

    def fingerprint(self) -> str:
        return sha256_of(self.path) if self.path.is_file() else sha256_of(self.path, self._files())
