#!/usr/bin/env bash
# Everything a GPU is needed for, in at most two calls on the GPU machine (its time is scarce: start-up, every
# command and idle time count, one command runs at most 10 minutes):
#
#   bash benchmarks/gpu_check.sh 1   # build for sm_90, detops info, every CUDA test, the quick GPU benchmark
#   bash benchmarks/gpu_check.sh 2   # the smoke script under compute-sanitizer memcheck, racecheck and
#                                    # synccheck, then the full GPU benchmark (only if time is left after 1)
#
# Logs and tables go to $OUT (default gpu_out/): one NAME.log per step, summary.txt with each step's exit
# status and seconds. Each step has its own time limit and the whole call a budget (BUDGET seconds, default
# 480 for call 1 and 500 for call 2), so a hang costs one step, never the call; steps run in order of value
# (the tests before the benchmark, the sanitizers before the full benchmark) and go on after a failure.
# The exit status says whether any step failed.
#
# The library: when a detops/_C.abi3.so built against the installed torch with CUDA kernels for sm_90 is
# already there (carried along, or built by call 1 on the same machine), it is used as it is; otherwise it is
# built here for sm_90 only with every core (a few minutes), which is what a fresh machine does.
set -uo pipefail
cd "$(dirname "$0")/.."
CALL=${1:-1}
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" FORCE_CUDA=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-$(nproc)}
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
PY=${PYTHON:-python3}
case "$CALL" in
  1) BUDGET=${BUDGET:-480} ;;
  2) BUDGET=${BUDGET:-500} ;;
  *) echo "usage: bash benchmarks/gpu_check.sh 1|2" >&2; exit 2 ;;
esac
START=$SECONDS
failed=0
: > "$OUT/summary.txt"

# step NAME LIMIT COMMAND...: runs COMMAND with at most LIMIT seconds (less when the call's budget is nearly
# spent; skipped when under 10 s remain), output in $OUT/NAME.log and its tail on the console.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - (SECONDS - START)))
  if [ "$left" -lt "$limit" ]; then limit=$left; fi
  if [ "$limit" -lt 10 ]; then
    echo "== $name: skipped, the call's budget is spent" | tee -a "$OUT/summary.txt"
    failed=1
    return 124
  fi
  echo "== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout -k 5 "$limit" bash -c '"$@"' "$name" "$@" > "$OUT/$name.log" 2>&1  # bash: steps may be functions
  local rc=$?
  tail -n 12 "$OUT/$name.log"
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
  if [ "$rc" -ne 0 ]; then failed=1; fi
  return "$rc"
}

library_ready() {  # the built library loads, was built against this torch, and has CUDA kernels for sm_90
  "$PY" - <<'EOF'
import torch, detops
from detops import _build_info as b
assert b.TORCH_VERSION == torch.__version__.split("+")[0], (b.TORCH_VERSION, torch.__version__)
assert b.WITH_CUDA and "9.0" in b.CUDA_ARCH_LIST, (b.WITH_CUDA, b.CUDA_ARCH_LIST)
x = torch.rand(4, 4, device="cuda").sort(-1).values
torch.ops.detops.box_iou(x, x, "iou", 1e-7)
EOF
}

build() {
  if library_ready > "$OUT/library_check.log" 2>&1; then
    echo "the library in detops/ loads and matches this torch: not rebuilding"
    return 0
  fi
  echo "building for sm_$TORCH_CUDA_ARCH_LIST with $MAX_JOBS jobs (reason: $(tail -n 1 "$OUT/library_check.log"))"
  "$PY" setup.py build_ext --inplace || "$PY" -m pip install --no-build-isolation --no-deps -e .
  library_ready
}

bench() {  # quick|full: detops bench on CUDA, the JSON under $OUT
  if [ "$1" = quick ]; then
    "$PY" -m detops bench --device cuda --quick --no-progress --json "$OUT/bench_quick.json"
  else
    "$PY" -m detops bench --device cuda --no-progress --json "$OUT/bench_full.json"
  fi
}

sanitizer() {  # TOOL: the smoke script under compute-sanitizer
  local cs
  cs=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
  local extra=()
  if [ "$1" = memcheck ]; then extra=(--leak-check no); fi
  "$cs" --tool "$1" "${extra[@]}" --error-exitcode 1 --print-limit 20 "$PY" benchmarks/gpu_smoke.py --device cuda
}

export PY OUT
export -f library_ready build bench sanitizer

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

if [ "$CALL" = 1 ]; then
  step build 270 build || { echo "the library could not be built or loaded: stopping"; exit 1; }
  step info 30 "$PY" -m detops info
  # Every cuda-marked test: the cuda cases of the device-parametrised behaviour tests and the CUDA-only
  # properties (no host sync, graph capture, autocast). -m cuda never runs a CPU case.
  step tests_cuda 240 "$PY" -m pytest -q -m cuda -p no:cacheprovider -rfE --durations=15 tests \
    --junitxml="$OUT/tests_cuda.xml"
  step tests_registered 30 "$PY" -m pytest -q -p no:cacheprovider -rfE \
    tests/test_package.py::test_cuda_kernels_registered_when_compiled
  step bench_quick 120 bench quick
else
  library_ready > "$OUT/library_check.log" 2>&1 || step build 270 build || exit 1
  if "$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")" --version \
    > "$OUT/sanitizer_version.txt" 2>&1; then
    step smoke 60 "$PY" benchmarks/gpu_smoke.py --device cuda
    step racecheck 90 sanitizer racecheck
    step memcheck 90 sanitizer memcheck
    step synccheck 60 sanitizer synccheck
  else
    echo "== compute-sanitizer does not run here: sanitizer steps skipped" | tee -a "$OUT/summary.txt"
    step smoke 60 "$PY" benchmarks/gpu_smoke.py --device cuda
  fi
  step bench_full 400 bench full
fi
echo "== call $CALL done after $((SECONDS - START)) s; failed=$failed" | tee -a "$OUT/summary.txt"
exit "$failed"
