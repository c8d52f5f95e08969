"""scripts/prepare_vaers.py on a small VAERSDATA file built here, one case per rule."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO

spec = importlib.util.spec_from_file_location("prepare_vaers", REPO / "scripts" / "prepare_vaers.py")
prepare_vaers = importlib.util.module_from_spec(spec)
sys.modules["prepare_vaers"] = prepare_vaers
spec.loader.exec_module(prepare_vaers)  # type: ignore[union-attr]

COLUMNS = ["VAERS_ID", "RECVDATE", "SYMPTOM_TEXT", "DIED", "L_THREAT", "ER_VISIT", "HOSPITAL", "X_STAY", "DISABLE", "ORDER"]
FLAGS = ("DIED", "L_THREAT", "ER_VISIT", "HOSPITAL", "X_STAY", "DISABLE")


def report(vaers_id: str, text: str, *flags: str, order: str = "1") -> dict[str, str]:
    return {"VAERS_ID": vaers_id, "RECVDATE": "01/02/1995", "SYMPTOM_TEXT": text, "ORDER": order,
            **{flag: "Y" if flag in flags else "" for flag in FLAGS}}


# Each rule's case: the id and the label it must end with (None: it must be gone).
CASES = [
    (report("0100001", "Pt died 2 days p/vax of SIDS per coroner.", "DIED"), "D/LT"),
    (report("0100002", "Anaphylaxis w/ airway compromise, intubated.", "L_THREAT"), "D/LT"),
    (report("0100003", "Admitted for febrile seizure; died in hospital.", "HOSPITAL", "DIED"), "D/LT"),
    (report("0100004", "Admitted overnight for observation of high fever.", "HOSPITAL"), "Serious"),
    (report("0100005", "Hospital stay prolonged by 3 days for cellulitis.", "X_STAY"), "Serious"),
    (report("0100006", "Permanent weakness of the left arm after Td.", "DISABLE"), "Serious"),
    (report("0100007", "Seen in ER for hives, given benadryl, sent home.", "ER_VISIT"), "Non-serious"),  # ER alone: not serious
    (report("0100008", "fever", "HOSPITAL"), None),  # under 20 characters
    # a follow-up report of the same case: the first report's label and text stand
    (report("0100009", "Local redness and swelling at inject site for 2 days."), "Non-serious"),
    (report("0100009", "Follow-up: the patient later died of unrelated causes.", "DIED", order="2"), None),
    # the same narrative twice (case, punctuation, spacing aside) with one label: kept once (the lower id)
    (report("0100010", "Pt had FEVER 103, rash & irritability x2 days."), "Non-serious"),
    (report("0100011", "pt had fever 103 rash  irritability x2 days"), None),
    # the same narrative with two labels: neither copy is kept
    (report("0100012", "Seizure lasting 5 min after DTP vax."), None),
    (report("0100013", "seizure lasting 5 min after DTP vax", "HOSPITAL"), None),
]


def filler(count: int, label_flags: tuple[str, ...], start: int) -> list[dict[str, str]]:
    """Distinct reports so that every label can be split 70 / 10 / 20."""
    return [report(f"02{start + i:05d}", f"Report {start + i}: {' '.join(label_flags) or 'mild'} reaction, case {i} of {count}.",
                   *label_flags) for i in range(count)]


def write_vaers(path: Path, rows: list[dict[str, str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def prepared(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    rows = [case for case, _ in CASES] + filler(30, ("DIED",), 0) + filler(30, ("HOSPITAL",), 100) + filler(60, (), 200)
    write_vaers(tmp_path / "1995VAERSDATA.csv", rows[::2])
    write_vaers(tmp_path / "1996VAERSDATA.csv", rows[1::2])  # a follow-up may sit in another year's file
    out = tmp_path / "out"
    assert prepare_vaers.main([str(tmp_path), "--output", str(out), "--sample", "0"]) == 0
    frames = {name: pd.read_csv(out / f"{name}.csv", dtype=str, keep_default_na=False) for name in ("train", "validation", "test")}
    return out, pd.concat([frame.assign(split=name) for name, frame in frames.items()], ignore_index=True)


def test_each_rule(prepared: tuple[Path, pd.DataFrame]) -> None:
    _, everything = prepared
    assert list(everything.columns) == ["ID", "Seriousness", "Narrative", "split"]
    by_id = everything.set_index("ID")
    for case, label in CASES:
        if label is None:
            assert case["VAERS_ID"] not in by_id.index or case["ORDER"] != "1", case
        else:
            assert by_id.loc[case["VAERS_ID"], "Seriousness"] == label, case
    assert by_id.loc["0100009", "Narrative"].startswith("Local redness")  # the first report, not the follow-up
    assert not {"0100008", "0100011", "0100012", "0100013"} & set(by_id.index)
    assert everything["ID"].is_unique
    fillers = {f"02{i:05d}" for r in (range(30), range(100, 130), range(200, 260)) for i in r}
    expected = {c["VAERS_ID"] for c, label in CASES if label} | fillers
    assert set(everything["ID"]) == expected


def test_splits_are_stratified_70_10_20(prepared: tuple[Path, pd.DataFrame]) -> None:
    _, everything = prepared
    table = pd.crosstab(everything["Seriousness"], everything["split"])
    for label, row in table.iterrows():
        total = row.sum()
        assert abs(row["train"] - 0.7 * total) <= 1 and abs(row["validation"] - 0.1 * total) <= 1, (label, dict(row))


def test_counts_file_says_what_each_rule_removed(prepared: tuple[Path, pd.DataFrame]) -> None:
    out, everything = prepared
    text = (out / "counts.md").read_text()
    assert "134 report rows" in text  # 14 cases + 120 fillers
    assert "1 narratives under the minimum length, 1 follow-up reports, 1 repeated narratives (one copy kept), " \
           "2 repeated narratives whose copies disagree" in text
    assert f"| `train.csv` | {(everything['split'] == 'train').sum()} |" in text


def test_windows_1252_files_and_whitespace(tmp_path: Path) -> None:
    rows = filler(10, ("DIED",), 0) + filler(10, ("HOSPITAL",), 100) + filler(10, (), 200)
    rows.append(report("0300001", "Fever 101\u2013102 F,\n  fussy   for 2 days."))
    write_vaers(tmp_path / "1997VAERSDATA.csv", rows, encoding="cp1252")
    assert b"\x96" in (tmp_path / "1997VAERSDATA.csv").read_bytes()
    prepare_vaers.main([str(tmp_path / "1997VAERSDATA.csv"), "--output", str(tmp_path / "out"), "--sample", "0"])
    found = pd.concat(pd.read_csv(tmp_path / "out" / f"{n}.csv", dtype=str) for n in ("train", "validation", "test"))
    assert found.set_index("ID").loc["0300001", "Narrative"] == "Fever 101\u2013102 F, fussy for 2 days."


def test_sample_keeps_the_source_proportions(tmp_path: Path) -> None:
    write_vaers(tmp_path / "1995VAERSDATA.csv", filler(20, ("DIED",), 0) + filler(40, ("HOSPITAL",), 100) + filler(140, (), 300))
    prepare_vaers.main([str(tmp_path), "--output", str(tmp_path / "out"), "--sample", "100"])
    found = pd.concat(pd.read_csv(tmp_path / "out" / f"{n}.csv", dtype=str) for n in ("train", "validation", "test"))
    assert found["Seriousness"].value_counts().to_dict() == {"Non-serious": 70, "Serious": 20, "D/LT": 10}


def test_refuses_to_write_over_inputs_or_earlier_output(tmp_path: Path) -> None:
    source = write_vaers(tmp_path / "1995VAERSDATA.csv", filler(20, ("DIED",), 0) + filler(20, ("HOSPITAL",), 100) + filler(20, (), 200))
    with pytest.raises(SystemExit, match="holds the input files"):
        prepare_vaers.main([str(source), "--output", str(tmp_path)])
    prepare_vaers.main([str(source), "--output", str(tmp_path / "out")])
    before = (tmp_path / "out" / "train.csv").read_bytes()
    with pytest.raises(SystemExit, match="--overwrite"):
        prepare_vaers.main([str(source), "--output", str(tmp_path / "out"), "--seed", "1"])
    assert (tmp_path / "out" / "train.csv").read_bytes() == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(SystemExit, match="did not write"):
        prepare_vaers.main([str(source), "--output", str(tmp_path / "mine"), "--overwrite"])
    assert (tmp_path / "mine" / "notes.txt").exists()
