"""``clintune predict --input`` runs under jemalloc where the machine has it, with the same answers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from test_predict_stream import read_jsonl, same_records

from clintune.allocator import jemalloc_library, wants_jemalloc
from clintune.errors import ClintuneError

SECTION_CSV = REPO / "data" / "section_header" / "test.csv"


@pytest.mark.parametrize(("args", "wanted"), [
    (["predict", "--model", "m", "--input", "a.csv", "--output", "o.jsonl"], True),
    (["predict", "--model=m", "--input=a.csv"], True),
    (["predict", "--model", "m", "--input", "a.csv", "--engine", "local"], True),
    (["predict", "--model", "m", "--input", "a.parquet", "--engine", "ray"], False),  # Ray starts its own processes
    (["predict", "--engine=ray", "--input", "a.parquet"], False),
    (["predict", "--model", "m", "--text", "Patient: a rash."], False),  # one text: nothing to grow
    (["train", "configs/tiny/ner.yaml"], False),
    (["eval", "--model", "m", "--input", "t.csv"], False),
    ([], False),
])
def test_only_a_local_predict_over_a_file_wants_jemalloc(args: list[str], wanted: bool) -> None:
    assert wants_jemalloc(args) is wanted


def test_the_switch_names_the_library_or_keeps_the_system_allocator(tmp_path: Path) -> None:
    assert jemalloc_library({"CLINTUNE_MALLOC": "system"}) is None
    library = tmp_path / "libjemalloc.so.2"
    library.write_bytes(b"")
    assert jemalloc_library({"CLINTUNE_MALLOC": str(library)}) == library
    with pytest.raises(ClintuneError, match="no such file"):
        jemalloc_library({"CLINTUNE_MALLOC": str(tmp_path / "missing.so")})


def test_a_missing_library_named_by_the_switch_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("predict", "--model", str(tmp_path), "--input", str(SECTION_CSV), "--output", str(tmp_path / "p.jsonl"),
                     env={"CLINTUNE_MALLOC": str(tmp_path / "missing.so")})
    assert result.returncode == 2
    assert f"CLINTUNE_MALLOC={tmp_path / 'missing.so'}: no such file" in result.stderr
    assert not (tmp_path / "p.jsonl").exists()


def test_predict_runs_under_jemalloc_with_the_answers_of_the_system_allocator(trained_models: dict[str, Path], tmp_path: Path) -> None:
    if jemalloc_library({}) is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("CI installs libjemalloc2 (.ci/run); it is missing")
        pytest.skip("no libjemalloc.so.2 on this machine (apt-get install libjemalloc2)")
    outputs = {}
    for allocator in ("jemalloc", "system"):
        outputs[allocator] = tmp_path / f"{allocator}.jsonl"
        env = {"CLINTUNE_MALLOC": "system"} if allocator == "system" else {}
        result = run_cli("predict", "--model", str(trained_models["section_header"]), "--input", str(SECTION_CSV),
                         "--output", str(outputs[allocator]), "--chunk-size", "7", env={**env, "LD_PRELOAD": ""})
        assert result.returncode == 0, result.stderr
        assert f"memory allocator: {allocator}" in result.stderr  # read by the run from its own /proc/self/maps
    same_records(read_jsonl(outputs["jemalloc"]), read_jsonl(outputs["system"]))
    assert len(read_jsonl(outputs["system"])) > 10
