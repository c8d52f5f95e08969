#!/usr/bin/env python3
"""Where does a Ray actor's memory grow? Each actor reports its own RSS batch after batch.

    python scripts/probe_ray_actor_memory.py --input runs/bench-scale/mts-100000.parquet \\
        --model runs/bench-quality-3/mts-clintune-int8 --ways data-echo,data-model,core-echo,core-model

Ways (each in a fresh local Ray cluster with two CPUs, actors under jemalloc as
`clintune predict --engine ray` starts them):

- `data-echo`: Ray Data, the same read and `map_batches` settings as
  `predict_parquet_on_ray`, but an actor that only answers each row with a
  constant: Ray Data and Ray core, no model;
- `data-model`: the same with clintune's `ModelActor` (the real thing);
- `written-echo` / `written-model`: as `data-`, but the results written with
  `write_parquet` into a temporary folder, as `--engine ray` does (Ray Data
  runs the write as tasks of its own), and read back;
- `core-echo` / `core-model`: two plain Ray actors (no Ray Data) fed the same
  256-row Arrow batches by the driver, round robin, at most two in flight each.

Prints, per way, each actor's RSS (`VmRSS` and `RssAnon`, MB) after its first
batch and at each tenth of the input, and the growth from the first tenth to
the end. An actor's reading comes back in its own output rows (columns `pid`,
`rss_mb`, `anon_mb`), so it is the actor's own view at that batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MEMORY = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "Pss", "Private_Clean", "Private_Dirty",
          "je_allocated", "je_active", "je_resident", "je_retained", "py_objects")


def jemalloc_stats() -> dict[str, float]:
    """jemalloc's own counts, MB, where this process runs under it: ``allocated`` (live), ``active``,
    ``resident`` (what it holds in memory) and ``retained``; all zero under another allocator."""
    import ctypes

    try:
        mallctl = ctypes.CDLL(None).mallctl
    except AttributeError:
        return {f"je_{name}": 0.0 for name in ("allocated", "active", "resident", "retained")}
    epoch = ctypes.c_uint64(1)
    mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.c_size_t(8))
    stats = {}
    for name in ("allocated", "active", "resident", "retained"):
        value, size = ctypes.c_size_t(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_size_t))
        mallctl(f"stats.{name}".encode(), ctypes.byref(value), ctypes.byref(size), None, ctypes.c_size_t(0))
        stats[f"je_{name}"] = value.value / 2**20
    return stats


def own_memory() -> dict[str, float]:
    """This process's resident memory by kind, MB (``/proc/self/status`` and ``smaps_rollup``)."""
    fields = {}
    for source in ("status", "smaps_rollup"):
        for line in Path(f"/proc/self/{source}").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in MEMORY:
                fields[name] = int(value.split()[0]) / 1024
    import gc

    return {**fields, **jemalloc_stats(), "py_objects": float(len(gc.get_objects()))}


def with_memory(table: pa.Table) -> pa.Table:
    memory = own_memory()
    n = table.num_rows
    table = table.append_column("pid", pa.array([os.getpid()] * n, pa.int64())) \
        .append_column("thread", pa.array([threading.get_ident()] * n, pa.int64()))
    for name in MEMORY:
        table = table.append_column(name, pa.array([memory[name]] * n, pa.float64()))
    return table


class Echo:
    """An actor with no model: each row answered with a constant label."""

    def __init__(self, text_column: str, id_column: str, **_: object) -> None:
        self.text_column, self.id_column = text_column, id_column

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column(self.text_column).to_pylist()
        table = pa.table({self.id_column: batch.column(self.id_column), "label": ["x"] * len(texts),
                          "score": [float(len(t)) for t in texts]})
        return with_memory(table)


class Model:
    """clintune's ModelActor, with the actor's memory added to its output."""

    def __init__(self, **kwargs: object) -> None:
        from clintune.inference.on_ray import ModelActor

        self.actor = ModelActor(**kwargs)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return with_memory(self.actor(batch))


def mapped_dataset(ray, source: Path, make, kwargs: dict, env: dict, chunk: int):
    """The input read and mapped with ``make`` as ``predict_parquet_on_ray`` does (its context settings, two actors)."""
    from clintune.inference.on_ray import RAY_BLOCK_BYTES

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.target_max_block_size = RAY_BLOCK_BYTES
    context.op_resource_reservation_enabled = False
    dataset = ray.data.read_parquet(str(source.absolute()), num_cpus=0).select_columns([kwargs["text_column"], kwargs["id_column"]])
    options = {"runtime_env": {"env_vars": env}} if env else {}
    return dataset.map_batches(make, fn_constructor_kwargs=kwargs, batch_size=chunk, batch_format="pyarrow",
                               compute=ray.data.ActorPoolStrategy(min_size=1, max_size=2), num_cpus=1, **options)


def on_ray_data(ray, source: Path, make, kwargs: dict, env: dict, chunk: int) -> pa.Table:
    batches = mapped_dataset(ray, source, make, kwargs, env, chunk).iter_batches(batch_format="pandas", batch_size=None)
    return pa.concat_tables([pa.Table.from_pandas(frame, preserve_index=False) for frame in batches])


def on_ray_data_written(ray, source: Path, make, kwargs: dict, env: dict, chunk: int) -> pa.Table:
    """As ``on_ray_data``, but written with ``write_parquet`` into a temporary folder (as ``--engine ray`` does) and read back."""
    import tempfile

    import pyarrow.dataset as pa_dataset

    with tempfile.TemporaryDirectory() as folder:
        mapped_dataset(ray, source, make, kwargs, env, chunk).write_parquet(folder)
        files = sorted(Path(folder).glob("*.parquet"))
        return pa.concat_tables([pa_dataset.dataset(str(f), format="parquet").to_table() for f in files])


def on_ray_core(ray, source: Path, make, kwargs: dict, env: dict, chunk: int) -> pa.Table:
    options = {"runtime_env": {"env_vars": env}} if env else {}
    remote = ray.remote(num_cpus=1)(make)
    actors = [remote.options(**options).remote(**kwargs) for _ in range(2)]
    columns = [kwargs["text_column"], kwargs["id_column"]]
    pending, outputs, turn = [], [], 0
    for record_batch in pq.ParquetFile(source).iter_batches(batch_size=chunk, columns=columns):
        if len(pending) >= 4:
            done, pending = ray.wait(pending, num_returns=1)
            outputs.extend(ray.get(done))
        pending.append(actors[turn % 2].__call__.remote(pa.Table.from_batches([record_batch])))
        turn += 1
    outputs.extend(ray.get(pending))
    return pa.concat_tables(outputs)


def summary(way: str, table: pa.Table, seconds: float) -> dict:
    """Per actor: texts, threads seen, and each memory kind after its first batch and at each tenth of its texts."""
    frame = table.select(["pid", "thread", *MEMORY]).to_pandas()
    rows = {}
    for pid, part in frame.groupby("pid", sort=False):
        n = len(part)
        marks = part.iloc[[0] + [min(n - 1, max(0, n * k // 10 - 1)) for k in range(1, 11)]]
        rows[int(pid)] = {"texts": n, "threads": int(part.thread.nunique()),
                          **{name: [round(value) for value in marks[name]] for name in MEMORY}}
    return {"way": way, "texts": table.num_rows, "seconds": round(seconds, 1), "actors": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="Parquet with note_id and dialogue columns")
    parser.add_argument("--model", type=Path, help="clintune model folder (for the -model ways)")
    parser.add_argument("--ways", default="data-echo,core-echo")
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--dashboard", action="store_true", help="start Ray's dashboard, as a plain ray.init() does")
    parser.add_argument("--malloc-conf", help="the actors' MALLOC_CONF instead of clintune's (jemalloc options)")
    parser.add_argument("--out", type=Path, help="append one JSON line per way here")
    args = parser.parse_args()

    import ray
    import ray.data  # noqa: F401

    from clintune.runtime.allocator import jemalloc_environment

    env = jemalloc_environment()
    if args.malloc_conf and env:
        env["MALLOC_CONF"] = args.malloc_conf
    for way in args.ways.split(","):
        engine, actor = way.split("-")
        kwargs = {"text_column": "dialogue", "id_column": "note_id"}
        if actor == "model":
            kwargs.update(model_dir=str(args.model.absolute()), threads=1)
        ray.init(num_cpus=2, logging_level=logging.WARNING, include_dashboard=args.dashboard)
        started = time.perf_counter()
        run = {"data": on_ray_data, "written": on_ray_data_written, "core": on_ray_core}[engine]
        table = run(ray, args.input, Echo if actor == "echo" else Model, kwargs, env, args.chunk)
        row = summary(way, table, time.perf_counter() - started)
        ray.shutdown()
        print(json.dumps(row), flush=True)
        if args.out:
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
