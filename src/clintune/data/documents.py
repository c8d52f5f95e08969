"""Annotated documents: brat standoff folders, doccano and Label Studio span exports, read into ``Document``s.

A ``Document`` is a whole text with character-offset ``Span`` annotations, as
annotation tools store them. Before training, documents become word-level
BIO sentences (``clintune.data.tagging.tag_documents``, with ``clintune.data.sentences``):

- **sentences**: a rule-based splitter cuts at line breaks and after ``.``,
  ``!`` or ``?`` followed by a space and a capital, digit or bracket (never
  after a known abbreviation or an initial); two sentences an entity crosses
  are joined, so no entity is ever cut;
- **words**: ``\\w+`` runs and single punctuation marks, the same split that
  prediction uses on raw text;
- **an entity edge inside a word** (``hyper[tension]``): the entity is widened
  to whole words, and each case is counted and named (file, offsets);
- **discontinuous spans** (brat ``start end;start end``): the covering span,
  first start to last end, counted and named;
- **overlapping spans** after ``labels.map``: an error naming both (default),
  or with ``data.overlapping_spans: longest`` the longest is kept (the first on
  ties) and the others counted; exact duplicates are kept once and counted.

Everything that is not a text-bound ``T`` line in a ``.ann`` file (``N``
normalisations, ``A`` attributes, ``R`` relations, ``#`` notes ...) is counted
by kind and reported. Offsets are character offsets into the text exactly as
stored (line ends are not converted), which is what brat, doccano and Label
Studio count. No message quotes a document: errors name the file, line or task
and offsets; span types appear only when short (``clintune.data.labels.shown_labels``).
This module imports nothing of clintune's but ``errors`` and ``labels``; ``ReadReport`` counts what reading
and tagging found.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clintune.data.labels import is_short_label, shown_labels
from clintune.errors import DataError, listed

_T_LINE = re.compile(r"^(T\S*)\t(\S+) (\d+ \d+(?:;\d+ \d+)*)\t(.*)$")


@dataclass(frozen=True)
class Span:
    """An annotated stretch ``text[start:end]`` of one type; ``where`` names its line or task for messages."""

    start: int
    end: int
    type: str
    where: str


@dataclass
class Document:
    """A whole text with its annotations (``spans`` is empty for an unannotated text)."""

    name: str
    text: str
    spans: list[Span] = field(default_factory=list)
    group: str | None = None


@dataclass
class ReadReport:
    """What a reader met besides usable spans, for the notes every verb prints."""

    source: str
    documents: int = 0
    spans: Counter[str] = field(default_factory=Counter)
    other_lines: Counter[str] = field(default_factory=Counter)
    discontinuous: list[str] = field(default_factory=list)
    widened: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    overlaps_dropped: list[str] = field(default_factory=list)
    several_annotations: list[str] = field(default_factory=list)
    utf16_offsets: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        """One line per thing worth knowing, each with a count and where."""
        notes = [f"{self.source}: {self.documents} document(s), {sum(self.spans.values())} span(s) ({_by_kind(self.spans)})"]
        if self.other_lines:
            notes.append(f"{self.source}: .ann lines that are not text-bound entities, not used: {_by_kind(self.other_lines)}")
        kinds = [
            (self.discontinuous, "discontinuous span(s) read as their covering span"),
            (self.widened, "entity edge(s) inside a word; the entity was widened to whole words"),
            (self.duplicates, "span(s) annotated twice (same offsets and type), kept once"),
            (self.overlaps_dropped, "overlapping span(s) dropped (data.overlapping_spans: longest)"),
            (self.several_annotations, "task(s) with more than one annotation; the first was used"),
            (self.utf16_offsets, "region(s) whose offsets count UTF-16 units (as some Label Studio versions write them "
                                 "after an emoji or other character outside the BMP); converted to characters"),
        ]
        for items, what in kinds:
            if items:
                notes.append(f"{self.source}: {len(items)} {what}: {listed(items)}")
        return notes


def _by_kind(counts: Counter[str]) -> str:
    """``Disease 4, Modifier 2``: a count per span type or line kind; a kind that reads like text only counted."""
    shown = [f"{kind} {n}" for kind, n in sorted(counts.items()) if is_short_label(kind)]
    hidden = sum(n for kind, n in counts.items() if not is_short_label(kind))
    return ", ".join(shown + ([f"{hidden} whose type looks like text, not shown"] if hidden else []))


def read_document_text(path: Path) -> str:
    """A document's text exactly as stored (offsets count its characters); a clear error if it is not UTF-8."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(path, raw, exc) from exc


def not_utf8(path: Path, raw: bytes, exc: UnicodeDecodeError, fix: str = "re-save the file as UTF-8") -> DataError:
    """The error for a file that is not UTF-8: the bad byte, its offset and line, never the text around it."""
    line = raw.count(b"\n", 0, exc.start) + 1
    return DataError(f"{path}: not UTF-8 text (invalid byte 0x{raw[exc.start]:02x} at byte offset {exc.start}, line {line})\n"
                     f"  fix: {fix}")


def read_text_folder(folder: Path) -> list[Document]:
    """The ``.txt`` documents of a folder, in name order, without annotations (input for prediction)."""
    paths = sorted(folder.glob("*.txt"))
    if not paths:
        raise DataError(f"{folder}: no .txt documents in this folder\n  fix: point at the folder that holds NAME.txt files")
    return [Document(p.stem, read_document_text(p), group=p.stem) for p in paths]


def read_brat_folder(folder: Path) -> tuple[list[Document], ReadReport]:
    """The ``NAME.txt`` / ``NAME.ann`` pairs of a brat folder (``.ann`` files in sub-folders too)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; brat data is a folder of NAME.txt / NAME.ann pairs")
    report = ReadReport(str(folder))
    annotations = sorted(folder.rglob("*.ann"))
    texts = {p.with_suffix("") for p in folder.rglob("*.txt")}
    orphans = [a for a in annotations if a.with_suffix("") not in texts]
    if orphans:
        raise DataError(f"{orphans[0]}: no {orphans[0].with_suffix('.txt').name} beside it "
                        f"({len(orphans)} .ann file(s) without their text: {listed([o.name for o in orphans])})\n"
                        "  fix: copy each document's .txt next to its .ann")
    unannotated = sorted(t.with_suffix(".txt") for t in texts - {a.with_suffix("") for a in annotations})
    if unannotated:
        raise DataError(f"{unannotated[0]}: no {unannotated[0].with_suffix('.ann').name} beside it "
                        f"({len(unannotated)} .txt file(s) without annotations: {listed([u.name for u in unannotated])})\n"
                        "  fix: brat writes an empty NAME.ann for a document without entities; add one, "
                        "or move the document out if it was never annotated")
    if not annotations:
        raise DataError(f"{folder}: no .ann files in this folder\n  fix: point at the folder that holds NAME.txt / NAME.ann pairs")
    documents = []
    for ann in annotations:
        text_path = ann.with_suffix(".txt")
        name = str(ann.relative_to(folder).with_suffix(""))
        text = read_document_text(text_path)
        documents.append(Document(name, text, _read_ann(ann, text, report), group=name))
    report.documents = len(documents)
    return documents, report


def _read_ann(path: Path, text: str, report: ReadReport) -> list[Span]:
    spans = []
    for number, line in enumerate(read_document_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        if not line.startswith("T"):
            report.other_lines[line[0]] += 1
            continue
        match = _T_LINE.match(line)
        if match is None:
            fields = line.split("\t")
            problem = (f"{len(fields)} tab-separated field(s), not 3" if len(fields) != 3
                       else "its second field is not 'Type start end' (a type without spaces, then offsets)")
            raise DataError(f"{path} line {number}: not a brat entity line: {problem}\n"
                            "  fix: T lines read 'T1<TAB>Type start end<TAB>text'")
        _, kind, offsets, quoted = match.groups()
        fragments = [tuple(int(n) for n in part.split()) for part in offsets.split(";")]
        for start, end in fragments:
            if not 0 <= start < end <= len(text):
                raise DataError(f"{path} line {number}: offsets {start}-{end} lie outside the text "
                                f"({path.with_suffix('.txt').name} has {len(text)} characters)\n"
                                "  fix: the .ann must belong to this .txt, unchanged since it was annotated")
        found = " ".join(text[s:e] for s, e in fragments)
        if found.replace("\n", " ") != quoted.replace("\n", " "):
            raise DataError(f"{path} line {number}: the text at {offsets.replace(' ', '-')} in {path.with_suffix('.txt').name} is not "
                            f"the text the line quotes ({_difference(found, quoted)})\n"
                            "  fix: the .txt was changed after annotation, or its line ends were converted "
                            "(offsets count every character, \\r included)")
        if len(fragments) > 1:
            report.discontinuous.append(f"{where} ({offsets})")
        report.spans[kind] += 1
        spans.append(Span(fragments[0][0], fragments[-1][1], kind, where))
    return spans


def _difference(found: str, quoted: str) -> str:
    """How a span's text and the text quoted for it differ, by lengths and position only (never the text)."""
    same = next((i for i, (a, b) in enumerate(zip(found, quoted)) if a != b), min(len(found), len(quoted)))
    return f"{len(found)} and {len(quoted)} characters, first differing at character {same + 1} of the span"


def read_span_records(path: Path, group_key: str | None = None) -> tuple[list[Document], ReadReport]:
    """doccano JSONL (``text`` + ``label``/``entities``) or a Label Studio JSON export, told apart by their keys."""
    records = _json_records(path)
    report = ReadReport(str(path))
    first = records[0][1]
    documents = []
    if "annotations" in first or "data" in first:
        for number, record in records:
            documents.append(_label_studio_task(path, number, record, group_key, report))
    else:
        for number, record in records:
            documents.append(_doccano_record(path, number, record, group_key, report))
    report.documents = len(documents)
    return documents, report


def is_span_record(record: dict[str, Any]) -> bool:
    """Whether a JSON record looks like a doccano or Label Studio document rather than a token list."""
    return "annotations" in record or ("data" in record and isinstance(record["data"], dict)) or isinstance(record.get("text"), str)


def _json_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(number, record) pairs: line numbers for JSONL, task positions (1-based) for a JSON array."""
    content = read_document_text(path).lstrip("\ufeff")
    if content.lstrip().startswith("["):
        try:
            items = json.loads(content)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        pairs = list(enumerate(items, start=1))
    else:
        pairs = []
        for number, line in enumerate(content.splitlines(), start=1):
            if line.strip():
                try:
                    pairs.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path} line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
    for number, item in pairs:
        if not isinstance(item, dict):
            raise DataError(f"{path} {'line' if not content.lstrip().startswith('[') else 'task'} {number}: "
                            "each record must be a JSON object")
    if not pairs:
        raise DataError(f"{path}: no records found")
    return pairs


def _doccano_record(path: Path, number: int, record: dict[str, Any], group_key: str | None, report: ReadReport) -> Document:
    text = record.get("text")
    if not isinstance(text, str):
        raise DataError(f"{path} line {number}: no 'text' string (keys: {shown_labels(record)})\n"
                        "  fix: doccano records read {\"text\": ..., \"label\": [[start, end, \"TYPE\"], ...]}")
    raw = record.get("label", record.get("labels", record.get("entities", [])))
    if not isinstance(raw, list):
        raise DataError(f"{path} line {number}: 'label' must be a list of [start, end, TYPE]")
    spans = []
    for position, item in enumerate(raw, start=1):
        if isinstance(item, dict):  # doccano's newer export: {"start_offset", "end_offset", "label"}
            item = [item.get("start_offset"), item.get("end_offset"), item.get("label")]
        if not (isinstance(item, list) and len(item) == 3 and all(isinstance(v, int) for v in item[:2]) and isinstance(item[2], str)):
            shape = f"a list of {len(item)} value(s)" if isinstance(item, list) else f"a {type(item).__name__}"
            raise DataError(f"{path} line {number}: span {position} of 'label' is {shape}, not [start, end, \"TYPE\"] "
                            "(two whole-number offsets and a type)")
        spans.append(_checked_span(path, f"line {number}", text, item[0], item[1], item[2], None))
        report.spans[item[2]] += 1
    record_id = record.get("id")  # doccano numbers its records; any other id is a cell of the data, and not shown
    name = str(record_id) if isinstance(record_id, int) and not isinstance(record_id, bool) else f"line {number}"
    return Document(name, text, spans, group=_group(record, group_key, name, path, f"line {number}"))


def _label_studio_task(path: Path, number: int, task: dict[str, Any], group_key: str | None, report: ReadReport) -> Document:
    task_id = task.get("id")
    numbered = isinstance(task_id, int) and not isinstance(task_id, bool)  # any other id is a cell of the data: not shown
    name = f"task {task_id}" if numbered else f"record {number}"
    place = f"{name} (record {number})" if numbered else name
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    texts = [v for v in data.values() if isinstance(v, str)]
    text = data.get("text", texts[0] if len(texts) == 1 else None)
    if not isinstance(text, str):
        raise DataError(f"{path} {place}: no data.text\n"
                        "  fix: export from a Label Studio project whose text field is named 'text'")
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not annotations:
        raise DataError(f"{path} {place}: the task has no annotation\n"
                        "  fix: annotate or skip it in Label Studio, or export only annotated tasks")
    if len(annotations) > 1:
        report.several_annotations.append(name)
    spans = []
    for result in annotations[0].get("result") or []:
        value = result.get("value") or {}
        labels = value.get("labels")
        if labels is None or "start" not in value:
            report.other_lines[str(result.get("type", "other"))] += 1
            continue
        if len(labels) != 1:
            raise DataError(f"{path} {place}: region {_offset(value.get('start'))}-{_offset(value.get('end'))} carries "
                            f"{len(labels)} labels ({shown_labels(labels)}); one label per region is needed")
        start, end = value["start"], value["end"]
        quoted = value.get("text")
        if isinstance(quoted, str) and isinstance(start, int) and isinstance(end, int) and text[start:end] != quoted:
            converted = _from_utf16_units(text, start), _from_utf16_units(text, end)
            if text[converted[0]:converted[1]] == quoted:
                report.utf16_offsets.append(f"{name} {start}-{end}")
                start, end = converted
        span = _checked_span(path, name, text, start, end, labels[0], quoted)
        spans.append(span)
        report.spans[labels[0]] += 1
    return Document(name, text, spans, group=_group(data, group_key, name, path, name))


def _offset(value: Any) -> str:
    """An offset for a message: a whole number as it is, anything else by its type (it may be text)."""
    return str(value) if isinstance(value, int) else f"({type(value).__name__})"


def _from_utf16_units(text: str, offset: int) -> int:
    """The character offset in ``text`` of ``offset`` counted in UTF-16 code units, as JavaScript counts
    (a character outside the Basic Multilingual Plane, such as an emoji, counts as two)."""
    units = 0
    for index, char in enumerate(text):
        if units >= offset:
            return index
        units += 2 if ord(char) > 0xFFFF else 1
    return len(text)


def _checked_span(path: Path, place: str, text: str, start: Any, end: Any, kind: str, quoted: str | None) -> Span:
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
        raise DataError(f"{path} {place}: offsets {_offset(start)}-{_offset(end)} lie outside the text ({len(text)} characters)\n"
                        "  fix: re-export the annotations with the text they belong to")
    if quoted is not None and text[start:end] != quoted:
        raise DataError(f"{path} {place}: the text at {start}-{end} is not the text the export quotes for it "
                        f"({_difference(text[start:end], quoted)})\n"
                        "  fix: re-export the annotations with the text they belong to")
    return Span(start, end, kind, f"{path.name} {place}")


def _group(record: dict[str, Any], key: str | None, name: str, path: Path, place: str) -> str:
    if key is None:
        return name
    if key not in record:
        raise DataError(f"{path} {place}: no {key!r} field (data.group_column)\n"
                        "  fix: give every record that field, or leave data.group_column out")
    return str(record[key])
