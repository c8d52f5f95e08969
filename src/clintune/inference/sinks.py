"""Prediction results written chunk by chunk, published whole at the end, resumable in between.

``ChunkedOutput`` keeps a run's finished chunks in a hidden folder beside the
output (``.OUT.partial/``: ``state.json`` and one ``chunk-NNNNNN`` file per
chunk, each written atomically). The output itself is written only once every
chunk is done: the chunks are joined into one file inside that folder, which
is then renamed over the output in one step and the folder removed. A killed
run leaves the output as it was (absent, or the previous complete file) and
its finished chunks in the folder, where ``--resume`` finds them; a resumed
run must read the same input with the same model and options, which
``state.json`` records as hashes.

Output is JSON lines (one object per input row) or, for ``.parquet``, a
Parquet file with one column per field and a fixed schema (``record_schema``).
Results identify notes (row numbers, ids, entity text), so the folder is owner-only
and so are the chunks and the published output.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clintune.errors import ClintuneError, DataError
from clintune.runtime.files import PRIVATE_FILE, fsync_path, make_private_dirs, remove_stale, staging_dir_for, write_json, write_jsonl
from clintune.runtime.guards import check_replaceable

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
_CHUNK = re.compile(r"^chunk-(\d{6})\.(jsonl|parquet)$")


def result_record(result: Any, probabilities: bool = False) -> dict[str, Any]:
    """The JSON object ``clintune predict`` writes for one result: label, score (and every class's
    probability when asked), or the entities with their offsets."""
    if isinstance(result, list):
        return {"entities": [entity.to_dict() for entity in result]}
    record = result.to_dict()
    if not probabilities:
        del record["probabilities"]
    return record


def output_format(path: Path) -> str:
    """``parquet`` for a ``.parquet`` output, else ``jsonl``."""
    return "parquet" if path.suffix.lower() == ".parquet" else "jsonl"


def check_prediction_output(path: Path) -> None:
    """Refuse an existing ``--output`` file unless it is a prediction file clintune wrote (or empty).

    A rerun replaces its own earlier results; a file of the user's (notes, a spreadsheet, another
    tool's output) that shares the name is never replaced. A clintune prediction file is JSON lines
    whose first record has ``label`` and ``score``, ``labels`` and ``scores`` (multi-label) or ``entities``,
    or Parquet with those columns.
    Folders are left to the writers that make them (``--engine ray``, ``--format brat``).
    """
    if not path.is_file() or path.stat().st_size == 0:
        return
    if _holds_predictions(path):
        return
    raise ClintuneError(
        f"--output: {path} exists and is not a prediction file written by clintune (no label/score or entities "
        f"{'columns' if output_format(path) == 'parquet' else 'in its first line'}), so it is never replaced\n"
        "  fix: choose another --output path, or move that file away yourself"
    )


def _holds_predictions(path: Path) -> bool:
    def predictions(names: Any) -> bool:
        return {"label", "score"} <= set(names) or "entities" in names or {"labels", "scores"} <= set(names)

    if output_format(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            return predictions(pq.read_schema(path).names)
        except (OSError, ValueError):  # not Parquet at all (pyarrow.ArrowInvalid is a ValueError)
            return False
    try:
        with path.open("rb") as handle:
            first = json.loads(handle.readline(1 << 20))
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and predictions(first)


def record_schema(key_fields: list[tuple[str, Any]], task_type: str, classes: list[str], probabilities: bool) -> Any:
    """The Parquet schema of prediction records: the key columns (row number, id), then the result's."""
    import pyarrow as pa

    fields = [pa.field(name, kind) for name, kind in key_fields]
    if task_type == "ner":
        entity = pa.struct([("text", pa.string()), ("label", pa.string()), ("start", pa.int64()), ("end", pa.int64()),
                            ("score", pa.float64())])
        return pa.schema([*fields, pa.field("entities", pa.list_(entity))])
    if task_type == "multilabel":  # the labels over their thresholds, most probable first, and their probabilities
        label_score = pa.struct([(name, pa.float64()) for name in classes])
        fields += [pa.field("labels", pa.list_(pa.string())), pa.field("scores", label_score), pa.field("thresholds", label_score)]
        return pa.schema(fields + ([pa.field("probabilities", label_score)] if probabilities else []))
    fields += [pa.field("label", pa.string()), pa.field("score", pa.float64())]
    if probabilities:
        fields.append(pa.field("probabilities", pa.struct([(name, pa.float64()) for name in classes])))
    fields.append(pa.field("decided_by", pa.struct([("rule", pa.string()), ("group", pa.string()),
                                                    ("group_probability", pa.float64())])))  # null: the most probable class
    return pa.schema(fields)


def records_table(records: list[dict[str, Any]], schema: Any) -> Any:
    """``records`` as an Arrow table of ``schema``; a value of another type is a ``DataError``."""
    import pyarrow as pa

    try:
        return pa.Table.from_pylist(records, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"a value does not fit the output's column types ({exc})\n"
                        "  fix: every row's id must have the same type (all numbers or all text)") from exc


class ChunkedOutput:
    """A prediction output assembled from chunks in ``.OUT.partial/``, published at the end (see module doc)."""

    def __init__(self, output: Path, state: dict[str, Any], resume: bool, schema: Any = None) -> None:
        self.output = output
        self.format = output_format(output)
        self.schema = schema
        self.partial = staging_dir_for(output)
        check_replaceable(self.partial, "--output", _is_partial_entry, (), "partial prediction folder")
        previous = self._read_state()
        done = self.finished_chunks()
        self.resumed = 0
        if previous == state and done:
            if not resume:
                raise ClintuneError(
                    f"an interrupted run of this command left {done} finished chunk(s) in {self.partial}\n"
                    f"  fix: add --resume to continue it, or delete {self.partial} to start over"
                )
            self.resumed = done
            return
        if previous is not None and resume and done:
            raise ClintuneError(
                f"--resume: the interrupted run in {self.partial} {_differences(previous, state)}; "
                "continuing it would mix two runs' results\n"
                f"  fix: rerun it exactly as it was started, or run without --resume to start over (its {done} "
                "finished chunk(s) are then discarded)"
            )
        if done:
            logger.warning("discarding %d finished chunk(s) of an earlier, different run in %s", done, self.partial)
        remove_stale(self.partial)
        self.partial.parent.mkdir(parents=True, exist_ok=True)  # the user's folder keeps the umask's mode
        make_private_dirs(self.partial)
        write_json(self.partial / STATE_FILE, state)

    def _read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.partial / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def finished_chunks(self) -> int:
        """How many chunks, counted from the first, are already written."""
        if not self.partial.is_dir():
            return 0
        numbers = {int(m[1]) for m in map(_CHUNK.match, os.listdir(self.partial)) if m and m[2] == self.format}
        count = 0
        while count in numbers:
            count += 1
        return count

    def _chunk_path(self, index: int) -> Path:
        return self.partial / f"chunk-{index:06d}.{self.format}"

    def write(self, index: int, records: list[dict[str, Any]]) -> None:
        """Keep one finished chunk (atomically: a chunk file is whole or absent)."""
        path = self._chunk_path(index)
        if self.format == "jsonl":
            write_jsonl(path, records, private=True)
            return
        import pyarrow.parquet as pq

        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            pq.write_table(records_table(records, self.schema), temporary)
            os.chmod(temporary, PRIVATE_FILE)
            fsync_path(temporary)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def publish(self, chunk_count: int) -> None:
        """Join chunks ``0 .. chunk_count - 1`` into the output, replace the output in one step, drop the folder."""
        joined = self.partial / f"joined.{self.format}"
        parts = [self._chunk_path(i) for i in range(chunk_count)]
        if self.format == "jsonl":
            _concatenate(parts, joined)
        else:
            _join_parquet(parts, joined, self.schema)
        os.chmod(joined, PRIVATE_FILE)
        fsync_path(joined)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        os.replace(joined, self.output)
        fsync_path(self.output.parent)
        shutil.rmtree(self.partial)


def _is_partial_entry(name: str) -> bool:
    return name == STATE_FILE or bool(_CHUNK.match(name)) or name.startswith(("joined.", ".")) or name.startswith(".state.json.tmp-")


def _differences(previous: dict[str, Any], current: dict[str, Any]) -> str:
    """'read another input file and used other options (--chunk-size 500, now 1000)': what changed, for messages."""
    said = []
    if previous.get("input") != current.get("input"):
        said.append("read another input (the file's content differs)")
    if previous.get("model") != current.get("model"):
        said.append("used another model (the model folder's files differ)")
    before, now = previous.get("options") or {}, current.get("options") or {}
    changed = [f"{key} {before.get(key)!r}, now {now.get(key)!r}" for key in sorted(before.keys() | now.keys())
               if before.get(key) != now.get(key)]
    if changed:
        said.append("used other options (" + "; ".join(changed) + ")")
    return " and ".join(said) or "was started by another version of clintune"


def _concatenate(parts: Iterable[Path], target: Path) -> None:
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 20)


def _join_parquet(parts: list[Path], target: Path, schema: Any) -> None:
    import pyarrow.parquet as pq

    with pq.ParquetWriter(target, schema) as writer:
        for part in parts:
            writer.write_table(pq.read_table(part, schema=schema))
