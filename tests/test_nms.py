"""The NMS family against torchvision and the plain-PyTorch references (detops/reference/nms.py)."""

import inspect

import pytest
import torch
import torchvision

import detops
from detops.reference import nms as ref

cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def sparse_boxes(n, g, scale=1000.0, size=30.0, dtype=torch.float32):
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * size + 1
    return torch.cat([xy, xy + wh], 1).to(dtype), torch.rand(n, generator=g, dtype=torch.float64).to(dtype)


def clustered_boxes(n, g, objects=40, dtype=torch.float32):
    centers = torch.rand(objects, 2, generator=g, dtype=torch.float64) * 1000
    sizes = torch.rand(objects, 2, generator=g, dtype=torch.float64) * 100 + 20
    a = torch.randint(0, objects, (n,), generator=g)
    xy = centers[a] + torch.randn(n, 2, generator=g, dtype=torch.float64) * 3
    wh = sizes[a] * (1 + torch.randn(n, 2, generator=g, dtype=torch.float64) * 0.05)
    return torch.cat([xy, xy + wh], 1).to(dtype), torch.rand(n, generator=g, dtype=torch.float64).to(dtype)


def at_iou(t, dx_sign=1.0, w=10.0):
    """Two equal boxes whose IoU is t: shifted along x by w (1 - t) / (1 + t)."""
    dx = w * (1 - t) / (1 + t)
    return torch.tensor([[0.0, 0.0, w, w], [dx, 0.0, dx + w, w]], dtype=torch.float64)


@pytest.fixture
def g():
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize("name", ["nms", "batched_nms", "multiclass_nms", "soft_nms"])
def test_reference_has_the_signature_and_defaults_of_the_op(name):
    # The reference restates them rather than importing them; this keeps the two from drifting apart.
    assert inspect.signature(getattr(ref, name)) == inspect.signature(getattr(detops, name))


def on(device, *tensors):
    return [t.to(device) for t in tensors]


# ---- nms ----


@pytest.mark.parametrize("thr", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["sparse", "clustered", "dense"])
def test_nms_matches_torchvision_and_reference(g, thr, dtype, kind, device):
    if kind == "sparse":
        boxes, scores = sparse_boxes(3000, g, dtype=dtype)  # the pruned sweep (n >= 2048)
    elif kind == "clustered":
        boxes, scores = clustered_boxes(3000, g, dtype=dtype)
    else:
        boxes, scores = sparse_boxes(500, g, scale=50, dtype=dtype)  # the plain sweep
    got = detops.nms(*on(device, boxes, scores), thr)
    assert got.dtype == torch.int64 and got.device.type == device.type
    got = got.cpu()
    assert torch.equal(got, torchvision.ops.nms(boxes, scores, thr))
    assert torch.equal(got, ref.nms(boxes, scores, thr))


@pytest.mark.parametrize("thr", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("n", [100, 4000])
def test_nms_at_the_threshold(g, thr, n, device):
    # Pairs at IoU = thr + 1e-5 (suppressed) and thr - 1e-5 (kept), mixed into random boxes.
    pairs = [at_iou(thr + 1e-5), at_iou(thr - 1e-5), at_iou(thr)]
    extra = torch.cat([p + 2000 + 30 * i for i, p in enumerate(pairs)]).float()
    boxes, scores = sparse_boxes(n, g)
    boxes = torch.cat([boxes, extra])
    scores = torch.cat([scores, torch.tensor([0.9, 0.8, 0.9, 0.8, 0.9, 0.8])])
    got = detops.nms(*on(device, boxes, scores), thr).cpu()
    assert torch.equal(got, torchvision.ops.nms(boxes, scores, thr))
    assert torch.equal(got, ref.nms(boxes, scores, thr))
    kept = set(got.tolist())
    assert n + 1 not in kept and n + 3 in kept  # thr + 1e-5 suppressed, thr - 1e-5 kept
    # IoU exactly 0.5 in any float format: not above 0.5, so both kept.
    half = torch.tensor([[0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]])
    for impl in (lambda b, s: detops.nms(*on(device, b, s), 0.5).cpu(), lambda b, s: ref.nms(b, s, 0.5)):
        assert impl(half, torch.tensor([0.9, 0.8])).tolist() == [0, 1]


def test_nms_ties_duplicates_identical(g, device):
    boxes, _ = sparse_boxes(3000, g, scale=200)
    scores = torch.randint(0, 5, (3000,), generator=g).float() / 4  # many ties
    boxes[100:200] = boxes[0]  # duplicates
    for thr in (0.2, 0.5, 0.8):
        got = detops.nms(*on(device, boxes, scores), thr).cpu()
        assert torch.equal(got, torchvision.ops.nms(boxes, scores, thr))
        assert torch.equal(got, ref.nms(boxes, scores, thr))
    same = torch.tensor([[1.0, 2.0, 3.0, 4.0]], device=device).repeat(50, 1)
    assert detops.nms(same, torch.ones(50, device=device), 0.5).tolist() == [0]  # all tied: the lowest index
    up = torch.arange(50.0, device=device)
    assert detops.nms(same, up, 0.5).tolist() == [49]
    assert detops.nms(same, up, 1.0).tolist() == list(range(49, -1, -1))  # IoU 1 is not > 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [255, 256, 3000, 70_000])
def test_nms_rank_order_with_ties_signed_zeros_and_infinities(g, dtype, n, device):
    # At threshold 1 nothing is suppressed (IoU is never > 1), so the result is the whole rank order: this
    # checks the rank sort (a radix sort from 256 boxes on) against a stable descending sort.
    boxes, _ = sparse_boxes(n, g, dtype=dtype)
    scores = (torch.randint(-3, 4, (n,), generator=g).to(dtype) / 2) * torch.rand(n, generator=g, dtype=dtype).round()
    scores[::7] = -0.0
    scores[1::11] = float("inf")
    scores[2::13] = -float("inf")
    scores[3::17] = torch.rand(n, generator=g, dtype=dtype)[3::17] * 1e-30  # tiny and subnormal-near values
    expected = torch.sort(scores, descending=True, stable=True).indices
    assert torch.equal(detops.nms(*on(device, boxes, scores), 1.0).cpu(), expected)
    idxs = torch.randint(0, 5, (n,), generator=g)
    assert torch.equal(detops.batched_nms(*on(device, boxes, scores, idxs), 1.0).cpu(), expected)


def test_nms_empty_and_one(device):
    empty = detops.nms(torch.zeros(0, 4, device=device), torch.zeros(0, device=device), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64 and empty.device.type == device.type
    one = on(device, torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.3]))
    assert detops.nms(*one, 0.5).tolist() == [0]


def test_nms_100k(g, device):
    boxes, scores = clustered_boxes(100_000, g)
    assert torch.equal(detops.nms(*on(device, boxes, scores), 0.5).cpu(), torchvision.ops.nms(boxes, scores, 0.5))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nms_reduced_precision_computes_in_float32(g, dtype, device):
    boxes, scores = sparse_boxes(1000, g, scale=300)
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    expected = torchvision.ops.nms(boxes.float(), scores.float(), 0.5)
    assert torch.equal(detops.nms(*on(device, boxes, scores), 0.5).cpu(), expected)


def test_nms_degenerate_and_negative_boxes(g, device):
    boxes = torch.tensor(
        [
            [0.0, 0, 10, 10],
            [0, 0, 10, 10],
            [5, 5, 5, 5],
            [2, 3, 2, 9],
            [10, 0, 20, 10],
            [-30, -40, -10, -5],
            [-5, -5, 5, 5],
            [1e6, 1e6, 1e6 + 50, 1e6 + 20],
            [1e6 + 10, 1e6, 1e6 + 60, 1e6 + 20],
            [2, 2, 8, 8],
            [8, 8, 2, 2],
            [0, 0, 1e-6, 1e-6],
        ]
    )
    scores = torch.rand(len(boxes), generator=g)
    for thr in (0.0, 0.2, 0.5, 0.8, 1.0):
        assert torch.equal(detops.nms(*on(device, boxes, scores), thr).cpu(), torchvision.ops.nms(boxes, scores, thr))


def test_nms_nan_and_inf(g, device):
    boxes, scores = sparse_boxes(200, g, scale=100)

    def nms(b, s, thr):
        return detops.nms(*on(device, b, s), thr).cpu()

    clean = nms(boxes, scores, 0.5)
    # NaN scores or coordinates: those boxes are dropped and never suppress anything.
    b2, s2 = boxes.clone(), scores.clone()
    b2[3, 1] = float("nan")
    s2[7] = float("nan")
    got = nms(b2, s2, 0.5)
    assert 3 not in got.tolist() and 7 not in got.tolist()
    keep = torch.ones(200, dtype=torch.bool)
    keep[[3, 7]] = False
    idx = torch.nonzero(keep).flatten()
    assert torch.equal(got, idx[nms(boxes[idx], scores[idx], 0.5)])
    assert torch.equal(got, ref.nms(b2, s2, 0.5))
    # Infinite scores rank first / last.
    s3 = scores.clone()
    s3[5], s3[6] = float("inf"), float("-inf")
    got = nms(boxes, s3, 0.5)
    assert got[0] == 5 and torch.equal(got, torchvision.ops.nms(boxes, s3, 0.5))
    assert clean.numel() > 0


def test_nms_thresholds_outside_unit_interval(g, device):
    boxes, scores = clustered_boxes(300, g)
    bd, sd = on(device, boxes, scores)
    assert detops.nms(bd, sd, 1.5).numel() == 300  # no IoU exceeds 1.5: all kept
    assert torch.equal(detops.nms(bd, sd, -0.5).cpu(), torchvision.ops.nms(boxes, scores, -0.5))
    with pytest.raises(RuntimeError, match="iou_threshold"):
        detops.nms(bd, sd, float("nan"))


def test_nms_bad_input(device):
    b, s = torch.rand(5, 4, device=device), torch.rand(5, device=device)
    with pytest.raises(RuntimeError, match=r"boxes must have shape \[N, 4\]"):
        detops.nms(torch.rand(5, 5, device=device), s, 0.5)
    with pytest.raises(RuntimeError, match="same number"):
        detops.nms(b, torch.rand(4, device=device), 0.5)
    with pytest.raises(RuntimeError, match="scores must have shape"):
        detops.nms(b, torch.rand(5, 1, device=device), 0.5)
    with pytest.raises(RuntimeError, match="same dtype"):
        detops.nms(b, s.double(), 0.5)
    with pytest.raises(RuntimeError, match="floating-point"):
        detops.nms(b.long(), s, 0.5)


# ---- batched_nms ----


@pytest.mark.parametrize("thr", [0.2, 0.5, 0.8])
def test_batched_nms_matches_torchvision_and_reference(g, thr, device):
    boxes, _ = sparse_boxes(3000, g, scale=300)
    # Distinct scores: torchvision's per-class path (N > 1000) orders tied scores arbitrarily.
    scores = torch.randperm(3000, generator=g).float() / 3000
    idxs = torch.randint(0, 10, (3000,), generator=g)
    got = detops.batched_nms(*on(device, boxes, scores, idxs), thr).cpu()
    assert torch.equal(got, ref.batched_nms(boxes, scores, idxs, thr))
    assert torch.equal(got, torchvision.ops.batched_nms(boxes, scores, idxs, thr))
    assert torch.equal(detops.batched_nms(*on(device, boxes, scores, idxs.int()), thr).cpu(), got)


def test_batched_nms_negative_huge_coordinates_many_classes(g, device):
    boxes, scores = clustered_boxes(2000, g)
    boxes = torch.cat([boxes[:1000] - 1e4, boxes[1000:] * 1e3]).double()
    scores = scores.double()
    for classes in (1, 7, 1500):
        idxs = torch.randint(-3, classes, (2000,), generator=g)
        got = detops.batched_nms(*on(device, boxes, scores, idxs), 0.5).cpu()
        assert torch.equal(got, ref.batched_nms(boxes, scores, idxs, 0.5))


def test_batched_nms_ties_empty_and_order(g, device):
    boxes, _ = clustered_boxes(500, g)
    scores = torch.randint(0, 3, (500,), generator=g).float()
    idxs = torch.randint(0, 4, (500,), generator=g)
    got = detops.batched_nms(*on(device, boxes, scores, idxs), 0.5).cpu()
    assert torch.equal(got, ref.batched_nms(boxes, scores, idxs, 0.5))
    s = scores[got]
    assert bool((s[:-1] >= s[1:]).all())
    ties = s[:-1] == s[1:]
    assert bool((got[:-1][ties] < got[1:][ties]).all())
    empty = detops.batched_nms(*on(device, torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    boxes, scores, idxs = on(device, boxes, scores, idxs)
    with pytest.raises(RuntimeError, match="idxs"):
        detops.batched_nms(boxes, scores, idxs[:-1], 0.5)
    with pytest.raises(RuntimeError, match="integer"):
        detops.batched_nms(boxes, scores, idxs.float(), 0.5)


# ---- multiclass_nms ----


def _multiclass_case(g, b=2, p=400, c=5, per_class=False, dtype=torch.float32):
    boxes, _ = sparse_boxes(b * p * (c if per_class else 1), g, scale=150)
    boxes = boxes.view(b, p, c, 4) if per_class else boxes.view(b, p, 4)
    scores = torch.rand(b, p, c, generator=g)
    return boxes.to(dtype), scores.to(dtype)


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(background_class=0),
        dict(max_candidates_per_class=25),
        dict(max_detections=7),
        dict(max_detections=5000),  # more than there are detections: padding
        dict(score_threshold=0.99),
        dict(score_threshold=1.0),  # nothing passes
    ],
)
def test_multiclass_nms_matches_reference(g, kw, device):
    boxes, scores = _multiclass_case(g)
    args = dict(score_threshold=0.3, iou_threshold=0.45, max_detections=60)
    args.update(kw)
    got = [t.cpu() for t in detops.multiclass_nms(*on(device, boxes, scores), **args)]
    expected = ref.multiclass_nms(boxes, scores, **args)
    for x, y in zip(got, expected):
        assert torch.equal(x, y)
    out_boxes, out_scores, labels, counts = got
    classes = 5 - (1 if "background_class" in kw else 0)
    k = min(args["max_detections"], classes * args.get("max_candidates_per_class", 400))  # clamped to candidates
    assert out_boxes.shape == (2, k, 4) and out_scores.shape == (2, k) and labels.shape == (2, k)
    assert labels.dtype == torch.int64 and counts.dtype == torch.int64
    for b in range(2):
        n = int(counts[b])
        assert bool((labels[b, n:] == -1).all()) and bool((out_scores[b, n:] == 0).all())
        if "background_class" in kw:
            assert bool((labels[b, :n] != 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_multiclass_nms_per_class_boxes_and_ties(g, dtype, device):
    boxes, scores = _multiclass_case(g, per_class=True, dtype=dtype)
    scores = (scores * 4).round() / 4  # ties across classes and priors
    got = [t.cpu() for t in detops.multiclass_nms(*on(device, boxes, scores), 0.2, 0.5, 80)]
    for x, y in zip(got, ref.multiclass_nms(boxes, scores, 0.2, 0.5, 80)):
        assert torch.equal(x, y)
    assert got[0].dtype == dtype


def test_multiclass_nms_large_classes_use_pruned_sweep(g, device):
    boxes, scores = _multiclass_case(g, b=1, p=3000, c=2)
    got = detops.multiclass_nms(*on(device, boxes, scores), 0.1, 0.5, 3000)
    for x, y in zip(got, ref.multiclass_nms(boxes, scores, 0.1, 0.5, 3000)):
        assert torch.equal(x.cpu(), y)


def test_multiclass_nms_matches_per_class_batched_nms(g, device):
    boxes, scores = _multiclass_case(g, b=1, p=500, c=4)
    boxes, scores = on(device, boxes, scores)
    out_boxes, out_scores, labels, counts = detops.multiclass_nms(boxes, scores, 0.2, 0.5, 10_000)
    s = scores[0]
    prior, cls = torch.nonzero(s > 0.2, as_tuple=True)
    keep = detops.batched_nms(boxes[0][prior], s[prior, cls], cls, 0.5)
    assert int(counts[0]) == keep.numel()
    assert torch.equal(out_scores[0, : keep.numel()].sort().values, s[prior, cls][keep].sort().values)


def test_multiclass_nms_nan_and_bad_input(g, device):
    boxes, scores = _multiclass_case(g)
    scores[0, :10, :] = float("nan")
    boxes[1, :10, 0] = float("nan")
    got = [t.cpu() for t in detops.multiclass_nms(*on(device, boxes, scores), 0.3, 0.5, 50)]
    for x, y in zip(got, ref.multiclass_nms(boxes, scores, 0.3, 0.5, 50)):
        assert torch.equal(x, y)
    assert not bool(torch.isnan(got[1]).any()) and not bool(torch.isnan(got[0]).any())
    boxes, scores = on(device, boxes, scores)
    with pytest.raises(RuntimeError, match=r"\[B, P, 4\] or \[B, P, C, 4\]"):
        detops.multiclass_nms(boxes[:, :-1], scores)
    with pytest.raises(RuntimeError, match="scores must have shape"):
        detops.multiclass_nms(boxes, scores[0])
    with pytest.raises(RuntimeError, match="background_class"):
        detops.multiclass_nms(boxes, scores, background_class=5)
    with pytest.raises(RuntimeError, match="max_detections"):
        detops.multiclass_nms(boxes, scores, max_detections=-1)
    with pytest.raises(RuntimeError, match="score_threshold"):
        detops.multiclass_nms(boxes, scores, score_threshold=float("nan"))


def test_multiclass_nms_empty(device):
    z = lambda *s: torch.zeros(*s, device=device)
    out = detops.multiclass_nms(z(3, 0, 4), z(3, 0, 4), 0.1, 0.5, 5)
    assert out[0].shape == (3, 0, 4) and out[3].tolist() == [0, 0, 0]  # no priors: no rows to pad
    out = detops.multiclass_nms(z(3, 2, 4), z(3, 2, 4), 0.1, 0.5, 5)
    assert out[0].shape == (3, 5, 4) and out[3].tolist() == [0, 0, 0] and bool((out[2] == -1).all())
    out = detops.multiclass_nms(z(0, 10, 4), z(0, 10, 4), 0.1, 0.5, 5)
    assert out[0].shape == (0, 5, 4)


@pytest.mark.parametrize(
    "kw, k",
    [
        (dict(), 2 * 3),  # every class, every prior
        (dict(background_class=0), 2 * 2),
        (dict(max_candidates_per_class=1), 3),
        (dict(background_class=2, max_candidates_per_class=1), 2),
    ],
)
def test_multiclass_nms_output_clamped_to_candidates(device, kw, k):
    # A "no limit" max_detections must not allocate [B, 10**9, 4]: K is clamped to the candidates an image can
    # have, before allocation, on the kernel and in the fake alike.
    boxes = torch.tensor([[[0.0, 0, 1, 1], [5, 5, 6, 6]]], device=device)
    scores = torch.tensor([[[0.9, 0.8, 0.7], [0.6, 0.5, 0.4]]], device=device)
    out = detops.multiclass_nms(boxes, scores, 0.0, 0.5, 10**9, **kw)
    assert out[0].shape == (1, k, 4) and out[1].shape == (1, k) and out[2].shape == (1, k)
    assert int(out[3][0]) == k  # every candidate survives: two disjoint boxes
    for x, y in zip(out, ref.multiclass_nms(boxes.cpu(), scores.cpu(), 0.0, 0.5, 10**9, **kw)):
        assert torch.equal(x.cpu(), y)
    with torch._subclasses.fake_tensor.FakeTensorMode():
        fake = detops.multiclass_nms(torch.empty(1, 2, 4), torch.empty(1, 2, 3), 0.0, 0.5, 10**9, **kw)
    assert fake[0].shape == (1, k, 4)


def test_multiclass_nms_equals_tutorial_detect_objects(g, device):
    # The SSD tutorial's loop (detops.reference.nms.tutorial_detect_objects) against softmax + decode + multiclass_nms with background 0.
    p, c = 600, 6
    xy = torch.rand(p, 2, generator=g) * 0.8 + 0.1
    priors = torch.cat([xy, torch.rand(p, 2, generator=g) * 0.3 + 0.05], 1)
    locs = torch.randn(2, p, 4, generator=g) * 0.5
    logits = torch.randn(2, p, c, generator=g) * 2
    t_boxes, t_labels, t_scores = ref.tutorial_detect_objects(priors, locs, logits, 0.2, 0.45, 50, c)
    probs = torch.softmax(logits, dim=2)
    decoded = torch.stack([ref._tutorial_decode(locs[i], priors) for i in range(2)])
    out = detops.multiclass_nms(*on(device, decoded, probs), 0.2, 0.45, 50, background_class=0)
    boxes, scores, labels, counts = [t.cpu() for t in out]
    for i in range(2):
        n = int(counts[i])
        assert n == t_scores[i].numel()
        got = sorted(zip(scores[i, :n].tolist(), labels[i, :n].tolist()))
        exp = sorted(zip(t_scores[i].tolist(), t_labels[i].tolist()))
        assert got == exp


# ---- soft_nms ----


@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_soft_nms_matches_reference(g, method, device):
    boxes, scores = clustered_boxes(300, g, objects=10)
    for kw in (dict(), dict(iou_threshold=0.5, sigma=0.3, score_threshold=0.05)):
        keep, s = [t.cpu() for t in detops.soft_nms(*on(device, boxes, scores), method=method, **kw)]
        rk, rs = ref.soft_nms(boxes, scores, method=method, **kw)
        assert torch.equal(keep, rk)
        torch.testing.assert_close(s, rs)
        assert bool((s[:-1] >= s[1:]).all())
    empty = detops.soft_nms(*on(device, torch.zeros(0, 4), torch.zeros(0)))
    assert empty[0].shape == (0,) and empty[1].shape == (0,)
    with pytest.raises(RuntimeError, match="method"):
        detops.soft_nms(*on(device, boxes, scores), method="hard")


def test_soft_nms_linear_with_threshold_one_is_identity_order(g, device):
    boxes, scores = sparse_boxes(100, g)
    out = detops.soft_nms(*on(device, boxes, scores), iou_threshold=1.0, method="linear", score_threshold=0.0)
    keep, s = [t.cpu() for t in out]
    assert torch.equal(keep, torch.sort(scores, descending=True, stable=True).indices)
    assert torch.equal(s, scores[keep])


# ---- torch.library: opcheck, compile ----


def test_opcheck(g, device):
    boxes, scores = sparse_boxes(200, g, scale=100)
    idxs = torch.randint(0, 3, (200,), generator=g)
    boxes, scores, idxs = on(device, boxes, scores, idxs)
    torch.library.opcheck(torch.ops.detops.nms, (boxes, scores, 0.5))
    torch.library.opcheck(torch.ops.detops.batched_nms, (boxes, scores, idxs, 0.5))
    torch.library.opcheck(torch.ops.detops.soft_nms, (boxes, scores, 0.3, 0.5, 0.001, "linear"))
    mb, ms = on(device, *_multiclass_case(g))
    torch.library.opcheck(torch.ops.detops.multiclass_nms, (mb, ms, 0.3, 0.5, 20, 0, 50))


def test_compile_fullgraph(g, device):
    mb, ms = on(device, *_multiclass_case(g))

    def post(boxes, scores):
        b, s, l, n = detops.multiclass_nms(boxes, scores, 0.3, 0.5, 20, background_class=0)
        return b * 2, s, l, n

    compiled = torch.compile(post, fullgraph=True, backend="eager")
    for x, y in zip(compiled(mb, ms), post(mb, ms)):
        assert torch.equal(x, y)

    boxes, scores = on(device, *sparse_boxes(300, g, scale=100))
    import torch._dynamo.config as dynamo_config

    with dynamo_config.patch(capture_dynamic_output_shape_ops=True):
        f = torch.compile(lambda b, s: detops.nms(b, s, 0.5) + 0, fullgraph=True, backend="eager")
        assert torch.equal(f(boxes, scores), detops.nms(boxes, scores, 0.5))


# ---- CPU against CUDA ----


@cuda
@needs_cuda
@pytest.mark.parametrize("kind", ["sparse", "clustered"])
def test_cuda_matches_cpu(g, kind):
    make = sparse_boxes if kind == "sparse" else clustered_boxes
    boxes, scores = make(5000, g)
    idxs = torch.randint(0, 20, (5000,), generator=g)
    for thr in (0.2, 0.5, 0.8):
        assert torch.equal(detops.nms(boxes.cuda(), scores.cuda(), thr).cpu(), detops.nms(boxes, scores, thr))
        assert torch.equal(
            detops.batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), thr).cpu(),
            detops.batched_nms(boxes, scores, idxs, thr),
        )
    scores_t = (scores * 8).round()  # ties
    assert torch.equal(detops.nms(boxes.cuda(), scores_t.cuda(), 0.5).cpu(), detops.nms(boxes, scores_t, 0.5))
    b2 = boxes.clone()
    b2[::7, 0] = float("nan")
    assert torch.equal(detops.nms(b2.cuda(), scores.cuda(), 0.5).cpu(), detops.nms(b2, scores, 0.5))


@cuda
@needs_cuda
@pytest.mark.parametrize("per_class", [False, True])
def test_cuda_multiclass_matches_cpu(g, per_class):
    boxes, scores = _multiclass_case(g, b=3, p=2000, c=6, per_class=per_class)
    scores = (scores * 16).round() / 16
    for kw in (dict(), dict(background_class=0, max_candidates_per_class=100), dict(max_detections=3)):
        args = dict(score_threshold=0.2, iou_threshold=0.5, max_detections=100)
        args.update(kw)
        got = detops.multiclass_nms(boxes.cuda(), scores.cuda(), **args)
        for x, y in zip(got, detops.multiclass_nms(boxes, scores, **args)):
            assert torch.equal(x.cpu(), y)


@cuda
@needs_cuda
def test_cuda_multiclass_graph_capture(g):
    boxes, scores = _multiclass_case(g, b=4, p=1000, c=8)
    boxes, scores = boxes.cuda(), scores.cuda()
    expected = detops.multiclass_nms(boxes, scores, 0.3, 0.5, 50)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        detops.multiclass_nms(boxes, scores, 0.3, 0.5, 50)  # warm-up on a side stream
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = detops.multiclass_nms(boxes, scores, 0.3, 0.5, 50)
    graph.replay()
    torch.cuda.synchronize()
    for x, y in zip(out, expected):
        assert torch.equal(x, y)


@cuda
@needs_cuda
@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_cuda_soft_nms_matches_cpu(g, method):
    boxes, scores = clustered_boxes(500, g, objects=10)
    k1, s1 = detops.soft_nms(boxes, scores, method=method)
    k2, s2 = detops.soft_nms(boxes.cuda(), scores.cuda(), method=method)
    assert torch.equal(k1, k2.cpu())
    torch.testing.assert_close(s1, s2.cpu())
