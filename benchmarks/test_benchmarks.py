"""The bench_*.py cases under pytest-benchmark: `python -m pytest benchmarks --benchmark-only`.

Each case is timed for detops and for its baseline (torchvision, the reference or the tutorial-style loop),
so pytest-benchmark's comparison table shows both side by side. Nothing here asserts a speed.
"""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import bench_boxes  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CASES = bench_boxes.make_cases(DEVICE)


def _sync(fn):
    def run():
        out = fn()
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out

    return run


@pytest.mark.parametrize("case", CASES, ids=[c.name.strip() for c in CASES])
def test_detops(benchmark, case):
    benchmark.group = case.name.strip()
    benchmark(_sync(case.detops))


@pytest.mark.parametrize("case", [c for c in CASES if c.baseline], ids=[c.name.strip() for c in CASES if c.baseline])
def test_baseline(benchmark, case):
    benchmark.group = case.name.strip()
    benchmark.pedantic(_sync(case.baseline), rounds=3, iterations=1)
