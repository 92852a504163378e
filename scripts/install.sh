#!/usr/bin/env bash
# Sets detops up on a fresh machine: the pinned torch and torchvision, the build and test tools, then the
# extension itself (CPU kernels, and CUDA kernels whenever a CUDA toolkit is found). Anything already
# installed at the right version is reused, so a second run takes seconds plus what ninja must rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q --disable-pip-version-check \
  torch==2.14.1 torchvision==0.29.1 \
  setuptools wheel ninja pybind11 numpy pillow tqdm tensorboard matplotlib pytest pytest-benchmark hypothesis pycocotools shapely ruff==0.17.6 clang-format==19.1.7 \
  opencv-python-headless pyyaml requests
# ultralytics is the YOLO tests' and benchmarks' anchor; without its own dependency list, which would pull the
# GUI build of OpenCV and packages its post-processing never imports.
"$PY" -m pip install -q --disable-pip-version-check --no-deps ultralytics==8.4.190
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
# With no GPU visible and no arch list given, build for sm_90 only, as the README's test command does: the
# two README commands then share one build (ninja reuses it) instead of the second rebuilding everything for
# setup.py's five-architecture default. Set TORCH_CUDA_ARCH_LIST to build for other GPUs.
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ] && ! nvidia-smi -L > /dev/null 2>&1; then export TORCH_CUDA_ARCH_LIST=9.0; fi
# No build isolation: an isolated build would fetch another torch and the library would not load.
# pip builds in a fresh temporary folder each time, so skip the build when the sources, the switches and the
# torch it would build against are those of the installed build.
stamp=$( (cat setup.py; find csrc -type f | LC_ALL=C sort | xargs cat
  echo "${TORCH_CUDA_ARCH_LIST:-} ${DETOPS_CPU_ONLY:-} ${CUDA_HOME:-}"  # FORCE_CUDA changes no output
  "$PY" -c "import torch; print(torch.__version__)") | sha256sum | cut -c1-32)
if [ -f detops/_C.abi3.so ] && [ "$(cat detops/.build_stamp 2> /dev/null)" = "$stamp" ] \
  && "$PY" -m pip show -q detops > /dev/null 2>&1; then
  echo "detops: the installed build matches the sources; not rebuilding"
else
  "$PY" -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
  echo "$stamp" > detops/.build_stamp
fi
"$PY" -m detops info
