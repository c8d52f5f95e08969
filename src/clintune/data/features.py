"""Training features as Arrow files on disk (``datasets``), built in bounded batches and read through a memory map.

A split is tokenised ``BATCH_ROWS`` examples at a time by ``Dataset.map(batched=True)`` into one Arrow file
(token ids as int32, masks as int8, a ``length`` column for the length-grouped sampler, the example each
feature came from); the Trainer reads it through a memory map. Nothing of the split's tokenisation is held
in Python objects, so memory does not grow with the training set.

The file is also the tokenisation cache: ``<key>.arrow`` beside ``<key>.json`` (the counts, written last, so
an entry is complete only once it exists), where ``key`` is clintune's own fingerprint of the tokenizer, the
settings and every row (:func:`encoding_key`), passed to ``datasets`` as the fingerprint and the file name.
Entries are readable by their owner only: token ids decode back into clinical text. Without a cache folder
the file goes to an owner-only temporary folder that is removed when the process exits.

``map`` runs in this process: the fast tokenizer already spreads each batch over every core, and worker
processes (``num_proc``) would run it without that thread pool (docs/benchmarks.md, "Training data at scale").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clintune.data.tokenization import Encoded
from clintune.errors import ClintuneError

logger = logging.getLogger(__name__)

BATCH_ROWS = 1000
FORMAT = "arrow-1"  # part of every key: entries written by another layout of the file are never read
ENTRY = re.compile(r"^[0-9a-f]{40}\.(arrow|json)$")
STAGING_PREFIX = ".building-"
BOOKKEEPING = ("example_index", "length")


@dataclass
class TrainingFeatures:
    """One split's features: a memory-mapped ``datasets.Dataset`` and its counts.

    ``too_long`` counts examples longer than ``max_length``; ``from_cache`` says the file was already there.
    """

    dataset: Any
    n_examples: int
    too_long: int
    from_cache: bool = False

    def __len__(self) -> int:
        return int(self.dataset.num_rows)

    def model_inputs(self) -> Any:
        """The dataset with the columns the model and the loss read (ids, masks, labels), as the Trainer's."""
        return self.dataset.select_columns([c for c in self.dataset.column_names if c not in BOOKKEEPING])

    def lengths(self) -> list[int]:
        """Every feature's length in tokens, from the ``length`` column (one Arrow read)."""
        return [int(n) for n in self.dataset.data.column("length").to_numpy()]

    def labels(self) -> Iterator[Any]:
        """Every feature's labels (an id, a list of subword tag ids, or a multi-hot list), in order."""
        for batch in self.dataset.select_columns(["labels"]).iter(batch_size=4096):
            yield from batch["labels"]


def encoding_key(tokenizer: Any, settings: dict[str, Any], columns: dict[str, list[Any]]) -> str:
    """A fingerprint of everything an encoding depends on: the tokenizer, the settings and every row's
    values, hashed one row at a time (never one JSON document of the whole split)."""
    digest = hashlib.sha256(FORMAT.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # truncation and padding are per-call state the tokenizer keeps; they are not part of its identity
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        digest.update(json.dumps(state, sort_keys=True).encode())
    else:
        digest.update(repr(tokenizer).encode())
    digest.update(json.dumps([settings, sorted(columns)], sort_keys=True).encode())
    for name in sorted(columns):
        for value in columns[name]:
            digest.update(json.dumps(value, ensure_ascii=False).encode())
            digest.update(b"\x1e")
    return digest.hexdigest()[:40]


def arrow_features(has_token_types: bool, labels: str | None) -> Any:
    """The Arrow types of the feature columns: int32 ids, int8 masks, and ``labels`` as ``"id"`` (int64),
    ``"ids"`` (one per subword) or ``"multi_hot"`` (float32 per class)."""
    from datasets import Features, List, Value

    columns: dict[str, Any] = {"input_ids": List(Value("int32")), "attention_mask": List(Value("int8"))}
    if has_token_types:
        columns["token_type_ids"] = List(Value("int8"))
    if labels == "id":
        columns["labels"] = Value("int64")
    elif labels == "ids":
        columns["labels"] = List(Value("int64"))
    elif labels == "multi_hot":
        columns["labels"] = List(Value("float32"))
    return Features({**columns, "example_index": Value("int64"), "length": Value("int32")})


def build_features(
    source: dict[str, list[Any]], encode: Callable[[dict[str, list[Any]]], Encoded], schema: Any,
    folder: Path, key: str, description: str,
) -> TrainingFeatures:
    """The features of ``source`` (columns of equal length) from ``folder/<key>.arrow`` when complete there,
    else encoded ``BATCH_ROWS`` rows at a time by ``encode`` and written there.

    A write that fails (a full disk, a file size limit) leaves no entry behind and raises a ``ClintuneError``.
    """
    from datasets import Dataset

    arrow, info = folder / f"{key}.arrow", folder / f"{key}.json"
    counts = _read_counts(info) if arrow.is_file() else None
    if counts is not None:
        return TrainingFeatures(Dataset.from_file(str(arrow)), counts["n_examples"], counts["too_long"], from_cache=True)
    n_examples = len(next(iter(source.values()), []))
    too_long = 0

    def encode_batch(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        nonlocal too_long
        encoded = encode(batch)
        too_long += encoded.too_long
        columns = {name: [feature[name] for feature in encoded.features] for name in schema if name not in BOOKKEEPING}
        columns["example_index"] = [indices[i] for i in encoded.example_index]
        columns["length"] = [len(feature["input_ids"]) for feature in encoded.features]
        return columns

    staging: Path | None = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
        table = Dataset.from_dict(source)
        table.map(encode_batch, batched=True, batch_size=BATCH_ROWS, with_indices=True, remove_columns=table.column_names,
                  features=schema, cache_file_name=str(staging / "features.arrow"), new_fingerprint=key,
                  load_from_cache_file=False, desc=description)
        del table
        os.chmod(staging / "features.arrow", 0o600)
        os.replace(staging / "features.arrow", arrow)
        _write_counts(info, {"n_examples": n_examples, "too_long": too_long})
    except OSError as exc:
        arrow.unlink(missing_ok=True)
        raise ClintuneError(f"{description}: could not write the tokenised data to {folder}: {exc.strerror or exc}\n"
                            "  fix: free space there, point $CLINTUNE_CACHE_DIR (or TMPDIR, with the cache off) at a disk "
                            "with room") from exc
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return TrainingFeatures(Dataset.from_file(str(arrow)), n_examples, too_long)


def _read_counts(path: Path) -> dict[str, int] | None:
    try:
        counts = json.loads(path.read_text(encoding="utf-8"))
        return {"n_examples": int(counts["n_examples"]), "too_long": int(counts["too_long"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no entry, or an incomplete or damaged one: encoded again


def _write_counts(path: Path, counts: dict[str, int]) -> None:
    from clintune.runtime.files import PRIVATE_FILE, write_text_atomic

    write_text_atomic(path, json.dumps(counts), mode=PRIVATE_FILE)


_scratch: Path | None = None


def scratch_folder() -> Path:
    """An owner-only temporary folder for features that are not cached, removed when the process exits."""
    global _scratch
    if _scratch is None or not _scratch.is_dir():
        import atexit

        _scratch = Path(tempfile.mkdtemp(prefix="clintune-features-"))
        atexit.register(shutil.rmtree, _scratch, True)
    return _scratch


def usable_cache_folder(folder: Path) -> Path | None:
    """``folder``, created owner-only, when entries can be written there; None (said once) when they cannot."""
    from clintune.runtime.files import make_private_dirs

    try:
        make_private_dirs(folder)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=STAGING_PREFIX)
        probe.close()
        return folder
    except OSError as exc:
        if folder not in _unwritable:
            _unwritable.add(folder)
            logger.warning("tokenisation cache: %s is not writable (%s); going on without the cache", folder,
                           exc.strerror or exc)
        return None


_unwritable: set[Path] = set()


def cache_entries(folder: Path) -> list[Path]:
    """The cache's files in ``folder``: entries of every layout clintune has written, and unfinished builds."""
    if not folder.is_dir():
        return []
    return [entry for entry in folder.iterdir()
            if (entry.is_file() and ENTRY.match(entry.name)) or (entry.is_dir() and entry.name.startswith(STAGING_PREFIX))]


def cache_size(folder: Path) -> tuple[int, int]:
    """How many entries (a split's tokenisation each) ``folder`` holds, and their bytes."""
    entries = cache_entries(folder)
    arrows = {entry.stem for entry in entries if entry.suffix == ".arrow"}
    earlier = [entry for entry in entries if entry.suffix == ".json" and entry.stem not in arrows]  # the old JSON cache
    return len(arrows) + len(earlier), sum(_bytes(entry) for entry in entries)


def remove_cache_entries(folder: Path) -> tuple[int, int]:
    """Delete the cache's files in ``folder`` (and the folder, once empty); returns the entries (split
    tokenisations) and bytes removed."""
    entries, size = cache_size(folder)
    for entry in cache_entries(folder):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink()
    for empty in (folder, folder.parent):
        if empty.name in ("tokenized", ".clintune-cache") and empty.is_dir() and not any(empty.iterdir()):
            empty.rmdir()
    return entries, size


def _bytes(entry: Path) -> int:
    if entry.is_dir():
        return sum(path.stat().st_size for path in entry.rglob("*") if path.is_file())
    return entry.stat().st_size
