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
    assert "9 kept, 0 broken" in result.stdout


def test_an_upward_import_inside_a_function_breaks_the_layers(tmp_path: Path) -> None:
    shutil.copytree(REPO / "src" / "clintune", tmp_path / "src" / "clintune", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    data = tmp_path / "src" / "clintune" / "data" / "readers.py"
    data.write_text(data.read_text(encoding="utf-8") + "\n\ndef _upward():\n    from clintune.inference.predictor import Predictor\n\n"
                    "    return Predictor\n", encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "clintune.data is not allowed to import clintune.inference" in result.stdout


def test_a_module_outside_every_layer_breaks_the_layers(tmp_path: Path) -> None:
    shutil.copytree(REPO / "src" / "clintune", tmp_path / "src" / "clintune", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "src" / "clintune" / "service.py").write_text('"""A new module that no layer names."""\n', encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "clintune.service" in result.stdout


def heavy_modules_after(*argv: str) -> str:
    """What ``clintune ARGV`` printed, and which heavy modules it had imported, in one process."""
    code = (
        "import sys\n"
        "from clintune.cli import app\n"
        f"sys.argv = ['clintune', *{list(argv)!r}]\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    return done.stdout + done.stderr


def test_help_and_validate_import_neither_torch_nor_transformers_nor_numpy() -> None:
    """The API gathers every workflow, so importing it must stay light: a model folder's decision rule
    (numpy) is read only when a folder is loaded. ``validate`` may load numpy and scikit-learn for its
    leakage check (near duplicates by TF-IDF), never a model library."""
    shown = heavy_modules_after("--help")
    assert "train" in shown and "validate" in shown and "HEAVY []" in shown, shown
    checked = heavy_modules_after("validate", "configs/tiny/ner.yaml")
    assert "config and data are valid" in checked and "HEAVY [" in checked, checked
    assert "'torch'" not in checked and "'transformers'" not in checked, checked
