"""Shared test helpers (tests/ is on sys.path under pytest: `from helpers import random_boxes`)."""

import torch


def random_boxes(n, *, scale=100.0, offset=0.0, dtype=torch.float32, generator=None, lead=()):
    """xyxy boxes with positive width and height, top-left corner in [offset, offset + scale)."""
    xy = torch.rand(*lead, n, 2, generator=generator, dtype=torch.float64) * scale + offset
    wh = torch.rand(*lead, n, 2, generator=generator, dtype=torch.float64) * scale * 0.5 + 1e-3 * scale
    return torch.cat([xy, xy + wh], dim=-1).to(dtype)


def adversarial_boxes(dtype=torch.float32):
    """Boxes that break careless kernels: zero-area, identical, nested, touching, negative, huge, inverted."""
    b = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],  # identical to the first
            [5.0, 5.0, 5.0, 5.0],  # a point
            [2.0, 3.0, 2.0, 9.0],  # zero width
            [10.0, 0.0, 20.0, 10.0],  # touches the first along an edge
            [-30.0, -40.0, -10.0, -5.0],  # negative coordinates
            [-5.0, -5.0, 5.0, 5.0],  # straddles the origin
            [1e6, 1e6, 1e6 + 50.0, 1e6 + 20.0],  # far away
            [1e6 + 10.0, 1e6, 1e6 + 60.0, 1e6 + 20.0],  # overlapping the far one
            [2.0, 2.0, 8.0, 8.0],  # nested in the first
            [8.0, 8.0, 2.0, 2.0],  # inverted (x2 < x1)
            [0.0, 0.0, 1e-6, 1e-6],  # tiny
        ],
        dtype=torch.float64,
    )
    return b.to(dtype)


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


def assert_close_ulps(actual, expected, ulps=1, equal_nan=True):
    """``actual`` within ``ulps`` units in the last place of ``expected`` (same dtype and shape): the comparison
    for float16/bfloat16 results two devices compute in float32 and round once, where a float32 value next to a
    rounding boundary lands one ulp of the dtype apart (vectorised CPU log/exp against CUDA's libdevice,
    ``atan`` in CIoU), and a fixed tolerance such as 1e-5 is below one ulp."""
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    a, e = actual.detach().cpu(), expected.detach().cpu()
    nan_a, nan_e = a.isnan(), e.isnan()
    if equal_nan:
        assert torch.equal(nan_a, nan_e), "NaN in different places"
    else:
        assert not nan_a.any() and not nan_e.any(), "NaN"
    d = ulp_distance(a[~nan_e], e[~nan_e])
    worst = d.max().item() if d.numel() else 0.0
    assert worst <= ulps, f"{worst:.3g} ulps of {e.dtype} apart (at most {ulps} allowed)"
