#!/usr/bin/env python3
"""Prediction at scale: wall time, texts/s and peak memory of `clintune predict` over 1,000 to 100,000 texts.

    python scripts/bench_predict_scale.py --data ../shared/data \\
        --model runs/bench-quality-3/mts-clintune --int8-model runs/bench-quality-3/mts-clintune-int8

Inputs are MTS-Dialog dialogues (training + validation set) repeated to each
size, with a `note_id` column. Every measurement is one `clintune predict`
run in its own child process:

- `local`: `--input N.csv --output OUT.jsonl` (the streaming path), peak RSS
  from the child's own rusage (`ru_maxrss`, exact);
- `ray`: `--engine ray --input N.parquet --output DIR --id-column note_id`
  on a local Ray cluster that the command starts (`--workers`, `--threads 1`
  each); peak RSS is the sum over the child's process tree (driver, raylet,
  actors), sampled every 0.2 s, and apart from it the peak of the model
  actors' sum, to tell clintune's part from Ray's own processes, with the
  number of actor processes started and the largest one's own peak;
- `old`: the code of `--old-ref` (default: the last commit before streaming,
  whose predict read the whole file), extracted with `git archive` and run the
  same way as `local`, for the "no more than 10% slower per text" comparison,
  or to compare any earlier commit side by side. Skipped above `--old-max`
  texts, where the whole-file path needs tens of GB.

`--allocators default,system` runs each `local` measurement as shipped (under
jemalloc where the machine has libjemalloc.so.2) and with CLINTUNE_MALLOC=system
(glibc's malloc), side by side; the allocator column is the one the run reports.
`texts/s` is over the whole command (start-up and model load included);
`predict texts/s` is clintune's own count of the prediction loop where it
prints one (the `local` path). CPU use is the child's (user + system) CPU
seconds over wall seconds: 2.0 means both cores busy. Prints a markdown table
and appends one JSON row per measurement to --out/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD_REF = "e57ab36"  # the last commit whose predict read, encoded and held the whole file


def synthesize(data: Path, size: int, out: Path) -> tuple[Path, Path]:
    """MTS-Dialog dialogues repeated to ``size`` rows, as csv and Parquet, with a unique note_id."""
    import pandas as pd

    csv, parquet = out / f"mts-{size}.csv", out / f"mts-{size}.parquet"
    if csv.is_file() and parquet.is_file():
        return csv, parquet
    frames = [pd.read_csv(data / "mts-dialog" / name) for name in ("MTS-Dialog-TrainingSet.csv", "MTS-Dialog-ValidationSet.csv")]
    dialogues = pd.concat(frames, ignore_index=True)["dialogue"].tolist()
    repeated = [dialogues[i % len(dialogues)] for i in range(size)]
    frame = pd.DataFrame({"note_id": [f"note-{i:07d}" for i in range(size)], "dialogue": repeated})
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, row_group_size=10_000)
    return csv, parquet


def tree_rss(pid: int) -> tuple[int, dict[int, int]]:
    """Resident memory (bytes) of ``pid`` and every descendant, read from /proc: (all of them, each model actor's).

    The model actors are Ray's ``MapWorker`` processes (their name, ``/proc/PID/comm``); the rest of
    a Ray run's tree is the driver and Ray's own processes (raylet, read tasks, stats actors)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    actors: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                name, fields = handle.read().split("(", 1)[1].rsplit(")", 1)
            fields = fields.split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            if name.startswith("ray::MapWorker"):
                actors.add(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    total, in_actors, stack = 0, {}, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        if current in actors:
            in_actors[current] = rss.get(current, 0)
        stack += children.get(current, [])
    return total, in_actors


def measure(command: list[str], env: dict[str, str], sample_tree: bool) -> dict[str, float | str]:
    """Run ``command``; wall seconds, peak RSS (GB), CPU use and its stderr."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        peak = [0, 0]
        actor_peaks: dict[int, int] = {}  # each actor process's own peak
        if sample_tree:
            def sample() -> None:
                while process.poll() is None:
                    total, actors = tree_rss(process.pid)
                    peak[:] = [max(peak[0], total), max(peak[1], sum(actors.values()))]
                    for actor, rss in actors.items():
                        actor_peaks[actor] = max(actor_peaks.get(actor, 0), rss)
                    time.sleep(0.2)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}\n{stderr[-3000:]}")
    rss = peak[0] if sample_tree else usage.ru_maxrss * 1024
    return {"wall_s": wall, "peak_rss_gb": rss / 1e9, "actors_peak_rss_gb": peak[1] / 1e9 if sample_tree else None,
            "actors_seen": len(actor_peaks), "largest_actor_gb": max(actor_peaks.values(), default=0) / 1e9,
            "cpu_use": (usage.ru_utime + usage.ru_stime) / wall, "stderr": stderr}


def old_source(ref: str, work: Path) -> Path:
    """The ``src`` folder of commit ``ref``, extracted once under ``work``."""
    target = work / f"src-{ref}"
    if not target.is_dir():
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--model", type=Path, default=ROOT.parent / "main" / "runs" / "bench-quality-3" / "mts-clintune")
    parser.add_argument("--int8-model", type=Path, default=ROOT.parent / "main" / "runs" / "bench-quality-3" / "mts-clintune-int8")
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated text counts")
    parser.add_argument("--backends", default="pytorch,int8")
    parser.add_argument("--engines", default="local,ray,old", help="any of local, ray, old")
    parser.add_argument("--old-ref", default=OLD_REF, help="commit of the whole-file path compared against")
    parser.add_argument("--old-max", type=int, default=10_000, help="largest size run on the whole-file path")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors")
    parser.add_argument("--allocators", default="default",
                        help="any of default (as shipped: jemalloc where installed), system (CLINTUNE_MALLOC=system)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-predict-scale")
    args = parser.parse_args()

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    models = {"pytorch": args.model, "int8": args.int8_model}
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        csv, parquet = synthesize(args.data, size, args.out / "inputs")
        for backend in args.backends.split(","):
            for engine, allocator in [(e, a) for e in args.engines.split(",") for a in args.allocators.split(",")]:
                if engine == "old" and size > args.old_max:
                    continue
                source = old_source(args.old_ref, args.out) if engine == "old" else ROOT / "src"
                env = {**os.environ, "PYTHONPATH": str(source), "PYTHONUNBUFFERED": "1"}
                env.pop("CLINTUNE_MALLOC", None)
                if allocator == "system":
                    env["CLINTUNE_MALLOC"] = "system"
                output = args.out / "outputs" / f"{engine}-{backend}-{size}-{allocator}"
                base = [sys.executable, "-m", "clintune", "predict", "--model", str(models[backend])]
                if engine == "ray":
                    command = base + ["--engine", "ray", "--input", str(parquet), "--output", str(output), "--id-column", "note_id",
                                      "--workers", str(args.workers), "--threads", "1"]
                else:
                    command = base + ["--input", str(csv), "--output", str(output) + ".jsonl"]
                result = measure(command, env, sample_tree=engine == "ray")
                loop = re.search(r"predicted in [\d.]+ s \(([\d.]+) texts/s\)", str(result["stderr"]))
                used = re.search(r"memory allocator: (\w+)", str(result["stderr"]))
                row = {"engine": engine, "backend": backend, "allocator": used[1] if used else "", "texts": size,
                       "wall_s": round(float(result["wall_s"]), 1),
                       "texts_per_s": round(size / float(result["wall_s"]), 1),
                       "predict_texts_per_s": float(loop[1]) if loop else None,
                       "peak_rss_gb": round(float(result["peak_rss_gb"]), 3),
                       "actors_peak_rss_gb": round(float(result["actors_peak_rss_gb"]), 3) if engine == "ray" else None,
                       "actors_seen": result["actors_seen"] if engine == "ray" else None,
                       "largest_actor_gb": round(float(result["largest_actor_gb"]), 3) if engine == "ray" else None,
                       "cpu_use": round(float(result["cpu_use"]), 2),
                       "commit": args.old_ref if engine == "old" else commit}
                rows.append(row)
                print(json.dumps(row), flush=True)
                with open(args.out / "results.jsonl", "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
    print("\n| engine | backend | allocator | texts | wall s | texts/s | predict texts/s | peak RSS GB | of it, actors "
          "| CPU use | commit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['backend']} | {r['allocator']} | {r['texts']:,} | {r['wall_s']} | {r['texts_per_s']} | "
              f"{r['predict_texts_per_s'] or ''} | {r['peak_rss_gb']} | {actors(r)} | {r['cpu_use']} | {r['commit']} |")


def actors(row: dict) -> str:
    """The actors' peak (sum), how many actor processes the run started and the largest one's own peak."""
    if row["engine"] != "ray":
        return ""
    return f"{row['actors_peak_rss_gb']} ({row['actors_seen']} started, largest {row['largest_actor_gb']})"


if __name__ == "__main__":
    main()
