"""Data readers, text preprocessing and the checks that run before training.

Classification files (csv, tsv, jsonl, parquet) become ``TextExamples``;
NER files (CoNLL ``token<TAB>tag`` or jsonl with token/tag lists) become
``TaggedSentences``. Every problem names the file, the row or sentence and
what to do about it, never the text or cells of a row (label values only when
short and few: ``clintune.data.labels.shown_labels``). Row numbers follow the
spreadsheet view (header = row 1) for csv/tsv/parquet and the line number for
jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clintune.config.schema import CLASSIFICATION_FORMATS, Config
from clintune.data.checks import check_tagged, check_texts
from clintune.data.examples import (
    CONFIG_HINTS,
    NER_COLUMN_HINTS,
    Examples,
    FixHints,
    TaggedSentences,
    TextExamples,
    describe_rows,
)
from clintune.errors import DataError


def read_split(config: Config, path: str, require_labels: bool = True, hints: FixHints = CONFIG_HINTS) -> Examples:
    """Read one data file according to the config's format and columns; ``hints`` word the fixes in errors.

    Texts come back as the file holds them; preprocessing is applied later,
    once, where they become model input (see :func:`preprocess_text`).
    """
    fmt = config.data_format(path)
    file_path = Path(path)
    check_file(file_path, hints, folder=fmt == "brat")
    _check_readable_format(file_path, fmt, config)
    if config.task.type == "ner":
        if fmt == "brat" or fmt == "spans" or (fmt == "jsonl" and _holds_span_records(file_path)):
            data = read_documents(file_path, fmt, config)
        elif fmt == "conll":
            data = read_conll(file_path)
        else:
            data = read_ner_jsonl(file_path, config.data.tokens_column, config.data.tags_column, require_labels)
        return check_tagged(data, config, hints)
    if config.task.type == "multilabel":
        return check_texts(read_label_set_table(file_path, fmt, config, require_labels, hints), config, hints)
    data = read_text_table(file_path, fmt, config.data.text_column, config.data.label_column, require_labels, hints,
                           config.data.group_column)
    if config.labels.map and data.labels is not None:
        data.labels = [config.labels.map.get(label, label) for label in data.labels]
    return check_texts(data, config, hints)


SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")


def _check_readable_format(path: Path, fmt: str, config: Config) -> None:
    """A data error for a file this task cannot read: a spreadsheet, or the other task's format."""
    if path.suffix.lower() in SPREADSHEET_SUFFIXES:
        raise DataError(f"{path}: a spreadsheet ({path.suffix}); clintune reads csv, tsv, jsonl or parquet\n"
                        "  fix: save the sheet as CSV (UTF-8) and point the path at that file")
    if config.task.type != "ner" and fmt not in CLASSIFICATION_FORMATS:
        raise DataError(f"{path}: {fmt} is NER data (tokens and tags), and this is a {config.task.type} "
                        f"classification model or config, which reads {', '.join(CLASSIFICATION_FORMATS)}\n"
                        "  fix: give a table of texts and labels, or a NER model for this file")


def read_documents(path: Path, fmt: str, config: Config) -> TaggedSentences:
    """A brat folder or a span export (doccano / Label Studio) as BIO sentences (see ``clintune.data.documents``)."""
    from clintune.data.documents import read_brat_folder, read_span_records
    from clintune.data.tagging import tag_documents

    if fmt == "brat":
        documents, report = read_brat_folder(path)
    else:
        documents, report = read_span_records(path, config.data.group_column)
    classes = config.labels.classes
    allowed = None if classes is None else {c[2:] for c in classes if c != "O"}
    tagged = tag_documents(documents, report, config.labels.map, allowed, config.data.overlapping_spans,
                           config.data.split_sentences)
    if not tagged.tokens:
        raise DataError(f"{path}: the documents hold no words")
    return TaggedSentences(tagged.tokens, tagged.tags, tagged.rows, str(path), "sentence", groups=tagged.groups,
                           notes=report.notes())


def _holds_span_records(path: Path) -> bool:
    """Whether a .json/.jsonl NER file holds documents with spans (doccano, Label Studio) rather than token lists."""
    from clintune.data.documents import is_span_record

    with path.open(encoding="utf-8-sig") as handle:
        head = handle.read(1 << 16).lstrip()
    if head.startswith("["):
        return True
    first = head.split("\n", 1)[0]
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and "tokens" not in record and is_span_record(record)


def check_file(path: Path, hints: FixHints = CONFIG_HINTS, folder: bool = False) -> None:
    """A data file exists, is a file and is not empty (``folder``: a folder of documents, such as brat's)."""
    if not path.exists():
        raise DataError(f"data file not found: {path}\n  fix: {hints.path}")
    if folder:
        if not path.is_dir():
            raise DataError(f"{path} is a file; data.format brat reads a folder of NAME.txt / NAME.ann pairs")
        return
    if path.is_dir():
        raise DataError(f"{path} is a folder; a data file was expected")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes)")


def read_text(path: Path) -> str:
    """A UTF-8 text file (a byte-order mark dropped, line ends made \\n); a clear error if it is not UTF-8."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        from clintune.data.documents import not_utf8

        raise not_utf8(path, raw, exc, "re-save the file as UTF-8 (Excel: 'CSV UTF-8')") from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text_table(
    path: Path, fmt: str, text_column: str, label_column: str, require_labels: bool, hints: FixHints = CONFIG_HINTS,
    group_column: str | None = None,
) -> TextExamples:
    """Read a csv/tsv/jsonl/parquet table into texts, (optional) labels and (optional) group ids."""
    frame, data = _text_frame(path, fmt, text_column, [label_column] if require_labels else [], hints, group_column)
    if label_column in frame.columns:
        data.labels = [_cell(v) for v in frame[label_column].tolist()]
    return data


def _text_frame(
    path: Path, fmt: str, text_column: str, label_columns: list[str], hints: FixHints, group_column: str | None,
) -> tuple[Any, TextExamples]:
    """The table, checked for rows and for the columns needed, and its texts, rows and groups (labels not yet read)."""
    frame = _read_frame(path, fmt)
    if len(frame) == 0:
        raise DataError(f"{path}: the file has a header but no data rows")
    columns = [str(c) for c in frame.columns]
    needed = [text_column] + label_columns + ([group_column] if group_column else [])
    message = _missing_columns_message(str(path), needed, columns, hints, first_row=fmt in ("csv", "tsv"))
    if message and fmt in ("csv", "tsv"):
        message = _separator_message(path, fmt, needed) or message
    if message:
        raise DataError(message)
    first_row = 1 if fmt == "jsonl" else 2
    row_kind = "line" if fmt == "jsonl" else "row"
    texts = [_cell(v) for v in frame[text_column].tolist()]
    rows = [first_row + i for i in range(len(texts))] if fmt != "jsonl" else _jsonl_line_numbers(path)
    groups = [_cell(v) for v in frame[group_column].tolist()] if group_column else None
    return frame, TextExamples(texts=texts, labels=None, rows=rows, source=str(path), row_kind=row_kind, groups=groups)


FLAGS = {"1": 1, "0": 0, "true": 1, "false": 0, "": 0}


def read_label_set_table(path: Path, fmt: str, config: Config, require_labels: bool, hints: FixHints = CONFIG_HINTS) -> TextExamples:
    """Multi-label data: texts and each text's list of labels, from one column (labels joined by
    ``data.label_separator``, or a JSON / Parquet list; an empty cell is a note with no labels) or from one
    0/1 column per label (``data.label_columns``). Labels come back in the order the cell gives them."""
    wide = config.data.label_columns
    columns = list(wide) if wide else [config.data.label_column]
    frame, data = _text_frame(path, fmt, config.data.text_column, columns if require_labels else [], hints, config.data.group_column)
    if not all(column in frame.columns for column in columns):
        return data
    problems: dict[str, list[int]] = {}
    if wide:
        flags = {column: [_flag(value) for value in frame[column].tolist()] for column in columns}
        for column, values in flags.items():
            bad = [i for i, flag in enumerate(values) if flag is None]
            if bad:
                problems[f"column {column!r} holds values other than 0 and 1"] = bad
        data.labels = [[column for column in columns if flags[column][i]] for i in range(len(data))]
    else:
        separator, label_sets = config.data.label_separator, []
        for i, value in enumerate(frame[columns[0]].tolist()):
            labels, problem = _label_cell(value, separator)
            if problem:
                problems.setdefault(problem, []).append(i)
            label_sets.append(labels)
        if all(isinstance(v, str) and v.strip() in ("0", "1") for v in frame[columns[0]].tolist()):
            problems["holds only 0 and 1, flags rather than labels"] = list(range(len(data)))
        mapping = config.labels.map or {}
        data.labels = [[mapping.get(label, label) for label in labels] for labels in label_sets]
    if problems:
        details = "; ".join(f"{what} ({describe_rows(data, rows)})" for what, rows in problems.items())
        raise DataError(f"{path}: {'the label columns' if wide else f'column {columns[0]!r}'}: {details}\n"
                        f"  fix: {_LABEL_SET_FIX}")
    return data


_LABEL_SET_FIX = ("give each note's labels as one text joined by data.label_separator (default ';'), or as a JSON / Parquet "
                  "list of texts, each label once; for one 0/1 column per label, list the columns in data.label_columns")


def _flag(value: Any) -> int | None:
    """A 0/1 flag cell as 0 or 1 (booleans and 'true'/'false' too; an empty cell is 0), None when it is neither."""
    if value is None:
        return 0  # a missing flag (Parquet null), as an empty CSV cell
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    if isinstance(value, float) and value != value:
        return 0
    return FLAGS.get(str(value).strip().lower()) if isinstance(value, str) else None


def _label_cell(value: Any, separator: str) -> tuple[list[str], str | None]:
    """One cell's labels, and what is wrong with the cell (None when nothing is)."""
    import numpy as np

    if value is None or (isinstance(value, float) and value != value):
        return [], None
    if isinstance(value, str):
        labels = [part.strip() for part in value.split(separator) if part.strip()]
    elif isinstance(value, (list, tuple, np.ndarray)):
        if not all(isinstance(item, str) for item in value):
            return [], "a list holds something other than label texts"
        labels = [item.strip() for item in value if item.strip()]
    else:
        return [], f"a cell is neither text nor a list ({type(value).__name__})"
    if len(set(labels)) < len(labels):
        return labels, "a cell names a label twice"
    return labels, None


SEPARATORS = {",": "commas", "\t": "tabs", ";": "semicolons", "|": "vertical bars"}


def _separator_message(path: Path, fmt: str, needed: list[str]) -> str | None:
    """When the first row names every ``needed`` column once split on another separator than ``fmt``'s,
    say which (a spreadsheet in a European locale saves CSV with semicolons); None otherwise."""
    first = read_text(path).split("\n", 1)[0]
    expected = "," if fmt == "csv" else "\t"
    for separator, name in SEPARATORS.items():
        if separator != expected and all(column in [n.strip().strip('"') for n in first.split(separator)] for column in needed):
            fix = ("set data.format: " + ("tsv" if separator == "\t" else "csv") if separator in ",\t" else
                   f"save the file with commas, e.g. pandas.read_csv(path, sep={separator!r}).to_csv(new_path, index=False)")
            return (f"{path}: its first row names the columns {', '.join(map(repr, needed))} when split on {name}, "
                    f"not on {SEPARATORS[expected]}: the file's separator is {name}\n  fix: {fix}")
    return None


def _read_frame(path: Path, fmt: str) -> Any:
    import pandas as pd

    try:
        if fmt in ("csv", "tsv"):
            text = read_text(path)
            from io import StringIO

            return pd.read_csv(
                StringIO(text), sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False
            )
        if fmt == "jsonl":
            records = [record for _, record in _jsonl_records(path)]
            return pd.DataFrame.from_records(records)
        return pd.read_parquet(path)
    except DataError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as exc:
        raise unreadable_table(path, fmt, exc) from exc


def unreadable_table(path: Path, fmt: str, exc: Exception) -> DataError:
    """The error for a table its reader refused: where the problem is, never the reader's own message
    (a parser quotes the text it stopped at); ``--verbose`` shows that message in the cause."""
    import pandas as pd

    if fmt not in ("csv", "tsv"):
        return DataError(f"{path}: cannot be read as {fmt}: not a {fmt} file, or a damaged one "
                         f"({type(exc).__name__}; --verbose shows the reader's own message, which may quote the file)")
    if isinstance(exc, pd.errors.EmptyDataError):
        return DataError(f"{path}: no header row and no data (only blank lines)\n  fix: point at the {fmt} file that holds the data")
    return DataError(f"{path}: cannot be read as {fmt}: {_delimited_problem(path, ',' if fmt == 'csv' else chr(9))}\n"
                     "  fix: quote every field that holds the separator, a quote mark or a line break "
                     "(a spreadsheet's 'Save as CSV' does), or check data.format")


def _delimited_problem(path: Path, separator: str) -> str:
    """Where a csv/tsv file stops being a table (row, line and field counts), found again with the csv module."""
    import csv

    expected, row, line = None, 0, 0
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=separator, strict=True)
            for fields in reader:
                start, line = line + 1, reader.line_num
                if not fields:
                    continue
                row += 1
                if expected is None:
                    expected = len(fields)
                elif len(fields) > expected:
                    return f"row {row} (line {start}) has {len(fields)} fields, the first row {expected}"
    except csv.Error:
        return (f"row {row + 1} (line {line + 1}): a quote mark that does not close its field, "
                "or text after a field's closing quote")
    except (OSError, UnicodeDecodeError) as exc:
        return f"it cannot be read again ({type(exc).__name__})"
    return "the reader stopped (--verbose shows its message, which may quote the file)"


def jsonl_record(path: Path, number: int, line: str) -> dict[str, Any]:
    """One non-blank line of a JSON-lines file as an object, or a data error naming the file and line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(record, dict):
        raise DataError(f"{path} line {number}: each line must be a JSON object")
    return record


def _jsonl_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    records = [(number, jsonl_record(path, number, line))
               for number, line in enumerate(read_text(path).split("\n"), start=1) if line.strip()]
    if not records:
        raise DataError(f"{path}: no JSON records found")
    return records


def _jsonl_line_numbers(path: Path) -> list[int]:
    return [number for number, _ in _jsonl_records(path)]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN
        return ""
    return str(value)


def _missing_columns_message(
    place: str, needed: list[str], columns: list[str], hints: FixHints, first_row: bool = False,
) -> str | None:
    """Which of the ``needed`` columns are missing (None if none is), and the file's columns.

    ``first_row``: the names come from a csv/tsv file's first row, which is a row of data when the
    file has no header. Unless it names at least one of the needed columns, it is not shown.
    """
    import difflib

    missing = [name for name in needed if name not in columns]
    if not missing:
        return None
    if first_row and len(missing) == len(needed):
        listed = ", ".join(f"{name!r}" for name in missing)
        return (
            f"{place}: missing column {listed}; the first row names none of them "
            f"({len(columns)} field(s), not shown: in a file without a header row, the first row is data)\n"
            f"  fix: if the file has no header row, add one naming its columns; else {hints.columns}"
        )
    named = []
    for name in missing:
        close = difflib.get_close_matches(name, columns, n=1)
        named.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"{place}: missing column {', '.join(named)}; the file has columns {columns}\n  fix: {hints.columns}"


def read_conll(path: Path) -> TaggedSentences:
    """Read ``token<TAB>tag`` lines with blank lines between sentences."""
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    rows: list[int] = []
    current_tokens: list[str] = []
    current_tags: list[str] = []
    start = 0
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            if current_tokens:
                tokens.append(current_tokens)
                tags.append(current_tags)
                rows.append(start)
            current_tokens, current_tags = [], []
            continue
        if line.startswith("-DOCSTART-"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) != 2 or not parts[0] or not parts[1].strip():
            raise DataError(
                f"{path} line {number}: expected 'token<TAB>tag', found {len(parts)} column(s)\n"
                "  fix: one token and one BIO tag per line, separated by a tab; blank line between sentences"
            )
        if not current_tokens:
            start = number
        current_tokens.append(parts[0])
        current_tags.append(parts[1].strip())
    if current_tokens:
        tokens.append(current_tokens)
        tags.append(current_tags)
        rows.append(start)
    if not tokens:
        raise DataError(f"{path}: no sentences found")
    return TaggedSentences(tokens=tokens, tags=tags, rows=rows, source=str(path))


def read_ner_jsonl(path: Path, tokens_column: str, tags_column: str, require_labels: bool) -> TaggedSentences:
    """Read jsonl records holding a token list and a tag list."""
    tokens, tags, rows = [], [], []
    for number, record in _jsonl_records(path):
        needed = [tokens_column] + ([tags_column] if require_labels else [])
        message = _missing_columns_message(f"{path} line {number}", needed, list(record), NER_COLUMN_HINTS)
        if message:
            raise DataError(message)
        words = record[tokens_column]
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise DataError(f"{path} line {number}: {tokens_column!r} must be a list of strings")
        tokens.append(words)
        rows.append(number)
        if tags_column in record:
            tags.append([str(t) for t in record[tags_column]])
    has_tags = len(tags) == len(tokens)
    return TaggedSentences(tokens=tokens, tags=tags if has_tags else None, rows=rows, source=str(path), row_kind="line")
