#!/usr/bin/env python3
"""Multi-label long notes (issue #36): does reading every window and taking each label's maximum find the
findings that truncation misses?

Synthetic notes of 4-9 filler sentences with 0-3 findings (the tiny sample data's phrases) placed at random
sentence positions, so that many findings sit past the first ``max_length`` tokens. The tiny model is trained
on them with ``model.long_text: chunk`` (training reads each note's first window: clintune's rule) and with
``truncate``, and both are scored on held-out long notes: micro/macro-F1 overall and recall of the findings
that lie past the first window. Prints one table; seconds on 2 CPU cores.

    python scripts/bench_long_notes.py
"""

from __future__ import annotations

import csv
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from make_sample_data import FINDINGS  # noqa: E402

FILLER = ["The patient was observed in clinic for thirty minutes after the vaccination was given",
          "Parents were advised to call back with any new concerns over the coming days",
          "The lot number and the site of the injection were recorded in the chart",
          "No other medicines were taken on the day of the visit according to the family",
          "A follow up call was arranged with the practice nurse for later in the week",
          "The child had received the previous doses of the series without any problem",
          "Vital signs at discharge were within the normal range for the age of the patient"]


def notes(rng: random.Random, n: int) -> list[dict[str, str]]:
    rows = []
    for _ in range(n):
        found = rng.sample(list(FINDINGS), rng.choice([0, 1, 2, 3]))
        sentences = rng.sample(FILLER, rng.randint(4, 7))
        for name in found:
            sentences.insert(rng.randint(0, len(sentences)), rng.choice(FINDINGS[name]))
        rows.append({"Narrative": ". ".join(sentences) + ".", "Symptoms": ";".join(sorted(found))})
    return rows


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["Narrative", "Symptoms"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def late_recall(predictor: object, rows: list[dict[str, str]], max_length: int) -> tuple[float, int]:
    """Recall of the gold findings whose phrase starts past the first window's tokens."""
    tokenizer = predictor.tokenizer  # type: ignore[attr-defined]
    predictions = predictor.classify([row["Narrative"] for row in rows])  # type: ignore[attr-defined]
    hits = total = 0
    for row, prediction in zip(rows, predictions):
        text = row["Narrative"]
        for name in filter(None, row["Symptoms"].split(";")):
            start = min(text.find(phrase) for phrase in FINDINGS[name] if phrase in text)
            if len(tokenizer(text[:start])["input_ids"]) > max_length - 2:
                total += 1
                hits += name in (prediction.labels or [])
    return (hits / total if total else float("nan")), total


def main() -> None:
    from clintune import api
    from clintune.api import load_config
    from clintune.inference.predictor import Predictor

    rng = random.Random(5)
    work = Path(tempfile.mkdtemp(prefix="clintune-long-notes-"))
    train, validation, test = (write(work / f"{name}.csv", notes(rng, n)) for name, n in
                               (("train", 300), ("validation", 80), ("test", 120)))
    test_rows = list(csv.DictReader(test.open(encoding="utf-8")))
    max_length = 48
    print(f"| long_text | test f1_micro | test f1_macro | recall of findings past token {max_length} (n) |")
    print("|---|---|---|---|")
    for long_text in ("truncate", "chunk"):
        config = load_config(ROOT / "configs/tiny/symptoms.yaml", [
            f"data.train={train}", f"data.validation={validation}", f"data.test={test}", f"output.dir={work / long_text}",
            f"model.max_length={max_length}", "model.stride=12", f"model.long_text={long_text}", "training.epochs=15",
            "evaluation.bootstrap_resamples=0"])
        metrics = api.train(config, overwrite=True).metrics["test"]
        recall, n = late_recall(Predictor.from_folder(work / long_text), test_rows, max_length)
        print(f"| {long_text} | {metrics['f1_micro']:.3f} | {metrics['f1_macro']:.3f} | {recall:.3f} ({n}) |", flush=True)


if __name__ == "__main__":
    main()
