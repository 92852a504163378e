"""Plain-PyTorch implementations of every detops op: the truth the kernels are tested against.

One module per op family, named as the kernel files are (csrc/cpu/<family>.cpp, csrc/cuda/<family>.cu).
They favour obviousness over speed and use no detops kernel.

A reference restates its op's signature, defaults and argument rules instead of importing them from the op's
module: code shared between a reference and what it checks would carry one mistake into both and hide it.
The tests compare the signatures instead (e.g. tests/test_nms.py).
"""

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype every detops op computes in (docs/ops.md, "Dtypes"), as the kernels' compute_dtype
    (csrc/checks.h): float32 for float16 and bfloat16, float64 for integers (exact), otherwise its own."""
    if dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    if not dtype.is_floating_point:
        return torch.float64
    return dtype


def in_compute_dtype(t: torch.Tensor) -> torch.Tensor:
    """t converted to :func:`compute_dtype` (itself when it already is)."""
    return t.to(compute_dtype(t.dtype))
