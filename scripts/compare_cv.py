#!/usr/bin/env python3
"""Two `clintune cv` runs side by side, fold by fold: is one setting better by more than the folds disagree?

    python scripts/compare_cv.py runs/mts-cv5/cv.json runs/mts-cv5-best/cv.json --names defaults,searched

Both runs must have used the same folds (same training file and `data.split_seed`), so each fold's
difference is paired: the table prints each metric's per-fold values for A and B, the mean and
standard deviation over folds, and the paired difference B - A with its 95% corrected resampled t
interval over folds (Nadeau & Bengio 2003: the variance of the differences times 1/k + n_test/n_train,
since folds share most of their training data; the plain t interval is too narrow). A difference whose
interval holds 0 is not one that these folds can tell apart. Per-class F1 means
follow, with how many folds held each class out.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from clintune.evaluation.metrics import corrected_t_interval

# The headline metrics of each task kind, in this order, where both runs have them (binary: f1 of the positive
# class; multiclass: macro averages; multi-label: micro and macro; NER: entity scores).
METRICS = ("f1_macro", "f1_micro", "f1", "accuracy", "f1_weighted", "precision", "recall", "recall_macro",
           "precision_macro", "roc_auc", "precision_at_5", "ece")


def shared_metrics(a: dict, b: dict) -> list[str]:
    """The metrics of METRICS that every fold of both runs reports."""
    return [metric for metric in METRICS if all(metric in fold for fold in (*a["folds"], *b["folds"]))]


def sizes(run: dict) -> tuple[float, float]:
    """A fold's mean held-out and training sizes, from cv.json (older runs: from the folds' example counts)."""
    if "fold_sizes" in run:
        return run["fold_sizes"]["n_test"], run["fold_sizes"]["n_train"]
    held_out = [fold["examples"] for fold in run["folds"]]
    return statistics.fmean(held_out), sum(held_out) - statistics.fmean(held_out)


def fold_values(run: dict, metric: str) -> list[float]:
    return [float(fold[metric]) for fold in sorted(run["folds"], key=lambda fold: fold["fold"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="cv.json of the first run (the reference)")
    parser.add_argument("b", type=Path, help="cv.json of the second run")
    parser.add_argument("--names", default="A,B", help="names of the two runs, comma-separated")
    args = parser.parse_args()
    name_a, name_b = args.names.split(",")
    a, b = (json.loads(path.read_text()) for path in (args.a, args.b))
    folds_a = [fold["examples"] for fold in sorted(a["folds"], key=lambda fold: fold["fold"])]
    folds_b = [fold["examples"] for fold in sorted(b["folds"], key=lambda fold: fold["fold"])]
    if (a["data"], a["seed"]) != (b["data"], b["seed"]):
        raise SystemExit(f"the two runs split different data or seeds ({a['data']}, {a['seed']} vs {b['data']}, {b['seed']})")
    if folds_a != folds_b:
        raise SystemExit(f"the two runs held out different folds ({folds_a} vs {folds_b} examples): the comparison is not paired")

    print(f"| metric | {name_a}: folds | {name_a}: mean ± std | {name_b}: folds | {name_b}: mean ± std "
          f"| {name_b} - {name_a} (95% corrected CI over folds) |")
    print("|---|---|---|---|---|---|")
    metrics = shared_metrics(a, b)
    if not metrics:
        raise SystemExit("the two runs share none of the metrics compared here: " + ", ".join(METRICS))
    for metric in metrics:
        va, vb = fold_values(a, metric), fold_values(b, metric)
        diff = [y - x for x, y in zip(va, vb)]
        mean, low, high = corrected_t_interval(diff, *sizes(a))
        print(f"| {metric} | {' '.join(f'{v:.3f}' for v in va)} | {statistics.fmean(va):.4f} ± {statistics.stdev(va):.4f} "
              f"| {' '.join(f'{v:.3f}' for v in vb)} | {statistics.fmean(vb):.4f} ± {statistics.stdev(vb):.4f} "
              f"| {mean:+.4f} ({low:+.4f} to {high:+.4f}) |")
    print("\npooled out-of-fold: " + ", ".join(
        f"{metric} {a['pooled'][metric]:.4f} -> {b['pooled'][metric]:.4f}" for metric in metrics[:2]
        if metric in a["pooled"] and metric in b["pooled"]))

    print(f"\n| class | folds | {name_a} F1 | {name_b} F1 |")
    print("|---|---|---|---|")
    classes = a["summary"]["per_class"]
    for label in sorted(classes, key=lambda label: -classes[label]["f1"]["mean"]):
        fa, fb = classes[label]["f1"], b["summary"]["per_class"][label]["f1"]
        print(f"| {label} | {classes[label].get('folds', len(fa['values']))} | {fa['mean']:.3f} | {fb['mean']:.3f} |")


if __name__ == "__main__":
    main()
