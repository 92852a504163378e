"""Shared test helpers (tests/ is on sys.path under pytest: `from helpers import random_boxes`)."""

import torch


# The box generators are the benchmarks' own (one set of workloads for tests and `detops bench`).
from detops.bench.workloads import adversarial_boxes, random_boxes  # noqa: E402,F401


def cpu_and_cuda():
    """Devices for ``pytest.mark.parametrize("device", cpu_and_cuda())``: the cuda case carries the cuda mark,
    so it is skipped where no GPU is visible. The ``device`` fixture in conftest.py is the same list."""
    import pytest

    return ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def ulp_distance(actual, expected):
    """|actual - expected| in units in the last place of ``expected``'s dtype at ``expected``'s magnitude
    (subnormals: the spacing at the smallest normal). Both are compared in float64; NaN where either is NaN."""
    dtype = expected.dtype
    info = torch.finfo(dtype)
    e = expected.detach().cpu().double()
    a = actual.detach().cpu().double()
    magnitude = e.abs().clamp(min=info.tiny)
    spacing = info.eps * torch.exp2(torch.floor(torch.log2(magnitude)))
    diff = (a - e).abs()
    same = a == e  # equal infinities give inf - inf = NaN otherwise
    return torch.where(same, torch.zeros_like(diff), diff / spacing)


def assert_close_ulps(actual, expected, ulps=1, equal_nan=True, atol=0.0):
    """``actual`` within ``ulps`` units in the last place of ``expected`` (same dtype and shape): the comparison
    for float16/bfloat16 results two devices compute in float32 and round once, where a float32 value next to a
    rounding boundary lands one ulp of the dtype apart (vectorised CPU log/exp against CUDA's libdevice,
    ``atan`` in CIoU), and a fixed tolerance such as 1e-5 is below one ulp. Values within ``atol`` of each
    other also pass (for results that are a difference of two larger values, where an ulp of the result is
    far below the inputs' rounding)."""
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    a, e = actual.detach().cpu(), expected.detach().cpu()
    nan_a, nan_e = a.isnan(), e.isnan()
    if equal_nan:
        assert torch.equal(nan_a, nan_e), "NaN in different places"
    else:
        assert not nan_a.any() and not nan_e.any(), "NaN"
    d = ulp_distance(a[~nan_e], e[~nan_e])
    if atol > 0:
        d = torch.where((a[~nan_e].double() - e[~nan_e].double()).abs() <= atol, torch.zeros_like(d), d)
    worst = d.max().item() if d.numel() else 0.0
    assert worst <= ulps, f"{worst:.3g} ulps of {e.dtype} apart (at most {ulps} allowed)"
