#!/usr/bin/env bash
# Everything a GPU is needed for, in one device call (device time is scarce; see ../shared/GPU.md):
#   run: bash benchmarks/gpu_check.sh        (writes logs and tables under $OUT, default gpu_out/)
# 1. build detops with the CUDA kernels for the GPU present (TORCH_CUDA_ARCH_LIST, default 9.0);
# 2. the CUDA tests (every test with "cuda" in its name: CPU against CUDA, graph capture, no host syncs);
# 3. each benchmark on CUDA, tables into $OUT;
# 4. the CUDA tests once more under compute-sanitizer (out-of-bounds accesses, races), if it is installed.
# Each step has its own time limit so one hang cannot spend the whole call; sized for about 10 minutes on
# an H100/H200 machine with 16 cores. Steps go on after a failure, and the exit code says whether any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
PY=${PYTHON:-python3}
failed=0
step() {  # step NAME SECONDS COMMAND...: runs it with a limit, output to $OUT/NAME.log and the console's tail
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s)"
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 15 "$OUT/$name.log"
  echo "== $name: exit $rc after $((SECONDS - start)) s"
  if [ "$rc" -ne 0 ]; then failed=1; fi
  return "$rc"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
step build 300 "$PY" -m pip install --no-build-isolation --no-deps -e . || { echo "build failed"; exit 1; }
step info 60 "$PY" -m detops info
step tests_cuda 240 "$PY" -m pytest -q -k cuda tests
step bench_boxes 90 "$PY" benchmarks/bench_boxes.py --device cuda --min-time 0.2 --out "$OUT"
step bench_targets 90 "$PY" benchmarks/bench_targets.py --device cuda
step bench_nms 120 "$PY" benchmarks/bench_nms.py --device cuda --quick --out "$OUT/bench_nms.md"
step bench_ssd 120 "$PY" benchmarks/bench_ssd.py --device cuda --out "$OUT"
if command -v compute-sanitizer > /dev/null || [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" ]; then
  sanitizer=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
  step sanitizer 180 "$sanitizer" --tool memcheck --error-exitcode 1 "$PY" -m pytest -q -x -k cuda tests
fi
exit "$failed"
