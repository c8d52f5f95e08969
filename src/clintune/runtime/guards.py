"""What a verb may write: never over what it reads, never over a folder it did not write.

Every verb that writes calls ``check_outputs`` before it writes anything. Paths
are compared as real paths (symbolic links followed, ``..`` resolved), so a
mistake made through a link or a relative path is caught like a direct one.
The folder checks (``check_replaceable``) decide whether an existing folder at
an output path is clintune's own and may be replaced.
This module imports nothing of clintune's but ``errors``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from clintune.errors import ClintuneError, listed


@dataclass(frozen=True)
class Input:
    """A path a verb reads. ``whole``: the verb reads the folder as a whole (a model folder)."""

    label: str
    path: Path
    whole: bool = False


@dataclass(frozen=True)
class Output:
    """A path a verb writes (a file, or a folder it creates or replaces)."""

    label: str
    path: Path


def real(path: Path) -> Path:
    """``path`` with symbolic links followed and ``..`` resolved, whether or not it exists."""
    return Path(os.path.realpath(os.path.expanduser(path)))


def check_outputs(verb: str, inputs: Iterable[Input | None], outputs: Iterable[Output | None]) -> None:
    """Refuse (exit 2) when an output is an input, lies inside a folder read as a whole, or holds an input."""
    readers = [i for i in inputs if i is not None]
    for output in (o for o in outputs if o is not None):
        target = real(output.path)
        for source in readers:
            relation = _clash(target, real(source.path), source.whole)
            if relation:
                raise ClintuneError(
                    f"{verb}: {output.label} {_shown(output.path)} {relation} {source.label} {_shown(source.path)}; "
                    "writing there would overwrite what the command reads\n"
                    f"  fix: choose a {output.label} path outside the inputs"
                )


def _clash(target: Path, source: Path, whole: bool) -> str | None:
    if target == source:
        return "is the same path as"
    if source.is_relative_to(target):
        return "holds"
    if whole and target.is_relative_to(source):
        return "lies inside"
    return None


def _shown(path: Path) -> str:
    """The path as given, and its real path where that differs."""
    resolved = real(path)
    given = str(path)
    return given if Path(os.path.abspath(given)) == resolved else f"{given} (= {resolved})"


# --------------------------------------------------------------------------
# Replacing a folder


def describe_entries(folder: Path, limit: int = 5) -> str:
    """'a.txt, b/ and 3 more': what a folder holds, for messages."""
    return listed(sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()), limit)


def check_replaceable(path: Path, option: str, owned: Callable[[str], bool], required: Iterable[str], kind: str) -> None:
    """Refuse to replace ``path`` unless it is absent, an empty folder, or a ``kind`` clintune wrote.

    A folder counts as clintune's when it holds every name in ``required`` and
    only names that ``owned`` accepts (so a file a person put there is never deleted).
    """
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise ClintuneError(
            f"{option}: {path} exists and is a {'symbolic link' if path.is_symlink() else 'file'}, not a folder\n"
            f"  fix: choose another path; clintune replaces only a {kind} it wrote"
        )
    names = {p.name for p in path.iterdir()}
    if not names:
        return
    missing = sorted(set(required) - names)
    foreign = sorted(name for name in names if not owned(name))
    if foreign:
        reason = f"it holds {listed(foreign)}"
    elif missing:
        reason = f"it lacks {', '.join(missing)}; it holds {describe_entries(path)}"
    else:
        return
    raise ClintuneError(
        f"{option}: {path} is not a {kind} written by clintune ({reason}), so it is never replaced\n"
        "  fix: choose another path, or move that folder's files away yourself"
    )
