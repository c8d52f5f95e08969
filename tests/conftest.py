"""Shared fixtures: the repository, the tiny model, and CLI runners."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = REPO / "models" / "tiny-bert"
SHARED_DATA = REPO.parent / "shared" / "data"
TASKS = ("diagnosis", "section_header", "seriousness", "ner", "symptoms")

# Keep the tokenisation cache of test runs out of the user's home folder, in a folder made here and removed
# when the run ends (pytest-xdist's workers inherit the controller's and leave it to the controller).
_OWN_CACHE_DIR = None if "CLINTUNE_CACHE_DIR" in os.environ else tempfile.mkdtemp(prefix="clintune-test-cache-")
if _OWN_CACHE_DIR is not None:
    os.environ["CLINTUNE_CACHE_DIR"] = _OWN_CACHE_DIR


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWN_CACHE_DIR is not None:
        shutil.rmtree(_OWN_CACHE_DIR, ignore_errors=True)


def require_module(name: str, reason: str = "") -> object:
    """``pytest.importorskip``, except in CI (``CI=true``), which installs every extra: there a missing
    module fails the run instead of silently skipping its tests."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=reason or f"{name} is not installed (pip install 'clintune[onnx]')")


def run_cli(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m clintune ARGS`` as a user would, capturing output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "clintune", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def invoke_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``run_cli`` in this process: the same entry point, exit status and output, without paying ~5 s of
    Python and library start-up per call. For calls that fail or finish before any training; the
    logging and warning settings the CLI changes are put back afterwards."""
    import contextlib
    import io

    from run_commands import call_main

    stdout, stderr, here = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = call_main(list(args))
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["clintune", *args], code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny config trained once through the real CLI; task name -> model folder. Tests read them only.

    What each run printed is kept beside its folder as ``TASK.stdout`` and ``TASK.stderr``. Under
    pytest-xdist the workers share one set: the first to ask trains it under a file lock in the run's
    common temporary folder, the others wait and read it (each worker trained its own before).
    """
    from filelock import FileLock

    own = tmp_path_factory.getbasetemp()
    common = own.parent if os.environ.get("PYTEST_XDIST_WORKER") else own
    root = common / "trained-models"
    folders = {task: root / task for task in TASKS}
    with FileLock(str(common / "trained-models.lock")):
        if not (root / "complete").is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            for task, folder in folders.items():
                result = run_cli("train", f"configs/tiny/{task}.yaml", "--set", f"output.dir={folder}")
                assert result.returncode == 0, f"training {task} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
                (root / f"{task}.stdout").write_text(result.stdout, encoding="utf-8")
                (root / f"{task}.stderr").write_text(result.stderr, encoding="utf-8")
            (root / "complete").touch()
    return folders


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path
