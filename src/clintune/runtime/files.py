"""Writing files so that a crash never leaves a half-written file or folder, nor loses the old one.

Every file clintune writes goes through a temporary file, ``fsync`` and a
rename; every folder (a model folder, a report, an ONNX export) is assembled
in full beside its destination and then swapped in with one atomic exchange,
so a reader sees the old folder or the new one, whole, never neither.
This module imports nothing of clintune's but ``errors``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# renameat2(2) flag: swap two paths in one step (Linux 3.15+, most local file systems).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _step(name: str) -> None:
    """A named point inside a multi-step write; tests replace this to kill the process there."""


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entry to disk."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` (and ``root`` itself) to disk."""
    for folder, _, names in os.walk(root):
        for name in names:
            fsync_path(Path(folder) / name)
        fsync_path(Path(folder))


def write_text_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write via a temporary file, ``fsync`` and a rename, so readers never see half a file.

    ``mode`` sets the file's permissions (e.g. ``0o600`` for owner-only).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            if mode is not None:
                os.chmod(temporary, mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


# Files that may hold note text (report examples, predictions, copies of documents, caches) are readable by
# their owner alone, as the README's Safety section lists.
PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def write_json(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, records: Iterable[dict[str, Any]], private: bool = False) -> None:
    """One JSON object per line, written atomically; ``private``: owner-only (records that quote or identify notes)."""
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                      mode=PRIVATE_FILE if private else None)


def make_private_dirs(folder: Path) -> None:
    """Create ``folder`` and any missing parents owner-only, whatever the umask (folders that exist keep their mode)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir(mode=PRIVATE_FOLDER, exist_ok=True)
        os.chmod(created, PRIVATE_FOLDER)  # mkdir's mode is masked by the umask


def staging_dir_for(output_dir: Path) -> Path:
    """The hidden folder beside ``output_dir`` where its next version is assembled."""
    return output_dir.with_name(f".{output_dir.name}.partial")


def publish(staging: Path, output_dir: Path) -> None:
    """Put the complete folder ``staging`` at ``output_dir``, replacing an old one only now.

    Everything is flushed to disk first. An existing ``output_dir`` is swapped
    with ``staging`` in one atomic exchange and then deleted, so at every
    instant ``output_dir`` is the old folder or the new one, whole. Where the
    file system cannot exchange (not Linux, or no ``renameat2``), the old
    folder is moved aside first and moved back if the second rename fails.
    """
    fsync_tree(staging)
    _step("flushed")
    if not output_dir.exists():
        os.rename(staging, output_dir)
        _step("renamed")
        fsync_path(output_dir.parent)
        return
    if _exchange(staging, output_dir):
        _step("exchanged")
        fsync_path(output_dir.parent)
        shutil.rmtree(staging)  # the old folder, now at the staging path
        return
    retired = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
    os.rename(output_dir, retired)
    _step("retired")
    try:
        os.rename(staging, output_dir)
    except BaseException:
        os.rename(retired, output_dir)
        raise
    _step("renamed")
    fsync_path(output_dir.parent)
    shutil.rmtree(retired)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically with ``renameat2(RENAME_EXCHANGE)``; False where unsupported."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (_errno("ENOSYS"), _errno("EINVAL"), _errno("ENOTSUP")):
        return False
    raise OSError(error, os.strerror(error), str(second))


def _errno(name: str) -> int:
    import errno

    return getattr(errno, name, -1)


def _renameat2() -> Any:
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def remove_stale(path: Path) -> None:
    """Delete a leftover staging folder or file of an earlier, interrupted write."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def sha256_of(path: Path, files: Iterable[Path] | None = None) -> str:
    """The SHA-256 of a file (what ``sha256sum`` prints); of a folder, over each file's relative name and bytes
    in name order (``files``: only these of the folder's files)."""
    digest = hashlib.sha256()
    if files is None and path.is_file():
        members = [(None, path)]
    else:
        chosen = files if files is not None else (p for p in path.rglob("*") if p.is_file())
        members = [(file.relative_to(path).as_posix(), file) for file in sorted(chosen)]
    for name, file in members:
        if name is not None:
            digest.update(name.encode() + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; empty when the file is missing, unreadable or not an object (optional files)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
