"""The code blocks of the README and the docs pages run as written, so the docs cannot drift from the code.

Every ``bash``, ``python``, ``json`` and ``yaml`` block is checked in a scratch
folder that holds ``configs/`` (a copy), ``data/`` and ``models/`` (links), in
README order: bash blocks must consist of ``clintune`` commands, each run
through ``python -m clintune`` and required to succeed; python blocks are run
as a script; each line of a json block must parse; a yaml block must be a
valid clintune config. A block that cannot run here (real data, several GPUs,
a network, a new virtual environment) carries
``<!-- readme-test: skip (reason) -->`` on the line above it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, run_cli

README = REPO / "README.md"
# The README, then the docs pages in the order they were one README: a later block may use what an earlier one
# trained (runs/tiny-ner, runs/tiny-symptoms). Every page with code blocks is here (test_every_docs_page_is_run).
DOCUMENTS = [README, *(REPO / "docs" / page for page in (
    "guide/commands.md", "guide/configs.md", "guide/data.md", "guide/evaluation.md", "guide/multilabel.md",
    "guide/checkpoints.md", "guide/prediction.md", "guide/gpus.md", "guide/search.md", "guide/serving.md",
    "guide/annotation.md", "explanation/safety.md", "guide/real-data.md", "development.md", "index.md"))]
CHECKED = ("bash", "python", "json", "yaml")
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>\S*)\s*$")
SKIP = re.compile(r"^\s*<!-- readme-test: skip \((?P<reason>[^)]+)\) -->\s*$")


@dataclass
class Block:
    language: str
    code: str
    line: int  # line number of the opening fence
    skip_reason: str | None


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a markdown text, with the skip marker (if any) on the line above each."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent = len(opening["indent"])
        end = index + 1
        while not re.match(rf"^ {{{indent}}}```\s*$", lines[end]):
            end += 1
        previous = next((line for line in reversed(lines[:index]) if line.strip()), "")
        marker = SKIP.match(previous)
        code = "\n".join(line[indent:] for line in lines[index + 1 : end])
        blocks.append(Block(opening["info"], code, index + 1, marker["reason"] if marker else None))
        index = end + 1
    return blocks


def commands(code: str) -> list[str]:
    """Shell lines of a bash block, comments dropped and ``\\`` continuations joined."""
    joined = code.replace("\\\n", " ")
    return [line.split(" #", 1)[0].strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_blocks_are_found_with_their_markers() -> None:
    text = "\n".join([
        "<!-- readme-test: skip (needs a GPU) -->", "```bash", "nvidia-smi", "```", "",
        "- item:", "", "  ```json", '  {"a": 1}', "  ```", "```text", "output", "```",
    ])
    assert [(b.language, b.code, b.skip_reason) for b in readme_blocks(text)] == [
        ("bash", "nvidia-smi", "needs a GPU"), ("json", '{"a": 1}', None), ("text", "output", None)]
    assert commands("clintune train a.yaml \\\n  --set x=1   # comment\n# only a comment\n") == ["clintune train a.yaml    --set x=1"]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A scratch folder laid out like the repository, for the README's relative paths."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "data").symlink_to(REPO / "data")
    (tmp_path / "models").symlink_to(REPO / "models")
    return tmp_path


def this_checkout() -> dict[str, str]:
    """Environment that imports clintune from this checkout even when run from another folder."""
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)}


def test_every_docs_page_is_run() -> None:
    pages = {p for p in (REPO / "docs").rglob("*.md") if "reference" not in p.parts and p.name != "benchmarks.md"}
    assert pages <= set(DOCUMENTS), f"pages whose code blocks no test runs: {sorted(map(str, pages - set(DOCUMENTS)))}"


def test_readme_code_blocks_run_as_written(workspace: Path) -> None:
    blocks = [(document, b) for document in DOCUMENTS for b in readme_blocks(document.read_text(encoding="utf-8"))
              if b.language in CHECKED]
    assert {b.language for _, b in blocks if b.skip_reason is None} >= {"bash", "python"}, "no runnable block found"
    for document, block in blocks:
        if block.skip_reason is not None:
            continue
        where = f"{document.relative_to(REPO)} block at line {block.line}"
        if block.language == "bash":
            run_bash_block(block, workspace, where)
        elif block.language == "python":
            script = workspace / f"readme_block_{document.stem}_{block.line}.py"
            script.write_text(block.code, encoding="utf-8")
            result = subprocess.run([sys.executable, str(script)], cwd=workspace, env={**os.environ, **this_checkout()},
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"{where} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        elif block.language == "json":
            for line in block.code.splitlines():
                json.loads(line)
        elif block.language == "yaml":
            check_config_block(block, workspace, document.stem)


def run_bash_block(block: Block, workspace: Path, where: str) -> None:
    for command in commands(block.code):
        words = shlex.split(command)
        assert words[0] == "clintune", (
            f"{where}: {command!r} is not a clintune command; "
            "run only clintune commands on tiny data, or mark the block <!-- readme-test: skip (reason) -->"
        )
        result = run_cli(*words[1:], cwd=workspace, env=this_checkout(), timeout=600)
        assert result.returncode == 0, f"{where}: {command!r} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


def check_config_block(block: Block, workspace: Path, page: str = "README") -> None:
    """A config example must be a valid config where it says it lives (``extends: ../x.yaml`` from a configs/ subfolder)."""
    from clintune.config.loading import load_config

    path = workspace / "configs" / "readme" / f"block_{page}_{block.line}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(block.code, encoding="utf-8")
    load_config(path)


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    """A newcomer finds every page from the README: linked from it, or from a page it links to (two clicks)."""
    import re

    def links(page: Path) -> set[Path]:
        targets = re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text(encoding="utf-8"))
        return {(page.parent / target).resolve() for target in targets if "://" not in target}

    first = links(README)
    reached = first | {target for page in first if page.is_file() for target in links(page)}
    pages = {p.resolve() for p in (REPO / "docs").rglob("*.md")} - {(REPO / "docs" / "index.md").resolve()}
    missing = sorted(str(p.relative_to(REPO)) for p in pages - reached)
    assert not missing, f"docs pages a README reader cannot reach in two clicks: {missing}"
    assert all(target.is_file() for target in first), "the README links to a page that does not exist"
