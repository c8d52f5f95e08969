"""Files that hold note text are readable by their owner alone, and they are exactly the safety page's list.

Data carrying a marker (a fake name and MRN) in its texts and ids goes through
train, eval, predict (JSON lines, Parquet, a folder of documents, brat) with the
umask most machines have (022). Every file the verbs write is then listed: each
one that holds the marker must be owner-only (0600, in folders that are not
readable by others either), and every owner-only file must be of a kind the
safety page (docs/explanation/safety.md) lists, each kind seen at least once.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest
from conftest import REPO, run_cli, write

NAME, MRN = "Qwertyzyx", "MRN8675309"
SAFETY_PAGE = REPO / "docs" / "explanation" / "safety.md"
MARKER = f"{NAME} {MRN}"


def holds_marker(path: Path) -> bool:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return NAME in str(pq.read_table(path).to_pylist())
    data = path.read_bytes()
    return NAME.encode() in data or MRN.encode() in data


# The safety page's list ( "Files that hold note text"): each kind, and where this test's runs
# write it (None: not written by these runs; see the test named beside it).
PRIVATE_KINDS = {
    "tokenisation cache": r"cache/tokenized/.+\.(arrow|json)",
    "evaluation report": r"report/(errors|predictions)\.jsonl",
    "prediction output": r"predictions/predicted\.(jsonl|parquet)|documents\.jsonl",
    "brat output": r"brat/note1\.(ann|txt)",
    "Ray output": None,  # test_predict_stream.py: test_ray_engine_equals_the_single_process_output
    "cross-validation fold data": None,  # test_cv_fold_data_is_owner_only below
    "selection output": r"picks/(picks\.csv|tasks\.json)",
}


def readme_kinds() -> list[str]:
    """The kinds of owner-only files the safety page lists."""
    section = SAFETY_PAGE.read_text(encoding="utf-8").split("Files that hold note text", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^  - \*\*(.+?)\*\*", section, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def written(trained_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder holding what every verb wrote for data that carries the marker."""
    from clintune import api

    root = tmp_path_factory.mktemp("private")
    before = os.umask(0o022)
    try:
        data = root / "input"
        sentence = "\n".join(f"{token}\t{tag}" for token, tag in
                             [(NAME, "O"), (MRN, "O"), ("has", "O"), ("cystic", "B-Disease"), ("fibrosis", "I-Disease"), (".", "O")])
        for split in ("train", "validation", "test"):
            text = (REPO / "data" / "ner" / f"{split}.conll").read_text(encoding="utf-8").rstrip("\n")
            write(data / f"{split}.conll", f"{text}\n\n{sentence}\n")
        result = run_cli("train", "configs/tiny/ner.yaml", "--set", f"data.train={data}/train.conll",
                         "--set", f"data.validation={data}/validation.conll", "--set", f"data.test={data}/test.conll",
                         "--set", "training.epochs=1", "--set", f"output.dir={root}/runs/ner",
                         env={"CLINTUNE_CACHE_DIR": str(root / "cache")})
        assert result.returncode == 0, result.stderr[-3000:]
        ner = root / "runs" / "ner"
        api.evaluate(ner, data / "test.conll", output_dir=root / "report")

        notes = write(data / "notes.csv", "note_id,dialogue\n" + "".join(
            f"{MRN}-{i},Doctor: {NAME} any allergies? Patient: penicillin.\n" for i in range(5)))
        for name in ("predicted.jsonl", "predicted.parquet"):
            api.predict_file(trained_models["section_header"], notes, root / "predictions" / name, id_column="note_id")
        documents = data / "documents"
        write(documents / "note1.txt", f"{NAME} ({MRN}) has cystic fibrosis. No other disease.\n")
        result = run_cli("predict", "--model", str(ner), "--input", str(documents), "--format", "brat",
                         "--output", str(root / "brat"))
        assert result.returncode == 0, result.stderr[-3000:]
        result = run_cli("predict", "--model", str(trained_models["ner"]), "--input", str(documents),
                         "--output", str(root / "documents.jsonl"))
        assert result.returncode == 0, result.stderr[-3000:]
        result = run_cli("select", "--model", str(trained_models["section_header"]), "--input", str(notes), "--k", "2",
                         "--id-column", "note_id", "--output", str(root / "picks" / "picks.csv"),
                         "--label-studio-tasks", str(root / "picks" / "tasks.json"))
        assert result.returncode == 0, result.stderr[-3000:]
        shutil.rmtree(data)  # the user's own files: not clintune's to set
    finally:
        os.umask(before)
    return root


def test_every_file_that_quotes_a_note_is_owner_only(written: Path) -> None:
    files = [p for p in written.rglob("*") if p.is_file()]
    quoting = [p for p in files if holds_marker(p)]
    # (documents.jsonl quotes the marker only where the tiny model finds an entity in it)
    assert {p.relative_to(written).parts[0] for p in quoting} >= {"report", "predictions", "brat", "picks"}
    shared = [f"{p.relative_to(written)} {oct(stat.S_IMODE(p.stat().st_mode))}" for p in quoting
              if stat.S_IMODE(p.stat().st_mode) != 0o600]
    assert not shared, f"files that quote the marker and that others can read: {shared}"


def test_the_owner_only_files_are_the_readmes_list(written: Path) -> None:
    assert readme_kinds() == list(PRIVATE_KINDS)
    private = [str(p.relative_to(written)) for p in written.rglob("*") if p.is_file() and stat.S_IMODE(p.stat().st_mode) == 0o600]
    seen: dict[str, list[str]] = {kind: [] for kind in PRIVATE_KINDS}
    for relative in private:
        kinds = [kind for kind, pattern in PRIVATE_KINDS.items() if pattern and re.fullmatch(pattern, relative)]
        assert kinds, f"{relative} is owner-only but is none of the safety page's files that hold note text"
        seen[kinds[0]].append(relative)
    unseen = [kind for kind, pattern in PRIVATE_KINDS.items() if pattern and not seen[kind]]
    assert not unseen, f"listed on the safety page but not written owner-only here: {unseen}"
    # files off the list stay readable, so a model folder or a summary can be shared
    for name in ("config.json", "model.safetensors"):  # transformers wrote the weights owner-only; train shares them
        assert stat.S_IMODE((written / "runs" / "ner" / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE((written / "predictions").stat().st_mode) == 0o755  # the user's folder, made for --output
    assert stat.S_IMODE((written / "report" / "metrics.json").stat().st_mode) == 0o644


def test_cv_fold_data_is_owner_only(tmp_path: Path) -> None:
    from clintune.config.loading import load_config
    from clintune.data.examples import TextExamples
    from clintune.workflows.cv import _write_examples

    before = os.umask(0o022)
    try:
        path = tmp_path / "fold" / "train.jsonl"
        _write_examples(path, TextExamples(texts=[MARKER], labels=["valid"], rows=[2], source="x.csv"),
                        load_config(REPO / "configs" / "tiny" / "diagnosis.yaml"))
    finally:
        os.umask(before)
    assert holds_marker(path) and stat.S_IMODE(path.stat().st_mode) == 0o600
