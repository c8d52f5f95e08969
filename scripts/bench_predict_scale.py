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
  each); the child's process tree (driver, raylet, actors) is sampled every
  0.5 s: peak RSS summed over it (as earlier runs reported), peak PSS summed
  (shared pages, such as Ray's object store that every process maps, counted
  once: the memory the tree holds), and the model actors' own part, RSS and
  private (anonymous) memory, with the number of actor processes started and
  the largest one's private peak;
- `old`: the code of `--old-ref` (default: the last commit before streaming,
  whose predict read the whole file), extracted with `git archive` and run the
  same way as `local`, for the "no more than 10% slower per text" comparison,
  or to compare any earlier commit side by side; `ray-old` runs that
  commit's code on Ray the same way as `ray`. Skipped above `--old-max`
  texts, where the whole-file path needs tens of GB.

`--malloc-confs ';dirty_decay_ms:1000,muzzy_decay_ms:0'` runs each measurement
with clintune's jemalloc setting and with that `MALLOC_CONF`, side by side: Ray's
actors, and a `local` run under `--allocators jemalloc`, take a `MALLOC_CONF` set
in the environment.
`--allocators default,jemalloc` runs each `local` measurement as shipped (glibc's
malloc, its freed heap handed back as the run grows) and started under jemalloc
as docs/how-to/predict-corpus.md shows (`LD_PRELOAD`, `MALLOC_CONF`), side by
side; `system` sets CLINTUNE_MALLOC=system (Ray's actors under glibc, and an
`old` commit's own relaunch off). The allocator column is the one the run reports.
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

from clintune.runtime.allocator import jemalloc_environment

ROOT = Path(__file__).resolve().parents[1]
OLD_REF = "e57ab36"  # the last commit whose predict read, encoded and held the whole file


RAY_MEMORY = ("pss_gb", "shmem_gb", "actors_rss_gb", "actors_private_gb", "largest_actor_private_gb")


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


def rollup(pid: int) -> dict[str, int]:
    """``/proc/PID/smaps_rollup`` in bytes (``Rss``, ``Pss``, ``Pss_Shmem``, ``Anonymous``, ...), or {} if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            lines = handle.read().splitlines()[1:]
    except OSError:
        return {}
    return {name: int(value.split()[0]) * 1024 for name, _, value in (line.partition(":") for line in lines) if value.strip()}


def split_parquet(parquet: Path, rows: int) -> Path:
    """``parquet`` as a dataset folder of files of at most ``rows`` rows (for ``--rows-per-file``)."""
    import pyarrow.parquet as pq

    folder = parquet.with_name(f"{parquet.stem}-files-{rows}")
    if not folder.is_dir():
        table = pq.read_table(parquet)
        folder.mkdir()
        for number, start in enumerate(range(0, table.num_rows, rows)):
            pq.write_table(table.slice(start, rows), folder / f"part-{number:05d}.parquet")
    return folder


def tree_memory(pid: int) -> dict[str, float | dict[int, dict[str, int]]]:
    """Memory of ``pid`` and every descendant, read from /proc, in bytes.

    ``rss``: the processes' resident sets summed, which counts a shared page once per process that
    maps it (Ray's object store, read by the driver, raylet and every actor; the same libraries in
    each); ``pss``: proportional set sizes summed, each shared page split among the processes that
    map it, so the memory the tree holds; ``shmem``: of it, shared memory (Ray's object store).
    ``actors``: each model actor's ``rss`` and ``private`` (its anonymous memory: heap, model,
    tensors); ``by_name``: PSS summed by process name (``/proc/PID/comm``: ``ray::MapWorker(...``,
    ``raylet``, ``gcs_server``, the driver ``python``, ...). The model actors are Ray's ``MapWorker``
    processes; the rest of a Ray run's tree is the driver and Ray's own processes (raylet, read
    tasks, stats actors)."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    actor_ids: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                name, fields = handle.read().split("(", 1)[1].rsplit(")", 1)
            children.setdefault(int(fields.split()[1]), []).append(int(entry))
            names[int(entry)] = name
            if name.startswith("ray::MapWorker"):
                actor_ids.add(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    totals = {"rss": 0, "pss": 0, "shmem": 0}
    actors: dict[int, dict[str, int]] = {}
    by_name: dict[str, int] = {}
    stack = [pid]
    while stack:
        current = stack.pop()
        memory = rollup(current)
        totals["rss"] += memory.get("Rss", 0)
        totals["pss"] += memory.get("Pss", 0)
        totals["shmem"] += memory.get("Pss_Shmem", 0)
        name = names.get(current, "?")
        by_name[name] = by_name.get(name, 0) + memory.get("Pss", 0)
        if current in actor_ids and memory:
            actors[current] = {"rss": memory.get("Rss", 0), "private": memory.get("Anonymous", 0)}
        stack += children.get(current, [])
    return {**totals, "actors": actors, "by_name": by_name}


def measure(command: list[str], env: dict[str, str], sample_tree: bool) -> dict[str, float | str]:
    """Run ``command``; wall seconds, peak RSS (GB), CPU use and its stderr."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        peak = {"rss": 0, "pss": 0, "shmem": 0, "actors_rss": 0, "actors_private": 0}
        actor_peaks: dict[int, int] = {}  # each actor process's own peak of private memory
        name_peaks: dict[str, int] = {}  # PSS by process name, each name's own peak
        if sample_tree:
            def sample() -> None:
                while process.poll() is None:
                    tree = tree_memory(process.pid)
                    actors = tree["actors"]
                    now = {"rss": tree["rss"], "pss": tree["pss"], "shmem": tree["shmem"],
                           "actors_rss": sum(a["rss"] for a in actors.values()),
                           "actors_private": sum(a["private"] for a in actors.values())}
                    peak.update({key: max(peak[key], value) for key, value in now.items()})
                    for actor, memory in actors.items():
                        actor_peaks[actor] = max(actor_peaks.get(actor, 0), memory["private"])
                    for name, pss in tree["by_name"].items():
                        name_peaks[name] = max(name_peaks.get(name, 0), pss)
                    time.sleep(0.5)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}\n{stderr[-3000:]}")
    rss = peak["rss"] if sample_tree else usage.ru_maxrss * 1024
    tree = {f"{key}_gb": value / 1e9 for key, value in peak.items() if key != "rss"} if sample_tree else {}
    return {"wall_s": wall, "peak_rss_gb": rss / 1e9, **tree, "actors_seen": len(actor_peaks),
            "largest_actor_private_gb": max(actor_peaks.values(), default=0) / 1e9,
            "pss_peak_gb_by_process": {name: round(value / 1e9, 3) for name, value in
                                       sorted(name_peaks.items(), key=lambda item: -item[1])[:8]},
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
    parser.add_argument("--engines", default="local,ray,old", help="any of local, ray, old, ray-old")
    parser.add_argument("--old-ref", default=OLD_REF, help="commit of the whole-file path compared against")
    parser.add_argument("--old-max", type=int, default=10_000, help="largest size run on the whole-file path")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors")
    parser.add_argument("--rows-per-file", type=int, default=0,
                        help="Ray's input as a folder of Parquet files of this many rows (default: one file)")
    parser.add_argument("--malloc-confs", default="",
                        help="';'-separated jemalloc MALLOC_CONF values run side by side ('' = as shipped), e.g. "
                             "';dirty_decay_ms:1000,muzzy_decay_ms:0'")
    parser.add_argument("--allocators", default="default",
                        help="any of default (as shipped), system (CLINTUNE_MALLOC=system), jemalloc (started under it)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-predict-scale")
    args = parser.parse_args()

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    models = {"pytorch": args.model, "int8": args.int8_model}
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        csv, parquet = synthesize(args.data, size, args.out / "inputs")
        if args.rows_per_file:
            parquet = split_parquet(parquet, args.rows_per_file)
        for backend in args.backends.split(","):
            runs = [(e, a, c) for e in args.engines.split(",") for a in args.allocators.split(",") for c in args.malloc_confs.split(";")]
            for engine, allocator, conf in runs:
                if engine == "old" and size > args.old_max:
                    continue
                on_ray, earlier = engine in ("ray", "ray-old"), engine in ("old", "ray-old")
                source = old_source(args.old_ref, args.out) if earlier else ROOT / "src"
                env = {**os.environ, "PYTHONPATH": str(source), "PYTHONUNBUFFERED": "1"}
                env.pop("CLINTUNE_MALLOC", None)
                env.pop("MALLOC_CONF", None)
                if allocator == "system":
                    env["CLINTUNE_MALLOC"] = "system"
                elif allocator == "jemalloc":
                    env.update(jemalloc_environment())
                if conf:
                    env["MALLOC_CONF"] = conf
                output = args.out / "outputs" / f"{engine}-{backend}-{size}-{allocator}-{len(conf)}"
                base = [sys.executable, "-m", "clintune", "predict", "--model", str(models[backend])]
                if on_ray:
                    command = base + ["--engine", "ray", "--input", str(parquet), "--output", str(output), "--id-column", "note_id",
                                      "--workers", str(args.workers), "--threads", "1"]
                else:
                    command = base + ["--input", str(csv), "--output", str(output) + ".jsonl"]
                result = measure(command, env, sample_tree=on_ray)
                loop = re.search(r"predicted in [\d.]+ s \(([\d.]+) texts/s\)", str(result["stderr"]))
                used = re.search(r"memory allocator: (\w+)", str(result["stderr"]))
                row = {"engine": engine, "backend": backend, "allocator": used[1] if used else "", "malloc_conf": conf or "as shipped",
                       "texts": size,
                       "wall_s": round(float(result["wall_s"]), 1),
                       "texts_per_s": round(size / float(result["wall_s"]), 1),
                       "predict_texts_per_s": float(loop[1]) if loop else None,
                       "peak_rss_gb": round(float(result["peak_rss_gb"]), 3),
                       **({key: round(float(result[key]), 3) for key in RAY_MEMORY} if on_ray else {}),
                       "actors_seen": result["actors_seen"] if on_ray else None,
                       "pss_peak_gb_by_process": result["pss_peak_gb_by_process"] if on_ray else None,
                       "cpu_use": round(float(result["cpu_use"]), 2),
                       "commit": args.old_ref if earlier else commit}
                rows.append(row)
                print(json.dumps(row), flush=True)
                with open(args.out / "results.jsonl", "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
    print("\n| engine | backend | allocator | texts | wall s | texts/s | predict texts/s | peak RSS GB | CPU use | commit |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['backend']} | {r['allocator']} | {r['texts']:,} | {r['wall_s']} | {r['texts_per_s']} | "
              f"{r['predict_texts_per_s'] or ''} | {r['peak_rss_gb']} | {r['cpu_use']} | {r['commit']} |")
    ray_rows = [r for r in rows if "pss_gb" in r]
    if ray_rows:
        print("\nRay's process tree, peaks in GB (RSS sums count each shared page once per process; PSS once in all):\n")
        print("| engine | backend | MALLOC_CONF | texts | wall s | tree RSS | tree PSS | of it, shared memory | actors' RSS "
              "| actors' private | actors started | largest actor's private |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in ray_rows:
            print(f"| {r['engine']} | {r['backend']} | {r['malloc_conf']} | {r['texts']:,} | {r['wall_s']} | {r['peak_rss_gb']} | "
                  f"{r['pss_gb']} | {r['shmem_gb']} | "
                  f"{r['actors_rss_gb']} | {r['actors_private_gb']} | {r['actors_seen']} | {r['largest_actor_private_gb']} |")


if __name__ == "__main__":
    main()
