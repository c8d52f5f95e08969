"""The code blocks of the README and the docs pages run as written, so the docs cannot drift from the code.

Every ``bash``, ``python``, ``json`` and ``yaml`` block is checked in a scratch
folder that holds ``configs/`` (a copy), ``data/``, ``models/`` and ``scripts/``
(links), in README order: bash blocks must consist of ``clintune`` commands
(or ``python scripts/NAME.py`` lines), each
required to succeed (the commands of consecutive bash blocks run one after
another in one Python process, ``tests/run_commands.py``, to pay start-up
once); python blocks are run as a script; each line of a json block must parse; a yaml block must be a
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
from conftest import REPO

README = REPO / "README.md"
# The README, then the docs pages in an order a reader could follow: a later block may use what an earlier one
# trained (runs/tiny-ner, runs/tut-symptoms, runs/tut-sections). Every page with code blocks is here
# (test_every_docs_page_is_run).
DOCUMENTS = [README, *(REPO / "docs" / page for page in (
    "tutorials/binary.md", "tutorials/multiclass.md", "tutorials/multilabel.md", "tutorials/ner-conll.md",
    "tutorials/ner-brat.md",
    "guide/commands.md", "guide/configs.md", "guide/data.md", "guide/evaluation.md", "guide/multilabel.md",
    "guide/checkpoints.md", "how-to/threshold.md", "how-to/compare.md", "how-to/export-onnx.md",
    "how-to/predict-corpus.md", "how-to/gpus.md", "how-to/search.md", "how-to/serve.md", "guide/annotation.md",
    "explanation/safety.md", "explanation/decisions.md", "explanation/leakage.md", "explanation/memory.md",
    "reference/model-folder.md", "reference/metrics.md", "reference/service.md",
    "guide/real-data.md", "development.md", "index.md"))]
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
    (tmp_path / "scripts").symlink_to(REPO / "scripts")
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
    pending: list[tuple[str, str]] = []  # (where, command) of the bash blocks since the last block of another kind
    for document, block in blocks:
        if block.skip_reason is not None:
            continue
        where = f"{document.relative_to(REPO)} block at line {block.line}"
        if block.language == "bash":
            pending += [(where, command) for command in commands(block.code)]
            continue
        run_clintune_commands(pending, workspace)
        pending = []
        if block.language == "python":
            script = workspace / f"readme_block_{document.stem}_{block.line}.py"
            script.write_text(block.code, encoding="utf-8")
            run_python([str(script)], workspace, where)
        elif block.language == "json":
            for line in block.code.splitlines():
                json.loads(line)
        elif block.language == "yaml":
            check_config_block(block, workspace, document.stem)
    run_clintune_commands(pending, workspace)


def run_clintune_commands(pending: list[tuple[str, str]], workspace: Path) -> None:
    """The commands of consecutive bash blocks, in order: runs of ``clintune`` commands in one Python process
    each (``tests/run_commands.py``), a ``python scripts/NAME.py ...`` line as its own process."""
    batch: list[tuple[str, list[str]]] = []
    for where, command in pending:
        words = shlex.split(command)
        if words[:1] == ["python"] and len(words) > 1 and words[1].startswith("scripts/"):
            run_batch(batch, workspace)
            batch = []
            run_python(words[1:], workspace, f"{where}: {command!r}")
            continue
        assert words[0] == "clintune", (
            f"{where}: {command!r} is neither a clintune command nor one of the repository's scripts; "
            "run only those, on tiny data, or mark the block <!-- readme-test: skip (reason) -->"
        )
        batch.append((f"{where}: {command!r}", words[1:]))
    run_batch(batch, workspace)


def run_python(arguments: list[str], workspace: Path, what: str) -> None:
    """A Python script (a block written to a file, or one of the repository's scripts), required to succeed."""
    result = subprocess.run([sys.executable, *arguments], cwd=workspace, env={**os.environ, **this_checkout()},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{what} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


def run_batch(batch: list[tuple[str, list[str]]], workspace: Path) -> None:
    if not batch:
        return
    result = subprocess.run([sys.executable, str(REPO / "tests" / "run_commands.py")],
                            input=json.dumps([arguments for _, arguments in batch]), cwd=workspace,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **this_checkout()},
                            capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        failed = re.findall(r"^clintune command (\d+) exited with", result.stderr, re.M)
        what = batch[int(failed[-1])][0] if failed else "(before the first command)"
        raise AssertionError(f"{what} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")


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
