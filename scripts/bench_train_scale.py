#!/usr/bin/env python3
"""Training data at scale: peak memory, tokenisation rows/s, training examples/s and wall time of `clintune train`.

    python scripts/bench_train_scale.py --data ../shared/data --sizes 8000,64000,256000 --engines old,new

Rows are VAERS seriousness narratives joined four at a time, drawn at random
(seeded) so that no two rows are equal; a row's label is its first narrative's.
Every measurement is one `clintune train` run in its own child process: the
embedded tiny BERT (so the model itself is negligible), `max_length` 256,
`long_text: truncate`, 1 epoch, batch size 32, validation split off from train
(10%, so the leakage check runs over train and validation), the tokenisation
cache off (a cold start). Peak RSS is the child's own `ru_maxrss` (exact).

- `new`: this checkout's code;
- `old`: the code of `--old-ref` (default: the last commit before the Arrow
  training data), extracted with `git archive` and run the same way; skipped
  above `--old-max` rows, where it needs more memory than the machine has.

Training examples/s is the Trainer's own `train_samples_per_second`
(`training_log.json`). Tokenisation rows/s is measured apart, in another child
process per engine: from the CSV file to training features (reading the whole
file, then the train verb's tokenisation step, cache off), rows divided by
seconds; `read s` and `tokenise s` are its two parts. The whole run's wall time
also holds the data checks (the leakage check among them) and training.
`--real-model DIR` adds one row per engine of a real encoder (e.g. MiniLM) on the
whole VAERS seriousness training set as it is (`train.csv`, validated on
`validation.csv`, `max_length` 128, 1 epoch, batch size 32, cache off).
Prints a markdown table and appends one JSON row per measurement to
--out/results.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench_predict_scale import old_source  # noqa: E402  (the same extraction of an earlier commit's src)

OLD_REF = "36f1936"  # the last commit whose training features were Python lists cached as JSON

CONFIG = """\
task: {{name: seriousness, type: multiclass}}
data:
  train: {train}
  text_column: Narrative
  label_column: Seriousness
  tokenization_cache: false
labels: {{classes: [D/LT, Serious, Non-serious]}}
model: {{name_or_path: {model}, max_length: 256, long_text: truncate}}
training: {{epochs: 1, batch_size: 32, learning_rate: 1.0e-3, logging_steps: 500}}
decision: {{must_not_miss: null}}
output: {{dir: {output}}}
"""

# From the CSV file to features, for either engine: the train verb's own steps (read, fit the labels, tokenise; cache off).
TOKENISE = """\
import sys, time
from clintune.api import load_config
from clintune.data.labels import LabelEncoder
from clintune.data.readers import read_split
from clintune.workflows.prepare import resolve_paths
import clintune.workflows.train as train
from clintune.modeling.loading import load_tokenizer
from clintune.modeling.tasks import task_for
config = resolve_paths(load_config(sys.argv[1]))
tokenizer = load_tokenizer(config.model.name_or_path, False)
started = time.perf_counter()
examples = read_split(config, config.data.train)
encoder = LabelEncoder.fit(examples.labels, config.task.type, config.labels.classes, config.labels.positive)
read = time.perf_counter() - started
train._encode(task_for(config.task.type), examples, tokenizer, encoder, config, "train")
total = time.perf_counter() - started
print(len(examples), read, total)
"""


def synthesize(data: Path, size: int, out: Path) -> Path:
    """``size`` rows of four VAERS narratives each, under ``out`` (made once per size)."""
    path = out / f"train-{size}.csv"
    if path.is_file():
        return path
    with (data / "vaers-seriousness" / "train.csv").open(encoding="utf-8", newline="") as handle:
        reports = [(row["Narrative"], row["Seriousness"]) for row in csv.DictReader(handle)]
    draw = random.Random(size)
    out.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ID", "Seriousness", "Narrative"])
        for row in range(size):
            chosen = draw.sample(reports, 4)
            writer.writerow([f"{row:07d}", chosen[0][1], " ".join(text for text, _ in chosen)])
    return path


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``command``: wall seconds, peak RSS in GB (the child's ru_maxrss), its stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors, tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise SystemExit(f"failed: {' '.join(command)}\n{errors.read().decode('utf-8', 'replace')[-3000:]}")
        output.seek(0)
        return wall, usage.ru_maxrss * 1024 / 1e9, output.read().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "tiny-bert")
    parser.add_argument("--sizes", default="8000,64000")
    parser.add_argument("--engines", default="old,new")
    parser.add_argument("--old-ref", default=OLD_REF)
    parser.add_argument("--old-max", type=int, default=64000)
    parser.add_argument("--skip-tokenise", action="store_true", help="only the whole train runs")
    parser.add_argument("--real-model", type=Path, help="also train this model on the whole VAERS training set")
    parser.add_argument("--pad-to-multiple-of", type=int, help="training.pad_to_multiple_of for every run (default: none)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench-train-scale")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    sizes = [int(size) for size in args.sizes.split(",") if size]
    runs = [(size, synthesize(args.data, size, args.out / "inputs"), args.model) for size in sizes]
    if args.real_model:
        runs.append((0, args.data / "vaers-seriousness" / "train.csv", args.real_model))
    for size, train, model in runs:
        for engine in args.engines.split(","):
            if engine == "old" and size > args.old_max:
                continue
            source = old_source(args.old_ref, args.out) if engine == "old" else ROOT / "src"
            env = {**os.environ, "PYTHONPATH": str(source), "PYTHONUNBUFFERED": "1"}
            name = f"{engine}-{size}" if size else f"{engine}-vaers"
            name += f"-pad{args.pad_to_multiple_of}" if args.pad_to_multiple_of else ""
            run_dir = args.out / f"run-{name}"
            config = args.out / f"config-{name}.yaml"
            text = CONFIG.format(train=train, model=model.absolute(), output=run_dir)
            if not size:  # the real training set as it is, with its own validation file
                text = text.replace("max_length: 256", "max_length: 128").replace(
                    "  text_column:", f"  validation: {args.data / 'vaers-seriousness' / 'validation.csv'}\n  text_column:")
            if args.pad_to_multiple_of:
                text = text.replace("training: {", f"training: {{pad_to_multiple_of: {args.pad_to_multiple_of}, ")
            config.write_text(text, encoding="utf-8")
            row: dict[str, object] = {"engine": engine, "ref": args.old_ref if engine == "old" else "checkout",
                                      "rows": size or "VAERS train", "model": model.name,
                                      "pad_to_multiple_of": args.pad_to_multiple_of}
            if not args.skip_tokenise:
                _, tokenise_rss, printed = measure([sys.executable, "-c", TOKENISE, str(config)], env)
                n, read_s, total_s = printed.split()[-3:]
                row.update(tokenise_rows_per_s=int(n) / float(total_s), read_s=float(read_s),
                           tokenise_s=float(total_s) - float(read_s), tokenise_peak_rss_gb=tokenise_rss)
            wall, rss, _ = measure([sys.executable, "-m", "clintune", "train", str(config), "--overwrite"], env)
            log = json.loads((run_dir / "training_log.json").read_text(encoding="utf-8"))
            samples = next(entry["train_samples_per_second"] for entry in log if "train_samples_per_second" in entry)
            row.update(peak_rss_gb=rss, wall_s=wall, train_examples_per_s=samples)
            rows.append(row)
            with (args.out / "results.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print("\n| engine | model | rows | peak RSS GB | wall s | train examples/s | tokenise rows/s | read s | tokenise s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        rows_shown = f"{row['rows']:,}" if isinstance(row["rows"], int) else row["rows"]
        print(f"| {row['engine']} | {row['model']} | {rows_shown} | {row['peak_rss_gb']:.2f} | {row['wall_s']:.0f} | "
              f"{row['train_examples_per_s']:.0f} | {row.get('tokenise_rows_per_s', 0):.0f} | "
              f"{row.get('read_s', 0):.1f} | {row.get('tokenise_s', 0):.1f} |")


if __name__ == "__main__":
    main()
