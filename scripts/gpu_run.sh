#!/usr/bin/env bash
# The prepared one-call GPU run (issue #41): the GPU tests, then the benchmark, on a machine with no network
# and its own Python image. Prepare first, here: `bash scripts/prepare_gpu_carry.sh` (gpu-carry/, < 60 MiB).
# Then one call from the repository root, with gpu-carry/ carried along:
#     bash scripts/gpu_run.sh          # tests within 3 minutes, benchmark within 4; outputs in $OUT
# Outputs: env.txt, test-gpu.log, test-gpu.xml, bench.log, bench.jsonl, bench.table.txt (probe.log, probe.jsonl
# with STEPS="tests probe bench"; TEST_ARGS passes pytest options, -k say).
# GPU_RUN_DRY=1 runs the same steps on this machine's CPU (tests with CLINTUNE_TEST_DEVICE=cpu, the
# benchmark with --device cpu --smoke, the wheels not installed) to check the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
OUT=${OUT:-runs/gpu-run}
CARRY=${CARRY:-gpu-carry}
SITE=${SITE:-/tmp/clintune-site}
DRY=${GPU_RUN_DRY:-0}
TEST_SECONDS=${TEST_SECONDS:-180}
BENCH_SECONDS=${BENCH_SECONDS:-240}
PROBE_SECONDS=${PROBE_SECONDS:-150}
STEPS=${STEPS:-tests bench}  # any of: tests probe bench (scripts/gpu_probe.py: where a step's time goes)
TEST_ARGS=${TEST_ARGS:-}
mkdir -p "$OUT"
[ -d "$CARRY/wheels" ] || { echo "no $CARRY/wheels: run scripts/prepare_gpu_carry.sh here and carry $CARRY" >&2; exit 2; }

# The image has no network: nothing may try the Hugging Face Hub (a connection attempt can wait for minutes).
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
started=$SECONDS

{
  date -u
  nvidia-smi 2>&1 || echo "nvidia-smi: not here"
  "$PY" -c 'import sys, torch, transformers; print(sys.version.split()[0], "torch", torch.__version__, "transformers",
transformers.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "",
torch.cuda.get_device_capability() if torch.cuda.is_available() else "")'
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if [ "$DRY" != 1 ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check --upgrade \
    --target "$SITE" "$CARRY"/wheels/*.whl || { echo "installing the carried wheels failed" >&2; exit 1; }
fi
"$PY" -c "import clintune.config.schema, seqeval.metrics; print('clintune imports: ok')" || exit 1

# MiniLM travels in fp16 to fit the carry; training wants fp32 weights (mixed precision keeps an fp32 master copy).
MINILM=/tmp/minilm-l6
"$PY" - "$CARRY/minilm-fp16" "$MINILM" <<'EOF'
import os
import shutil
import sys

from safetensors.torch import load_file, save_file

source, target = sys.argv[1:]
shutil.copytree(source, target, dirs_exist_ok=True)
weights = load_file(os.path.join(source, "model.safetensors"))
save_file({k: v.float() if v.is_floating_point() else v for k, v in weights.items()}, os.path.join(target, "model.safetensors"),
          metadata={"format": "pt"})
print(f"MiniLM in fp32 at {target}")
EOF

if [ "$DRY" = 1 ]; then
  export CLINTUNE_TEST_DEVICE=cpu
  BENCH_ARGS=(--device cpu --smoke)
  PROBE_ARGS=(--device cpu --smoke)
else
  BENCH_ARGS=(--device cuda --data "$CARRY/data" --minilm "$MINILM")
  PROBE_ARGS=(--device cuda --data "$CARRY/data" --minilm "$MINILM")
fi

tests=0 probe=0 bench=0
if [[ " $STEPS " == *" tests "* ]]; then
  echo "== make test-gpu ${TEST_ARGS} (within ${TEST_SECONDS} s)"
  # shellcheck disable=SC2086  # TEST_ARGS: pytest options, split on purpose
  timeout "$TEST_SECONDS" "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider -rs --durations=15 $TEST_ARGS \
    --junitxml "$OUT/test-gpu.xml" >"$OUT/test-gpu.log" 2>&1
  tests=$?
  tail -40 "$OUT/test-gpu.log"
fi

if [[ " $STEPS " == *" probe "* ]]; then
  echo "== scripts/gpu_probe.py (within ${PROBE_SECONDS} s)"
  timeout "$PROBE_SECONDS" "$PY" scripts/gpu_probe.py "${PROBE_ARGS[@]}" --work /tmp/probe-gpu --output "$OUT/probe.jsonl" \
    >"$OUT/probe.log" 2>&1
  probe=$?
  grep -v 'it/s]' "$OUT/probe.log" | grep -A 20 '^== profile\|^| encoder\|^|---' | tail -120
fi

if [[ " $STEPS " == *" bench "* ]]; then
  echo "== scripts/bench_gpu.py (within ${BENCH_SECONDS} s)"
  timeout "$BENCH_SECONDS" "$PY" scripts/bench_gpu.py "${BENCH_ARGS[@]}" --work /tmp/bench-gpu --output "$OUT/bench.jsonl" \
    >"$OUT/bench.log" 2>&1
  bench=$?
  # bench_gpu.py writes bench.table.txt beside bench.jsonl at the end; stopped before that, bench.jsonl holds the rows so far
  grep -v '^  ' "$OUT/bench.log" | grep -v 'it/s]' | tail -30
fi

echo "== tests exit $tests, probe exit $probe, benchmark exit $bench (124: stopped at its time limit), $((SECONDS - started)) s in all"
[ "$tests" = 0 ] && [ "$probe" = 0 ] && [ "$bench" = 0 ]
