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
    return 0.5 * abs(
        sum(
            hull[i][0] * hull[(i + 1) % len(hull)][1] - hull[(i + 1) % len(hull)][0] * hull[i][1]
            for i in range(len(hull))
        )
    )


def intersection_area(a, b):
    """Area common to two rotated boxes (w, h > 0, finite), float64."""
    # Relative to a's centre: the area does not depend on where the pair is, and huge coordinates would
    # otherwise cost the cross products their precision.
    ox, oy = float(a[0]), float(a[1])
    a = [0.0, 0.0, *(float(v) for v in a[2:])]
    b = [float(b[0]) - ox, float(b[1]) - oy, *(float(v) for v in b[2:])]
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
    out = torch.tensor(
        [[[iou_pair(x.tolist(), y.tolist()) for y in be] for x in ae] for ae, be in zip(a, b)], dtype=torch.float64
    ).reshape(*lead, boxes1.shape[-2], boxes2.shape[-2])
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


def _valid_rotated(box, score):
    return not math.isnan(score) and all(math.isfinite(v) for v in box)


def multiclass_nms_rotated(
    boxes,
    scores,
    score_threshold=0.05,
    iou_threshold=0.5,
    max_detections=100,
    *,
    background_class=None,
    max_candidates_per_class=None,
):
    """Reference of :func:`detops.multiclass_nms_rotated`: per image and class, the candidates with a score
    strictly above the threshold in rank order (capped), a greedy loop keeping at most K; then each image's K
    best by decreasing score, lower class, lower prior index; padding 0 / 0 / -1."""
    out_dtype = scores.dtype
    dtype = compute_dtype(scores.dtype)
    bx, sc = boxes.to(dtype), scores.to(dtype)
    n_img, n_prior, n_cls = sc.shape
    cap = n_prior if max_candidates_per_class is None else min(n_prior, max_candidates_per_class)
    k_max = min(max_detections, max(0, n_cls - (0 if background_class is None else 1)) * cap)
    out_boxes = torch.zeros(n_img, k_max, 5, dtype=dtype)
    out_scores = torch.zeros(n_img, k_max, dtype=dtype)
    out_labels = torch.full((n_img, k_max), -1, dtype=torch.int64)
    counts = torch.zeros(n_img, dtype=torch.int64)
    for b in range(n_img):
        dets = []  # (score, class, prior)
        for c in range(n_cls):
            if c == background_class:
                continue
            cb = (bx[b, :, c] if bx.dim() == 4 else bx[b]).tolist()
            s = sc[b, :, c].tolist()
            cand = [i for i in range(n_prior) if s[i] > score_threshold and _valid_rotated(cb[i], s[i])]
            order = sorted(cand, key=lambda i: (-s[i], i))[:cap]
            keep = []
            for i in order:
                if len(keep) >= k_max:
                    break
                if all(_iou_in(cb[k], cb[i], dtype) <= iou_threshold for k in keep):
                    keep.append(i)
            dets += [(s[i], c, i) for i in keep]
        dets = sorted(dets, key=lambda d: (-d[0], d[1], d[2]))[:k_max]
        counts[b] = len(dets)
        for k, (score, c, prior) in enumerate(dets):
            out_boxes[b, k] = bx[b, prior, c] if bx.dim() == 4 else bx[b, prior]
            out_scores[b, k] = score
            out_labels[b, k] = c
    dev = scores.device
    return out_boxes.to(dev, out_dtype), out_scores.to(dev, out_dtype), out_labels.to(dev), counts.to(dev)


def soft_nms_rotated(boxes, scores, iou_threshold=0.3, sigma=0.5, score_threshold=0.001, method="gaussian"):
    """Reference of :func:`detops.soft_nms_rotated`: repeatedly select the remaining box with the highest
    current score (ties: lower index) while it is >= score_threshold, and decay every other remaining box by
    the weight of its rotated IoU with it (computed in the kernels' dtype); drop boxes that fall below."""
    if method not in ("linear", "gaussian"):
        raise ValueError(f"method must be 'linear' or 'gaussian', got {method!r}")
    out_dtype = scores.dtype
    dtype = compute_dtype(scores.dtype)
    bx = boxes.to(dtype).tolist()
    cur = scores.to("cpu", dtype).clone()
    alive = [i for i in range(len(bx)) if _valid_rotated(bx[i], float(cur[i]))]
    thr = torch.tensor(iou_threshold, dtype=dtype)
    keep, kept_scores = [], []
    while alive:
        vals = cur[alive]
        best = int(torch.argmax(vals))  # the first maximum: the lowest index among ties
        if not bool(vals[best] >= score_threshold):
            break
        i = alive.pop(best)
        keep.append(i)
        kept_scores.append(cur[i].clone())
        for j in alive:
            ov = torch.tensor(iou_pair(bx[i], bx[j]), dtype=torch.float64).to(dtype)
            w = (1 - ov if ov > thr else torch.ones_like(ov)) if method == "linear" else torch.exp(-(ov * ov) / sigma)
            cur[j] = cur[j] * w
        alive = [j for j in alive if bool(cur[j] >= score_threshold)]
    scores_t = torch.stack(kept_scores) if kept_scores else cur.new_empty(0)
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device), scores_t.to(boxes.device, out_dtype)
