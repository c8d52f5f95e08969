#!/usr/bin/env python3
"""Build seriousness training files from the VAERS yearly ``VAERSDATA.csv`` files.

    python scripts/prepare_vaers.py ~/Downloads/VAERS/1990VAERSDATA.csv ... --output data/vaers
    python scripts/prepare_vaers.py ~/Downloads/VAERS/ --output data/vaers     # every *VAERSDATA.csv there

VAERS (vaers.hhs.gov, "Data Sets") publishes one ``YYYYVAERSDATA.csv`` per year; its site puts a
captcha in front of the downloads, so fetch them yourself. The output is the seriousness notebook's
layout, which ``configs/seriousness.yaml`` reads unchanged: ``train.csv``, ``validation.csv`` and
``test.csv`` with columns ``ID, Seriousness, Narrative`` and labels ``D/LT``, ``Serious``,
``Non-serious``, plus ``counts.md`` saying what each rule removed. The rules are those of the shared
data's README:

- **label** from the report's own outcome flags (ICH E2A seriousness criteria): ``D/LT`` if ``DIED``
  or ``L_THREAT`` is ``Y``; else ``Serious`` if ``HOSPITAL``, ``X_STAY`` (prolonged stay) or
  ``DISABLE`` is ``Y``; else ``Non-serious``. An emergency-room visit alone is not a criterion.
- **narrative**: ``SYMPTOM_TEXT`` with whitespace collapsed; reports under ``--min-chars`` (20)
  characters are dropped.
- **one report per case**: follow-up reports of a ``VAERS_ID`` (``ORDER`` 2, 3, ...) are dropped; the
  lowest ``ORDER`` is kept (files without an ``ORDER`` column keep the first row of each id).
- **duplicates**: narratives that repeat, ignoring case, punctuation and spacing, are kept once when
  every copy has the same label and dropped altogether when the copies disagree (a model cannot learn
  both answers, and either copy in validation would leak the other's).
- **sample and split**: at most ``--sample`` reports (20,000), drawn stratified in the source's own
  class proportions (the imbalance is the task), then split 70 / 10 / 20, stratified by label, with
  ``--seed``. After the rules above every ``VAERS_ID`` and every normalised narrative occurs once, so
  no case and no duplicate text crosses a split.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

LABELS = ("D/LT", "Serious", "Non-serious")
DEATH_OR_LIFE_THREAT = ("DIED", "L_THREAT")
SERIOUS = ("HOSPITAL", "X_STAY", "DISABLE")
NEEDED = ("VAERS_ID", "SYMPTOM_TEXT", *DEATH_OR_LIFE_THREAT, *SERIOUS)
SPLITS = (("train", 0.7), ("validation", 0.1), ("test", 0.2))


@dataclass
class Counts:
    """What each rule kept and removed, for ``counts.md`` and the console."""

    read: int = 0
    short: int = 0
    follow_ups: int = 0
    duplicates_kept_once: int = 0
    duplicates_disagreeing: int = 0
    kept: int = 0
    sampled_out: int = 0
    splits: dict[str, dict[str, int]] = field(default_factory=dict)


def read_vaers_file(path: Path) -> pd.DataFrame:
    """One yearly file as strings (``VAERS_ID`` keeps its leading zeros). Older files are Windows-1252
    (en dashes as byte 0x96), newer ones UTF-8."""
    for encoding in ("utf-8", "cp1252", "latin-1"):
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)
            break
        except UnicodeDecodeError:
            continue
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        sys.exit(f"error: {path}: not a VAERSDATA file (missing column(s) {', '.join(missing)})")
    return frame


def seriousness(report: pd.Series) -> str:
    """The label from a report's outcome flags."""
    if any(report[flag].strip().upper() == "Y" for flag in DEATH_OR_LIFE_THREAT):
        return "D/LT"
    if any(report[flag].strip().upper() == "Y" for flag in SERIOUS):
        return "Serious"
    return "Non-serious"


def normalise(text: str) -> str:
    """The duplicate key: lower case, letters and digits only."""
    return re.sub(r"[\W_]+", "", text.lower())


def label_reports(frame: pd.DataFrame, min_chars: int, counts: Counts) -> pd.DataFrame:
    """``ID, Seriousness, Narrative`` for the first report of each case, duplicates resolved."""
    counts.read = len(frame)
    frame = frame.assign(Narrative=frame["SYMPTOM_TEXT"].str.split().str.join(" "))
    long_enough = frame["Narrative"].str.len() >= min_chars
    counts.short = int((~long_enough).sum())
    frame = frame[long_enough]
    order = pd.to_numeric(frame["ORDER"], errors="coerce") if "ORDER" in frame.columns else pd.Series(1, index=frame.index)
    frame = frame.assign(_order=order.fillna(1)).sort_values(["VAERS_ID", "_order"], kind="stable")
    first = ~frame["VAERS_ID"].duplicated(keep="first")
    counts.follow_ups = int((~first).sum())
    frame = frame[first]
    frame = frame.assign(Seriousness=frame.apply(seriousness, axis=1), _key=frame["Narrative"].map(normalise))
    labels_per_key = frame.groupby("_key")["Seriousness"].nunique()
    disagreeing = frame["_key"].map(labels_per_key) > 1
    counts.duplicates_disagreeing = int(disagreeing.sum())
    frame = frame[~disagreeing]
    repeated = frame["_key"].duplicated(keep="first")
    counts.duplicates_kept_once = int(repeated.sum())
    frame = frame[~repeated]
    counts.kept = len(frame)
    return frame.rename(columns={"VAERS_ID": "ID"})[["ID", "Seriousness", "Narrative"]].reset_index(drop=True)


def sample_and_split(reports: pd.DataFrame, sample: int | None, seed: int, counts: Counts) -> dict[str, pd.DataFrame]:
    """A stratified sample in the source's proportions, split 70 / 10 / 20 stratified by label."""
    from sklearn.model_selection import train_test_split

    if sample and len(reports) > sample:
        reports, _ = train_test_split(reports, train_size=sample, stratify=reports["Seriousness"], random_state=seed)
        counts.sampled_out = counts.kept - sample
    train, rest = train_test_split(reports, train_size=SPLITS[0][1], stratify=reports["Seriousness"], random_state=seed)
    share = SPLITS[1][1] / (SPLITS[1][1] + SPLITS[2][1])
    validation, test = train_test_split(rest, train_size=share, stratify=rest["Seriousness"], random_state=seed)
    splits = {"train": train, "validation": validation, "test": test}
    counts.splits = {name: {label: int((part["Seriousness"] == label).sum()) for label in LABELS} for name, part in splits.items()}
    return {name: part.sort_values("ID", kind="stable") for name, part in splits.items()}


def counts_table(counts: Counts) -> str:
    lines = [
        f"- read: {counts.read:,} report rows",
        f"- dropped: {counts.short:,} narratives under the minimum length, {counts.follow_ups:,} follow-up reports, "
        f"{counts.duplicates_kept_once:,} repeated narratives (one copy kept), "
        f"{counts.duplicates_disagreeing:,} repeated narratives whose copies disagree on the label (all copies)",
        f"- kept: {counts.kept:,}; left out of the sample: {counts.sampled_out:,}",
        "",
        "| file | rows | " + " | ".join(LABELS) + " |",
        "|---|---|" + "---|" * len(LABELS),
    ]
    for name, per_label in counts.splits.items():
        lines.append(f"| `{name}.csv` | {sum(per_label.values()):,} | " + " | ".join(f"{per_label[label]:,}" for label in LABELS) + " |")
    return "\n".join(lines) + "\n"


def input_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*VAERSDATA.csv"))
            if not found:
                sys.exit(f"error: {path}: no *VAERSDATA.csv files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            sys.exit(f"error: {path}: not found")
    return files


def write_outputs(output: Path, splits: dict[str, pd.DataFrame], counts: Counts, overwrite: bool) -> None:
    """All files at once: into a staging folder beside OUTPUT, then moved into place."""
    from clintune.runtime.files import publish, remove_stale, staging_dir_for

    names = {f"{name}.csv" for name in splits} | {"counts.md"}
    if output.exists() and not overwrite:
        sys.exit(f"error: {output} exists; pass --overwrite to replace the files this script wrote there")
    if output.exists() and not set(p.name for p in output.iterdir()) <= names:
        sys.exit(f"error: {output} holds files this script did not write; choose another --output")
    staging = staging_dir_for(output)
    remove_stale(staging)
    staging.mkdir(parents=True)
    for name, part in splits.items():
        part.to_csv(staging / f"{name}.csv", index=False)
    (staging / "counts.md").write_text(counts_table(counts), encoding="utf-8")
    publish(staging, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="The rules: see the top of this script or README (seriousness).")
    parser.add_argument("inputs", nargs="+", type=Path, help="VAERSDATA.csv files, or folders holding them")
    parser.add_argument("--output", type=Path, required=True, help="folder for train.csv, validation.csv, test.csv, counts.md")
    parser.add_argument("--sample", type=int, default=20_000, help="at most this many reports (0: all); default 20000")
    parser.add_argument("--min-chars", type=int, default=20, help="drop narratives shorter than this; default 20")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    files = input_files(args.inputs)
    resolved = {f.resolve() for f in files}
    if args.output.resolve() in resolved or any(args.output.resolve() in f.parents for f in resolved):
        sys.exit(f"error: --output {args.output} holds the input files; choose another folder")
    counts = Counts()
    frame = pd.concat([read_vaers_file(f) for f in files], ignore_index=True)
    reports = label_reports(frame, args.min_chars, counts)
    if reports["Seriousness"].value_counts().min() < 10 or reports["Seriousness"].nunique() < len(LABELS):
        sys.exit(f"error: too few reports per label to split ({reports['Seriousness'].value_counts().to_dict()})")
    splits = sample_and_split(reports, args.sample or None, args.seed, counts)
    write_outputs(args.output, splits, counts, args.overwrite)
    print(counts_table(counts), end="")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
