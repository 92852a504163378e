#!/usr/bin/env bash
# Sets detops up on a fresh machine: the pinned torch and torchvision, the build and test tools, then the
# extension itself (CPU kernels, and CUDA kernels whenever a CUDA toolkit is found). Anything already
# installed at the right version is reused, so a second run takes seconds plus what ninja must rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q --disable-pip-version-check \
  torch==2.14.1 torchvision==0.29.1 \
  setuptools wheel ninja pybind11 numpy pillow tqdm tensorboard matplotlib pytest pytest-benchmark hypothesis
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
# No build isolation: an isolated build would fetch another torch and the library would not load.
"$PY" -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .
"$PY" -m detops info
