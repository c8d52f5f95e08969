#!/usr/bin/env python3
"""ONNX Runtime's skip-layer-norm fusion on a dynamic-int8 folder: ms per text with and without it.

    python scripts/bench_int8_fusion.py --model runs/bench-quality-3/mts-clintune-int8 \\
        --data ../shared/data/mts-dialog/MTS-Dialog-ValidationSet.csv --texts 300

One ONNX Runtime thread, one text per pass (as `clintune predict` runs an int8 folder), the
first --texts dialogues tokenised as the folder's tokenizer does (truncated to its max_length);
best of two timed passes over them after a warm-up. Prints a markdown table: ms per text, and
how many labels agree with the default (fused) session. `SLOWER_WHEN_FUSED` in
src/clintune/inference/predictor.py rests on this measurement.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "runs" / "bench-quality-3" / "mts-clintune-int8")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mts-dialog" / "MTS-Dialog-ValidationSet.csv")
    parser.add_argument("--column", default="dialogue")
    parser.add_argument("--texts", type=int, default=300)
    args = parser.parse_args()

    import onnxruntime as ort

    from clintune.modeling.folder import ONNX_FILE, read_model_folder
    from clintune.modeling.loading import load_tokenizer

    folder = read_model_folder(args.model)
    tokenizer = load_tokenizer(str(folder.path))
    texts = pd.read_csv(args.data)[args.column].tolist()[: args.texts]
    encoded = [tokenizer(t, truncation=True, max_length=folder.config.model.max_length, return_tensors="np") for t in texts]
    rows, reference = [], None
    for name, disabled in [("default (fused)", None), ("SkipLayerNormFusion left out", ["SkipLayerNormFusion"])]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(folder.path / ONNX_FILE), options, providers=["CPUExecutionProvider"],
                                       disabled_optimizers=disabled)
        names = [i.name for i in session.get_inputs()]
        feeds = [{n: e[n].astype(np.int64) for n in names} for e in encoded]
        for feed in feeds[:20]:
            session.run(None, feed)
        best = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            logits = np.stack([session.run(None, feed)[0][0] for feed in feeds])
            best = min(best, time.perf_counter() - started)
        reference = logits if reference is None else reference
        agree = int((logits.argmax(1) == reference.argmax(1)).sum())
        rows.append((name, 1000 * best / len(feeds), agree))
    print(f"\n{len(texts)} texts from {args.data.name}, ONNX Runtime {ort.__version__}, one thread\n")
    print("| session | ms per text | labels as the default |")
    print("|---|---:|---:|")
    for name, ms, agree in rows:
        print(f"| {name} | {ms:.2f} | {agree}/{len(texts)} |")


if __name__ == "__main__":
    main()
