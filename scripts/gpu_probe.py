#!/usr/bin/env python3
"""Where a clintune training step's time goes on a GPU (issue #41's second call).

The first GPU run found clintune's steps far slower than the notebook recipe's even for MiniLM, whose
arithmetic is tiny: the time is on the host. This probe trains configs/ner.yaml for three epochs on a
small NCBI file, for each encoder and each variant (dynamic padding; padding to a multiple of 64, so that
few distinct batch shapes occur, now clintune's default on a GPU; dynamic padding with PyTorch's cuDNN
attention backend turned off), and prints one table:

- host milliseconds per step (between consecutive step ends, evaluations left out), median, in epoch 1
  for steps whose batch shape is new, in epoch 1 for shapes seen before, and in epochs 2-3;
- the number of distinct batch shapes;
- then the torch profiler's top operators by self CPU time over 20 steps of epoch 1 and 20 of epoch 3.

    python scripts/gpu_probe.py --data gpu-carry/data --minilm /tmp/minilm-l6 --output $OUT/probe.jsonl
    python scripts/gpu_probe.py --device cpu --smoke                     # the same on the tiny samples
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import bench_gpu  # noqa: E402

EPOCHS = 3


class StepClock:
    """Host time of every training step, the batch shape it ran on, and a profiler over two step windows."""

    def __init__(self, profile: bool) -> None:
        self.rows: list[dict[str, Any]] = []
        self.profile = profile
        self.profiles: dict[str, str] = {}
        self._last_end: float | None = None
        self._shape: tuple[int, ...] | None = None
        self._seen: set[tuple[int, ...]] = set()
        self._paused = False
        self._profiler: Any = None
        self._window: tuple[str, int] | None = None
        self._steps_per_epoch = 1

    def windows(self, steps_per_epoch: int) -> dict[str, tuple[int, int]]:
        start = 2 * steps_per_epoch + 5
        return {"epoch 1": (5, 25), "epoch 3": (start, start + 20)}

    def callback(self) -> Any:
        from transformers import TrainerCallback

        clock = self

        class ClockCallback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
                def shape(module: Any, positional: Any, named: dict[str, Any]) -> None:
                    if module.training and named.get("input_ids") is not None:
                        clock._shape = tuple(named["input_ids"].shape)

                model.register_forward_pre_hook(shape, with_kwargs=True)
                clock._steps_per_epoch = max(1, state.max_steps // EPOCHS)

            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if clock._paused:
                    clock._last_end = time.perf_counter()
                    clock._paused = False
                clock._maybe_profile(state.global_step + 1)

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                now = time.perf_counter()
                if clock._last_end is not None and clock._shape is not None:
                    epoch = min(EPOCHS, 1 + (state.global_step - 1) // clock._steps_per_epoch)
                    clock.rows.append({"step": state.global_step, "epoch": epoch, "shape": clock._shape,
                                       "new": clock._shape not in clock._seen, "ms": 1000 * (now - clock._last_end)})
                if clock._shape is not None:
                    clock._seen.add(clock._shape)
                clock._last_end = now
                clock._stop_profile(state.global_step)

            def on_evaluate(self, *args: Any, **kwargs: Any) -> None:
                clock._paused = True

            def on_train_end(self, *args: Any, **kwargs: Any) -> None:
                if clock._profiler is not None:  # a window the run did not reach the end of
                    clock._profiler.__exit__(None, None, None)
                    clock._profiler = None

            def on_save(self, *args: Any, **kwargs: Any) -> None:
                clock._paused = True

        return ClockCallback()

    def _maybe_profile(self, step: int) -> None:
        if not self.profile or self._profiler is not None:
            return
        for name, (first, _) in self.windows(self._steps_per_epoch).items():
            if step == first:
                import torch

                activities = [torch.profiler.ProfilerActivity.CPU]
                if torch.cuda.is_available():
                    activities.append(torch.profiler.ProfilerActivity.CUDA)
                self._profiler = torch.profiler.profile(activities=activities)
                self._profiler.__enter__()
                self._window = (name, step)

    def _stop_profile(self, step: int) -> None:
        if self._profiler is None or self._window is None:
            return
        name, _ = self._window
        if step + 1 < self.windows(self._steps_per_epoch)[name][1]:
            return
        self._profiler.__exit__(None, None, None)
        table = self._profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=48)
        self.profiles[name] = table
        self._profiler = None
        self._window = None

    def summary(self) -> dict[str, Any]:
        def median(rows: list[dict[str, Any]]) -> float | None:
            return round(statistics.median(r["ms"] for r in rows), 1) if rows else None

        first = [r for r in self.rows if r["epoch"] == 1]
        later = [r for r in self.rows if r["epoch"] > 1]
        return {"steps": len(self.rows), "shapes": len({r["shape"] for r in self.rows}),
                "epoch1_new_ms": median([r for r in first if r["new"]]), "epoch1_new_n": sum(r["new"] for r in first),
                "epoch1_seen_ms": median([r for r in first if not r["new"]]), "later_ms": median(later),
                "later_new_n": sum(r["new"] for r in later)}


def train(dataset_file: Path, encoder: str, pad_to: int | None, cudnn_attention: bool, work: Path, profile: bool) -> dict[str, Any]:
    import torch

    from clintune import api
    from clintune.api import load_config

    clock = StepClock(profile)
    config = load_config(ROOT / "configs/ner.yaml", [
        f"model.name_or_path={encoder}", f"data.train={dataset_file}", f"data.validation={dataset_file}",
        f"output.dir={work}", "evaluation.bootstrap_resamples=0", "data.tokenization_cache=false", f"training.epochs={EPOCHS}",
        f"training.pad_to_multiple_of={pad_to or 'null'}"])
    torch.backends.cuda.enable_cudnn_sdp(cudnn_attention)
    try:
        result = api.train(config, overwrite=True, callbacks=[clock.callback()])
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)
    bench_gpu.free_memory()
    return {"precision": result.metrics["precision"], **clock.summary(), "profiles": clock.profiles}


# (padding, multiple, cuDNN attention on): the first GPU call measured the first two (docs/benchmarks.md)
VARIANTS = [("dynamic", None, True), ("multiple of 64", 64, True), ("dynamic, cuDNN attention off", None, False)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--minilm")
    parser.add_argument("--work", type=Path, default=Path("/tmp/clintune-gpu-probe"))
    parser.add_argument("--output", type=Path, default=Path("runs/gpu-probe.jsonl"))
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    device = bench_gpu.choose_device(args.device)
    if device == "cpu":
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if args.smoke:
        tiny = str(ROOT / "models" / "tiny-bert")
        found = [("tiny-random", bench_gpu.random_encoder(args.work / "encoder-tiny", bench_gpu.TINY_RANDOM, tiny))]
        dataset_file = ROOT / "data/ner/train.conll"
    else:
        minilm = bench_gpu.minilm_folder(args.minilm)
        tokenizer = minilm or str(ROOT / "models" / "tiny-bert")
        found = [("bert-base-random", bench_gpu.random_encoder(args.work / "encoder-bert-base", bench_gpu.BERT_BASE, tokenizer))]
        found = ([("minilm-l6", minilm)] if minilm else []) + found
        dataset_file = args.data / "ncbi-disease/devel.tsv"
    rows = []
    with args.output.open("a") as sink:
        for name, encoder in found:
            for number, (padding, pad_to, cudnn_attention) in enumerate(VARIANTS):
                row = {"encoder": name, "padding": padding,
                       **train(dataset_file, encoder, pad_to, cudnn_attention, args.work / f"run-{name}-{number}",
                               profile=number == 0)}
                profiles = row.pop("profiles")
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                rows.append(row)
                for window, table in profiles.items():
                    print(f"\n== profile: {name}, {row['padding']}, {window}\n{table}", flush=True)
    header = ["encoder", "padding", "precision", "steps", "shapes", "epoch1_new_n", "epoch1_new_ms", "epoch1_seen_ms",
              "later_ms", "later_new_n"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row.get(key)) for key in header) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
