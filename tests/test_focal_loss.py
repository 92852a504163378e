"""detops.sigmoid_focal_loss against torchvision's and the reference: forward, gradient, reductions, dtypes,
adversarial logits, bad arguments, opcheck."""

import pytest
import torch
import torchvision

import detops
from detops.reference import focal_loss as ref

tv_focal = torchvision.ops.sigmoid_focal_loss


def _problem(gen, shape=(500, 7), device="cpu", dtype=torch.float32):
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 4).to(dtype)
    t = (torch.rand(shape, generator=gen) < 0.3).to(dtype)
    return x.to(device), t.to(device)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (-1, 2.0), (0.5, 0.0), (0.25, 1.5), (1.0, 3.0)])
def test_equals_torchvision_forward_and_gradient(device, gen, reduction, alpha, gamma):
    x, t = _problem(gen, device=device)
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    got = detops.sigmoid_focal_loss(x1, t, alpha, gamma, reduction)
    want = tv_focal(x2, t, alpha, gamma, reduction)
    assert got.dtype == want.dtype and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    g = torch.rand_like(want)
    (got * g).sum().backward()
    (want * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-7)


def test_adversarial_logits_forward_matches_torchvision(device):
    vals = [float("inf"), -float("inf"), float("nan"), 0.0, -0.0, 1e4, -1e4, 100.0, -100.0, 17.0, -17.0, 1e-30]
    x = torch.tensor(vals, device=device).repeat(2)
    t = torch.tensor([1.0, 0.0], device=device).repeat_interleave(len(vals))
    got = detops.sigmoid_focal_loss(x, t)
    want = tv_focal(x, t)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7, equal_nan=True)
    finite = x.isfinite()
    xf = x[finite].clone().requires_grad_()
    xg = x[finite].clone().requires_grad_()
    detops.sigmoid_focal_loss(xf, t[finite], reduction="sum").backward()
    tv_focal(xg, t[finite], reduction="sum").backward()
    torch.testing.assert_close(xf.grad, xg.grad, rtol=1e-5, atol=1e-7, equal_nan=True)


def test_dtypes_and_reference(device, gen):
    x, t = _problem(gen, device=device, dtype=torch.float64)
    for reduction in ("none", "sum"):
        torch.testing.assert_close(
            detops.sigmoid_focal_loss(x, t, reduction=reduction),
            tv_focal(x, t, reduction=reduction),
            rtol=1e-12,
            atol=1e-14,
        )
    for dtype in (torch.float16, torch.bfloat16):
        xh, th = x.to(dtype), t.to(dtype)
        got = detops.sigmoid_focal_loss(xh, th)
        assert got.dtype == dtype
        torch.testing.assert_close(got, ref.sigmoid_focal_loss(xh, th), rtol=0, atol=0)
        s = detops.sigmoid_focal_loss(xh, th, reduction="sum")
        torch.testing.assert_close(s.float(), tv_focal(xh.float(), th.float(), reduction="sum"), rtol=1e-2, atol=0)
    # mixed dtypes promote, as torchvision's arithmetic does
    assert detops.sigmoid_focal_loss(x.float(), t).dtype == torch.float64
    # non-contiguous input
    xt, tt = x.t(), t.t()
    torch.testing.assert_close(detops.sigmoid_focal_loss(xt, tt), tv_focal(xt, tt), rtol=1e-12, atol=1e-14)


def test_empty_and_deterministic(device, gen):
    e = torch.zeros(0, 3, device=device)
    assert detops.sigmoid_focal_loss(e, e).shape == (0, 3)
    assert detops.sigmoid_focal_loss(e, e, reduction="sum").item() == 0
    assert detops.sigmoid_focal_loss(e, e, reduction="mean").isnan()
    x, t = _problem(gen, shape=(100_003,), device=device)
    a = detops.sigmoid_focal_loss(x, t, reduction="sum")
    assert torch.equal(a, detops.sigmoid_focal_loss(x, t, reduction="sum"))
    torch.testing.assert_close(a, ref.sigmoid_focal_loss(x, t, reduction="sum"), rtol=1e-6, atol=0)


def test_bad_arguments():
    x = torch.zeros(4, 3)
    with pytest.raises(RuntimeError, match="targets must have the shape"):
        detops.sigmoid_focal_loss(x, torch.zeros(4, 1))
    with pytest.raises(RuntimeError, match="targets must be a floating"):
        detops.sigmoid_focal_loss(x, torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(RuntimeError, match="inputs must be a floating"):
        detops.sigmoid_focal_loss(torch.zeros(4, 3, dtype=torch.long), x)
    with pytest.raises(RuntimeError, match="alpha"):
        detops.sigmoid_focal_loss(x, x, alpha=1.5)
    with pytest.raises(ValueError, match="reduction"):
        detops.sigmoid_focal_loss(x, x, reduction="max")


def test_opcheck(gen):
    x, t = _problem(gen, shape=(20, 3), dtype=torch.float64)
    for reduction in ("none", "mean", "sum"):
        torch.library.opcheck(
            torch.ops.detops.sigmoid_focal_loss, (x.clone().requires_grad_(), t, 0.25, 2.0, reduction)
        )
