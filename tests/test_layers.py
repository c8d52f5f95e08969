"""The import layers of pyproject.toml's [tool.importlinter] hold, and a change that imports upward breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, require_module


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` run on the clintune sources under ``root`` with ``root``'s pyproject.toml."""
    require_module("importlinter", "import-linter is not installed (pip install -e '.[dev]')")
    command = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(root / "src"), os.environ.get("PYTHONPATH", "")) if p)}
    return subprocess.run([str(command), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_layers_hold() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


def test_an_upward_import_inside_a_function_breaks_the_layers(tmp_path: Path) -> None:
    shutil.copytree(REPO / "src" / "clintune", tmp_path / "src" / "clintune", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    data = tmp_path / "src" / "clintune" / "data.py"
    data.write_text(data.read_text(encoding="utf-8") + "\n\ndef _upward():\n    from clintune.prediction import Predictor\n\n"
                    "    return Predictor\n", encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "clintune.data is not allowed to import clintune.prediction" in result.stdout


def test_a_module_outside_every_layer_breaks_the_layers(tmp_path: Path) -> None:
    shutil.copytree(REPO / "src" / "clintune", tmp_path / "src" / "clintune", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "src" / "clintune" / "service.py").write_text('"""A new module that no layer names."""\n', encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "clintune.service" in result.stdout


def test_help_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys\n"
        "from clintune.cli import app\n"
        "sys.argv = ['clintune', '--help']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "train" in done.stdout and "validate" in done.stdout, done.stdout + done.stderr
    assert "HEAVY []" in done.stdout, done.stdout
