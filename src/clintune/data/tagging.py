"""Annotated documents to BIO-tagged sentences (spans mapped to types, overlaps resolved, entity edges
widened to whole words), and predicted entities back to brat ``.ann`` text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clintune.data.documents import Document, ReadReport, Span
from clintune.data.labels import is_short_label, shown_labels
from clintune.data.sentences import sentence_bounds, split_words
from clintune.errors import DataError


@dataclass
class TaggedDocuments:
    """Word-level BIO sentences made from documents: what ``clintune.data.readers`` wraps as ``TaggedSentences``."""

    tokens: list[list[str]] = field(default_factory=list)
    tags: list[list[str]] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)


def tag_documents(
    documents: list[Document],
    report: ReadReport,
    type_map: dict[str, str] | None = None,
    allowed_types: set[str] | None = None,
    overlapping: str = "error",
    split_sentences: bool = True,
) -> TaggedDocuments:
    """BIO-tagged word sentences of every document (see the module docstring for each rule).

    ``type_map`` renames or merges span types (``labels.map``); ``allowed_types``
    (from ``labels.classes``) makes any other type an error naming its line.
    """
    out = TaggedDocuments()
    for document in documents:
        spans = _resolved_spans(document, report, type_map or {}, allowed_types, overlapping)
        bounds = sentence_bounds(document.text, spans) if split_sentences else [(0, len(document.text))]
        for start, end in bounds:
            words = split_words(document.text, start, end)
            if not words:
                continue
            out.tokens.append([w for w, _, _ in words])
            out.tags.append(_bio_tags(document, words, [s for s in spans if start <= s.start < end], report))
            out.rows.append(f"{document.name}@{start}")
            out.groups.append(document.group or document.name)
    return out


def _resolved_spans(document: Document, report: ReadReport, type_map: dict[str, str], allowed: set[str] | None,
                    overlapping: str) -> list[Span]:
    """The document's spans renamed, checked against the allowed types, deduplicated and free of overlaps."""
    renamed = []
    for span in document.spans:
        kind = type_map.get(span.type, span.type)
        if allowed is not None and kind not in allowed:
            mapped = f" (mapped from {shown_labels([span.type])} by labels.map)" if kind != span.type else ""
            shown = kind if is_short_label(kind) else "TYPE"
            raise DataError(f"{report.source}: {span.where}: type {shown_labels([kind])}{mapped} is not in labels.classes "
                            f"(types there: {', '.join(sorted(allowed))})\n"
                            f"  fix: add B-{shown} and I-{shown} to labels.classes, or map the type with labels.map")
        renamed.append(Span(span.start, span.end, kind, span.where))
    kept: list[Span] = []
    seen: set[tuple[int, int, str]] = set()
    for span in sorted(renamed, key=lambda s: (s.start, -(s.end - s.start))):
        if (span.start, span.end, span.type) in seen:
            report.duplicates.append(span.where)
            continue
        seen.add((span.start, span.end, span.type))
        clash = next((k for k in kept if k.start < span.end and span.start < k.end), None)
        if clash is None:
            kept.append(span)
            continue
        if overlapping == "error":
            raise DataError(
                f"{report.source}: {span.where} ({_type(span.type)} {span.start}-{span.end}) overlaps {clash.where} "
                f"({_type(clash.type)} {clash.start}-{clash.end}); BIO tags hold one entity per word\n"
                "  fix: remove one of them, or set data.overlapping_spans=longest to keep the longer span")
        longer = span if span.end - span.start > clash.end - clash.start else clash
        if longer is span:
            kept[kept.index(clash)] = span
            report.overlaps_dropped.append(clash.where)
        else:
            report.overlaps_dropped.append(span.where)
    return sorted(kept, key=lambda s: s.start)


def _type(kind: str) -> str:
    """A span type for a message, unquoted; one that reads like text is not shown (``labels.is_short_label``)."""
    return kind if is_short_label(kind) else "a type that looks like text"


def _bio_tags(document: Document, words: list[tuple[str, int, int]], spans: list[Span], report: ReadReport) -> list[str]:
    tags = ["O"] * len(words)
    for span in spans:
        inside = [i for i, (_, start, end) in enumerate(words) if start < span.end and span.start < end]
        if not inside:
            continue
        first, last = words[inside[0]], words[inside[-1]]
        if first[1] < span.start or last[2] > span.end:
            report.widened.append(f"{document.name} {span.start}-{span.end} ({span.where})")
        for position, i in enumerate(inside):
            if tags[i] != "O":  # two spans widened onto one word: the earlier one keeps it
                break
            tags[i] = ("B-" if position == 0 else "I-") + span.type
    return tags


def ann_text(entities: list[tuple[str, int, int]], text: str) -> str:
    """A brat ``.ann`` file's content for (type, start, end) entities of ``text``: T1, T2, ... in offset order."""
    lines = []
    for number, (kind, start, end) in enumerate(sorted(entities, key=lambda e: (e[1], e[2])), start=1):
        lines.append(f"T{number}\t{kind} {start} {end}\t{text[start:end].replace(chr(10), ' ')}")
    return "".join(line + "\n" for line in lines)
