"""Rotated boxes (detops/rotated.py) against the float64 reference, torchvision and shapely."""

import math

import pytest
import torch
import torchvision

import detops
from detops import rotated
from detops.reference import rotated as ref

FLOATS = (torch.float32, torch.float64)
TOL = {torch.float32: 2e-5, torch.float64: 1e-10}


def rand_rotated(n, g, lead=(), dtype=torch.float64, spread=10.0, size=5.0, angles=720.0):
    """n boxes per leading entry: centres in [0, spread), sizes in (0.1, size], angles in [-angles, angles)."""
    u = torch.rand((*lead, n, 5), generator=g, dtype=torch.float64)
    boxes = torch.stack(
        (
            u[..., 0] * spread,
            u[..., 1] * spread,
            0.1 + u[..., 2] * size,
            0.1 + u[..., 3] * size,
            (u[..., 4] * 2 - 1) * angles,
        ),
        dim=-1,
    )
    return boxes.to(dtype)


def adversarial_pairs():
    """(a, b) pairs where vertex-sorting kernels are known to fail: identical, near-identical, nested,
    touching, collinear, rotated by quarter and half turns, huge and negative coordinates."""
    base = [100.0, 100.0, 50.0, 20.0, 45.0]
    pairs = [(base, base)]
    for d in (1e-3, 1e-5):
        pairs += [
            (base, [100 + d, 100, 50, 20, 45]),
            (base, [100, 100, 50, 20, 45 + d]),
            (base, [100, 100, 50 + d, 20 - d, 45 - d]),
        ]
    pairs += [
        ([0, 0, 10, 10, 0], [0, 0, 4, 4, 30]),  # nested
        ([0, 0, 10, 10, 0], [0, 0, 10, 10, 90]),  # same square, quarter turn
        ([0, 0, 10, 4, 30], [0, 0, 10, 4, 210]),  # same rectangle, half turn
        ([0, 0, 10, 4, 30], [0, 0, 4, 10, 120]),  # same rectangle, sides swapped
        ([0, 0, 2, 2, 0], [2, 0, 2, 2, 0]),  # touching edges
        ([0, 0, 2, 2, 0], [2, 2, 2, 2, 0]),  # touching corners
        ([0, 0, 2, 2, 0], [1, 0, 2, 2, 0]),  # collinear edges, half overlap
        ([0, 0, 2, 2, 0], [1, 0.5, 2, 2, 0]),
        ([0, 0, 2, 2, 45], [math.sqrt(2), 0, 2, 2, 45]),  # corner on an edge
        ([0, 0, 2, 2, 0], [0, 0, 2 * math.sqrt(2), 2 * math.sqrt(2), 45]),  # corners touching edges
        ([0, 0, 4, 1, 0], [0, 0, 4, 1, 1e-4]),
        ([-1e6, -1e6, 30, 10, 15], [-1e6 + 3, -1e6 + 1, 25, 12, 40]),
        ([1e7, 1e7, 3, 2, 10], [1e7 + 0.5, 1e7, 3, 2, 10]),
        ([0, 0, 3, 2, 1e6], [0, 0, 3, 2, 1e6 + 90]),
        ([0, 0, 3, 2, -725], [0.5, 0, 3, 2, 180]),
        ([0, 0, 1e-3, 1e-3, 0], [0, 0, 1e-3, 1e-3, 45]),
        ([5, 5, 1, 1, 0], [50, 50, 1, 1, 0]),  # disjoint
    ]
    return pairs


def _tensors(pairs, dtype=torch.float64, device="cpu"):
    a = torch.tensor([p[0] for p in pairs], dtype=dtype, device=device)
    b = torch.tensor([p[1] for p in pairs], dtype=dtype, device=device)
    return a, b


def shapely_iou(a, b):
    from shapely.geometry import Polygon

    pa, pb = Polygon(ref.corners(a)), Polygon(ref.corners(b))
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union > 0 else 0.0


# ---- geometry ----


@pytest.mark.parametrize("dtype", FLOATS)
def test_random_against_reference(device, dtype, gen):
    a = rand_rotated(23, gen, dtype=dtype).to(device)
    b = rand_rotated(17, gen, dtype=dtype).to(device)
    got = detops.box_iou_rotated(a, b)
    assert got.dtype == dtype and got.shape == (23, 17)
    torch.testing.assert_close(got.cpu(), ref.box_iou_rotated(a.cpu(), b.cpu()), atol=TOL[dtype], rtol=0)
    assert (got > 0).any() and (got == 0).any()  # the data set has both overlapping and disjoint pairs


def test_random_against_shapely(gen):
    pytest.importorskip("shapely")
    a, b = rand_rotated(30, gen), rand_rotated(30, gen)
    got = detops.box_iou_rotated(a, b)
    want = torch.tensor([[shapely_iou(x, y) for y in b.tolist()] for x in a.tolist()], dtype=torch.float64)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    torch.testing.assert_close(ref.box_iou_rotated(a, b), want, atol=1e-10, rtol=0)


@pytest.mark.parametrize("dtype", FLOATS)
def test_adversarial_against_shapely(device, dtype):
    pytest.importorskip("shapely")
    pairs = adversarial_pairs()
    a, b = _tensors(pairs, dtype, device)
    got = detops.box_iou_rotated_aligned(a, b).cpu().double()
    want = torch.tensor([shapely_iou(*p) for p in pairs], dtype=torch.float64)
    # float32 at 1e7 holds coordinates to 1 unit: compare those pairs on the rounded boxes' exact IoU.
    want_in_dtype = torch.tensor(
        [shapely_iou(x, y) for x, y in zip(a.cpu().double().tolist(), b.cpu().double().tolist())], dtype=torch.float64
    )
    atol = 1e-9 if dtype == torch.float64 else 3e-4
    torch.testing.assert_close(got, want_in_dtype, atol=atol, rtol=0)
    if dtype == torch.float64:
        torch.testing.assert_close(got, want, atol=atol, rtol=0)
    assert ((got >= 0) & (got <= 1)).all()


@pytest.mark.parametrize("dtype", (*FLOATS, torch.float16, torch.bfloat16))
def test_identical_boxes_give_exactly_one(device, dtype, gen):
    boxes = rand_rotated(50, gen)
    if dtype in FLOATS:  # huge values (past float16's range)
        boxes = torch.cat([boxes, rand_rotated(20, gen, spread=1e6, size=1e3, angles=1e5)])
    boxes = boxes.to(dtype).to(device)
    iou = detops.box_iou_rotated(boxes, boxes)
    assert torch.equal(iou.diagonal().cpu(), torch.ones(boxes.shape[0]))
    assert ((iou >= 0) & (iou <= 1)).all()


@pytest.mark.parametrize("dtype", FLOATS)
def test_exact_cases(device, dtype):
    cases = [
        ([0, 0, 2, 2, 0], [2, 0, 2, 2, 0], 0.0),  # touching edges
        ([0, 0, 2, 2, 0], [2, 2, 2, 2, 0], 0.0),  # touching corners
        ([0, 0, 2, 2, 0], [1, 0, 2, 2, 0], 1 / 3),  # collinear edges
        ([0, 0, 10, 10, 0], [0, 0, 4, 4, 30], 16 / 100),  # nested
        ([0, 0, 10, 10, 0], [0, 0, 10, 10, 90], 1.0),  # quarter turn of a square
        ([0, 0, 10, 10, 0], [0, 0, 10, 10, 450], 1.0),
        ([0, 0, 10, 10, 0], [0, 0, 10, 10, -270], 1.0),
        ([0, 0, 0, 2, 0], [0, 0, 0, 2, 0], 0.0),  # zero width: empty, even against itself
        ([0, 0, 2, 0, 0], [0, 0, 2, 2, 0], 0.0),
        ([0, 0, -2, 2, 0], [0, 0, 2, 2, 0], 0.0),  # negative width: empty
        ([3, 3, 1, 1, 0], [30, 30, 1, 1, 0], 0.0),  # disjoint
        ([-5, -5, 2, 2, 0], [-4, -5, 2, 2, 180], 1 / 3),
    ]
    a = torch.tensor([c[0] for c in cases], dtype=dtype, device=device)
    b = torch.tensor([c[1] for c in cases], dtype=dtype, device=device)
    want = torch.tensor([c[2] for c in cases], dtype=dtype)
    got = detops.box_iou_rotated_aligned(a, b).cpu()
    torch.testing.assert_close(got, want, atol=4 * torch.finfo(dtype).eps, rtol=0)
    zero = want == 0
    assert torch.equal(got[zero], want[zero])  # exactly 0, never a tiny negative or positive value


@pytest.mark.parametrize("dtype", FLOATS)
def test_angle_periodicity_and_translation(device, dtype, gen):
    a, b = rand_rotated(20, gen, dtype=dtype), rand_rotated(20, gen, dtype=dtype)
    base = detops.box_iou_rotated(a.to(device), b.to(device)).cpu()
    turned = b.clone()
    turned[:, 4] += 360 * 7
    shifted_a, shifted_b = a.clone(), b.clone()
    shift = 2.0**20 if dtype == torch.float32 else 1e9  # float32: an exact shift of coordinates on a 1/8 grid
    a8 = (a * 8).round() / 8
    b8 = (b * 8).round() / 8
    shifted_a, shifted_b = a8.clone(), b8.clone()
    shifted_a[:, :2] -= shift
    shifted_b[:, :2] -= shift
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    torch.testing.assert_close(detops.box_iou_rotated(a.to(device), turned.to(device)).cpu(), base, atol=tol, rtol=0)
    torch.testing.assert_close(
        detops.box_iou_rotated(shifted_a.to(device), shifted_b.to(device)).cpu(),
        detops.box_iou_rotated(a8.to(device), b8.to(device)).cpu(),
        atol=tol,
        rtol=0,
    )


def test_nan_and_inf_give_nan(device):
    good = [0.0, 0.0, 2.0, 2.0, 0.0]
    bad = [
        [math.nan, 0, 2, 2, 0],
        [0, 0, 2, 2, math.nan],
        [math.inf, 0, 2, 2, 0],
        [0, 0, math.inf, 2, 0],
        [0, 0, 2, 2, -math.inf],
    ]
    a = torch.tensor(bad, device=device)
    b = torch.tensor([good] * len(bad), device=device)
    assert detops.box_iou_rotated_aligned(a, b).isnan().all()
    assert detops.box_iou_rotated_aligned(b, a).isnan().all()
    m = detops.box_iou_rotated(torch.cat([a, b[:1]]), b[:2])
    assert m[:-1].isnan().all() and (m[-1] == 1).all()
    assert detops.box_iou_rotated(b[:2], a).isnan().all()  # the bad boxes on the column side too


def test_dtypes(device, gen):
    a, b = rand_rotated(9, gen, dtype=torch.float32), rand_rotated(7, gen, dtype=torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        ah, bh = a.to(dtype).to(device), b.to(dtype).to(device)
        got = detops.box_iou_rotated(ah, bh)
        assert got.dtype == torch.float32
        assert torch.equal(got, detops.box_iou_rotated(ah.float(), bh.float()))
        aligned = detops.box_iou_rotated_aligned(ah, bh[:7].repeat(2, 1)[:9])
        assert aligned.dtype == dtype
    ai, bi = (a * 10).to(torch.int64).to(device), (b * 10).to(torch.int64).to(device)
    ai[:, 2:4] += 1
    bi[:, 2:4] += 1
    got = detops.box_iou_rotated(ai, bi)
    assert got.dtype == torch.float32
    assert torch.equal(got, detops.box_iou_rotated(ai.double(), bi.double()).float())
    assert detops.box_iou_rotated(a.to(device), b.double().to(device)).dtype == torch.float64  # promoted


def test_batch_dimensions_and_empty(device, gen):
    a = rand_rotated(6, gen, lead=(2, 3)).to(device)
    b = rand_rotated(4, gen).to(device)
    got = detops.box_iou_rotated(a, b)
    assert got.shape == (2, 3, 6, 4)
    for i in range(2):
        for j in range(3):
            assert torch.equal(got[i, j], detops.box_iou_rotated(a[i, j], b))
    b3 = rand_rotated(4, gen, lead=(3,)).to(device)
    got = detops.box_iou_rotated(a, b3)
    assert torch.equal(got[1, 2], detops.box_iou_rotated(a[1, 2], b3[2]))
    assert detops.box_iou_rotated(a[..., :0, :], b).shape == (2, 3, 0, 4)
    assert detops.box_iou_rotated_aligned(b[:0], b[:0]).shape == (0,)
    nc = rand_rotated(8, gen, dtype=torch.float32).to(device).t().contiguous().t()  # non-contiguous
    assert torch.equal(detops.box_iou_rotated(nc, nc), detops.box_iou_rotated(nc.contiguous(), nc.contiguous()))


def test_aligned_is_the_pairwise_diagonal(device, gen):
    a, b = rand_rotated(40, gen, lead=(2,)).to(device), rand_rotated(40, gen, lead=(2,)).to(device)
    got = detops.box_iou_rotated_aligned(a, b)
    assert got.shape == (2, 40)
    assert torch.equal(got, torch.stack([detops.box_iou_rotated(x, y).diagonal() for x, y in zip(a, b)]))


# ---- box_iou(fmt=...) and box_convert against torchvision ----


@pytest.mark.parametrize("fmt", rotated.ROTATED_FORMATS)
def test_box_iou_formats_match_torchvision(fmt, gen):
    a = rand_rotated(40, gen, dtype=torch.float32, angles=180)
    b = rand_rotated(30, gen, dtype=torch.float32, angles=180)
    if fmt != "cxcywhr":
        a, b = torchvision.ops.box_convert(a, "cxcywhr", fmt), torchvision.ops.box_convert(b, "cxcywhr", fmt)
    got = detops.box_iou(a, b, fmt=fmt)
    want = torchvision.ops.box_iou(a, b, fmt=fmt)
    assert got.dtype == want.dtype
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)


def test_box_iou_torchvision_fails_where_detops_holds():
    # torchvision 0.29 returns float32 for float64 boxes and rejects float16; detops keeps float64 and
    # computes float16 in float32.
    a = torch.tensor([[0.0, 0.0, 4.0, 2.0, 30.0], [1.0, 0.5, 3.0, 2.0, -60.0]], dtype=torch.float64)
    assert detops.box_iou(a, a, fmt="cxcywhr").dtype == torch.float64
    assert detops.box_iou(a.half(), a.half(), fmt="cxcywhr").dtype == torch.float32


def test_pair_torchvision_gets_wrong():
    # A pair of the benchmark's uniform workload where torchvision 0.29 returns 0.0568; shapely and the
    # reference give 0.1147.
    a = torch.tensor([[84.58161163330078, 712.3807373046875, 143.77459716796875, 147.11044311523438, -8.7402925491333]])
    b = torch.tensor([[116.1439208984375, 716.96484375, 90.98207092285156, 28.01889419555664, 6.977433204650879]])
    want = ref.iou_pair(a[0].tolist(), b[0].tolist())
    assert abs(want - 0.1147042885) < 1e-9
    assert abs(detops.box_iou(a, b, fmt="cxcywhr").item() - want) < 1e-6
    assert abs(detops.box_iou(a.double(), b.double(), fmt="cxcywhr").item() - want) < 1e-12


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64, torch.int64))
def test_box_convert_matches_torchvision(dtype, gen):
    boxes = {"cxcywhr": rand_rotated(30, gen, spread=100, size=50, angles=180)}
    boxes["xywhr"] = torchvision.ops.box_convert(boxes["cxcywhr"], "cxcywhr", "xywhr")
    boxes["xyxyxyxy"] = torchvision.ops.box_convert(boxes["cxcywhr"], "cxcywhr", "xyxyxyxy")
    for fin in rotated.ROTATED_FORMATS:
        for fout in rotated.ROTATED_FORMATS:
            x = boxes[fin].to(dtype)
            got, want = detops.box_convert(x, fin, fout), torchvision.ops.box_convert(x, fin, fout)
            assert got.dtype == want.dtype and got.shape == want.shape
            torch.testing.assert_close(got, want, atol=1e-4 if dtype == torch.float32 else 1e-9, rtol=0)


def test_box_convert_between_rotated_and_axis_aligned_raises():
    with pytest.raises(NotImplementedError, match="rotated and axis-aligned"):
        detops.box_convert(torch.zeros(2, 5), "cxcywhr", "xyxy")
    with pytest.raises(NotImplementedError, match="rotated and axis-aligned"):
        detops.box_convert(torch.zeros(2, 4), "xywh", "xywhr")
    with pytest.raises(ValueError, match="Unsupported"):
        rotated.box_convert(torch.zeros(2, 5), "cxcywhr", "polar")


# ---- bad input ----


def test_errors(device):
    z = lambda *s, **kw: torch.zeros(*s, device=device, **kw)  # noqa: E731
    with pytest.raises(ValueError, match=r"boxes1 must have shape \[\.\.\., 5\] for fmt='cxcywhr'"):
        detops.box_iou(z(3, 4), z(2, 5), fmt="cxcywhr")
    with pytest.raises(ValueError, match=r"boxes2 must have shape \[\.\.\., 8\] for fmt='xyxyxyxy'"):
        detops.box_iou(z(3, 8), z(2, 5), fmt="xyxyxyxy")
    with pytest.raises(RuntimeError, match="boxes1 must have shape"):
        detops.box_iou_rotated(z(3, 4), z(2, 5))
    with pytest.raises(RuntimeError, match="boxes2 must have shape"):
        detops.box_iou_rotated(z(3, 5), z(5))
    with pytest.raises(RuntimeError, match="do not broadcast"):
        detops.box_iou_rotated(z(2, 3, 5), z(3, 2, 5))
    with pytest.raises(RuntimeError, match="one shape"):
        detops.box_iou_rotated_aligned(z(3, 5), z(2, 5))
    with pytest.raises(RuntimeError, match="boxes1 must be numeric"):
        detops.box_iou_rotated(z(3, 5, dtype=torch.bool), z(2, 5, dtype=torch.bool))
    with pytest.raises(RuntimeError, match=r"boxes must have shape \[N, 5\]"):
        detops.nms_rotated(z(3, 4), z(3), 0.5)
    with pytest.raises(RuntimeError, match="scores must have shape"):
        detops.nms_rotated(z(3, 5), z(3, 1), 0.5)
    with pytest.raises(RuntimeError, match="same number of boxes"):
        detops.nms_rotated(z(3, 5), z(2), 0.5)
    with pytest.raises(RuntimeError, match="iou_threshold must be a number"):
        detops.nms_rotated(z(3, 5), z(3), math.nan)
    with pytest.raises(RuntimeError, match="boxes must be a floating-point"):
        detops.nms_rotated(z(3, 5, dtype=torch.int64), z(3, dtype=torch.int64), 0.5)
    with pytest.raises(RuntimeError, match="same dtype"):
        detops.nms_rotated(z(3, 5), z(3, dtype=torch.float64), 0.5)
    with pytest.raises(RuntimeError, match="idxs must be an integer"):
        detops.batched_nms_rotated(z(3, 5), z(3), z(3), 0.5)
    with pytest.raises(RuntimeError, match=r"idxs must have shape \[N\]"):
        detops.batched_nms_rotated(z(3, 5), z(3), z(2, dtype=torch.int64), 0.5)


def test_device_mismatch_error():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    with pytest.raises(RuntimeError, match="same device"):
        detops.box_iou_rotated(torch.zeros(2, 5), torch.zeros(2, 5, device="cuda"))


# ---- nms_rotated, batched_nms_rotated ----


def clustered(n, g, dtype=torch.float32, classes=1):
    """Boxes around a few centres (so NMS has work), with scores that tie now and then."""
    centres = torch.rand(max(1, n // 8), 2, generator=g, dtype=torch.float64) * 50
    pick = torch.randint(0, centres.shape[0], (n,), generator=g)
    jitter = torch.randn(n, 2, generator=g, dtype=torch.float64)
    size = 2 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 6
    angle = (torch.rand(n, 1, generator=g, dtype=torch.float64) * 2 - 1) * 90
    boxes = torch.cat((centres[pick] + jitter, size, angle), dim=1).to(dtype)
    scores = (torch.randint(0, n // 2 + 1, (n,), generator=g).double() / n).to(dtype)
    idxs = torch.randint(0, classes, (n,), generator=g)
    return boxes, scores, idxs


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("thr", (0.0, 0.3, 0.7))
def test_nms_against_reference(device, dtype, thr, gen):
    boxes, scores, idxs = clustered(150, gen, dtype, classes=3)
    keep = detops.nms_rotated(boxes.to(device), scores.to(device), thr).cpu()
    assert torch.equal(keep, ref.nms_rotated(boxes, scores, thr))
    keep = detops.batched_nms_rotated(boxes.to(device), scores.to(device), idxs.to(device), thr).cpu()
    assert torch.equal(keep, ref.batched_nms_rotated(boxes, scores, idxs, thr))
    assert 0 < keep.numel() < 150


def test_nms_against_shapely(gen):
    pytest.importorskip("shapely")
    boxes, scores, _ = clustered(120, gen, torch.float64)
    order = sorted(range(120), key=lambda i: (-scores[i].item(), i))
    keep = []
    for i in order:
        if all(shapely_iou(boxes[k].tolist(), boxes[i].tolist()) <= 0.4 for k in keep):
            keep.append(i)
    assert detops.nms_rotated(boxes, scores, 0.4).tolist() == keep


def test_nms_threshold_boundary(device):
    # Two boxes whose intersection (1) and union (3) are exact: IoU is 1/3 rounded once.
    for dtype in FLOATS:
        boxes = torch.tensor([[0.0, 0, 2, 1, 0], [1.0, 0, 2, 1, 0]], dtype=dtype, device=device)
        scores = torch.tensor([0.9, 0.8], dtype=dtype, device=device)
        iou = detops.box_iou_rotated(boxes[:1], boxes[1:]).item()
        assert iou == torch.tensor(1 / 3, dtype=dtype).item()
        assert detops.nms_rotated(boxes, scores, iou).tolist() == [0, 1]  # equal to the threshold: kept
        assert detops.nms_rotated(boxes, scores, iou - 1e-5).tolist() == [0]
        assert detops.nms_rotated(boxes, scores, iou + 1e-5).tolist() == [0, 1]


def test_nms_ties_nan_and_empty(device):
    boxes = torch.tensor(
        [
            [0.0, 0, 2, 2, 10],
            [0.1, 0, 2, 2, 12],
            [0, 0, 2, 2, 10],
            [20, 20, 2, 2, 0],
            [math.nan, 0, 2, 2, 0],
            [0, 0, 2, 2, math.inf],
            [20, 20, 2, 2, 1],
        ],
        device=device,
    )
    scores = torch.tensor([0.5, 0.5, 0.9, 0.1, 1.0, 1.0, math.nan], device=device)
    # rank: 2 (0.9), then the 0.5 tie by index (0, 1), then 3; the NaN/inf boxes and the NaN score drop out
    assert detops.nms_rotated(boxes, scores, 0.5).tolist() == [2, 3]
    assert detops.nms_rotated(boxes, scores, 1.0).tolist() == [2, 0, 1, 3]
    empty = detops.nms_rotated(boxes[:0], scores[:0], 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    idxs = torch.tensor([0, 1, 0, 0, 0, 0, 0], device=device)
    assert detops.batched_nms_rotated(boxes, scores, idxs, 0.5).tolist() == [2, 1, 3]


def test_nms_half_computes_in_float32(device, gen):
    boxes, scores, _ = clustered(100, gen, torch.float16)
    got = detops.nms_rotated(boxes.to(device), scores.to(device), 0.5)
    assert torch.equal(got, detops.nms_rotated(boxes.float().to(device), scores.float().to(device), 0.5))


# ---- multiclass_nms_rotated, soft_nms_rotated ----


def multiclass_case(g, b=2, p=120, c=3, per_class=False, dtype=torch.float32):
    boxes, _, _ = clustered(b * p * (c if per_class else 1), g, torch.float64)
    boxes = boxes.view(b, p, c, 5) if per_class else boxes.view(b, p, 5)
    scores = torch.rand(b, p, c, generator=g, dtype=torch.float64)
    return boxes.to(dtype), scores.to(dtype)


def _assert_multiclass_equal(got, want):
    for x, y in zip(got, want):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x.cpu(), y), (x, y)


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(background_class=0),
        dict(max_candidates_per_class=15),
        dict(max_detections=7),
        dict(max_detections=5000),
        dict(score_threshold=0.99),
        dict(score_threshold=1.0),
        dict(iou_threshold=0.0),
        dict(iou_threshold=-1.0),
    ],
)
def test_multiclass_nms_rotated_against_reference(device, kw, gen):
    boxes, scores = multiclass_case(gen)
    args = dict(score_threshold=0.3, iou_threshold=0.4, max_detections=60)
    args.update(kw)
    got = detops.multiclass_nms_rotated(boxes.to(device), scores.to(device), **args)
    want = ref.multiclass_nms_rotated(boxes, scores, **args)
    _assert_multiclass_equal(got, want)
    out_boxes, out_scores, labels, counts = got
    classes = 3 - (1 if "background_class" in kw else 0)
    k = min(args["max_detections"], classes * args.get("max_candidates_per_class", 120))
    assert out_boxes.shape == (2, k, 5) and labels.shape == (2, k) and counts.shape == (2,)
    for b in range(2):
        n = int(counts[b])
        assert bool((labels[b, n:] == -1).all()) and bool((out_scores[b, n:] == 0).all())
        assert bool((out_boxes[b, n:] == 0).all())
    if kw == dict(score_threshold=1.0):
        assert counts.sum() == 0
    else:
        assert counts.min() > 0
    if kw == dict(max_detections=5000):
        assert counts.max() < k  # fewer detections than rows: padding


@pytest.mark.parametrize("dtype", FLOATS)
def test_multiclass_nms_rotated_per_class_boxes_and_ties(device, dtype, gen):
    boxes, scores = multiclass_case(gen, per_class=True, dtype=dtype)
    scores = (scores * 4).round() / 4  # ties across classes and priors
    got = detops.multiclass_nms_rotated(boxes.to(device), scores.to(device), 0.2, 0.5, 80)
    _assert_multiclass_equal(got, ref.multiclass_nms_rotated(boxes, scores, 0.2, 0.5, 80))


def test_multiclass_nms_rotated_is_per_class_nms(device, gen):
    # With no cap on detections, each class's detections are nms_rotated over its candidates.
    boxes, scores = multiclass_case(gen, b=1, p=200, c=4)
    out_boxes, out_scores, labels, counts = detops.multiclass_nms_rotated(
        boxes.to(device), scores.to(device), 0.2, 0.5, 10_000
    )
    n = int(counts[0])
    for c in range(4):
        cand = (scores[0, :, c] > 0.2).nonzero()[:, 0]
        keep = cand[detops.nms_rotated(boxes[0, cand], scores[0, cand, c], 0.5)]
        mine = labels[0, :n].cpu() == c
        assert torch.equal(out_boxes[0, :n][mine.to(device)].cpu(), boxes[0, keep])
        assert torch.equal(out_scores[0, :n][mine.to(device)].cpu(), scores[0, keep, c])


def test_multiclass_nms_rotated_threshold_boundary(device):
    # IoU of the two boxes is exactly 1/3 rounded once; a third box far away, another class.
    for dtype in FLOATS:
        boxes = torch.tensor([[[0.0, 0, 2, 1, 0], [1.0, 0, 2, 1, 0], [30, 30, 2, 2, 45]]], dtype=dtype, device=device)
        scores = torch.tensor([[[0.9, 0.1], [0.8, 0.1], [0.1, 0.7]]], dtype=dtype, device=device)
        iou = detops.box_iou_rotated(boxes[0, :1], boxes[0, 1:2]).item()
        for thr, kept in ((iou, 3), (iou - 1e-5, 2), (iou + 1e-5, 3)):
            _, s, labels, counts = detops.multiclass_nms_rotated(boxes, scores, 0.5, thr, 10)
            assert counts.tolist() == [kept]
            assert labels[0, :kept].tolist() == ([0, 0, 1] if kept == 3 else [0, 1])


def test_multiclass_nms_rotated_nan_inf_and_empty(device, gen):
    boxes, scores = multiclass_case(gen)
    boxes[0, :10, 0] = math.nan
    boxes[1, :10, 4] = math.inf
    scores[0, 10:20, 1] = math.nan
    scores[1, 20:25, :] = 1.0  # the best scores, on boxes that stay valid
    got = detops.multiclass_nms_rotated(boxes.to(device), scores.to(device), 0.3, 0.5, 50)
    _assert_multiclass_equal(got, ref.multiclass_nms_rotated(boxes, scores, 0.3, 0.5, 50))
    assert not got[0].isnan().any() and not got[0].isinf().any() and not got[1].isnan().any()
    z = lambda *s: torch.zeros(*s, device=device)  # noqa: E731
    for shape in ((3, 0, 5), (0, 10, 5)):
        out = detops.multiclass_nms_rotated(z(*shape), z(*shape[:2], 4), 0.1, 0.5, 5)
        k = 0 if shape[1] == 0 else 5
        assert out[0].shape == (shape[0], k, 5) and out[3].shape == (shape[0],) and not out[3].any()
    out = detops.multiclass_nms_rotated(z(2, 4, 5), z(2, 4, 3), 0.1, 0.5, 5)  # no score above the threshold
    assert out[0].shape == (2, 5, 5) and not out[3].any() and bool((out[2] == -1).all())


def test_multiclass_nms_rotated_half_and_errors(device, gen):
    boxes, scores = multiclass_case(gen, dtype=torch.float16)
    got = detops.multiclass_nms_rotated(boxes.to(device), scores.to(device), 0.3, 0.5, 40)
    assert got[0].dtype == torch.float16 and got[1].dtype == torch.float16
    _assert_multiclass_equal(got, ref.multiclass_nms_rotated(boxes, scores, 0.3, 0.5, 40))
    b, s = boxes.float().to(device), scores.float().to(device)
    with pytest.raises(RuntimeError, match=r"boxes must have shape \[B, P, 5\] \(cx, cy, w, h, angle\) or"):
        detops.multiclass_nms_rotated(b[..., :4], s)
    with pytest.raises(RuntimeError, match="scores must have shape"):
        detops.multiclass_nms_rotated(b, s[0])
    with pytest.raises(RuntimeError, match="background_class"):
        detops.multiclass_nms_rotated(b, s, background_class=3)
    with pytest.raises(RuntimeError, match="max_detections"):
        detops.multiclass_nms_rotated(b, s, max_detections=-1)
    with pytest.raises(RuntimeError, match="iou_threshold must be a number"):
        detops.multiclass_nms_rotated(b, s, iou_threshold=math.nan)
    with pytest.raises(RuntimeError, match="same dtype"):
        detops.multiclass_nms_rotated(b.double(), s)


@pytest.mark.parametrize("dtype", FLOATS)
def test_multiclass_and_soft_nms_rotated_on_adversarial_boxes(device, dtype, gen):
    # Identical, near-identical, nested, touching, huge and negative boxes: where vertex-sorting IoU kernels
    # go wrong, so where an NMS built on them keeps or drops the wrong boxes.
    pairs = adversarial_pairs()
    boxes = torch.tensor([b for pair in pairs for b in pair], dtype=dtype)
    n = boxes.shape[0]
    scores = torch.rand(1, n, 2, generator=gen, dtype=torch.float64).to(dtype)
    for thr in (0.0, 0.5, 0.999):
        got = detops.multiclass_nms_rotated(boxes[None].to(device), scores.to(device), 0.05, thr, 100)
        _assert_multiclass_equal(got, ref.multiclass_nms_rotated(boxes[None], scores, 0.05, thr, 100))
        keep, s = detops.soft_nms_rotated(
            boxes.to(device), scores[0, :, 0].to(device), iou_threshold=thr, method="linear", score_threshold=0.01
        )
        rk, rs = ref.soft_nms_rotated(boxes, scores[0, :, 0], iou_threshold=thr, method="linear", score_threshold=0.01)
        assert torch.equal(keep.cpu(), rk)
        torch.testing.assert_close(s.cpu(), rs)
    # The first pair is one box twice (IoU exactly 1): at any threshold below 1 one of them goes.
    got = detops.multiclass_nms_rotated(boxes[None, :2].to(device), scores[:, :2].to(device), 0.0, 0.999, 10)
    assert got[3].tolist() == [2]  # one per class


@pytest.mark.parametrize("method", ["linear", "gaussian"])
@pytest.mark.parametrize("dtype", FLOATS)
def test_soft_nms_rotated_against_reference(device, method, dtype, gen):
    boxes, scores, _ = clustered(120, gen, dtype)
    for kw in (dict(), dict(iou_threshold=0.5, sigma=0.3, score_threshold=0.05)):
        keep, s = detops.soft_nms_rotated(boxes.to(device), scores.to(device), method=method, **kw)
        rk, rs = ref.soft_nms_rotated(boxes, scores, method=method, **kw)
        assert torch.equal(keep.cpu(), rk)
        torch.testing.assert_close(s.cpu(), rs)
        assert bool((s[:-1] >= s[1:]).all()) and s.dtype == dtype


def test_soft_nms_rotated_rules(device, gen):
    boxes = torch.tensor(
        [
            [0.0, 0, 2, 2, 10],
            [0.1, 0, 2, 2, 12],
            [0, 0, 2, 2, 10],
            [20, 20, 2, 2, 0],
            [math.nan, 0, 2, 2, 0],
            [0, 0, 2, 2, math.inf],
            [20, 20, 2, 2, 1],
        ],
        device=device,
    )
    scores = torch.tensor([0.5, 0.5, 0.9, 0.1, 1.0, 1.0, math.nan], device=device)
    # linear with iou_threshold 1: no decay, so selection is rank order over the valid boxes (ties by index)
    keep, s = detops.soft_nms_rotated(boxes, scores, iou_threshold=1.0, method="linear", score_threshold=0.0)
    assert keep.tolist() == [2, 0, 1, 3] and s.tolist() == scores[[2, 0, 1, 3]].tolist()
    # identical boxes 0 and 2 (IoU exactly 1): linear decay takes box 0 to 0, below any positive threshold
    keep, _ = detops.soft_nms_rotated(boxes, scores, iou_threshold=0.5, method="linear", score_threshold=0.01)
    assert 0 not in keep.tolist() and keep.tolist()[0] == 2
    keep, s = detops.soft_nms_rotated(boxes, scores, method="linear", iou_threshold=0.5, score_threshold=0.0)
    rk, rs = ref.soft_nms_rotated(boxes.cpu(), scores.cpu(), method="linear", iou_threshold=0.5, score_threshold=0.0)
    assert torch.equal(keep.cpu(), rk)
    torch.testing.assert_close(s.cpu(), rs)  # the kernel's IoU is float32 arithmetic, the reference's rounded
    empty = detops.soft_nms_rotated(boxes[:0], scores[:0])
    assert empty[0].shape == (0,) and empty[0].dtype == torch.int64 and empty[1].shape == (0,)
    with pytest.raises(RuntimeError, match="method"):
        detops.soft_nms_rotated(boxes, scores, method="hard")
    with pytest.raises(RuntimeError, match=r"boxes must have shape \[N, 5\]"):
        detops.soft_nms_rotated(boxes[:, :4], scores)
    with pytest.raises(RuntimeError, match="sigma"):
        detops.soft_nms_rotated(boxes, scores, sigma=0.0)


# ---- dispatcher integration ----


def test_opcheck(device, gen):
    a, b = rand_rotated(7, gen, lead=(2,)).to(device), rand_rotated(5, gen).to(device)
    torch.library.opcheck(torch.ops.detops.box_iou_rotated.default, (a, b))
    torch.library.opcheck(
        torch.ops.detops.box_iou_rotated_aligned.default, (a, rand_rotated(7, gen, lead=(2,)).to(device))
    )
    boxes, scores, idxs = clustered(60, gen, classes=3)
    boxes, scores, idxs = boxes.to(device), scores.to(device), idxs.to(device)
    torch.library.opcheck(torch.ops.detops.nms_rotated.default, (boxes, scores, 0.5))
    torch.library.opcheck(torch.ops.detops.batched_nms_rotated.default, (boxes, scores, idxs, 0.5))
    torch.library.opcheck(torch.ops.detops.soft_nms_rotated.default, (boxes, scores, 0.3, 0.5, 0.001, "linear"))
    mb, ms = (t.to(device) for t in multiclass_case(gen))
    torch.library.opcheck(torch.ops.detops.multiclass_nms_rotated.default, (mb, ms, 0.3, 0.5, 20, 0, 50))


def test_torch_compile_and_export(device, gen):
    a, b = rand_rotated(30, gen, dtype=torch.float32).to(device), rand_rotated(20, gen, dtype=torch.float32).to(device)

    def f(x, y):
        return detops.box_iou(x[:20], y, fmt="cxcywhr").max(dim=1).values + detops.box_iou_rotated_aligned(x[:20], y)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(a, b), f(a, b))

    class M(torch.nn.Module):
        def forward(self, x, y):
            return detops.box_iou_rotated(x, y)

    ep = torch.export.export(M(), (a, b))
    torch.testing.assert_close(ep.module()(a, b), M()(a, b))

    mb, ms = (t.to(device) for t in multiclass_case(gen))

    def post(boxes, scores):
        b, s, labels, n = detops.multiclass_nms_rotated(boxes, scores, 0.3, 0.5, 20, background_class=0)
        return b * 2, s, labels, n

    compiled = torch.compile(post, fullgraph=True, backend="aot_eager")
    for x, y in zip(compiled(mb, ms), post(mb, ms)):
        assert torch.equal(x, y)


@pytest.mark.cuda
def test_cuda_matches_cpu(gen):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    a, b = rand_rotated(300, gen, dtype=torch.float32), rand_rotated(200, gen, dtype=torch.float32)
    torch.testing.assert_close(
        detops.box_iou_rotated(a.cuda(), b.cuda()).cpu(), detops.box_iou_rotated(a, b), atol=1e-6, rtol=0
    )
    boxes, scores, idxs = clustered(3000, gen, classes=4)
    assert torch.equal(
        detops.batched_nms_rotated(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5).cpu(),
        detops.batched_nms_rotated(boxes, scores, idxs, 0.5),
    )
    for per_class in (False, True):
        mb, ms = multiclass_case(gen, b=3, p=1500, c=5, per_class=per_class)
        for x, y in zip(
            detops.multiclass_nms_rotated(mb.cuda(), ms.cuda(), 0.2, 0.5, 300, background_class=0),
            detops.multiclass_nms_rotated(mb, ms, 0.2, 0.5, 300, background_class=0),
        ):
            assert torch.equal(x.cpu(), y)
    keep, s = detops.soft_nms_rotated(boxes[:1000].cuda(), scores[:1000].cuda())
    rk, rs = detops.soft_nms_rotated(boxes[:1000], scores[:1000])
    assert torch.equal(keep.cpu(), rk)
    torch.testing.assert_close(s.cpu(), rs)


@pytest.mark.cuda
def test_cuda_multiclass_nms_rotated_graph_capture(gen):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    boxes, scores = (t.cuda() for t in multiclass_case(gen, b=4, p=500, c=6))
    expected = detops.multiclass_nms_rotated(boxes, scores, 0.3, 0.5, 50)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        detops.multiclass_nms_rotated(boxes, scores, 0.3, 0.5, 50)  # warm-up on a side stream
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = detops.multiclass_nms_rotated(boxes, scores, 0.3, 0.5, 50)
    graph.replay()
    torch.cuda.synchronize()
    for x, y in zip(out, expected):
        assert torch.equal(x, y)


def test_radians_to_degrees():
    boxes = torch.tensor([[1.0, 2.0, 3.0, 4.0, math.pi / 2], [0.0, 0.0, 1.0, 1.0, -math.pi]], dtype=torch.float64)
    got = rotated.radians_to_degrees(boxes)
    torch.testing.assert_close(
        got, torch.tensor([[1.0, 2.0, 3.0, 4.0, 90.0], [0.0, 0.0, 1.0, 1.0, -180.0]], dtype=torch.float64)
    )
    assert boxes[0, 4] == math.pi / 2  # the input is left alone
