"""Edge defects found by fuzzing the public ops, each pinned by a test that failed before its fix
(docs/reliability.md lists them with the behaviour chosen)."""

import math
import os

import pytest
import torch
import torchvision

import detops
from detops.reference import boxes as ref_boxes
from detops.reference import coding as ref_coding


def _boxes(n, g, dtype):
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 100
    return torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 50], 1).to(dtype)


# ---- float64 coding uses the weights as given, not rounded to float32 ----


def test_float64_encode_uses_exact_weights(device):
    g = torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=torch.float64, device=device)
    a = torch.tensor([[-0.5, 0.0, 1.5, 2.0]], dtype=torch.float64, device=device)
    out = detops.encode_boxes(g, a, (0.1, 0.1, 0.1, 0.1))
    # dx = 0.1 * (1 - 0.5) / 2: 0.025 exactly as float64 computes it; float32 weights gave 0.02500000037252903.
    assert out[0, 0].item() == 0.1 * (1.0 - 0.5) / 2.0


@pytest.mark.parametrize("weights", [(0.1, 0.1, 0.2, 0.2), (10.0, 10.0, 5.0, 5.0), (1 / 3, 0.7, 1e-3, 3.3)])
def test_float64_coding_equals_float64_reference(weights, device):
    gen = torch.Generator().manual_seed(0)
    boxes, anchors = _boxes(500, gen, torch.float64).to(device), _boxes(500, gen, torch.float64).to(device)
    enc = detops.encode_boxes(boxes, anchors, weights)
    torch.testing.assert_close(enc, ref_coding.encode_boxes(boxes, anchors, weights), rtol=1e-13, atol=1e-13)
    dec = detops.decode_boxes(enc, anchors, weights)
    torch.testing.assert_close(dec, ref_coding.decode_boxes(enc, anchors, weights), rtol=1e-13, atol=1e-11)


def test_float64_match_priors_targets_use_exact_weights(device):
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]], dtype=torch.float64, device=device)
    gt = [torch.tensor([[0.35, 0.35, 0.6, 0.6]], dtype=torch.float64, device=device)]
    weights = (1 / 0.3, 1 / 0.3, 1 / 0.7, 1 / 0.7)
    labels, matched, targets = detops.match_priors(gt, [torch.tensor([1], device=device)], priors, 0.1, weights=weights)
    pos = labels[0] > 0
    want = detops.encode_boxes(
        gt[0][matched[0][pos]],
        torch.cat([priors[pos, :2] - priors[pos, 2:] / 2, priors[pos, :2] + priors[pos, 2:] / 2], 1),
        weights,
    )
    torch.testing.assert_close(targets[0][pos], want, rtol=1e-13, atol=1e-13)


# ---- thresholds and ground truth that are not numbers ----


@pytest.mark.parametrize(
    "high, low, name", [(float("nan"), 0.3, "high_threshold"), (0.7, float("nan"), "low_threshold")]
)
def test_match_boxes_nan_threshold_is_named(high, low, name, device):
    q = torch.rand(3, 5, device=device)
    with pytest.raises(RuntimeError, match=f"{name} is NaN"):
        detops.match_boxes(q, high, low)


@pytest.mark.parametrize("bad", [float("inf"), -float("inf"), float("nan")])
def test_match_priors_rejects_non_finite_ground_truth(bad):
    # CPU only: on CUDA the value check would need a host synchronisation (documented in match_priors).
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    gt = [torch.tensor([[0.1, 0.1, bad, 0.4]])]
    with pytest.raises(RuntimeError, match="gt_boxes must be finite"):
        detops.match_priors(gt, [torch.tensor([1])], priors)


# ---- second derivatives: differentiable, never silently detached ----


def _double_backward_cases():
    yield "box_iou", lambda a, b: detops.box_iou(a, b)
    # (complete_box_iou too has a second derivative, but its trade-off weight alpha is a constant for the
    # gradient by definition, so the gradient is not the derivative of the value and gradgradcheck's numerical
    # side cannot agree with it.)
    yield "distance_box_iou", lambda a, b: detops.distance_box_iou(a, b)
    yield "generalized_box_iou_loss", lambda a, b: detops.generalized_box_iou_loss(a, b, reduction="sum")
    yield "encode_boxes", lambda a, b: detops.encode_boxes(a, b, (10.0, 10.0, 5.0, 5.0))
    yield "decode_boxes", lambda a, b: detops.decode_boxes(a * 0.01, b, (10.0, 10.0, 5.0, 5.0))


@pytest.mark.parametrize("name, fn", list(_double_backward_cases()), ids=[n for n, _ in _double_backward_cases()])
def test_gradgradcheck(name, fn):
    gen = torch.Generator().manual_seed(1)
    a = _boxes(4, gen, torch.float64).requires_grad_()
    b = (a.detach() + torch.randn(4, 4, generator=gen, dtype=torch.float64)).requires_grad_()
    if name.endswith("_loss") or name.startswith(("encode", "decode")):
        b = _boxes(4, gen, torch.float64).requires_grad_() if name == "decode_boxes" else b
    assert torch.autograd.gradgradcheck(fn, (a, b))


def test_gradient_penalty_reaches_the_inputs():
    # A penalty on the gradient's norm must have a gradient itself: before, the backward detached its inputs
    # and the penalty's gradient was silently None / zero.
    gen = torch.Generator().manual_seed(2)
    a = _boxes(6, gen, torch.float64).requires_grad_()
    b = _boxes(6, gen, torch.float64)
    (ga,) = torch.autograd.grad(detops.box_iou(a, b).sum(), a, create_graph=True)
    assert ga.requires_grad
    (gga,) = torch.autograd.grad(ga.pow(2).sum(), a)
    ar = a.detach().requires_grad_()
    (ra,) = torch.autograd.grad(ref_boxes.box_overlap(ar, b, "iou").sum(), ar, create_graph=True)
    (rra,) = torch.autograd.grad(ra.pow(2).sum(), ar)
    torch.testing.assert_close(gga, rra)


# ---- threads and determinism ----


def _workload(device):
    gen = torch.Generator().manual_seed(3)
    boxes = _boxes(700, gen, torch.float32).to(device)
    scores = torch.rand(700, generator=gen).to(device)
    idxs = torch.randint(0, 5, (700,), generator=gen).to(device)
    priors = torch.cat([torch.rand(400, 2, generator=gen), torch.rand(400, 2, generator=gen) * 0.3 + 0.01], 1)
    gt = [(_boxes(7, gen, torch.float32) / 160).to(device) for _ in range(4)]
    labels = [torch.randint(1, 5, (7,), generator=gen).to(device) for _ in range(4)]
    return [
        lambda: detops.box_iou(boxes, boxes[:300]),
        lambda: detops.complete_box_iou(boxes[:200], boxes[:300]),
        lambda: detops.nms(boxes, scores, 0.5),
        lambda: detops.batched_nms(boxes, scores, idxs, 0.5),
        lambda: detops.encode_boxes(boxes[:300], boxes[300:600], (10.0, 10.0, 5.0, 5.0)),
        lambda: detops.match_priors(gt, labels, priors.to(device)),
    ]


def _same(x, y):
    if isinstance(x, (tuple, list)):
        return all(_same(a, b) for a, b in zip(x, y))
    return torch.equal(x, y)


def test_four_python_threads_equal_one(device):
    from concurrent.futures import ThreadPoolExecutor

    calls = _workload(device)
    want = [f() for f in calls]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = list(pool.map(lambda f: f(), calls * 4))
            assert all(_same(g, want[i % len(calls)]) for i, g in enumerate(got))


def test_bit_identical_run_after_run(device):
    calls = _workload(device)
    first = [f() for f in calls]
    for _ in range(5):
        assert all(_same(f(), w) for f, w in zip(calls, first))


# ---- box_iou(fmt="xywh" | "cxcywh"): areas are the format's own w * h, as torchvision's ----


@pytest.mark.parametrize("fmt, box", [("xywh", [1e8, 0.0, 3.0, 10.0]), ("cxcywh", [1e8, 5.0, 3.0, 10.0])])
def test_box_iou_fmt_area_is_w_times_h(fmt, box, device):
    # float32 1e8 + 3 rounds to 1e8: the corners' area is 0 (before: self-IoU 0 / 0 = NaN). With the area
    # w * h = 30, as torchvision takes it, the self-IoU is torchvision's 0 / (30 + 30 - 0) = 0.
    b = torch.tensor([box], device=device)
    got = detops.box_iou(b, b, fmt=fmt)
    assert got.item() == 0.0
    assert torch.equal(got.cpu(), torchvision.ops.box_iou(b.cpu(), b.cpu(), fmt=fmt))


def test_box_iou_fmt_float16_corners_in_float32(device):
    # float16 boxes compute in float32: the corner 1000 + 0.7002 is not rounded to float16's 1000.5 first,
    # so a box inside another has IoU = its area / the other's (true value 0.3501; torchvision 0.2273 from
    # float16 corners, and before this detops 0.25 from the corners' areas).
    a = torch.tensor([[1000.0, 0.0, 0.7, 10.0]], dtype=torch.float16, device=device)
    b = torch.tensor([[1000.0, 0.0, 2.0, 10.0]], dtype=torch.float16, device=device)
    got = detops.box_iou(a, b, fmt="xywh")
    w = torch.tensor(0.7, dtype=torch.float16).float()
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx((w * 10 / 20).item(), rel=1e-6)


@pytest.mark.parametrize("fmt", ["xywh", "cxcywh"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_iou_fmt_bit_equal_to_torchvision(fmt, dtype, device):
    gen = torch.Generator().manual_seed(5)
    xy = torch.rand(300, 2, generator=gen, dtype=torch.float64) * 1e4 - 5e3
    wh = torch.rand(300, 2, generator=gen, dtype=torch.float64) * 300
    wh[::7] = 0.0  # degenerate boxes: 0 / 0 where two meet
    boxes = torch.cat([xy, wh], 1).to(dtype)
    boxes[::11, 0] = 1e8  # x + w rounds w away
    a, b = boxes[:200], boxes[100:]
    got = detops.box_iou(a.to(device), b.to(device), fmt=fmt).cpu()
    want = torchvision.ops.box_iou(a, b, fmt=fmt)
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(got, ref_boxes.box_overlap(a, b, "iou", fmt=fmt), rtol=0, atol=0, equal_nan=True)


def test_box_iou_fmt_gradient_is_the_reference_gradient():
    gen = torch.Generator().manual_seed(6)
    a = torch.cat([torch.rand(5, 2, generator=gen), torch.rand(5, 2, generator=gen) + 0.5], 1).double()
    b = a + 0.1 * torch.randn(5, 4, generator=gen, dtype=torch.float64)
    a.requires_grad_()
    (got,) = torch.autograd.grad(detops.box_iou(a, b, fmt="cxcywh").sum(), a)
    (want,) = torch.autograd.grad(ref_boxes.box_overlap(a, b, "iou", fmt="cxcywh").sum(), a)
    torch.testing.assert_close(got, want)


# ---- integer boxes: float64 arithmetic written straight into the float32 output ----


@pytest.mark.parametrize("mode", ref_boxes.MODES)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8])
def test_integer_boxes_equal_float64_rounded_once(mode, dtype, device):
    gen = torch.Generator().manual_seed(7)
    xy = torch.randint(0, 150, (60, 2), generator=gen)
    boxes = torch.cat([xy, xy + torch.randint(0, 100, (60, 2), generator=gen)], 1).to(dtype).to(device)
    got = detops.box_overlap(boxes[:40], boxes[20:], mode)
    want = detops.box_overlap(boxes[:40].double(), boxes[20:].double(), mode).float()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


_PEAK_SCRIPT = """
import sys, torch, detops
torch.set_num_threads(1)
def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))
{setup}
{warm}  # once, small, so that every library is loaded and every allocator warm
before = status("VmRSS")
out = {big}
peak = status("VmHWM")
{check}
print(peak - before)
"""


def _peak_bytes(setup, warm, big, check="pass"):
    """Runs `big` in a fresh interpreter (one thread) and returns how far its resident memory rose above
    what it was just before (VmHWM, the high-water mark of the process's own memory: ru_maxrss would also
    count the pytest process it was started from); `check` asserts on `out` there."""
    import subprocess
    import sys

    code = _PEAK_SCRIPT.format(setup=setup, warm=warm, big=big, check=check)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return int(res.stdout.split()[-1])


def test_integer_box_iou_peak_memory_is_the_output():
    # 8192 x 16384 float32 = 512 MiB. Before, a float64 matrix (1 GiB) came first and was converted: 1.5 GiB
    # at the peak. Bound: the output plus 10%.
    setup = (
        "g = torch.Generator().manual_seed(0)\n"
        "xy = torch.randint(0, 1000, (16384, 2), generator=g)\n"
        "b = torch.cat([xy, xy + torch.randint(1, 300, (16384, 2), generator=g)], 1).int()"
    )
    out_bytes = 8192 * 16384 * 4
    peak = _peak_bytes(
        setup,
        "detops.box_iou(b[:8], b[:8])",
        "detops.box_iou(b[:8192], b)",
        "assert out.dtype == torch.float32 and out.numel() * 4 == %d" % out_bytes,
    )
    assert peak < 1.1 * out_bytes, (peak, out_bytes)


@pytest.mark.cuda
def test_integer_box_iou_cuda_peak_memory_is_the_output():
    xy = torch.randint(0, 1000, (4096, 2), device="cuda")
    b = torch.cat([xy, xy + 5], 1).int()
    detops.box_iou(b[:8], b[:8])
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = detops.box_iou(b, b)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    # the output, plus the float64 copies of the inputs (4096 x 4 x 8 bytes each) and allocator rounding
    assert extra < out.numel() * 4 + (2 << 20), extra


# ---- sizes at the edges ----

BIG = pytest.mark.skipif(
    os.environ.get("DETOPS_BIG_TESTS") != "1", reason="needs 9 GiB of memory and a minute: set DETOPS_BIG_TESTS=1"
)


def test_iou_output_larger_than_memory_is_refused_before_allocating():
    # 2^22 x 2^22 float32 = 64 TiB; stride-0 expanded inputs, so nothing big exists before the call.
    a = torch.rand(1, 4).expand(2**22, 4)
    with pytest.raises(RuntimeError, match="needs 65536 GiB .* more than this machine's memory and swap"):
        detops.box_iou(a, a)
    with pytest.raises(RuntimeError, match="more than this machine's memory"):
        detops.box_iou(a.expand(2**12, 2**22, 4), a[: 2**10])  # a batch: 2^12 x 2^22 x 2^10


def test_iou_output_beyond_int64_is_refused(device):
    a = torch.rand(1, 4, device=device).expand(2**32, 4)
    with pytest.raises(RuntimeError, match="more elements than int64 can count"):
        detops.box_iou(a, a)


@pytest.mark.slow
@BIG
def test_iou_output_beyond_2_31_elements():
    # 65537 x 32768 = 2^31 + 2^15 outputs (8 GiB of float32): the rows on both sides of flat index 2^31 equal
    # the reference, and the peak is the output plus 1%.
    setup = (
        "from detops.reference import boxes as ref\n"
        "g = torch.Generator().manual_seed(0)\n"
        "xy = torch.rand(65537, 2, generator=g) * 1000\n"
        "a = torch.cat([xy, xy + torch.rand(65537, 2, generator=g) * 100], 1)\n"
        "b = a[:32768].flip(0).contiguous()"
    )
    check = (
        "assert out.shape == (65537, 32768)\n"
        "for r in (0, 65535, 65536):\n"
        "    assert torch.equal(out[r], ref.box_overlap(a[r:r + 1], b)[0])"
    )
    peak = _peak_bytes(setup, "detops.box_iou(a[:4], b[:4])", "detops.box_iou(a, b)", check)
    assert peak < 1.01 * 65537 * 32768 * 4, peak


def _cells(n_cells, gen):
    """Boxes in n_cells cells of a square grid, 4 per cell: two pairs of overlapping boxes (IoU 0.9 and
    0.94), the pairs disjoint, the cells 100 apart. NMS at 0.5 keeps exactly the better-scored box of each
    pair: the answer is known at any size. Returns boxes, scores (distinct) and the expected keep."""
    side = math.ceil(math.sqrt(n_cells))
    k = torch.arange(n_cells, dtype=torch.float32)
    x, y = (k % side) * 100, torch.div(k, side, rounding_mode="floor") * 100
    shapes = torch.tensor([[0, 0, 40, 40], [2, 0, 42, 40], [50, 50, 80, 80], [50, 51, 80, 81]], dtype=torch.float32)
    boxes = (shapes[None] + torch.stack([x, y, x, y], 1)[:, None]).reshape(-1, 4)
    scores = (torch.randperm(4 * n_cells, generator=gen).float() + 1) / (4 * n_cells)
    pairs = scores.reshape(-1, 2)
    winner = torch.arange(0, 4 * n_cells, 2) + (pairs[:, 1] > pairs[:, 0]).long()
    expected = winner[torch.argsort(scores[winner], descending=True)]
    return boxes, scores, expected


def test_nms_on_a_million_boxes():
    # The answer is known (see _cells), so 10^6 boxes can be checked without an O(N^2) reference; a corner of
    # the grid is checked against torchvision too.
    gen = torch.Generator().manual_seed(8)
    boxes, scores, expected = _cells(250_000, gen)
    assert boxes.shape[0] == 1_000_000
    keep = detops.nms(boxes, scores, 0.5)
    assert torch.equal(keep, expected)
    corner = torch.arange(4000)
    assert torch.equal(
        corner[detops.nms(boxes[:4000], scores[:4000], 0.5)], torchvision.ops.nms(boxes[:4000], scores[:4000], 0.5)
    )


def test_nms_on_a_million_boxes_peak_memory():
    # 10^6 boxes are 16 MB; the kernel's candidates, columns and x-sorted copy take about 16 times that.
    # Bound: 400 MB above the inputs.
    setup = (
        "import math, sys\nsys.path.insert(0, %r)\nfrom test_hardening import _cells\n"
        "boxes, scores, expected = _cells(250_000, torch.Generator().manual_seed(8))" % os.path.dirname(__file__)
    )
    peak = _peak_bytes(
        setup,
        "detops.nms(boxes[:100], scores[:100], 0.5)",
        "detops.nms(boxes, scores, 0.5)",
        "assert torch.equal(out, expected)",
    )
    assert peak < 400e6, peak


def _matching_batch(gen, batch=256, objects=1000, priors=8732):
    xy = torch.rand(batch, objects, 2, generator=gen) * 0.9
    gt = torch.cat([xy, xy + torch.rand(batch, objects, 2, generator=gen) * 0.1 + 1e-3], -1)
    labels = torch.randint(1, 21, (batch, objects), generator=gen)
    p = torch.cat([torch.rand(priors, 2, generator=gen), torch.rand(priors, 2, generator=gen) * 0.3 + 0.02], 1)
    return gt, labels, p


def test_match_priors_1000_objects_batch_256():
    # 256 images x 1000 objects x 8732 priors: 2.2 * 10^9 IoUs, never a [B, G, P] tensor (8.9 GB). Images at
    # both ends of the batch equal the tutorial's loop.
    from detops.reference import matching as ref_matching

    gt, labels, priors = _matching_batch(torch.Generator().manual_seed(9))
    got = detops.match_priors(gt, labels, priors)
    assert got[0].shape == (256, 8732) and got[2].shape == (256, 8732, 4)
    for i in (0, 1, 255):
        want = ref_matching.tutorial_match([gt[i]], [labels[i]], priors)
        assert torch.equal(got[0][i], want[0][0]) and torch.equal(got[1][i], want[1][0])
        torch.testing.assert_close(got[2][i], want[2][0], rtol=1e-4, atol=1e-4)


def test_match_priors_1000_objects_batch_256_peak_memory():
    # The outputs are 256 x 8732 x (8 + 8 + 16) bytes = 72 MB; bound: 150 MB above what was there before.
    setup = (
        "import sys\nsys.path.insert(0, %r)\nfrom test_hardening import _matching_batch\n"
        "gt, labels, priors = _matching_batch(torch.Generator().manual_seed(9))" % os.path.dirname(__file__)
    )
    peak = _peak_bytes(
        setup,
        "detops.match_priors(gt[:1, :3], labels[:1, :3], priors)",
        "detops.match_priors(gt, labels, priors)",
        "assert out[2].shape == (256, 8732, 4)",
    )
    assert peak < 150e6, peak
