"""No message quotes a note: a marker (a made-up name and MRN) put in the text, label, id, group and tag cells,
and in a header-less first row, reaches no error message, no log record and no output of the verbs.

The errors to cover are found by reading the reader modules (``READERS``) with ``ast``: each ``raise``
statement, named by module, function and the first words of its message, must have cases in ``COVERED``
(or be listed there as raising no data, with the reason), and each case must raise from that very
statement (its traceback says so), with the marker in the files it read.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, invoke_cli

from clintune.config.loading import load_config
from clintune.config.schema import Config
from clintune.data import checks, documents, examples, labels, readers, splits, tagging
from clintune.data.checks import check_label_sets
from clintune.data.documents import read_brat_folder, read_span_records, read_text_folder
from clintune.data.readers import read_split
from clintune.data.splits import stratified_split
from clintune.data.tagging import tag_documents
from clintune.errors import ClintuneError
from clintune.inference import sources

MARKER = "Zyx Qwerty MRN 8675309"
PIECES = (MARKER, "Qwerty", "8675309")
READERS = (readers, checks, splits, examples, documents, tagging, sources, labels)
NO_DATA = "no data in message: "

M = MARKER
ROWS = f"text,label\n{M} seen,valid\nfever,invalid\n"  # a good file whose first text holds the marker
BRAT_TXT = f"{M} has asthma.\n"  # 'asthma' is 27-33
DOCCANO = {"text": f"{M} has asthma.", "label": [[27, 33, "Disease"]]}
LS_TASK = {"id": 1, "data": {"text": f"{M} has asthma."},
           "annotations": [{"result": [{"type": "labels", "value": {"start": 27, "end": 33, "text": "asthma", "labels": ["Disease"]}}]}]}
LATIN = "latin-1"
DAMAGED_PARQUET = b"PAR1" + M.encode() + b"PAR1"
MULTICLASS = ("labels.classes=null", "labels.positive=null", "task.type=multiclass", "training.metric_for_best_model=f1_macro")
LONG_CSV = b"text\n" + b"fever\n" * 200_000  # 1.2 MB: past what pandas decodes to read the header (256 KB)

# --------------------------------------------------------------------------
# The raise statements of the readers


def _literal_text(node: ast.expr) -> str:
    """The literal parts of a message expression (what an f-string or a ``+`` of strings says in any case)."""
    if isinstance(node, ast.BinOp):
        return _literal_text(node.left) + " " + _literal_text(node.right)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return " ".join(part.value for part in node.values if isinstance(part, ast.Constant) and isinstance(part.value, str))
    return ""


def _message_words(node: ast.expr) -> str:
    """The first words of a message (``f"{path}: not UTF-8 text ..."`` -> ``not UTF-8 text invalid``)."""
    return " ".join(re.findall(r"[A-Za-z][\w-]*", _literal_text(node))[:4])


def _raise_name(node: ast.Raise) -> str:
    """What a raise says: its message's first words, else its expression (``DataError(message)``)."""
    if node.exc is None:
        return "raise"
    if isinstance(node.exc, ast.Call) and node.exc.args:
        words = _message_words(node.exc.args[0])
        if words:
            return words
    return ast.unparse(node.exc)


def reader_raises() -> dict[str, tuple[str, str, int, int]]:
    """``module.function: words`` -> (file, qualified function, first line, last line) for every raise."""
    found: dict[str, tuple[str, str, int, int]] = {}
    for module in READERS:
        path = module.__file__
        assert path is not None
        short = module.__name__.rsplit(".", 1)[-1]

        def visit(node: ast.AST, scope: list[str]) -> None:
            for child in ast.iter_child_nodes(node):
                inner = scope
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    inner = [*scope, child.name]
                if isinstance(child, ast.Raise):
                    function = ".".join(scope) or "<module>"
                    key = f"{short}.{function}: {_raise_name(child)}"
                    number = 2
                    while key in found:  # a second raise of the same words in one function
                        key = f"{short}.{function}: {_raise_name(child)} #{number}"
                        number += 1
                    found[key] = (path, function, child.lineno, child.end_lineno or child.lineno)
                visit(child, inner)

        visit(ast.parse(Path(path).read_text(encoding="utf-8")), [])
    return found


RAISES = reader_raises()


def raised_at(error: BaseException) -> str | None:
    """The key of the reader raise statement an error came from (its innermost traceback frame)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return None
    filename, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
    return next((key for key, (path, _, first, last) in RAISES.items() if path == filename and first <= line <= last), None)


# --------------------------------------------------------------------------
# Cases: each writes files that hold the marker under ``tmp`` and calls a reader, which must refuse them


def put(tmp: Path, files: dict[str, str | bytes]) -> Path:
    """Write ``files`` (relative name -> content) under ``tmp``; the path of the first."""
    for name, content in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return tmp / next(iter(files))


def config(name: str, train: Path | str, *overrides: str) -> Config:
    return load_config(REPO / f"configs/tiny/{name}.yaml",
                       [f"data.train={train}", "data.validation=null", "data.test=null", "data.format=auto", *overrides])


def read(name: str, files: dict[str, str | bytes], *overrides: str, at: str | None = None) -> Callable[[Path], Any]:
    """A case: write ``files`` and read ``tmp / at`` (default: the first file) with the tiny config ``name``."""
    def case(tmp: Path) -> Any:
        first = put(tmp, files)
        path = tmp / at if at else first
        return read_split(config(name, path, *overrides), str(path))
    return case


def call(files: dict[str, str | bytes], reader: Callable[[Path], Any], target: str | None = None) -> Callable[[Path], Any]:
    """A case: write ``files`` and call ``reader`` on ``tmp / target`` (default: the first file)."""
    def case(tmp: Path) -> Any:
        first = put(tmp, files)
        return reader(tmp / target if target else first)
    return case


def parquet(**columns: list[Any]) -> bytes:
    """A Parquet file of ``columns``, uncompressed (so that the marker's bytes are in it, as the cases check)."""
    import io

    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame(columns).to_parquet(buffer, compression=None)
    return buffer.getvalue()


def source(path: Path, text_column: str = "text", id_column: str | None = None) -> Any:
    """Open a prediction input and read all of it, as ``predict --input`` does."""
    opened = sources.open_source(path, text_column, id_column)
    return list(opened.pieces())


def spans(path: Path, group: str | None = None, allowed: set[str] | None = None) -> Any:
    """Read a doccano / Label Studio export and tag its documents, as ``read_split`` does."""
    found, report = read_span_records(path, group)
    return tag_documents(found, report, None, allowed)


def label_sets(tmp: Path, train: str, validation: str) -> None:
    """Read a training and a validation file and check their labels, as ``prepare_data`` does."""
    config_ = config("diagnosis", tmp / "t.csv", *MULTICLASS)
    put(tmp, {"t.csv": train, "v.csv": validation})
    train_ = read_split(config_, str(tmp / "t.csv"))
    check_label_sets(train_, {"validation": read_split(config_, str(tmp / "v.csv"))}, sorted(set(train_.labels or [])))


def split(files: dict[str, str], *overrides: str) -> Callable[[Path], Any]:
    """A case: read a file and split validation data off it."""
    def case(tmp: Path) -> Any:
        path = put(tmp, files)
        return stratified_split(read_split(config("diagnosis", path, *overrides), str(path)), 0.25, 0)
    return case


def ls(**changes: Any) -> str:
    """A Label Studio export of one task (``LS_TASK`` with ``changes`` to its first region's value)."""
    task = json.loads(json.dumps(LS_TASK))
    task["annotations"][0]["result"][0]["value"].update(changes)
    return json.dumps([task])


def jl(*records: Any) -> str:
    """JSON lines of ``records``."""
    return "".join(json.dumps(record) + "\n" for record in records)


def brat(ann: str | bytes, txt: str | bytes = BRAT_TXT) -> dict[str, str | bytes]:
    return {"in/d.txt": txt, "in/d.ann": ann}


COVERED: dict[str, list[Callable[[Path], Any]] | str] = {
    # data.py: files, formats, tables
    "readers._check_readable_format: a spreadsheet clintune reads": [read("diagnosis", {"notes.xlsx": b"PK\x03\x04" + M.encode()})],
    "readers._check_readable_format: is NER data tokens": [
        call({"n.conll": f"{M}\tO\n"}, lambda p: read_split(config("diagnosis", "t.csv"), str(p)))],
    "readers.read_documents: the documents hold no": [read("ner_brat", brat(f"#1\tAnnotatorNotes T1\t{M}\n", " \n"), at="in")],
    "readers.check_file: data file not found": NO_DATA + "the path does not exist; the message holds the path and the fix",
    "readers.check_file: is a file data": [read("ner_brat", {"in.txt": BRAT_TXT}, "data.format=brat")],
    "readers.check_file: is a folder a": [read("diagnosis", {"dir.csv/x.csv": ROWS}, at="dir.csv")],
    "readers.check_file: is empty bytes": NO_DATA + "a file of 0 bytes holds nothing",
    "readers.read_text: not_utf8(path, raw, exc, \"re-save the file as UTF-8 (Excel: 'CSV UTF-8')\")": [
        read("diagnosis", {"t.csv": f"text,label\n{M} caf\xe9,valid\n".encode(LATIN)}),
        read("ner", {"t.conll": f"{M}\xe9\tO\n".encode(LATIN)}),
    ],
    "readers._text_frame: the file has a": [read("diagnosis", {"t.csv": f"{M},valid\n"})],
    "readers._text_frame: DataError(message)": [
        read("diagnosis", {"t.csv": f"{M},4471923,Serious,seizure\nfever,invalid\n"}),  # no header row, short fields
        read("diagnosis", {"t.csv": f'"{M}, complains of chest pain for three days",valid\nfever,invalid\n'}),
        read("diagnosis", {"t.tsv": f"{M}\tvalid\nfever\tinvalid\n"}),
        read("diagnosis", {"t.csv": f"text,outcome\n{M},valid\n"}),  # a real header, one column misnamed
        read("diagnosis", {"t.jsonl": jl({"note": M, "label": M})}),
        read("diagnosis", {"t.parquet": parquet(note=[M], label=["valid"])}),
        read("diagnosis", {"t.csv": ROWS}, "data.group_column=patient"),
    ],
    "readers.read_label_set_table: fix": [
        read("symptoms", {"t.csv": f"Narrative,Symptoms\n{M},{M};{M}\n"}),  # a label named twice, the label the marker
        read("symptoms", {"t.jsonl": jl({"Narrative": M, "Symptoms": 7}, {"Narrative": "fever", "Symptoms": [M, 3]})}),
        read("symptoms", {"t.csv": f"Narrative,Rash,Pyrexia\n{M},{M},1\n"}, "data.label_columns=[Rash, Pyrexia]"),
        read("symptoms", {"t.csv": f"Narrative,Symptoms\n{M},1\n"}),  # 0/1 flags given as labels
    ],
    "readers._read_frame: raise": NO_DATA + "re-raises the DataError of read_text or jsonl_record, covered there",
    "readers._read_frame: unreadable_table(path, fmt, exc)": [
        read("diagnosis", {"t.csv": f"text,label\nfever,valid\n{M},valid,{M}\n"}),  # a row with a field too many
        read("diagnosis", {"t.csv": f'text,label\nfever,valid\n"{M},valid\n'}),  # a quote never closed
        read("diagnosis", {"t.tsv": f"text\tlabel\nfever\tvalid\n{M}\tvalid\t{M}\n"}),
        read("diagnosis", {"t.parquet": DAMAGED_PARQUET}),
    ],
    "readers.jsonl_record: line not valid JSON": [
        read("diagnosis", {"t.jsonl": f'{{"text": "{M}", "label": "valid"\n'}),
        call({"t.jsonl": f'{{"text": "{M}" "label"\n'}, source),
    ],
    "readers.jsonl_record: line each line must": [read("diagnosis", {"t.jsonl": jl([M, "valid"])}), read("ner", {"t.jsonl": jl(M)})],
    "readers._jsonl_records: no JSON records found": NO_DATA + "the file holds only blank lines",
    "readers.read_conll: line expected token TAB": [
        read("ner", {"t.conll": f"{M}\n"}),
        read("ner", {"t.conll": f"Zyx\tNN\t{M}\n"}),
        read("ner", {"t.conll": f"{M}\t \n"}),
    ],
    "readers.read_conll: no sentences found": [read("ner", {"t.conll": f"-DOCSTART-\t{M}\n\n"})],
    "readers.read_ner_jsonl: DataError(message)": [read("ner", {"t.jsonl": jl({"words": M.split(), "tags": [M] * 4})})],
    "readers.read_ner_jsonl: line must be a": [read("ner", {"t.jsonl": jl({"tokens": M, "tags": ["O"]})})],
    "checks.check_texts: fix fill or remove": [
        read("diagnosis", {"t.csv": f"text,label\n ,{M}\nfever,valid\n"}, *MULTICLASS),
        read("diagnosis", {"t.csv": f"text,label\n{M},\nfever,valid\n"}),
    ],
    "checks.check_texts: no usable rows left": [
        read("diagnosis", {"t.csv": f"text,label\n ,{M}\n\t,{M}\n"}, "data.on_empty=drop", *MULTICLASS)],
    "checks.check_tagged: sentence s have a": [read("ner", {"t.jsonl": jl({"tokens": M.split(), "tags": ["O"]})})],
    "checks.check_tagged: empty sentence s": [
        read("ner", {"t.jsonl": jl({"tokens": [], "tags": []}, {"tokens": M.split(), "tags": ["O"] * 4})})],
    "checks.check_tagged: sentence s hold tags": [
        read("ner", {"t.conll": f"O\t{M}\n"}),  # token and tag swapped
        read("ner", {"t.jsonl": jl({"tokens": ["x"], "tags": [M]})}),
    ],
    "checks.check_tagged: sentence s have an": [read("ner", {"t.conll": "Zyx\tO\nQwerty\tI-Disease\n"})],
    "checks.check_label_sets: the training data holds": [lambda tmp: label_sets(tmp, f"text,label\nfever,{M}\ncough,{M}\n", ROWS)],
    "checks.check_label_sets: the data holds labels": [lambda tmp: label_sets(tmp, ROWS, f"text,label\nfever,{M}\ncough,valid\n")],
    "splits.stratified_split: only examples too few": [split({"t.csv": f"text,label\n{M},valid\n{M} b,invalid\n"})],
    "splits._grouped_split: all examples share one": [
        split({"t.csv": "text,label,patient\n" + f"note,valid,{M}\n" * 4}, "data.group_column=patient")],
    # documents.py: brat folders, doccano and Label Studio exports
    "documents.read_document_text: not_utf8(path, raw, exc)": [
        call(brat("", f"{M}\xe9\n".encode(LATIN)), read_brat_folder, "in"),
        read("ner_brat", brat(f"#1\t{M}\xe9\n".encode(LATIN)), at="in"),
    ],
    "documents.read_text_folder: no txt documents in": [call({"in/notes.csv": ROWS}, read_text_folder, "in")],
    "documents.read_brat_folder: not a folder brat": [call({"d.txt": BRAT_TXT}, read_brat_folder)],
    "documents.read_brat_folder: no beside it ann": [
        call({**brat(""), "in/b.ann": f"T1\tDisease 0 3\tZyx\n#1\t{M}\n"}, read_brat_folder, "in")],
    "documents.read_brat_folder: no beside it txt": [call({"in/a.txt": BRAT_TXT}, read_brat_folder, "in")],
    "documents.read_brat_folder: no ann files in": [call({"in/notes.csv": ROWS}, read_brat_folder, "in")],
    "documents._read_ann: line not a brat": [
        call(brat(f"T1\t{M}\n"), read_brat_folder, "in"),
        call(brat(f"T1\t{M}\tZyx\n"), read_brat_folder, "in"),
    ],
    "documents._read_ann: line offsets lie outside": [call(brat(f"T1\tDisease 0 400\t{M}\n"), read_brat_folder, "in")],
    "documents._read_ann: line the text at": [
        call(brat("T1\tDisease 4 10\tQwertz\n"), read_brat_folder, "in"),
        call(brat(f"T1\tDisease 27 33\t{M}\n"), read_brat_folder, "in"),
    ],
    "documents._json_records: not valid JSON at": [call({"s.json": f'[{{"text": "{M}"}}'}, read_span_records)],
    "documents._json_records: line not valid JSON": [call({"s.jsonl": jl(DOCCANO) + f'{{"text": "{M}" ]\n'}, read_span_records)],
    "documents._json_records: each record must be": [
        call({"s.json": json.dumps([M])}, read_span_records),
        call({"s.jsonl": jl(DOCCANO, M)}, read_span_records),
    ],
    "documents._json_records: no records found": NO_DATA + "an empty JSON array, or only blank lines",
    "documents._doccano_record: line no text string": [
        call({"s.jsonl": jl({"note": M, "label": []})}, read_span_records),
        call({"s.jsonl": jl({M: M, "label": []})}, read_span_records),
    ],
    "documents._doccano_record: line label must be": [call({"s.jsonl": jl({"text": M, "label": M})}, read_span_records)],
    "documents._doccano_record: line span of label": [
        call({"s.jsonl": jl({"text": M, "label": [[0, 3, "Zyx", M]]})}, read_span_records),
        call({"s.jsonl": jl({"text": M, "label": [M]})}, read_span_records),
        call({"s.jsonl": jl({"text": M, "label": [{"start_offset": M, "end_offset": 3, "label": "x"}]})}, read_span_records),
    ],
    "documents._label_studio_task: no data text fix": [
        call({"s.json": json.dumps([{"id": M, "data": {"a": M, "b": M}, "annotations": []}])}, read_span_records)],
    "documents._label_studio_task: the task has no": [
        call({"s.json": json.dumps([{"id": M, "data": {"text": M}, "annotations": []}])}, read_span_records)],
    "documents._label_studio_task: region carries labels one": [
        call({"s.json": ls(labels=[M, "Disease"])}, read_span_records),
        call({"s.json": ls(labels=[M, M], start=M)}, read_span_records),
    ],
    "documents._checked_span: offsets lie outside the": [
        call({"s.jsonl": jl({**DOCCANO, "label": [[27, 400, M]]})}, read_span_records),
        call({"s.json": ls(end=M, text=None)}, read_span_records),
    ],
    "documents._checked_span: the text at is": [
        call({"s.json": ls(text=M)}, read_span_records),
        call({"s.json": ls(text="astma")}, read_span_records),
    ],
    "documents._group: no field data group_column": [
        call({"s.jsonl": jl({**DOCCANO, "id": M})}, lambda p: read_span_records(p, "patient"))],
    "tagging._resolved_spans: type is not in": [
        call({"s.jsonl": jl({**DOCCANO, "label": [[27, 33, M]]})}, lambda p: spans(p, allowed={"Disease"})),
        read("ner_brat", brat("T1\tTumour 27 33\tasthma\n"), "labels.map=null", at="in"),
    ],
    "tagging._resolved_spans: overlaps BIO tags hold": [call({"s.jsonl": jl({**DOCCANO, "label": [[0, 10, M], [4, 14, M]]})}, spans)],
    # sources.py: predict --input
    "sources.open_source: is a folder without": [call({"in/notes.csv": ROWS}, source, "in")],
    "sources.open_source: id-column is plain text": [call({"in.txt": f"{M}\n"}, lambda p: source(p, id_column="id"))],
    "sources.open_source: a prediction input fix": [call({"in.conll": f"{M}\tO\n"}, source), call({"in.xml": f"<note>{M}</note>"}, source)],
    "sources._check_columns: DataError(message)": [
        call({"in.csv": f"{M},4471923\nfever,1\n"}, source),  # no header row
        call({"in.tsv": f"{M}\t4471923\nfever\t1\n"}, source),
        call({"in.csv": f"text,mrn\n{M},{M}\n"}, lambda p: source(p, id_column="id")),
        call({"in.jsonl": jl({"note": M})}, source),
        call({"in.parquet": parquet(note=[M])}, source),
    ],
    "sources.LinesSource.pieces: _utf8_error(self.path, exc)": [call({"in.txt": f"{M}\n{M}\xe9\n".encode(LATIN)}, source)],
    "sources.DelimitedSource._reader: _utf8_error(self.path, exc)": [call({"in.csv": f"text,{M}\xe9\n".encode(LATIN)}, source)],
    "sources.DelimitedSource._reader: unreadable_table(self.path, self._format, exc)": [call({"in.csv": f'"{M},text\n'}, source)],
    "sources.DelimitedSource.pieces: _utf8_error(self.path, exc)": [call({"in.csv": LONG_CSV + f"{M}\xe9\n".encode(LATIN)}, source)],
    "sources.DelimitedSource.pieces: unreadable_table(self.path, self._format, exc)": [call({"in.csv": f'text\nfever\n"{M}\n'}, source)],
    "sources.JsonLinesSource.__init__: no JSON records found": NO_DATA + "the file holds only blank lines",
    "sources.JsonLinesSource._records: _utf8_error(self.path, exc)": [call({"in.jsonl": f'{{"text": "{M}\xe9"}}\n'.encode(LATIN)}, source)],
    "sources.ParquetSource._dataset: unreadable_table(self.path, 'parquet', exc)": [call({"in.parquet": DAMAGED_PARQUET}, source)],
    "sources.ParquetSource.pieces: unreadable_table(self.path, 'parquet', exc)": [
        call({"in/a.parquet": parquet(text=[M]), "in/b.parquet": DAMAGED_PARQUET}, source, "in")],
    # labels.py: a model folder's labels.json, which clintune wrote
    "labels.LabelEncoder.load: no this is not": NO_DATA + "a model folder without labels.json; the message names the folder",
    "labels.LabelEncoder.load: unreadable label file": NO_DATA + "labels.json is clintune's own file of class names, never note text",
}


def test_every_raise_of_the_readers_has_cases() -> None:
    """A new raise in a reader needs a case here (or a reason why its message can hold no data)."""
    missing = sorted(set(RAISES) - set(COVERED))
    stale = sorted(set(COVERED) - set(RAISES))
    assert not missing, "raises without a case in COVERED:\n  " + "\n  ".join(missing)
    assert not stale, "COVERED names raises that are gone:\n  " + "\n  ".join(stale)
    for key, entry in COVERED.items():
        assert (entry.startswith(NO_DATA) and len(entry) > len(NO_DATA) + 10) if isinstance(entry, str) else entry, key


CASES = [(key, index) for key, entry in COVERED.items() if not isinstance(entry, str) for index in range(len(entry))]


def leaked(text: str) -> list[str]:
    return [piece for piece in PIECES if piece in text]


@pytest.mark.parametrize(("key", "index"), CASES, ids=[f"{key} [{index}]" for key, index in CASES])
def test_a_reader_error_names_where_never_what(key: str, index: int, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    case = COVERED[key][index]  # type: ignore[index]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ClintuneError) as raised:
        case(tmp_path)
    assert raised_at(raised.value) == key, f"raised at {raised_at(raised.value)}, not {key}:\n{raised.value}"
    assert any(PIECES[1].encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()), "the case holds no marker"
    message = str(raised.value)
    assert not leaked(message), message
    assert not leaked(caplog.text), caplog.text
    assert str(tmp_path) in message or tmp_path.name in message, f"the message names no file:\n{message}"


# --------------------------------------------------------------------------
# The verbs: what a person sees in the terminal


def _diagnosis(*sets: str) -> list[str]:
    args = ["configs/tiny/diagnosis.yaml", "--set", "data.validation=null", "--set", "data.test=null"]
    for item in sets:
        args += ["--set", item]
    return args


def _doccano(prefix: str, patient: str) -> dict[str, Any]:
    """A doccano record: ``prefix`` + the marker's note, its 'asthma' a Disease, grouped by ``patient``."""
    text = prefix + DOCCANO["text"] + " Follow up in clinic next week."
    return {"text": text, "label": [[text.index("asthma"), text.index("asthma") + 6, "Disease"]], "patient": patient}


# name: (files, arguments, exit status, words the output must hold: the path the case is meant to take)
VERBS: dict[str, tuple[dict[str, str | bytes], list[str], int, list[str]]] = {
    "validate: no header row": (
        {"t.csv": f"{M},4471923,Serious,seizure\nfever,valid,x,y\n"}, ["validate", *_diagnosis("data.train={tmp}/t.csv")], 2,
        ["t.csv: missing column 'text', 'label'; the first row names none of them"]),
    "validate: labels outside labels.classes": (
        {"t.conll": f"Zyx\tB-{M}\n\nfever\tO\n"}, ["validate", "configs/tiny/ner.yaml", "--set", "data.train={tmp}/t.conll"], 2,
        ["1 label(s) not listed in labels.classes: 1 value that looks like text, not shown"]),
    "validate: validation labels training never saw": (
        {"t.csv": ROWS + "cough,valid\nrash,invalid\n", "v.csv": f"text,label\nfever,{M}\ncough,valid\n"},
        ["validate", *_diagnosis("data.train={tmp}/t.csv", "data.validation={tmp}/v.csv", "labels.map=null", *MULTICLASS)], 2,
        ["v.csv: the validation data holds labels that training never saw: 1 value that looks like text, not shown (row 2)"]),
    "validate: splits share a group": (
        {"t.csv": "text,label,patient\n" + "".join(f"note {i} of things,{['valid', 'invalid'][i % 2]},{M} {i % 2}\n" for i in range(6)),
         "v.csv": f"text,label,patient\nother note,valid,{M} 0\nmore,invalid,{M} 1\n"},
        ["validate", *_diagnosis("data.train={tmp}/t.csv", "data.validation={tmp}/v.csv", "data.group_column=patient")], 2,
        ["2 group(s) in both train (6 example(s)", "row 2 = row 2, row 3 = row 3"]),
    "validate: leakage between span documents grouped by patient": (
        {"t.jsonl": jl(*(_doccano(f"Note {i}: ", f"{M} {i}") for i in range(4))), "v.jsonl": jl(_doccano("Note 0: ", f"{M} 9"))},
        ["validate", "configs/tiny/ner_brat.yaml", "--set", "data.train={tmp}/t.jsonl", "--set", "data.validation={tmp}/v.jsonl",
         "--set", "data.test=null", "--set", "data.format=auto", "--set", "data.group_column=patient", "--set", "labels.map=null"], 0,
        ["possible leakage, train / validation: 1 exact duplicate(s) (line 1 = line 1)"]),
    "train: tag column holds words": (
        {"t.conll": f"O\t{M}\n"}, ["train", "configs/tiny/ner.yaml", "--set", "data.train={tmp}/t.conll", "--set", "output.dir={tmp}/out"],
        2, ["sentence at line 1; found: 1 value that looks like text, not shown"]),
    "train: brat text changed after annotation": (
        brat("T1\tDisease 4 10\tQwertz\n"),
        ["train", "configs/tiny/ner_brat.yaml", "--set", "data.train={tmp}/in", "--set", "data.validation=null", "--set", "data.test=null",
         "--set", "output.dir={tmp}/out"], 2,
        ["d.ann line 1: the text at 4-10 in d.txt is not the text the line quotes (6 and 6 characters, first differing at character 6"]),
}
# name: (the trained tiny model, files, arguments after --model, exit status, words)
MODEL_VERBS: dict[str, tuple[str, dict[str, str | bytes], list[str], int, list[str]]] = {
    "eval: labels the model never saw": (
        "diagnosis", {"e.csv": f"text,label\nfever,{M}\ncough,valid\n"}, ["eval", "--data", "{tmp}/e.csv"], 2,
        ["never saw: 1 value that looks like text, not shown (row 2)"]),
    "eval: no header row": (
        "diagnosis", {"e.csv": f"{M},valid\nfever,invalid\n"}, ["eval", "--data", "{tmp}/e.csv"], 2, ["the first row names none of them"]),
    "predict --input: no header row": (
        "diagnosis", {"in.csv": f"{M},4471923\nfever,1\n"}, ["predict", "--input", "{tmp}/in.csv"], 2,
        ["in.csv: missing column 'text'; the first row names none of them"]),
    "predict --input: a quote never closed": (
        "diagnosis", {"in.csv": f'text\nfever\n"{M}\n'}, ["predict", "--input", "{tmp}/in.csv", "--output", "{tmp}/out.jsonl"], 2,
        ["in.csv: cannot be read as csv: row 3 (line 3): a quote mark that does not close its field"]),
    "predict --input: broken JSON line": (
        "ner", {"in.jsonl": f'{{"text": "fever"}}\n{{"text": "{M}"\n'}, ["predict", "--input", "{tmp}/in.jsonl"], 2,
        ["in.jsonl line 2: not valid JSON"]),
}


def _check_output(result: Any, code: int, words: list[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == code, output[-3000:]
    assert "Traceback" not in output
    for word in words:  # the case took the path it was written for
        assert word in output, f"{word!r} not in:\n{output[-3000:]}"
    assert not leaked(output), output


@pytest.mark.parametrize("name", list(VERBS))
def test_a_verb_prints_no_note_text(name: str, tmp_path: Path) -> None:
    files, args, code, words = VERBS[name]
    put(tmp_path, files)
    _check_output(invoke_cli(*[arg.replace("{tmp}", str(tmp_path)) for arg in args]), code, words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", list(MODEL_VERBS))
def test_eval_and_predict_print_no_note_text(name: str, trained_models: dict[str, Path], tmp_path: Path) -> None:
    task, files, args, code, words = MODEL_VERBS[name]
    put(tmp_path, files)
    args = [args[0], "--model", str(trained_models[task]), *args[1:]]
    _check_output(invoke_cli(*[arg.replace("{tmp}", str(tmp_path)) for arg in args]), code, words)
    assert not (tmp_path / "out.jsonl").exists()


def test_the_notes_of_a_document_reader_name_no_note_text(tmp_path: Path) -> None:
    """What ``validate`` and ``train`` print after reading documents: counts by type, places by file, line or task number."""
    record = {**DOCCANO, "id": M, "label": [[28, 33, M], [28, 33, M]]}  # an edge inside a word, annotated twice
    path = put(tmp_path, {"s.jsonl": jl(record, {**record, "id": 7})})
    found, report = read_span_records(path)
    tag_documents(found, report)
    notes = "\n".join(report.notes())
    assert "4 span(s) (4 whose type looks like text, not shown)" in notes, notes
    assert "widened to whole words: line 1 28-33 (s.jsonl line 1), 7 28-33 (s.jsonl line 2)" in notes, notes
    assert not leaked(notes), notes


def test_label_values_are_shown_only_when_short_and_few() -> None:
    """The rule every message follows for label and tag values: a short one is shown, one that reads like text is counted."""
    assert labels.shown_labels(["valid", M]) == "'valid' and 1 value that looks like text, not shown"
    assert labels.shown_labels(["Y", "Z"], {"Y": 2, "Z": 1}) == "'Y' (2), 'Z' (1)"
    shown = labels.shown_labels([*"abcdefg", "a b c d", "x" * 31])
    assert shown == "'a', 'b', 'c', 'd', 'e', 2 more and 2 values that look like text, not shown"


def test_validate_does_not_list_a_label_column_that_holds_the_notes(tmp_path: Path) -> None:
    rows = "".join(f"x{i},Zyx Qwerty MRN 8675309 was seen on day {i} for fever\n" for i in range(40))
    data = tmp_path / "swapped.csv"
    data.write_text("note_id,narrative\n" + rows, encoding="utf-8")
    # label_column pointed at the notes: every note a class, and the data otherwise valid
    result = invoke_cli("validate", "configs/tiny/section_header.yaml", "--set", f"data.train={data}",
                        "--set", f"data.validation={data}", "--set", "data.test=null", "--set", "labels.classes=null",
                        "--set", "data.text_column=note_id", "--set", "data.label_column=narrative")
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "Qwerty" not in output and "8675309" not in output, output[-2000:]
    assert "classes (40): 40 values that look like text, not shown" in result.stdout
    assert "check data.label_column" in result.stderr
