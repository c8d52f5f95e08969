"""Crash-safe writing: a process killed at any step of publishing leaves the old folder or the new one, whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, write

from clintune.runtime import files

KILL_AND_PUBLISH = """
import os, signal, sys
from pathlib import Path
from clintune.runtime import files
kill_at = sys.argv[3]
def step(name):
    if name == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
files._step = step
files.publish(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def folder_with(path: Path, version: str, n: int = 5) -> Path:
    for i in range(n):
        write(path / f"part-{i}.txt", f"{version} {i}\n")
    write(path / "sub" / "weights.bin", version * 1000)
    return path


def version_of(folder: Path) -> str:
    """'old' or 'new' when the folder is one of them complete; raise otherwise."""
    contents = {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()}
    for version in ("old", "new"):
        expected = {f"part-{i}.txt": f"{version} {i}\n" for i in range(5)} | {"sub/weights.bin": version * 1000}
        if contents == expected:
            return version
    raise AssertionError(f"{folder} is neither folder whole: {sorted(contents)}")


@pytest.mark.parametrize("kill_at", ["flushed", "exchanged", "never"])
def test_a_kill_at_any_step_of_replacing_leaves_one_whole_folder(tmp_path: Path, kill_at: str) -> None:
    target = folder_with(tmp_path / "model", "old")
    staging = folder_with(tmp_path / ".model.partial", "new")
    result = subprocess.run([sys.executable, "-c", KILL_AND_PUBLISH, str(staging), str(target), kill_at],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == (-9 if kill_at != "never" else 0), result.stderr
    assert version_of(target) == ("old" if kill_at == "flushed" else "new")
    if kill_at == "never":
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # nothing stray left


@pytest.mark.parametrize("kill_at", ["flushed", "renamed"])
def test_a_kill_while_publishing_a_new_folder_leaves_nothing_half_there(tmp_path: Path, kill_at: str) -> None:
    target = tmp_path / "report"
    staging = folder_with(tmp_path / ".report.partial", "new")
    subprocess.run([sys.executable, "-c", KILL_AND_PUBLISH, str(staging), str(target), kill_at], cwd=REPO)
    if kill_at == "flushed":
        assert not target.exists()
    else:
        assert version_of(target) == "new"


def test_without_an_atomic_exchange_a_failed_rename_restores_the_old_folder(tmp_path: Path, monkeypatch) -> None:
    target = folder_with(tmp_path / "model", "old")
    staging = tmp_path / "missing-staging"
    staging.mkdir()
    monkeypatch.setattr(files, "_exchange", lambda first, second: False)
    monkeypatch.setattr(files, "fsync_tree", lambda root: (root.rmdir(), None))  # the staging folder vanishes
    with pytest.raises(OSError):
        files.publish(staging, target)
    assert version_of(target) == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_the_exchange_really_swaps_two_folders(tmp_path: Path) -> None:
    """Checks that this machine's renameat2 is used (the kill test above relies on it)."""
    first, second = folder_with(tmp_path / "a", "old"), folder_with(tmp_path / "b", "new")
    assert files._exchange(first, second)
    assert version_of(first) == "new" and version_of(second) == "old"


def test_an_atomic_write_leaves_no_temporary_file_and_sets_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "x" / "entry.json"
    files.write_text_atomic(path, "{}", mode=0o600)
    assert path.read_text() == "{}" and (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["entry.json"]
