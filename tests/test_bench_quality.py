"""scripts/bench_quality.py's bookkeeping: rows kept as they finish, --resume, the printed table.

The benchmark itself trains for hours and is run by hand; these tests cover the
parts that decide what its table says.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from conftest import REPO

spec = importlib.util.spec_from_file_location("bench_quality", REPO / "scripts" / "bench_quality.py")
bench_quality = importlib.util.module_from_spec(spec)
sys.modules["bench_quality"] = bench_quality
spec.loader.exec_module(bench_quality)  # type: ignore[union-attr]


def test_saved_rows_are_appended_with_the_commit(tmp_path: Path) -> None:
    rows = bench_quality.Rows(tmp_path)
    rows.save({"task": "MTS-Dialog", "system": "baseline", "accuracy": 0.5})
    rows.save({"task": "MTS-Dialog", "system": "notebook recipe", "accuracy": 0.6})

    lines = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [line["system"] for line in lines] == ["baseline", "notebook recipe"]
    assert all(line["commit"] == bench_quality.current_commit() for line in lines)
    assert lines[0]["commit"] not in ("", "unknown")


def test_resume_reuses_a_finished_row_and_computes_the_rest(tmp_path: Path) -> None:
    bench_quality.Rows(tmp_path).save({"task": "NCBI disease", "system": "notebook recipe", "f1": 0.7})
    computed = []

    def compute(value: float):
        def run() -> dict:
            computed.append(value)
            return {"f1": value}
        return run

    resumed = bench_quality.Rows(tmp_path, resume=True)
    kept = bench_quality._row(resumed, "NCBI disease", "notebook recipe", compute(0.1))
    new = bench_quality._row(resumed, "NCBI disease", "baseline", compute(0.2))

    assert kept["f1"] == 0.7 and new["f1"] == 0.2
    assert computed == [0.2]


def test_without_resume_every_row_is_computed_again(tmp_path: Path) -> None:
    bench_quality.Rows(tmp_path).save({"task": "NCBI disease", "system": "baseline", "f1": 0.7})
    row = bench_quality._row(bench_quality.Rows(tmp_path), "NCBI disease", "baseline", lambda: {"f1": 0.3})
    assert row["f1"] == 0.3
    assert bench_quality.read_rows(tmp_path / "rows.jsonl")[("NCBI disease", "baseline")]["f1"] == 0.3


def test_last_epoch_score_reads_the_final_evaluation(tmp_path: Path) -> None:
    log = [{"epoch": 1.0, "eval_f1_macro": 0.30}, {"epoch": 1.0, "loss": 2.0},
           {"epoch": 2.0, "eval_f1_macro": 0.48}, {"epoch": 3.0, "eval_f1_macro": 0.42}, {"train_runtime": 9.0}]
    (tmp_path / "training_log.json").write_text(json.dumps(log))
    assert bench_quality.last_epoch_score(tmp_path, "f1_macro") == 0.42
    assert bench_quality.last_epoch_score(tmp_path, "accuracy") is None
    assert bench_quality.last_epoch_score(tmp_path / "missing", "f1_macro") is None


def test_table_formats_scores_seconds_and_blank_cells() -> None:
    text = bench_quality.table([
        {"task": "MTS-Dialog", "system": "clintune", "accuracy": 0.75, "f1_macro": 0.48365, "last_epoch": 0.428,
         "classes_predicted": 15, "seconds": 836.6, "commit": "abc1234"},
    ])
    header, _, row = text.splitlines()
    assert "f1_macro after last epoch" in header
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells == ["MTS-Dialog", "clintune", "", "", "", "0.750", "0.484", "0.428", "15", "", "837", "abc1234"]


def test_rows_keep_the_commit_the_run_started_at(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(bench_quality, "current_commit", lambda: "aaaaaaa")
    rows = bench_quality.Rows(tmp_path)
    monkeypatch.setattr(bench_quality, "current_commit", lambda: "bbbbbbb")  # a commit made while it runs
    assert rows.save({"task": "NCBI disease", "system": "baseline", "f1": 0.5})["commit"] == "aaaaaaa"
