"""The overlap family against torchvision 0.29 and detops.reference.boxes (docs/ops.md, "Agreement with other implementations", "Boxes")."""

import pytest
import torch
import torchvision

import detops
from detops.reference import boxes as ref
from helpers import adversarial_boxes, assert_close_ulps, random_boxes

TV_PAIRWISE = {
    "iou": torchvision.ops.box_iou,
    "giou": torchvision.ops.generalized_box_iou,
    "diou": torchvision.ops.distance_box_iou,
    "ciou": torchvision.ops.complete_box_iou,
}
DETOPS_PAIRWISE = {
    "iou": detops.box_iou,
    "giou": detops.generalized_box_iou,
    "diou": detops.distance_box_iou,
    "ciou": detops.complete_box_iou,
}
TV_LOSSES = {
    "giou": (torchvision.ops.generalized_box_iou_loss, detops.generalized_box_iou_loss),
    "diou": (torchvision.ops.distance_box_iou_loss, detops.distance_box_iou_loss),
    "ciou": (torchvision.ops.complete_box_iou_loss, detops.complete_box_iou_loss),
}


def assert_parity(actual, expected, rtol=1e-6, atol=1e-6):
    """As docs/ops.md asks: same dtype and shape; float32 within 1e-6 relative (atol for values near 0); NaN where NaN.
    `actual` may be on any device (it is compared on the CPU); CUDA's libdevice atan/sqrt may differ from
    the CPU's by an ulp or two, so a CUDA result gets at least 1e-5 relative."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if actual.device.type != "cpu":
        rtol, atol = max(rtol, 1e-5), max(atol, 1e-6)
    torch.testing.assert_close(actual.cpu(), expected.cpu(), rtol=rtol, atol=atol, equal_nan=True)


def _inputs(kind, dtype, gen):
    if kind == "random":
        return random_boxes(57, dtype=dtype, generator=gen), random_boxes(33, dtype=dtype, generator=gen)
    if kind == "negative":
        return (
            random_boxes(40, offset=-500, dtype=dtype, generator=gen),
            random_boxes(30, offset=-520, dtype=dtype, generator=gen),
        )
    if kind == "huge":
        # Far from the origin float32 keeps ~0.06 precision; both libraries see the same rounded inputs.
        return (
            random_boxes(40, scale=1e3, offset=1e6, dtype=dtype, generator=gen),
            random_boxes(30, scale=1e3, offset=1e6, dtype=dtype, generator=gen),
        )
    if kind == "adversarial":
        b = adversarial_boxes(dtype)
        return b, b
    raise AssertionError(kind)


@pytest.mark.parametrize("mode", list(TV_PAIRWISE))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["random", "negative", "huge", "adversarial"])
def test_pairwise_matches_torchvision(mode, dtype, kind, gen, device):
    a, b = _inputs(kind, dtype, gen)
    expected = TV_PAIRWISE[mode](a, b)
    actual = DETOPS_PAIRWISE[mode](a.to(device), b.to(device))
    # Far from the origin the catastrophic cancellation in (x2 - x1) is identical in both, but the
    # DIoU/CIoU terms divide small differences: allow a little more there.
    tol = 1e-5 if kind == "huge" and mode in ("diou", "ciou") else 1e-6
    assert_parity(actual, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("mode", ["iou", "giou", "diou", "ciou", "iof"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pairwise_matches_reference(mode, dtype, gen, device):
    a, b = random_boxes(64, dtype=dtype, generator=gen), random_boxes(48, dtype=dtype, generator=gen)
    assert_parity(detops.box_overlap(a.to(device), b.to(device), mode), ref.box_overlap(a, b, mode))


def test_iou_zero_area_pair_is_nan_like_torchvision(device):
    p = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert torch.isnan(detops.box_iou(p.to(device), p.to(device))).all()
    assert torch.isnan(torchvision.ops.box_iou(p, p)).all()


def test_iou_exact_values(device):
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]], device=device)
    b = torch.tensor(
        [[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 4.0, 2.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]], device=device
    )
    torch.testing.assert_close(detops.box_iou(a, b).cpu(), torch.tensor([[1 / 7, 0.0, 1.0, 0.25]]), rtol=0, atol=0)
    torch.testing.assert_close(detops.box_iof(b, a).cpu(), torch.tensor([[0.25], [0.0], [1.0], [1.0]]), rtol=0, atol=0)


def test_nan_coordinates_propagate(device):
    a = torch.tensor([[0.0, 0.0, float("nan"), 2.0], [0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, float("nan"), 1.0, 1.0]])
    for mode in TV_PAIRWISE:
        assert_parity(DETOPS_PAIRWISE[mode](a.to(device), b.to(device)), TV_PAIRWISE[mode](a, b))
    out = detops.box_iou(a.to(device), b.to(device)).cpu()
    assert torch.isnan(out[0]).all() and torch.isnan(out[:, 1]).all() and not torch.isnan(out[1, 0])


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.int16])
def test_integer_boxes_match_torchvision(dtype, gen, device):
    # Integer boxes are computed in float64: on CUDA the kernels with the most registers per thread.
    a = (random_boxes(30, scale=100, generator=gen) + 0.5).to(dtype)
    b = (random_boxes(20, scale=100, generator=gen) + 0.5).to(dtype)
    for mode in TV_PAIRWISE:
        assert_parity(DETOPS_PAIRWISE[mode](a.to(device), b.to(device)), TV_PAIRWISE[mode](a, b))


def test_uint8_boxes_do_not_wrap_around(gen, device):
    # torchvision subtracts uint8 coordinates before widening them, so (x2 - x1) < 0 wraps to ~255 and its
    # overlaps of uint8 boxes are wrong; detops widens first and gives the int64 answer.
    a = (random_boxes(30, scale=100, generator=gen) + 0.5).to(torch.uint8)
    b = (random_boxes(20, scale=100, generator=gen) + 0.5).to(torch.uint8)
    for mode in TV_PAIRWISE:
        assert_parity(DETOPS_PAIRWISE[mode](a.to(device), b.to(device)), TV_PAIRWISE[mode](a.long(), b.long()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_accumulates_in_float32(dtype, gen, device):
    a, b = random_boxes(40, dtype=dtype, generator=gen), random_boxes(30, dtype=dtype, generator=gen)
    a, b = a.to(device), b.to(device)
    out = detops.box_iou(a, b)
    assert out.dtype == torch.float32 == torchvision.ops.box_iou(a, b).dtype
    # Exactly the float32 computation on the (exactly representable) upcast inputs.
    torch.testing.assert_close(out, detops.box_iou(a.float(), b.float()), rtol=0, atol=0)
    assert detops.box_iou_aligned(a[:30], b).dtype == dtype


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
def test_empty_inputs(shape, device):
    a, b = torch.zeros(shape[0], 4, device=device), torch.zeros(shape[1], 4, device=device)
    for mode in TV_PAIRWISE:
        out = DETOPS_PAIRWISE[mode](a, b)
        assert out.shape == shape and out.dtype == torch.float32 and out.device == a.device
        assert out.shape == TV_PAIRWISE[mode](a, b).shape
    z = lambda *s: torch.zeros(*s, device=device)
    assert detops.box_overlap(z(3, 0, 4), z(3, 7, 4)).shape == (3, 0, 7)
    assert detops.box_overlap(z(0, 2, 4), z(0, 7, 4)).shape == (0, 2, 7)
    assert detops.box_iou_aligned(z(0, 4), z(0, 4)).shape == (0,)
    assert detops.generalized_box_iou_loss(z(0, 4), z(0, 4), reduction="mean").item() == 0


def test_batched_and_broadcast(gen, device):
    a = random_boxes(20, generator=gen, lead=(3,))
    b = random_boxes(50, generator=gen, lead=(3,))
    shared = random_boxes(50, generator=gen)
    ad, bd = a.to(device), b.to(device)
    out = detops.box_overlap(ad, bd, "giou")
    assert out.shape == (3, 20, 50)
    for i in range(3):
        assert_parity(out[i], torchvision.ops.generalized_box_iou(a[i], b[i]))
    out = detops.box_iou(ad, shared.to(device))  # every image's boxes against one shared set (SSD's priors)
    for i in range(3):
        assert_parity(out[i], torchvision.ops.box_iou(a[i], shared))
    assert_parity(detops.box_iou(ad[:, None], bd[None]), torchvision.ops.box_iou(a[:, None], b[None]))


def test_non_contiguous_inputs(gen, device):
    a = random_boxes(30, generator=gen, dtype=torch.float64)
    wide = torch.cat([a, a], dim=1).to(device)[:, 4:]  # rows strided by 8
    b = random_boxes(20, generator=gen, dtype=torch.float64).to(device).t().contiguous().t()  # column-major
    assert not wide.is_contiguous() and not b.is_contiguous()
    assert_parity(detops.box_iou(wide, b), torchvision.ops.box_iou(a, b.cpu()))
    assert_parity(detops.box_iou(a.to(device)[::2], b), torchvision.ops.box_iou(a[::2], b.cpu()))


def test_fmt_argument(gen):
    a, b = random_boxes(10, generator=gen), random_boxes(12, generator=gen)
    for fmt in ("xywh", "cxcywh"):
        a2, b2 = torchvision.ops.box_convert(a, "xyxy", fmt), torchvision.ops.box_convert(b, "xyxy", fmt)
        assert_parity(detops.box_iou(a2, b2, fmt=fmt), torchvision.ops.box_iou(a2, b2, fmt=fmt))
    with pytest.raises(ValueError, match="fmt"):
        detops.box_iou(a, b, fmt="xywhr")


# ---- aligned pairs and the IoU losses ----


@pytest.mark.parametrize("mode", ["giou", "diou", "ciou"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_losses_match_torchvision(mode, reduction, gen, device):
    a, b = random_boxes(200, generator=gen), random_boxes(200, generator=gen)
    tv_loss, dt_loss = TV_LOSSES[mode]
    assert_parity(
        dt_loss(a.to(device), b.to(device), reduction=reduction),
        tv_loss(a, b, reduction=reduction),
        rtol=2e-6,
        atol=2e-6,
    )


@pytest.mark.parametrize("mode", ["giou", "diou", "ciou"])
def test_loss_gradients_match_torchvision(mode, gen, device):
    a, b = random_boxes(64, generator=gen, dtype=torch.float64), random_boxes(64, generator=gen, dtype=torch.float64)
    tv_loss, dt_loss = TV_LOSSES[mode]
    grads = []
    for fn, dev in ((tv_loss, "cpu"), (dt_loss, device)):
        x, y = a.to(dev).requires_grad_(), b.to(dev).requires_grad_()
        fn(x, y, reduction="sum").backward()
        grads.append((x.grad.cpu(), y.grad.cpu()))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode", ["iou", "giou", "diou", "ciou", "iof"])
def test_aligned_matches_reference(mode, gen, device):
    a = random_boxes(100, generator=gen, lead=(2,))
    b = random_boxes(100, generator=gen, lead=(2,))
    assert_parity(detops.box_iou_aligned(a.to(device), b.to(device), mode), ref.box_iou_aligned(a, b, mode))


# CIoU's alpha is a constant for the gradient (no_grad, as in the paper and torchvision), so its analytic
# gradient differs from finite differences by design; test_loss_gradients_match_torchvision covers it.
@pytest.mark.parametrize("mode", ["iou", "giou", "diou", "iof"])
def test_gradcheck(mode, gen, device):
    a = random_boxes(6, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    b = random_boxes(5, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: detops.box_overlap(x, y, mode), (a, b))
    b6 = random_boxes(6, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: detops.box_iou_aligned(x, y, mode), (a, b6))


def test_pairwise_gradient_matches_torchvision(gen, device):
    a = random_boxes(8, generator=gen, dtype=torch.float64).requires_grad_()
    b = random_boxes(9, generator=gen, dtype=torch.float64)
    w = torch.rand(8, 9, dtype=torch.float64, generator=gen)
    ad = a.detach().to(device).requires_grad_()
    for mode in TV_PAIRWISE:
        (g_dt,) = torch.autograd.grad((DETOPS_PAIRWISE[mode](ad, b.to(device)) * w.to(device)).sum(), ad)
        (g_tv,) = torch.autograd.grad((TV_PAIRWISE[mode](a, b) * w).sum(), a)
        torch.testing.assert_close(g_dt.cpu(), g_tv)


# ---- box_area, box_convert ----


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.int64, torch.int8])
@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
def test_box_area_matches_torchvision(dtype, fmt, gen, device):
    b = (random_boxes(20, scale=10, generator=gen, lead=(2,)) + 0.5).to(dtype)
    assert_parity(detops.box_area(b.to(device), fmt=fmt), torchvision.ops.box_area(b, fmt=fmt))


@pytest.mark.parametrize("in_fmt", ["xyxy", "xywh", "cxcywh"])
@pytest.mark.parametrize("out_fmt", ["xyxy", "xywh", "cxcywh"])
def test_box_convert_matches_torchvision(in_fmt, out_fmt, gen, device):
    b = random_boxes(30, generator=gen, lead=(2,), offset=-50).to(device)
    out = detops.box_convert(b, in_fmt, out_fmt)
    expected = torchvision.ops.box_convert(b.cpu(), in_fmt, out_fmt)
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=0)
    assert out.data_ptr() != b.data_ptr()


# ---- bad input ----


@pytest.mark.parametrize(
    "a, b, match",
    [
        (torch.zeros(3, 5), torch.zeros(2, 4), r"boxes1 must have shape \[\.\.\., N, 4\], got \[3, 5\]"),
        (torch.zeros(3, 4), torch.zeros(4), r"boxes2 must have shape"),
        (torch.zeros(2, 3, 4), torch.zeros(3, 2, 4), "do not broadcast"),
        (torch.zeros(3, 4, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.bool), "numeric"),
    ],
)
def test_bad_input_raises_clear_error(a, b, match, device):
    with pytest.raises(RuntimeError, match=match):
        detops.box_overlap(a.to(device), b.to(device))


def test_bad_mode_and_aligned_shape(device):
    z = lambda *s: torch.zeros(*s, device=device)
    with pytest.raises(RuntimeError, match="mode must be one of"):
        detops.box_overlap(z(1, 4), z(1, 4), "dice")
    with pytest.raises(RuntimeError, match="one shape"):
        detops.box_iou_aligned(z(3, 4), z(2, 4))
    with pytest.raises(ValueError, match="reduction"):
        detops.generalized_box_iou_loss(z(1, 4), z(1, 4), reduction="avg")


# ---- dispatcher integration ----


def test_opcheck(gen, device):
    a = random_boxes(7, generator=gen, lead=(2,)).to(device)
    b = random_boxes(5, generator=gen).to(device)
    for mode in ("iou", "ciou"):
        torch.library.opcheck(torch.ops.detops.box_overlap.default, (a, b, mode, 1e-7))
    b7 = random_boxes(7, generator=gen, lead=(2,)).to(device)
    torch.library.opcheck(torch.ops.detops.box_iou_aligned.default, (a.double(), b7.double(), "giou", 1e-7))
    torch.library.opcheck(torch.ops.detops.box_overlap.default, (a.double().requires_grad_(), b.double(), "giou", 1e-7))


def test_torch_compile_fullgraph(gen, device):
    a, b = random_boxes(30, generator=gen).to(device), random_boxes(20, generator=gen).to(device)

    def f(x, y):
        return detops.box_iou(x, y).max(dim=1).values + detops.generalized_box_iou_loss(x[:20], y, "sum")

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(a, b), f(a, b))


def test_torch_export(gen, device):
    class M(torch.nn.Module):
        def forward(self, x, y):
            return detops.box_overlap(x, y, "diou")

    a, b = random_boxes(6, generator=gen).to(device), random_boxes(4, generator=gen).to(device)
    ep = torch.export.export(M(), (a, b))
    torch.testing.assert_close(ep.module()(a, b), M()(a, b))


# ---- CUDA: the same results as the CPU kernels ----


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["iou", "giou", "diou", "ciou", "iof"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.int32])
def test_cuda_matches_cpu(mode, dtype, gen):
    a = (random_boxes(300, generator=gen, lead=(2,)) + 0.5).to(dtype)
    b = (random_boxes(1000, generator=gen) + 0.5).to(dtype)
    cpu = detops.box_overlap(a, b, mode)
    gpu = detops.box_overlap(a.cuda(), b.cuda(), mode)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-6, equal_nan=True)
    aligned_cpu = detops.box_iou_aligned(a, b[:300].expand(2, 300, 4), mode)
    aligned_gpu = detops.box_iou_aligned(a.cuda(), b[:300].expand(2, 300, 4).cuda(), mode)
    if dtype == torch.float16:  # both round one float32 value to half: an ulp apart next to a boundary (atan)
        assert_close_ulps(aligned_gpu, aligned_cpu, ulps=1)
    else:
        torch.testing.assert_close(aligned_gpu.cpu(), aligned_cpu, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.cuda
def test_cuda_adversarial_and_torchvision():
    b = adversarial_boxes().cuda()
    for mode in TV_PAIRWISE:
        assert_parity(DETOPS_PAIRWISE[mode](b, b).cpu(), TV_PAIRWISE[mode](b.cpu(), b.cpu()), rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
def test_cuda_device_mismatch_is_an_error():
    with pytest.raises(RuntimeError, match="same device"):
        detops.box_iou(torch.zeros(2, 4), torch.zeros(2, 4, device="cuda"))


@pytest.mark.cuda
def test_cuda_opcheck_and_grad(gen):
    a = random_boxes(7, generator=gen, dtype=torch.float64).cuda().requires_grad_()
    b = random_boxes(5, generator=gen, dtype=torch.float64).cuda()
    torch.library.opcheck(torch.ops.detops.box_overlap.default, (a, b, "ciou", 1e-7))
    assert torch.autograd.gradcheck(lambda x: detops.box_overlap(x, b, "giou"), (a,))


@pytest.mark.slow
def test_output_past_int32_indexing():
    # 46341^2 > 2^31 outputs (8.6 GB of float32): entries past the int32 range must land where they belong.
    n = 46341
    a = torch.zeros(n, 4)
    a[:, 2:] = 1.0
    a[-1] = torch.tensor([0.0, 0.0, 2.0, 2.0])  # the last row: IoU 0.25 against the unit boxes
    b = a.clone()
    out = detops.box_iou(a, b)
    assert out.shape == (n, n) and out.numel() >= 2**31
    assert out[-1, 0].item() == 0.25 and out[-1, -1].item() == 1.0 and out[-2, -1].item() == 0.25
    assert out[-2, -2].item() == 1.0 and out[n // 2, 7].item() == 1.0
    del out
