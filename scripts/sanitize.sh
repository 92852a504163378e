#!/usr/bin/env bash
# Builds the CPU kernels with AddressSanitizer and UndefinedBehaviorSanitizer in a temporary copy of the
# repository (the normal build in detops/_C.abi3.so is left alone) and runs the test suite against it.
#
#   bash scripts/sanitize.sh                       # the whole suite
#   bash scripts/sanitize.sh tests/test_boxes.py   # chosen test files (any pytest arguments)
#
# Environment: SANITIZE_DIR keeps the build between runs (default: a fresh temporary directory, removed at
# the end), MAX_JOBS as for the normal build, PYTHON (default python3).
#
# Python itself is not instrumented, so the ASan runtime is preloaded (LD_PRELOAD); leak checking is off
# (the interpreter and torch keep allocations alive at exit by design). Any ASan report aborts the process,
# and UBSan reports are made fatal (-fno-sanitize-recover), so a clean run means pytest's own exit status.
# Float division by zero is not part of -fsanitize=undefined with GCC: IoU's 0 / 0 = NaN is intended.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
CXX=${CXX:-g++}
if [ -n "${SANITIZE_DIR:-}" ]; then
  WORK=$SANITIZE_DIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/detops-sanitize.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
fi
echo "sanitize: building in $WORK"
# The sources, tests and Python package; not the normal build's objects or library.
(cd "$ROOT" && tar -cf - --exclude='./build' --exclude='*.so' --exclude='__pycache__' --exclude='.git' \
  --exclude='./demo_out' --exclude='./gpu_out' --exclude='./runs' \
  setup.py pyproject.toml csrc detops tests benchmarks scripts README.md) | (cd "$WORK" && tar -xf -)
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
(
  cd "$WORK"
  DETOPS_CPU_ONLY=1 CFLAGS="$SAN" CXXFLAGS="$SAN" LDFLAGS="-fsanitize=address,undefined" \
    MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" setup.py -q build_ext --inplace >build.log 2>&1 ||
    { tail -40 build.log; echo "sanitize: build failed (log: $WORK/build.log)" >&2; exit 1; }
)
LIB="$WORK/detops/_C.abi3.so"
# Not `nm | grep -q`: grep -q exits at the first match, nm then dies of SIGPIPE and, under pipefail, the
# pipeline reports failure for a library that is instrumented.
if ! nm -D "$LIB" | grep -c __asan_ > /dev/null; then
  echo "sanitize: $LIB was not built with AddressSanitizer" >&2
  exit 1
fi
ASAN_LIB=$("$CXX" -print-file-name=libasan.so)
UBSAN_LIB=$("$CXX" -print-file-name=libubsan.so)
echo "sanitize: running pytest with $ASAN_LIB preloaded"
cd "$WORK"
status=0
LD_PRELOAD="$ASAN_LIB $UBSAN_LIB" \
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_init_order=1:check_initialization_order=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  PYTHONPATH="$WORK" "$PY" -m pytest -q -p no:cacheprovider "${@:-tests}" || status=$?
echo "sanitize: pytest exit status $status"
exit "$status"
