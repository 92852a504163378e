"""Reference rotated-box ops (kernels: csrc/cpu/rotated.cpp, csrc/cuda/rotated.cu), in float64 Python.

The intersection is found differently from the kernels (which clip one box by the other's edges): the convex
hull of the corners of each box that lie in the other box and of the points where edges cross, so the two
agree only if both are right. The rules (docs/rotated.md) are the kernels': NaN or infinite values give NaN,
a box with w <= 0 or h <= 0 gives 0, boxes equal in all five values give exactly 1.
"""

import math

import torch

from detops.reference import compute_dtype
from detops.reference.boxes import result_dtype


def corners(box):
    """The four corners of (cx, cy, w, h, angle in degrees), in torchvision's order, as float64 tuples."""
    cx, cy, w, h, a = (float(v) for v in box)
    r = math.radians(math.fmod(a, 360.0))
    c, s = math.cos(r), math.sin(r)
    x1 = cx - w / 2 * c - h / 2 * s
    y1 = cy - h / 2 * c + w / 2 * s
    x2, y2 = x1 + w * c, y1 - w * s
    x3, y3 = x2 + h * s, y2 + h * c
    return [(x1, y1), (x2, y2), (x3, y3), (x1 + h * s, y1 + h * c)]


def _cross(o, a, b):
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _inside(p, poly, tol):
    # poly is counter-clockwise (y up): inside means left of (or on, within tol) every edge.
    return all(_cross(poly[i], poly[(i + 1) % 4], p) >= -tol for i in range(4))


def _crossing(p1, p2, q1, q2):
    d = (p2[0] - p1[0]) * (q2[1] - q1[1]) - (p2[1] - p1[1]) * (q2[0] - q1[0])
    if d == 0:
        return None  # parallel: shared stretches are covered by the corners inside the other box
    t = ((q1[0] - p1[0]) * (q2[1] - q1[1]) - (q1[1] - p1[1]) * (q2[0] - q1[0])) / d
    u = ((q1[0] - p1[0]) * (p2[1] - p1[1]) - (q1[1] - p1[1]) * (p2[0] - p1[0])) / d
    if -1e-12 <= t <= 1 + 1e-12 and -1e-12 <= u <= 1 + 1e-12:
        return (p1[0] + t * (p2[0] - p1[0]), p1[1] + t * (p2[1] - p1[1]))
    return None


def _hull_area(points):
    pts = sorted(set(points))
    if len(pts) < 3:
        return 0.0
    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and _cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and _cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = lower[:-1] + upper[:-1]
    return 0.5 * abs(sum(hull[i][0] * hull[(i + 1) % len(hull)][1] - hull[(i + 1) % len(hull)][0] * hull[i][1]
                         for i in range(len(hull))))


def intersection_area(a, b):
    """Area common to two rotated boxes (w, h > 0, finite), float64."""
    pa, pb = corners(a), corners(b)
    scale = max(abs(float(v)) for v in (*a[2:4], *b[2:4])) ** 2
    tol = 1e-12 * scale
    pts = [p for p in pa if _inside(p, pb, tol)] + [p for p in pb if _inside(p, pa, tol)]
    for i in range(4):
        for j in range(4):
            x = _crossing(pa[i], pa[(i + 1) % 4], pb[j], pb[(j + 1) % 4])
            if x is not None:
                pts.append(x)
    return _hull_area(pts)


def iou_pair(a, b):
    """Rotated IoU of two (cx, cy, w, h, angle) boxes under the kernels' rules, as a Python float."""
    a = [float(v) for v in a]
    b = [float(v) for v in b]
    if not all(math.isfinite(v) for v in a + b):
        return math.nan
    if not (a[2] > 0 and a[3] > 0 and b[2] > 0 and b[3] > 0):
        return 0.0
    if a == b:
        return 1.0
    area_a, area_b = a[2] * a[3], b[2] * b[3]
    inter = min(max(intersection_area(a, b), 0.0), area_a, area_b)
    return inter / (area_a + area_b - inter)


def box_iou_rotated(boxes1, boxes2):
    """Pairwise rotated IoU: boxes1[..., N, 5], boxes2[..., M, 5] -> [..., N, M] (kernel dtype rule)."""
    dtype = compute_dtype(boxes1.dtype)
    lead = torch.broadcast_shapes(boxes1.shape[:-2], boxes2.shape[:-2])
    batch = math.prod(lead)  # not -1: ambiguous when a side is empty
    a = boxes1.to(dtype).expand(*lead, *boxes1.shape[-2:]).reshape(batch, boxes1.shape[-2], 5)
    b = boxes2.to(dtype).expand(*lead, *boxes2.shape[-2:]).reshape(batch, boxes2.shape[-2], 5)
    out = torch.tensor([[[iou_pair(x.tolist(), y.tolist()) for y in be] for x in ae] for ae, be in zip(a, b)],
                       dtype=torch.float64).reshape(*lead, boxes1.shape[-2], boxes2.shape[-2])
    return out.to(result_dtype(boxes1.dtype, False))


def box_iou_rotated_aligned(boxes1, boxes2):
    """Aligned rotated IoU: boxes1[..., 5], boxes2[..., 5] of one shape -> [...]."""
    dtype = compute_dtype(boxes1.dtype)
    a, b = boxes1.to(dtype).reshape(-1, 5), boxes2.to(dtype).reshape(-1, 5)
    out = torch.tensor([iou_pair(x.tolist(), y.tolist()) for x, y in zip(a, b)], dtype=torch.float64)
    return out.reshape(boxes1.shape[:-1]).to(result_dtype(boxes1.dtype, True))


def batched_nms_rotated(boxes, scores, idxs, iou_threshold):
    """Greedy rotated NMS within categories: the per-box loop, in rank order (decreasing score, ties by lower
    index), skipping boxes with a NaN score or a non-finite value; IoU in the kernels' compute dtype."""
    dtype = compute_dtype(boxes.dtype)
    bx = boxes.to(dtype).tolist()
    sc = scores.to(dtype).tolist()
    cls = idxs.tolist()
    valid = [i for i in range(len(bx)) if not math.isnan(sc[i]) and all(math.isfinite(v) for v in bx[i])]
    order = sorted(valid, key=lambda i: (-sc[i], i))
    keep = []
    for i in order:
        if all(cls[k] != cls[i] or _iou_in(bx[k], bx[i], dtype) <= iou_threshold for k in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)


def _iou_in(a, b, dtype):
    # The IoU rounded to the compute dtype, as the kernels compare it with the threshold.
    return torch.tensor(iou_pair(a, b), dtype=torch.float64).to(dtype).item()


def nms_rotated(boxes, scores, iou_threshold):
    return batched_nms_rotated(boxes, scores, torch.zeros(boxes.shape[0], dtype=torch.int64), iou_threshold)
