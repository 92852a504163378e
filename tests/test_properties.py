"""Property-based search over every public op: generated inputs against the op's plain-PyTorch reference and,
where torchvision has the op, against torchvision.

The inputs are what an adversarial user passes: empty shapes; degenerate, inverted, negative, huge (1e30,
3e38) and denormal coordinates; NaN and inf; every dtype; non-contiguous, transposed and stride-0 expanded
tensors; thresholds at and outside [0, 1] and NaN; out-of-range labels and class ids. Each op either agrees
with its reference (values within the dtype's rounding, NaN where NaN, same dtype and shape) or refuses the
input with a ValueError / RuntimeError that names the argument. Where detops deliberately differs from
torchvision the difference is a documented behaviour (docs/reliability.md) with its own test below.

CI runs the "ci" hypothesis profile (tests/conftest.py: a fixed number of examples per op, derandomized);
``python -m pytest tests/test_properties.py --hypothesis-profile=long`` runs the long search.

Adding an op: write a strategy that draws its arguments and a check that calls detops and the reference, then
add one ``Case`` to ``CASES``.
"""

import math
from dataclasses import dataclass
from typing import Callable, Optional

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import detops
from detops.reference import boxes as ref_boxes
from detops.reference import coding as ref_coding
from detops.reference import focal_loss as ref_focal_loss
from detops.reference import hard_negatives as ref_hard_negatives
from detops.reference import matching as ref_matching
from detops.reference import nms as ref_nms
from detops.reference import rotated as ref_rotated
from detops.reference import yolo as ref_yolo

pytestmark = pytest.mark.usefixtures("one_thread")

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INTS = (torch.uint8, torch.int16, torch.int32, torch.int64)
INF, NAN = math.inf, math.nan
# Coordinates that break careless kernels: signed zeros, denormals (float32 and float64), values whose
# products overflow float32 (1e30) or that are near its largest finite value (3e38), infinities, NaN.
SPECIAL = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-40, 1e-310, 1e8, 1e30, -1e30, 3e38, -3e38, INF, -INF, NAN)
LAYOUTS = ("contiguous", "strided", "transposed", "expanded")


# ------------------------------------------------------------------------------------------ strategies


def _coord(adversarial):
    finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=32)
    return st.one_of(finite, st.sampled_from(SPECIAL)) if adversarial else finite


@st.composite
def box_rows(draw, n, adversarial=True):
    """n xyxy rows as float64 lists: most well formed (x2 >= x1, y2 >= y1), some arbitrary."""
    rows = []
    for _ in range(n):
        if adversarial and draw(st.integers(0, 3)) == 0:
            rows.append([draw(_coord(True)) for _ in range(4)])
        else:
            x, y = draw(_coord(adversarial)), draw(_coord(adversarial))
            w = draw(st.floats(0, 50, allow_nan=False, width=32))
            h = draw(st.floats(0, 50, allow_nan=False, width=32))
            rows.append([x, y, x + w, y + h])
    return rows


def layout(t, kind):
    """The same values (for "expanded": the first row repeated) in another memory layout."""
    if kind == "strided" and t.dim() >= 1:
        big = t.new_zeros(*t.shape[:-1], 2 * t.shape[-1])
        big[..., ::2] = t
        return big[..., ::2]
    if kind == "transposed" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if kind == "expanded" and t.dim() >= 2 and t.shape[-2] > 0:
        return t[..., :1, :].expand(t.shape)
    return t


def as_tensor(rows, dtype, shape_tail=(4,)):
    t = torch.tensor(rows, dtype=torch.float64).reshape(-1, *shape_tail)
    if not dtype.is_floating_point:
        info = torch.iinfo(dtype)
        t = torch.nan_to_num(t, nan=0.0).clamp(info.min, min(info.max, 2**53)).round()
    return t.to(dtype)


@st.composite
def boxes_tensor(draw, n=None, dtypes=FLOATS, max_n=6, adversarial=True, dtype=None):
    n = draw(st.integers(0, max_n)) if n is None else n
    dtype = draw(st.sampled_from(dtypes)) if dtype is None else dtype
    t = as_tensor(draw(box_rows(n, adversarial)), dtype)
    return layout(t, draw(st.sampled_from(LAYOUTS)))


def threshold():
    return st.one_of(st.floats(0, 1), st.sampled_from((0.0, 1.0, 0.5, -0.5, 1.5, -INF, INF, NAN)))


# ------------------------------------------------------------------------------------------ comparisons

RTOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5, torch.float64: 1e-12}


def close(actual, expected, rtol=None, atol=None):
    """Same dtype and shape; values within the dtype's rounding; NaN exactly where NaN; infinities equal."""
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if not actual.is_floating_point():
        assert torch.equal(actual, expected), (actual, expected)
        return
    r = RTOL[actual.dtype] if rtol is None else rtol
    torch.testing.assert_close(actual, expected, rtol=r, atol=r if atol is None else atol, equal_nan=True)


def refused(fn, *args, **kwargs):
    """fn's result, or None when it refuses the input with a clear error (a sentence, not a crash)."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, RuntimeError, TypeError) as e:
        msg = str(e)
        assert len(msg) > 10, f"unclear error: {msg!r}"
        return None


def finite(*ts):
    return all(bool(torch.isfinite(t.double()).all()) for t in ts)


# ------------------------------------------------------------------------------------------- the checks

TV_PAIRWISE = {
    "iou": torchvision.ops.box_iou,
    "giou": torchvision.ops.generalized_box_iou,
    "diou": torchvision.ops.distance_box_iou,
    "ciou": torchvision.ops.complete_box_iou,
}
TV_LOSS = {
    "giou": (detops.generalized_box_iou_loss, torchvision.ops.generalized_box_iou_loss),
    "diou": (detops.distance_box_iou_loss, torchvision.ops.distance_box_iou_loss),
    "ciou": (detops.complete_box_iou_loss, torchvision.ops.complete_box_iou_loss),
}


def _moderate(*ts, limit=1e4):
    """Coordinates where float32 formulas in another order (torchvision's) agree within rounding."""
    return all(bool((t.double().abs() < limit).all()) for t in ts)


@st.composite
def pairwise_args(draw):
    dtype = draw(st.sampled_from(FLOATS + INTS))
    a = draw(boxes_tensor(dtype=dtype))
    b = draw(boxes_tensor(dtype=draw(st.sampled_from((dtype,) * 3 + FLOATS + INTS))))  # mostly one dtype
    if draw(st.booleans()):  # a batch of boxes1 against a shared boxes2
        a = torch.stack([a, a.flip(0)]) if a.shape[0] else a.reshape(2, 0, 4)
    return a, b, draw(st.sampled_from(ref_boxes.MODES))


def check_pairwise(args):
    a, b, mode = args
    got = detops.box_overlap(a, b, mode)
    dtype = torch.promote_types(a.dtype, b.dtype)  # two dtypes promote, as torchvision's arithmetic does
    close(got, ref_boxes.box_overlap(a.to(dtype), b.to(dtype), mode))
    if mode in TV_PAIRWISE:
        assert got.dtype == TV_PAIRWISE[mode](a[..., :1, :], b[:1]).dtype
    if mode in TV_PAIRWISE and a.dtype not in (torch.float16, torch.bfloat16) and _moderate(a, b):
        if not a.is_floating_point() and _moderate(a, b, limit=40000) is False:
            return  # torchvision multiplies integer widths in the integer type: it overflows beyond 46340
        tv = TV_PAIRWISE[mode](a, b)
        # torchvision's CIoU has its own atan and order of operations: a few float32 ulps apart.
        close(got, tv, rtol=1e-4 if mode == "ciou" else None)


@st.composite
def fmt_args(draw):
    dtype = draw(st.sampled_from(FLOATS + INTS))
    return draw(boxes_tensor(dtype=dtype)), draw(boxes_tensor(dtype=dtype)), draw(st.sampled_from(("xywh", "cxcywh")))


def check_fmt(args):
    # Any four numbers are an xywh / cxcywh box: the rows are read as given (areas w * h, as torchvision).
    a, b, fmt = args
    got = detops.box_iou(a, b, fmt=fmt)
    close(got, ref_boxes.box_overlap(a, b, "iou", fmt=fmt))
    if a.dtype not in (torch.float16, torch.bfloat16) and _moderate(a, b, limit=1e4 if a.is_floating_point() else 100):
        close(got, torchvision.ops.box_iou(a, b, fmt=fmt))


@st.composite
def aligned_args(draw):
    dtype = draw(st.sampled_from(FLOATS))
    n = draw(st.integers(0, 6))
    a = draw(boxes_tensor(n=n, dtype=dtype))
    b = draw(boxes_tensor(n=n, dtype=dtype))
    return a, b, draw(st.sampled_from(ref_boxes.MODES))


def check_aligned(args):
    a, b, mode = args
    close(detops.box_iou_aligned(a, b, mode), ref_boxes.box_iou_aligned(a, b, mode))


@st.composite
def loss_args(draw):
    a, b, _ = draw(aligned_args())
    b = b.to(draw(st.sampled_from((b.dtype,) * 3 + FLOATS + INTS)))
    return a, b, draw(st.sampled_from(sorted(TV_LOSS))), draw(st.sampled_from(("none", "sum", "mean")))


def check_loss(args):
    a, b, mode, reduction = args
    ours, theirs = TV_LOSS[mode]
    got = ours(a, b, reduction)
    try:
        want = theirs(a, b, reduction)
    except RuntimeError:  # torchvision's CIoU loss fails on some dtype pairs (an index_put of two dtypes)
        assert got.dtype == torch.promote_types(
            *(t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32 for t in (a, b))
        )
        return
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype == torch.promote_types(a.dtype, b.dtype) and _moderate(a, b) and reduction == "none":
        close(got, want, rtol=1e-4 if mode == "ciou" else None)


@st.composite
def area_convert_args(draw):
    return (
        draw(boxes_tensor(dtypes=FLOATS + INTS)),
        draw(st.sampled_from(("xyxy", "xywh", "cxcywh"))),
        draw(st.sampled_from(("xyxy", "xywh", "cxcywh"))),
    )


def check_area_convert(args):
    boxes, fin, fout = args
    close(detops.box_area(boxes, fin), torchvision.ops.box_area(boxes, fin), rtol=0, atol=0)
    close(detops.box_convert(boxes, fin, fout), torchvision.ops.box_convert(boxes, fin, fout), rtol=0, atol=0)


WEIGHTS = st.sampled_from(((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (0.1, 0.3, 7.0, 1e-3), (-1.0, 2.0, 1.0, 1.0)))


@st.composite
def coding_args(draw):
    dtype = draw(st.sampled_from(FLOATS))
    n = draw(st.integers(0, 6))
    x = draw(boxes_tensor(n=n, dtype=dtype))
    anchors = draw(boxes_tensor(n=n, dtype=dtype))
    if draw(st.booleans()) and n:  # anchors shared by a batch
        x = torch.stack([x, x.flip(0), x])
    clamp = draw(st.sampled_from((ref_coding.DEFAULT_CLAMP, None, 0.0, -1.0)))
    return x, anchors, draw(WEIGHTS), clamp


def check_coding(args):
    x, anchors, weights, clamp = args
    close(detops.encode_boxes(x, anchors, weights), ref_coding.encode_boxes(x, anchors, weights))
    close(detops.decode_boxes(x, anchors, weights, clamp), ref_coding.decode_boxes(x, anchors, weights, clamp))


@st.composite
def nms_args(draw):
    dtype = draw(st.sampled_from(FLOATS))
    n = draw(st.integers(0, 12))
    boxes = draw(boxes_tensor(n=n, dtype=dtype))
    scores = as_tensor(
        [draw(st.one_of(st.floats(0, 1), st.sampled_from((0.5, NAN, INF, -INF)))) for _ in range(n)], dtype, ()
    )
    idxs = torch.tensor([draw(st.sampled_from((0, 1, 2, -7, 2**40))) for _ in range(n)], dtype=torch.int64)
    return boxes, scores, idxs, draw(threshold())


def check_nms(args):
    boxes, scores, idxs, thr = args
    got = refused(detops.nms, boxes, scores, thr)
    if math.isnan(thr):
        assert got is None  # a NaN threshold is refused
        return
    close(got, ref_nms.nms(boxes, scores, thr))
    close(detops.batched_nms(boxes, scores, idxs, thr), ref_nms.batched_nms(boxes, scores, idxs, thr))
    if boxes.dtype in (torch.float32, torch.float64) and finite(boxes, scores) and 0 <= thr <= 1 and _moderate(boxes):
        assert torch.equal(got, torchvision.ops.nms(boxes, scores, thr))


@st.composite
def multiclass_args(draw):
    dtype = draw(st.sampled_from(FLOATS))
    B, P, C = draw(st.integers(0, 2)), draw(st.integers(0, 6)), draw(st.integers(1, 3))
    per_class = draw(st.booleans())
    boxes = as_tensor(draw(box_rows(B * P * (C if per_class else 1))), dtype)
    boxes = boxes.reshape(B, P, C, 4) if per_class else boxes.reshape(B, P, 4)
    scores = as_tensor(
        [draw(st.one_of(st.floats(0, 1), st.sampled_from((0.5, NAN, INF)))) for _ in range(B * P * C)], dtype, ()
    ).reshape(B, P, C)
    return (
        boxes,
        scores,
        draw(st.sampled_from((0.05, 0.0, -1.0, 0.5))),
        draw(threshold()),
        draw(st.integers(0, 8)),
        draw(st.sampled_from((None, 0, 5, -3))),
        draw(st.sampled_from((None, 1, 3))),
    )


def check_multiclass(args):
    boxes, scores, sthr, ithr, k, bg, cap = args
    got = refused(
        detops.multiclass_nms, boxes, scores, sthr, ithr, k, background_class=bg, max_candidates_per_class=cap
    )
    if got is None:
        # NaN thresholds and a background class outside [0, C) are refused, naming the argument.
        assert math.isnan(ithr) or (bg is not None and not 0 <= bg < scores.shape[-1])
        return
    want = ref_nms.multiclass_nms(boxes, scores, sthr, ithr, k, background_class=bg, max_candidates_per_class=cap)
    for g, w in zip(got, want):
        close(g, w, rtol=0, atol=0)


@st.composite
def soft_nms_args(draw):
    boxes, scores, _, thr = draw(nms_args())
    return (
        boxes,
        scores,
        thr,
        draw(st.sampled_from((0.5, 1e-3, 2.0))),
        draw(st.sampled_from((0.001, 0.0, 0.5))),
        draw(st.sampled_from(("linear", "gaussian"))),
    )


def check_soft_nms(args):
    boxes, scores, thr, sigma, sthr, method = args
    got = refused(detops.soft_nms, boxes, scores, thr, sigma, sthr, method)
    if got is None:
        assert math.isnan(thr)
        return
    want = ref_nms.soft_nms(boxes, scores, thr, sigma, sthr, method)
    close(got[0], want[0])
    close(got[1], want[1])


@st.composite
def match_priors_args(draw):
    dtype = draw(st.sampled_from((torch.float32, torch.float64)))
    P = draw(st.integers(0, 6))
    xy = torch.tensor([[draw(st.floats(0, 1)), draw(st.floats(0, 1))] for _ in range(P)], dtype=torch.float64)
    wh = torch.tensor([[draw(st.floats(0.01, 1)), draw(st.floats(0.01, 1))] for _ in range(P)], dtype=torch.float64)
    priors = torch.cat([xy.reshape(P, 2), wh.reshape(P, 2)], 1).to(dtype)
    boxes, labels = [], []
    for _ in range(draw(st.integers(0, 3))):
        g = draw(st.integers(0, 4))
        boxes.append(as_tensor(draw(box_rows(g)), dtype))
        labels.append(torch.tensor([draw(st.sampled_from((0, 1, 2, 20, -1))) for _ in range(g)], dtype=torch.int64))
    return boxes, labels, priors, draw(threshold())


def check_match_priors(args):
    boxes, labels, priors, thr = args
    got = refused(detops.match_priors, boxes, labels, priors, thr)
    valid = (
        all(finite(b) and bool((b[:, 2:] >= b[:, :2]).all()) for b in boxes)
        and all(bool((lab >= 0).all()) for lab in labels)
        and math.isfinite(thr)
    )
    if got is None:
        assert not valid, "valid input refused"
        return
    if not valid or not boxes or not _moderate(*boxes, limit=1e6):
        return
    want = ref_matching.tutorial_match(boxes, labels, priors, thr)
    close(got[0], want[0])
    close(got[1], want[1])
    close(got[2], want[2], rtol=1e-4 if priors.dtype == torch.float32 else 1e-9)


@st.composite
def match_boxes_args(draw):
    dtype = draw(st.sampled_from(FLOATS))
    G, P = draw(st.integers(0, 4)), draw(st.integers(0, 6))
    vals = [draw(st.one_of(st.floats(0, 1), st.sampled_from((0.3, 0.7, NAN, -INF, 2.0)))) for _ in range(G * P)]
    q = as_tensor(vals, dtype, ()).reshape(G, P)
    q = layout(q, draw(st.sampled_from(LAYOUTS)))
    return q, draw(threshold()), draw(threshold()), draw(st.booleans())


def check_match_boxes(args):
    q, high, low, allow = args
    got = refused(detops.match_boxes, q, high, low, allow)
    if got is None:
        assert math.isnan(high) or math.isnan(low) or low > high
        return
    if q.shape[1] == 0:  # no predictions: an empty result (the reference and torchvision raise)
        assert got.shape == (0,)
        return
    close(got, ref_matching.match_boxes(q, high, low, allow))
    if q.shape[0] and not torch.isnan(q).any():
        from torchvision.models.detection._utils import Matcher

        close(got, Matcher(high, low, allow)(q))


@st.composite
def hard_negative_args(draw):
    B, P = draw(st.integers(0, 3)), draw(st.integers(0, 8))
    dtype = draw(st.sampled_from(FLOATS))
    loss = as_tensor(
        [draw(st.one_of(st.floats(0, 10), st.sampled_from((0.0, -0.0, NAN, INF, 1e-40)))) for _ in range(B * P)],
        dtype,
        (),
    ).reshape(B, P)
    pos = torch.tensor([draw(st.booleans()) for _ in range(B * P)], dtype=torch.bool).reshape(B, P)
    return loss, pos, draw(st.integers(0, 4))


def check_hard_negatives(args):
    loss, pos, ratio = args
    close(detops.hard_negative_mining(loss, pos, ratio), ref_hard_negatives.hard_negative_mining(loss, pos, ratio))


@st.composite
def cross_entropy_args(draw):
    dtype = draw(st.sampled_from(FLOATS))
    n, C = draw(st.integers(0, 5)), draw(st.integers(1, 4))
    logits = as_tensor(
        [draw(st.one_of(st.floats(-30, 30), st.sampled_from((0.0, 1e4, -1e4, INF, -INF, NAN)))) for _ in range(n * C)],
        dtype,
        (),
    ).reshape(n, C)
    targets = torch.tensor([draw(st.integers(-1, C)) for _ in range(n)], dtype=torch.int64)
    return layout(logits, draw(st.sampled_from(LAYOUTS))), targets


def check_cross_entropy(args):
    logits, targets = args
    got = refused(detops.softmax_cross_entropy, logits, targets)
    in_range = bool(((targets >= 0) & (targets < logits.shape[-1])).all())
    if got is None:
        assert not in_range, "valid targets refused"
        return
    assert in_range, "out-of-range targets accepted on the CPU"
    want = ref_hard_negatives.softmax_cross_entropy(logits, targets)
    close(got, want, atol=RTOL[logits.dtype] * 10)
    if logits.dtype in (torch.float32, torch.float64):
        close(got, F.cross_entropy(logits, targets, reduction="none"), atol=1e-5)


@st.composite
def yolo_args(draw):
    dtype = draw(st.sampled_from(FLOATS))
    B, N, C = draw(st.integers(0, 2)), draw(st.integers(0, 5)), draw(st.integers(1, 3))
    objectness = draw(st.booleans())
    D = 4 + int(objectness) + C
    vals = [draw(st.one_of(st.floats(0, 1), st.sampled_from((0.25, NAN, INF, -1.0, 1e30)))) for _ in range(B * N * D)]
    return as_tensor(vals, dtype, ()).reshape(B, N, D), draw(threshold()), objectness


def check_yolo(args):
    pred, conf, objectness = args
    got = refused(torch.ops.detops.yolo_candidates, pred, conf, objectness)
    if got is None:
        assert not 0 <= conf <= 1  # NaN too
        return
    want = ref_yolo.yolo_candidates(pred, conf, objectness)
    for g, w in zip(got, want):
        close(g, w)


@st.composite
def rotated_args(draw):
    dtype = draw(st.sampled_from((torch.float32, torch.float64)))

    def boxes(n):
        rows = []
        for _ in range(n):
            c = [draw(st.floats(-100, 100)) for _ in range(2)]
            wh = [draw(st.one_of(st.floats(0.05, 60), st.sampled_from((0.0, 0.05)))) for _ in range(2)]
            rows.append(c + wh + [draw(st.one_of(st.floats(-720, 720), st.sampled_from((0.0, 90.0, -180.0, 1e6))))])
        return torch.tensor(rows, dtype=torch.float64).reshape(n, 5)

    a = boxes(draw(st.integers(0, 4)))
    # Some second boxes are copies of the first ones: identical boxes must give exactly 1. (Near-identical
    # pairs are tested against shapely in test_rotated.py: the reference's point-in-polygon tolerance makes it
    # less accurate there than the kernel.)
    b = torch.cat([boxes(draw(st.integers(0, 3))), a[: draw(st.integers(0, a.shape[0]))]])
    return a.to(dtype), b.to(dtype)


def check_rotated(args):
    a, b = args
    got = detops.box_iou_rotated(a, b)
    want = ref_rotated.box_iou_rotated(a.double(), b.double()).to(a.dtype)
    assert bool(((got >= 0) & (got <= 1)).all()), got
    # float64 to 1e-8: the reference's point-in-polygon tolerance (relative to the sides) limits its own accuracy
    # on small boxes far from the origin; test_rotated.py checks those against shapely.
    close(got, want, atol=1e-8 if a.dtype == torch.float64 else 3e-4, rtol=0)


@st.composite
def focal_args(draw):
    dtype = draw(st.sampled_from(FLOATS))
    n = draw(st.integers(0, 6))
    logits = [
        draw(st.one_of(st.floats(-30, 30), st.sampled_from((0.0, 100.0, -100.0, INF, -INF, NAN)))) for _ in range(n)
    ]
    targets = [draw(st.one_of(st.sampled_from((0.0, 1.0)), st.floats(0, 1))) for _ in range(n)]
    alpha = draw(st.sampled_from((0.25, -1.0, 0.5)))
    gamma = draw(st.sampled_from((0.0, 1.5, 2.0)))
    reduction = draw(st.sampled_from(("none", "sum", "mean")))
    return (
        torch.tensor(logits, dtype=torch.float64).to(dtype),
        torch.tensor(targets, dtype=torch.float64).to(dtype),
        alpha,
        gamma,
        reduction,
    )


def check_focal(args):
    x, t, alpha, gamma, reduction = args
    got = detops.sigmoid_focal_loss(x, t, alpha, gamma, reduction)
    close(got, ref_focal_loss.sigmoid_focal_loss(x, t, alpha, gamma, reduction))
    if x.dtype in (torch.float32, torch.float64):
        close(got, torchvision.ops.sigmoid_focal_loss(x, t, alpha, gamma, reduction))


@dataclass
class Case:
    name: str
    args: Callable  # () -> a hypothesis strategy of the check's argument
    check: Callable  # (args) -> None, raising AssertionError on a disagreement
    examples: Optional[int] = None  # the CI budget for this op, when not the profile's


CASES = [
    Case("box_overlap", pairwise_args, check_pairwise, 60),
    Case("box_iou_fmt", fmt_args, check_fmt),
    Case("box_iou_aligned", aligned_args, check_aligned),
    Case("iou_losses", loss_args, check_loss),
    Case("box_area_convert", area_convert_args, check_area_convert),
    Case("box_coding", coding_args, check_coding, 60),
    Case("nms_batched_nms", nms_args, check_nms, 60),
    Case("multiclass_nms", multiclass_args, check_multiclass),
    Case("soft_nms", soft_nms_args, check_soft_nms),
    Case("match_priors", match_priors_args, check_match_priors),
    Case("match_boxes", match_boxes_args, check_match_boxes),
    Case("hard_negative_mining", hard_negative_args, check_hard_negatives),
    Case("softmax_cross_entropy", cross_entropy_args, check_cross_entropy),
    Case("yolo_candidates", yolo_args, check_yolo),
    Case("box_iou_rotated", rotated_args, check_rotated),
    Case("sigmoid_focal_loss", focal_args, check_focal),
]


def _budgeted(case):
    """The profile's budget, scaled for ops that CASES gives a larger one (in every profile)."""
    base = settings().max_examples
    n = base if case.examples is None else max(base, case.examples * base // 40)
    return settings(max_examples=n, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_agrees_with_reference(case):
    @_budgeted(case)
    @given(case.args())
    def run(args):
        case.check(args)

    run()


# ------------------------------------------------------------------ COCO evaluation against pycocotools

# Box sides from tiny to beyond COCO's "large" range (1e5 x 1e5 is the area ranges' upper end, 1e10).
COCO_SIDES = (1e-3, 0.5, 4.0, 20.0, 31.9, 32.0, 60.0, 96.0, 150.0, 1e5)
COCO_SCORES = (0.05, 0.5, 0.5, 0.5, 0.9, 1.0)  # repeated values: ties in the ranking


@st.composite
def coco_box(draw, near=None):
    if near is not None and draw(st.booleans()):  # a detection on (or next to) a ground-truth box
        x1, y1, x2, y2 = near
        d = draw(st.sampled_from((0.0, 0.0, 1.0, -2.0, 5.0)))
        return [x1 + d, y1, x2 + d, y2 + abs(d)]
    x, y = draw(st.sampled_from((0.0, 0.0, 10.0, 12.0, 50.0))), draw(st.sampled_from((0.0, 5.0, 40.0)))
    return [x, y, x + draw(st.sampled_from(COCO_SIDES)), y + draw(st.sampled_from(COCO_SIDES))]


@st.composite
def coco_sets(draw):
    """(preds, target) in MeanAveragePrecision's format: 1-4 images, up to 3 classes (some with ground truth or
    detections only), crowds, given areas, empty images, tied scores, tiny and huge boxes."""
    labels = st.sampled_from((1, 2, 7))
    preds, target = [], []
    for _ in range(draw(st.integers(1, 4))):
        gt = [draw(coco_box()) for _ in range(draw(st.integers(0, 4)))]
        t = {
            "boxes": torch.tensor(gt, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([draw(labels) for _ in gt], dtype=torch.int64),
            "iscrowd": torch.tensor([int(draw(st.integers(0, 3)) == 0) for _ in gt], dtype=torch.int64),
        }
        if gt and draw(st.booleans()):  # COCO's own "area" (a segmentation's), not the box's
            t["area"] = torch.tensor([draw(st.sampled_from((0.0, 100.0, 1024.0, 5000.0, 1e6))) for _ in gt])
        dt = [draw(coco_box(near=draw(st.sampled_from(gt)) if gt else None)) for _ in range(draw(st.integers(0, 6)))]
        preds.append(
            {
                "boxes": torch.tensor(dt, dtype=torch.float32).reshape(-1, 4),
                "scores": torch.tensor([draw(st.sampled_from(COCO_SCORES)) for _ in dt], dtype=torch.float32),
                "labels": torch.tensor([draw(labels) for _ in dt], dtype=torch.int64),
            }
        )
        target.append(t)
    return preds, target


def test_coco_evaluation_agrees_with_pycocotools():
    """The twelve numbers, per-class AP and the precision / recall / scores arrays of
    detops.metrics.MeanAveragePrecision equal pycocotools' (to 1e-9) on generated small sets."""
    pytest.importorskip("pycocotools")
    import test_metrics_coco as coco_tests

    @settings(
        max_examples=max(settings().max_examples, 60 * settings().max_examples // 40),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(coco_sets())
    def run(sets):
        preds, target = sets
        got = coco_tests._evaluate(preds, target)
        if not any(len(d["labels"]) for d in preds + target):  # no class at all: pycocotools has nothing to do
            assert float(got["map"]) == -1
            return
        coco_tests._assert_equal_to_pycocotools(got, coco_tests._pycocotools(*coco_tests._coco_dicts(preds, target)))

    run()
