"""encode_boxes / decode_boxes against detops.reference.coding and torchvision's BoxCoder (docs/ops.md, "Box coding")."""

import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

import detops
from detops.reference import coding as ref
from helpers import assert_close_ulps, random_boxes

WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (0.5, 2.0, 3.0, 0.25)]


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torchvision_box_coder(weights, dtype, gen, device):
    gt, anchors = random_boxes(500, dtype=dtype, generator=gen), random_boxes(500, dtype=dtype, generator=gen)
    coder = BoxCoder(weights)
    deltas = detops.encode_boxes(gt.to(device), anchors.to(device), weights)
    torch.testing.assert_close(deltas.cpu(), coder.encode_single(gt, anchors), rtol=1e-6, atol=1e-6)
    decoded = detops.decode_boxes(deltas, anchors.to(device), weights)
    torch.testing.assert_close(decoded.cpu(), coder.decode_single(deltas.cpu(), anchors), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_matches_reference_and_round_trips(weights, gen, device):
    gt = random_boxes(300, dtype=torch.float64, generator=gen, lead=(2,), offset=-40)
    anchors = random_boxes(300, dtype=torch.float64, generator=gen, offset=-40)
    deltas = detops.encode_boxes(gt.to(device), anchors.to(device), weights).cpu()
    torch.testing.assert_close(deltas, ref.encode_boxes(gt, anchors, weights), rtol=1e-12, atol=1e-12)
    back = detops.decode_boxes(deltas.to(device), anchors.to(device), weights, clamp=None).cpu()
    torch.testing.assert_close(back, ref.decode_boxes(deltas, anchors, weights, None), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(back, gt, rtol=1e-9, atol=1e-9)


def test_ssd_variances_are_weights_10_10_5_5(gen, device):
    # The tutorial's cxcy_to_gcxgcy with variances (0.1, 0.2), on centre-size boxes.
    gt = random_boxes(100, dtype=torch.float64, generator=gen, scale=1.0)
    pri = random_boxes(100, dtype=torch.float64, generator=gen, scale=1.0)

    def cxcy(b):
        return torch.cat([(b[:, 2:] + b[:, :2]) / 2, b[:, 2:] - b[:, :2]], 1)

    g, p = cxcy(gt), cxcy(pri)
    tutorial = torch.cat([(g[:, :2] - p[:, :2]) / (p[:, 2:] / 10), torch.log(g[:, 2:] / p[:, 2:]) * 5], 1)
    torch.testing.assert_close(detops.encode_boxes(gt.to(device), pri.to(device), (10, 10, 5, 5)).cpu(), tutorial)


def test_clamp(gen, device):
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]], device=device)
    deltas = torch.tensor([[0.0, 0.0, 100.0, -100.0]], device=device)
    out = detops.decode_boxes(deltas, anchors).cpu()  # default clamp log(1000/16) from above only
    w = 10 * math.exp(math.log(1000.0 / 16))
    torch.testing.assert_close(out[0, 2] - out[0, 0], torch.tensor(w))
    assert out[0, 3] - out[0, 1] < 1e-30  # dh = -100 is not clamped from below
    assert torch.isinf(detops.decode_boxes(deltas, anchors, clamp=None)[0, 2].cpu())
    assert torch.isnan(detops.decode_boxes(torch.full((1, 4), float("nan"), device=device), anchors).cpu()).all()


def test_broadcast_and_shapes(gen, device):
    anchors = random_boxes(50, generator=gen).to(device)
    gt = random_boxes(50, generator=gen, lead=(3,)).to(device)
    out = detops.encode_boxes(gt, anchors, (10, 10, 5, 5))
    assert out.shape == (3, 50, 4) and out.device == gt.device
    for i in range(3):
        torch.testing.assert_close(out[i], detops.encode_boxes(gt[i], anchors, (10, 10, 5, 5)))
    # anchors broadcast along a middle dimension need a copy; the result must be the same
    mid = random_boxes(3, generator=gen)[:, None, :].to(device)
    torch.testing.assert_close(detops.encode_boxes(gt, mid).cpu(), ref.encode_boxes(gt.cpu(), mid.cpu().expand_as(gt)))
    z = lambda *s: torch.zeros(*s, device=device)
    assert detops.encode_boxes(z(0, 4), z(0, 4)).shape == (0, 4)
    assert detops.decode_boxes(z(2, 0, 4), z(0, 4)).shape == (2, 0, 4)
    nc = torch.cat([gt, gt], -1)[..., 4:]
    torch.testing.assert_close(detops.encode_boxes(nc, anchors), detops.encode_boxes(gt, anchors))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision(dtype, gen, device):
    gt, anchors = random_boxes(64, generator=gen).to(device, dtype), random_boxes(64, generator=gen).to(device, dtype)
    out = detops.encode_boxes(gt, anchors, (10, 10, 5, 5))
    assert out.dtype == dtype
    expected = detops.encode_boxes(gt.float(), anchors.float(), (10, 10, 5, 5)).to(dtype)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_gradcheck(gen, device):
    gt = random_boxes(5, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    anchors = random_boxes(5, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda g, a: detops.encode_boxes(g, a, (10, 10, 5, 5)), (gt, anchors))
    deltas = (torch.randn(5, 4, dtype=torch.float64, generator=gen) * 0.5).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda d, a: detops.decode_boxes(d, a, (10, 10, 5, 5)), (deltas, anchors))


def test_bad_input(device):
    z = lambda *s, **kw: torch.zeros(*s, device=device, **kw)
    with pytest.raises(RuntimeError, match=r"boxes must have shape \[\.\.\., 4\], got \[3, 3\]"):
        detops.encode_boxes(z(3, 3), z(3, 4))
    with pytest.raises(RuntimeError, match="floating-point"):
        detops.encode_boxes(z(3, 4, dtype=torch.int64), z(3, 4, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="do not broadcast"):
        detops.decode_boxes(z(3, 4), z(2, 4))
    with pytest.raises(RuntimeError, match="weights must have 4 values"):
        detops.encode_boxes(z(3, 4), z(3, 4), (1.0, 1.0))
    with pytest.raises(RuntimeError, match="non-zero"):
        detops.decode_boxes(z(3, 4), z(3, 4), (1.0, 0.0, 1.0, 1.0))


def test_opcheck_and_compile(gen, device):
    gt, anchors = random_boxes(20, generator=gen, lead=(2,)).to(device), random_boxes(20, generator=gen).to(device)
    torch.library.opcheck(torch.ops.detops.encode_boxes.default, (gt, anchors, [10.0, 10.0, 5.0, 5.0]))
    deltas = (torch.randn(2, 20, 4, generator=gen) * 0.3).to(device)
    torch.library.opcheck(torch.ops.detops.decode_boxes.default, (deltas, anchors, [10.0, 10.0, 5.0, 5.0], 4.0))
    torch.library.opcheck(torch.ops.detops.decode_boxes.default, (deltas, anchors, [1.0, 1.0, 1.0, 1.0], None))

    def f(d, a):
        return detops.decode_boxes(d, a, (10, 10, 5, 5)).sum(-1)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(deltas, anchors), f(deltas, anchors))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype, gen):
    gt = random_boxes(1000, generator=gen, lead=(3,)).to(dtype)
    anchors = random_boxes(1000, generator=gen).to(dtype)
    cpu = detops.encode_boxes(gt, anchors, (10, 10, 5, 5))
    gpu = detops.encode_boxes(gt.cuda(), anchors.cuda(), (10, 10, 5, 5))
    # Both decode the CPU's deltas: each kernel is compared on the same input.
    cpu_d = detops.decode_boxes(cpu, anchors, (10, 10, 5, 5))
    gpu_d = detops.decode_boxes(cpu.cuda(), anchors.cuda(), (10, 10, 5, 5))
    if dtype in (torch.float16, torch.bfloat16):
        # Both sides compute in float32 (the CPU's vectorised log/exp against libdevice) and round once to
        # dtype: next to a rounding boundary an ulp of dtype apart. A decoded corner near 0 is the difference
        # of two float32 values, so there an absolute 1e-3 (a float32 ulp of the 100 px inputs, times 10).
        assert_close_ulps(gpu, cpu, ulps=1)
        assert_close_ulps(gpu_d, cpu_d, ulps=1, atol=1e-3)
    else:
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gpu_d.cpu(), cpu_d, rtol=1e-5, atol=1e-3)


def _ulps(got, exact):
    """Distance in float32 ulps of `got` from a float64 `exact` value (where both are finite)."""
    spacing = torch.nextafter(exact.float().abs(), torch.tensor(math.inf)) - exact.float().abs()
    return ((got.double() - exact) / spacing.double()).abs()


def test_log_is_accurate_over_the_float_range():
    # CPU only: this measures the CPU kernels' own vectorised log (csrc/cpu/vector_math.h); CUDA uses
    # libdevice's. Width ratios from subnormal to near FLT_MAX,
    # anchors of width 1, weights 1, so dw = log(gw) exactly as the kernel computes it.
    ratios = torch.cat([torch.logspace(-44, 38, 200_001, dtype=torch.float64).float(), torch.tensor([1.0, 2.0, 0.5])])
    gt = torch.stack([torch.zeros_like(ratios), torch.zeros_like(ratios), ratios, ratios], -1)
    anchors = torch.tensor([0.0, 0.0, 1.0, 1.0]).expand_as(gt)
    dw = detops.encode_boxes(gt, anchors)[:, 2]
    exact = torch.log(ratios.double())
    assert _ulps(dw, exact).max() <= 2.0  # vector_math.h promises 2 ulp (measured: under 1)
    assert torch.equal(detops.encode_boxes(gt[-3:], anchors[-3:])[:, 2], torch.tensor([0.0, math.log(2), -math.log(2)]))


def test_log_special_values(device):
    # log(0) = -inf (degenerate box), log(x < 0) = NaN (flipped box), NaN stays NaN, inf stays inf.
    widths = torch.tensor([0.0, -1.0, math.nan, math.inf])
    gt = torch.stack([torch.zeros(4), torch.zeros(4), widths, torch.ones(4)], -1)
    out = detops.encode_boxes(gt.to(device), torch.tensor([0.0, 0.0, 1.0, 1.0], device=device))[:, 2].cpu()
    assert out[0] == -math.inf and out[1].isnan() and out[2].isnan() and out[3] == math.inf


def test_exp_is_accurate_over_the_float_range():
    # CPU only, as the log test above (the vectorised exp of csrc/cpu/vector_math.h). Decode with an anchor
    # centred on 0 of width 1: x2 = exp(dw) / 2, exactly where exp(dw) / 2 is a normal
    # float; below that (subnormal) the halving itself rounds, so only underflow to 0 is checked there.
    dw = torch.cat([torch.linspace(-110, 90, 400_001, dtype=torch.float32), torch.tensor([0.0, math.nan])])
    deltas = torch.stack([torch.zeros_like(dw), torch.zeros_like(dw), dw, dw], -1)
    out = detops.decode_boxes(deltas, torch.tensor([-0.5, -0.5, 0.5, 0.5]), clamp=None)
    got, exact = 2 * out[:, 2].double(), torch.exp(dw.double())
    normal = torch.isfinite(exact.float()) & (exact >= 2 * torch.finfo(torch.float32).tiny)
    assert _ulps(got[normal], exact[normal]).max() <= 2.0
    assert (got[dw < -104] == 0).all() and (got[dw > 89] == math.inf).all()
    assert got[-2] == 1.0 and got[-1].isnan()
