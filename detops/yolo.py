"""YOLO post-processing on top of detops' batched NMS: ``[x1, y1, x2, y2, confidence, class]`` per image.

Heads:

* YOLOv3/v5 style ``[B, N, 5 + C]``: ``(cx, cy, w, h, objectness, class probabilities...)``; confidence is
  objectness x class probability, and a prediction needs objectness > ``conf_thres`` as well.
* YOLOv8 style ``[B, 4 + C, N]``: ``(cx, cy, w, h, class probabilities...)`` channels first, no objectness.
* YOLO-OBB (``rotated=True``) ``[B, 4 + C + 1, N]``: the v8 layout with the angle in radians last; see
  :func:`non_max_suppression` for its two suppression rules (exact rotated IoU, or ultralytics' probIoU).

The layout is read from the shape when predictions clearly outnumber channels; a head whose two last
dimensions are within a factor of 2 (``[1, 84, 84]``: YOLOv8 at image size 64) needs ``head=``. A tuple or
list (what ultralytics models return) is read as its first element.

Best class per prediction (the default): one native pass (``torch.ops.detops.yolo_candidates``) scores the
whole batch, then one native ``batched_nms`` call suppresses (categories = image x class, or image alone
when class-agnostic). Multi-label, per class: ``multiclass_nms`` on the batch's dense class scores, which is
exactly its rule (per image and class: threshold, NMS; then the best ``max_det`` per image). No per-image
Python loop and no time limit that silently drops images.
"""

import math
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor

from detops.nms import batched_nms, multiclass_nms
from detops.rotated import batched_nms_rotated

# ultralytics' class offset in pixels (its ``max_wh``): boxes of class k move by k * 7680 before its NMS.
ULTRALYTICS_MAX_WH = 7680.0
OVERLAPS = ("iou", "probiou")


def xywh_to_xyxy(xywh: Tensor) -> Tensor:
    """Center-size ``(cx, cy, w, h)`` to corners ``(x1, y1, x2, y2)``, as YOLO code computes it."""
    half = xywh[..., 2:4] / 2
    return torch.cat([xywh[..., :2] - half, xywh[..., :2] + half], dim=-1)


def _as_prediction(prediction) -> Tensor:
    if isinstance(prediction, (tuple, list)):  # ultralytics models return (inference output, features)
        if not prediction:
            raise ValueError(
                "prediction is an empty tuple or list; expected a head Tensor (or a tuple whose first "
                "element is one, as ultralytics models return)"
            )
        prediction = prediction[0]
    if not isinstance(prediction, Tensor):
        raise TypeError(
            f"prediction must be a Tensor, or a tuple or list whose first element is one, got "
            f"{type(prediction).__name__}"
        )
    return prediction


def _head_layout(prediction: Tensor, head: Optional[str]) -> str:
    if head is None:
        rows, cols = prediction.shape[1], prediction.shape[2]
        if max(rows, cols) < 2 * min(rows, cols):
            # Both readings are valid shapes, and nothing in the values tells them apart.
            raise ValueError(
                f"prediction of shape {list(prediction.shape)} is ambiguous: it reads as a v5 head [B, N, 5 + C] "
                "and as a v8 head [B, 4 + C, N]; pass head='v5' or head='v8'"
            )
        head = "v8" if rows < cols else "v5"
    if head not in ("v5", "v8"):
        raise ValueError(f"head must be 'v5' ([B, N, 5 + C]), 'v8' ([B, 4 + C, N]) or None (auto), got {head!r}")
    return head


def _check(prediction: Tensor, conf_thres: float, iou_thres: float, max_det: int) -> None:
    if prediction.dim() != 3:
        raise ValueError(f"prediction must be [B, N, 5 + C] or [B, 4 + C, N], got shape {list(prediction.shape)}")
    if not 0.0 <= conf_thres <= 1.0:
        raise ValueError(f"conf_thres must be in [0, 1], got {conf_thres}")
    if not 0.0 <= iou_thres <= 1.0:
        raise ValueError(f"iou_thres must be in [0, 1], got {iou_thres}")
    if max_det < 0:
        raise ValueError(f"max_det must be >= 0, got {max_det}")


def candidates(prediction: Tensor, conf_thres: float, multi_label: bool, classes: Optional[Sequence[int]], head: str):
    """(image, corner box, confidence, class) of every candidate above the threshold, for the whole batch."""
    pred = prediction.transpose(1, 2) if head == "v8" else prediction  # [B, N, 4 (+1) + C], a view
    objectness = head == "v5"
    if not multi_label:
        # One native pass: objectness test, class max with its first index, threshold, corners.
        rows, boxes, conf, cls = torch.ops.detops.yolo_candidates(pred, conf_thres, objectness)
        img = torch.div(rows, pred.shape[1], rounding_mode="floor")
    else:
        if objectness:
            obj_ok = pred[..., 4] > conf_thres
            scores = pred[..., 5:] * (pred[..., 4:5] * obj_ok[..., None])  # failing rows score 0
        else:
            scores = pred[..., 4:]
        img, box, cls = torch.nonzero(scores > conf_thres, as_tuple=True)
        conf = scores[img, box, cls]
        boxes = xywh_to_xyxy(pred[img, box, :4])
    if classes is not None:
        ok = torch.isin(cls, torch.as_tensor(list(classes), device=cls.device))
        img, boxes, cls, conf = img[ok], boxes[ok], cls[ok], conf[ok]
    return img, boxes, conf, cls


def _multi_label_by_class(
    prediction: Tensor,
    head: str,
    conf_thres: float,
    iou_thres: float,
    classes: Optional[Sequence[int]],
    max_det: int,
    max_candidates: int,
) -> List[Tensor]:
    """Multi-label, per-class NMS for the batch through one multiclass_nms call on the dense class scores."""
    pred = prediction.transpose(1, 2) if head == "v8" else prediction
    owned = head == "v5" or classes is not None  # scores is a new tensor, not a view of the prediction
    if head == "v5":
        obj = pred[..., 4:5]
        scores = pred[..., 5:] * (obj * (obj > conf_thres))  # objectness filter: failing rows score 0
    else:
        scores = pred[..., 4:]
    if classes is not None:
        wanted = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
        in_range = [c for c in classes if 0 <= c < scores.shape[-1]]  # as a filter: other ids match nothing
        wanted[torch.as_tensor(in_range, dtype=torch.long, device=scores.device)] = True
        scores = scores * wanted  # unwanted classes score 0, never above a threshold >= 0
    scores = _cap_candidates_per_image(scores, conf_thres, max_candidates, owned)
    boxes = xywh_to_xyxy(pred[..., :4])
    out_boxes, out_scores, labels, counts = multiclass_nms(boxes, scores, conf_thres, iou_thres, max_det)
    out = torch.cat([out_boxes, out_scores[..., None], labels[..., None].to(out_boxes.dtype)], dim=-1)
    return [out[b, :n] for b, n in enumerate(counts.tolist())]


def _cap_candidates_per_image(scores: Tensor, conf_thres: float, limit: int, owned: bool) -> Tensor:
    """scores [B, N, C] with every candidate (score > conf_thres) past an image's `limit` best set to 0: YOLO's
    per-image cap before NMS (max_nms), in its order (decreasing score; ties in (prediction, class) order, as
    its stable sort of the candidates leaves them). multiclass_nms can only cap per class. `owned`: scores is
    this module's own tensor, which may be written in place."""
    batch = scores.shape[0]
    flat = scores.reshape(batch, -1)
    candidate = flat > conf_thres
    over = torch.nonzero(torch.count_nonzero(candidate, dim=1) > limit).flatten().tolist()
    if not over:
        return scores
    if flat.data_ptr() == scores.data_ptr() and not owned:
        flat = flat.clone()  # a view of the caller's prediction: never written to
    for b in over:
        row = flat[b]
        where = torch.nonzero(candidate[b]).flatten()  # this image's candidates, in (prediction, class) order
        values = row.index_select(0, where)
        if limit == 0:
            row.index_fill_(0, where, 0)
            continue
        last = -torch.kthvalue(-values, limit).values  # the limit-th best (a selection over candidates only)
        above = values > last
        tied = values == last
        room = limit - int(above.sum())  # how many of the tied ones still fit: the first in order
        row.index_copy_(0, where, torch.where(above | (tied & (torch.cumsum(tied, 0) <= room)), values, 0))
    return flat.view(scores.shape)


def _first_per_image(img: Tensor, order: Tensor, limit: int, batch: int) -> Tensor:
    """The first `limit` entries of each image in `order` (ranked), grouped image-major, rank kept within.

    A stable sort by image keeps each image's entries in rank order; an entry's rank within its image is then
    its position less the image's start. (A cumulative count over an [images, n] membership matrix, used
    before, took 6 ms for 40k entries; the sort takes 0.6 ms.)
    """
    key = img[order]
    by_image = torch.sort(key, stable=True)
    grouped = order[by_image.indices]
    counts = torch.bincount(key, minlength=batch)
    starts = torch.cumsum(counts, 0) - counts
    within = torch.arange(order.numel(), device=order.device) - starts[by_image.values]
    return grouped[within < limit]


def non_max_suppression(
    prediction: Union[Tensor, Sequence[Tensor]],
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: Optional[Sequence[int]] = None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 300,
    max_candidates: int = 30000,
    head: Optional[str] = None,
    rotated: bool = False,
    overlap: str = "iou",
) -> List[Tensor]:
    """YOLO NMS for a whole batch.

    Args:
        prediction (Tensor[B, N, 5 + C], Tensor[B, 4 + C, N] or, rotated, Tensor[B, 4 + C + 1, N]): raw head
            output after sigmoid (boxes center-size in pixels, probabilities in [0, 1]); see the module docs for
            the layouts. A tuple or list (an ultralytics model's output) is read as its first element.
        conf_thres (float): in [0, 1]; candidates need confidence (and, for v5 heads, objectness) above it.
        iou_thres (float): in [0, 1]; NMS threshold (suppress when IoU > iou_thres).
        classes (sequence of int, optional): keep only these classes.
        agnostic (bool): NMS across classes instead of within each class.
        multi_label (bool): every class above the threshold is a candidate (else the best class only).
        max_det (int): detections kept per image.
        max_candidates (int): per image, only this many highest-confidence candidates enter NMS (YOLOv5's
            ``max_nms``).
        head (str, optional): ``"v5"`` or ``"v8"``; by default ``"v8"`` when ``shape[2] >= 2 * shape[1]``,
            ``"v5"`` when ``shape[1] >= 2 * shape[2]``; anything in between is ambiguous and raises a
            ValueError asking for ``head``. Rotated heads are always ``[B, 4 + C + 1, N]``.
        rotated (bool): a YOLO-OBB head, the angle in radians in the last channel (ultralytics' OBB models).
        overlap (str): rotated heads only. ``"iou"`` (default): exact rotated IoU and greedy NMS
            (``detops.rotated.batched_nms_rotated``). ``"probiou"``: ultralytics' own OBB rule, for the same
            detections as ``ultralytics.utils.nms.non_max_suppression(..., rotated=True)``: probIoU overlaps
            (Gaussian boxes) with Fast-NMS (a box is dropped when any higher-ranked box of its class overlaps
            it above ``iou_thres``, itself suppressed or not), its candidate cap, its sort and tie order, its
            class offset of 7680 px, float16/bfloat16 computed and returned in float32.

    Returns:
        list of B Tensors[n, 6]: ``[x1, y1, x2, y2, confidence, class]`` by decreasing confidence (ties: lower
        prediction index; multi-label and not agnostic, as multiclass_nms orders them: lower class, then lower
        prediction index), n <= max_det; an image without detections gives a ``[0, 6]`` tensor. Rotated:
        Tensors[n, 7] ``[cx, cy, w, h, confidence, class, angle in radians]`` (ultralytics' OBB layout), ties
        by lower prediction index (with ``"probiou"``, in ultralytics' order).
    """
    prediction = _as_prediction(prediction)
    _check(prediction, conf_thres, iou_thres, max_det)
    if overlap not in OVERLAPS:
        raise ValueError(f"overlap must be one of {OVERLAPS}, got {overlap!r}")
    if rotated:
        if head not in (None, "v8"):
            raise ValueError(f"rotated heads are [B, 4 + C + 1, N] (head='v8' or None), got head={head!r}")
        return _obb_nms(
            prediction, conf_thres, iou_thres, classes, agnostic, multi_label, max_det, max_candidates, overlap
        )
    if overlap != "iou":
        raise ValueError(f"overlap={overlap!r} is for rotated heads (rotated=True) only")
    head = _head_layout(prediction, head)
    batch = prediction.shape[0]
    num_classes = prediction.shape[1] - 4 if head == "v8" else prediction.shape[2] - 5
    if num_classes <= 0:
        raise ValueError(f"prediction has no class channels (head {head}, shape {list(prediction.shape)})")
    if multi_label and not agnostic and batch > 0 and max_det > 0:
        return _multi_label_by_class(prediction, head, conf_thres, iou_thres, classes, max_det, max_candidates)
    img, boxes, conf, cls = candidates(prediction, conf_thres, multi_label, classes, head)
    if conf.numel() > max_candidates and int(torch.bincount(img, minlength=batch).max()) > max_candidates:
        img, boxes, conf, cls = _cap(max_candidates, batch, img, conf, img, boxes, conf, cls)
    groups = img if agnostic else img * num_classes + cls
    keep = batched_nms(boxes, conf, groups, iou_thres)
    keep = _first_per_image(img, keep, max_det, batch)
    out = torch.cat([boxes, conf[:, None], cls[:, None].to(boxes.dtype)], dim=1)[keep]
    counts = torch.bincount(img[keep], minlength=batch).tolist()
    return list(torch.split(out, counts))


def _cap(limit: int, batch: int, img: Tensor, conf: Tensor, *columns: Tensor):
    """The columns of each image's `limit` best candidates (decreasing confidence, ties by lower index), in
    their original order."""
    ranked = torch.sort(conf, descending=True, stable=True).indices
    sel = torch.sort(_first_per_image(img, ranked, limit, batch)).values
    return tuple(c[sel] for c in columns)


# ------------------------------------------------------------------------------------------ YOLO-OBB


def _obb_candidates(
    pred: Tensor, conf_thres: float, multi_label: bool, classes: Optional[Sequence[int]], dtype: torch.dtype
):
    """Candidates of a [B, N, 4 + C + 1] head (a view): image, rows [K, 7] (cx, cy, w, h, conf, class, angle)
    in `dtype`, image-major in (prediction[, class]) order. A prediction whose class scores hold a NaN is no
    candidate (its best score is NaN), in both modes, as ultralytics."""
    batch, n, width = pred.shape
    scores = pred[..., 4 : width - 1]
    if not multi_label:
        flat, _, conf, cls = torch.ops.detops.yolo_candidates(pred[..., : width - 1], conf_thres, False)
        img = torch.div(flat, n, rounding_mode="floor")
        idx = flat - img * n
    else:
        ok = scores.amax(-1) > conf_thres
        img, idx, cls = torch.nonzero((scores > conf_thres) & ok[..., None], as_tuple=True)
        conf = scores[img, idx, cls]
    if classes is not None:
        wanted = torch.isin(cls, torch.as_tensor(list(classes), dtype=cls.dtype, device=cls.device))
        img, idx, conf, cls = img[wanted], idx[wanted], conf[wanted], cls[wanted]
    p = pred[img, idx]
    rows = torch.cat((p[:, :4].to(dtype), conf[:, None].to(dtype), cls[:, None].to(dtype), p[:, -1:].to(dtype)), dim=1)
    return img, rows


def _obb_nms(
    prediction: Tensor,
    conf_thres: float,
    iou_thres: float,
    classes,
    agnostic: bool,
    multi_label: bool,
    max_det: int,
    max_candidates: int,
    overlap: str,
) -> List[Tensor]:
    batch, width, _ = prediction.shape
    num_classes = width - 5
    if num_classes <= 0:
        raise ValueError(
            f"a rotated prediction must have shape [B, 4 + C + 1, N] with C >= 1, got {list(prediction.shape)}"
        )
    pred = prediction.transpose(1, 2)  # [B, N, 4 + C + 1], a view
    if overlap == "probiou":
        # ultralytics builds its rows with a float32 class column, which promotes float16/bfloat16.
        dtype = torch.promote_types(prediction.dtype, torch.float32)
        img, rows = _obb_candidates(pred, conf_thres, multi_label, classes, dtype)
        img, rows = _probiou_fast_nms(img, rows, batch, iou_thres, agnostic, max_det, max_candidates)
    else:
        img, rows = _obb_candidates(pred, conf_thres, multi_label, classes, prediction.dtype)
        if rows.shape[0] > max_candidates and int(torch.bincount(img, minlength=batch).max()) > max_candidates:
            img, rows = _cap(max_candidates, batch, img, rows[:, 4], img, rows)
        compute = torch.promote_types(rows.dtype, torch.float32)
        degrees = torch.cat((rows[:, :4].to(compute), rows[:, 6:].to(compute) * (180.0 / math.pi)), dim=1)
        cls = rows[:, 5].long()
        groups = img if agnostic else img * num_classes + cls
        keep = batched_nms_rotated(degrees, rows[:, 4].to(compute), groups, iou_thres)
        keep = _first_per_image(img, keep, max_det, batch)
        img, rows = img[keep], rows[keep]
    return list(torch.split(rows, torch.bincount(img, minlength=batch).tolist()))


def _probiou_fast_nms(
    img: Tensor, rows: Tensor, batch: int, iou_thres: float, agnostic: bool, max_det: int, max_candidates: int
):
    """ultralytics' OBB suppression on the candidates (img, rows) of a batch: the kept rows, image-major."""
    # Rank order per image exactly as ultralytics computes it: its sorts are not stable, so the tie order is
    # whatever torch.argsort gives on the same scores in the same order; the cap sorts once more.
    counts = torch.bincount(img, minlength=batch).tolist()
    order, start = [], 0
    for n in counts:
        pos = torch.arange(start, start + n, device=rows.device)
        if n > max_candidates:
            pos = pos[rows[start : start + n, 4].argsort(descending=True)[:max_candidates]]
        order.append(pos[rows[pos, 4].argsort(descending=True)])
        start += n
    order = torch.cat(order) if order else torch.zeros(0, dtype=torch.long, device=rows.device)
    img, rows = img[order], rows[order]
    offset = rows[:, 5:6] * (0.0 if agnostic else ULTRALYTICS_MAX_WH)
    boxes = torch.cat((rows[:, :2] + offset, rows[:, 2:4], rows[:, 6:]), dim=1)
    # Only boxes of one class can overlap after the offset, so the pairs come per (image, class); an image
    # where that cannot be shown (see _classes_apart) compares all its pairs, as ultralytics does.
    well = _well_formed(img, rows, batch)
    if agnostic or max_det == 0:
        group = img
    else:
        apart = well & _classes_apart(img, rows, batch)
        group = img * _GROUP_STRIDE + torch.where(apart[img], rows[:, 5].long() + 1, 0)
    suppressed = _fast_nms_suppressed(boxes, group, iou_thres, well[img])
    keep = torch.nonzero(~suppressed).flatten()
    keep = _first_per_image(img, keep, max_det, batch)
    return img[keep], rows[keep]


_GROUP_STRIDE = 1 << 32  # group ids img * this + class + 1 stay distinct for any class count


# Bounds on the probIoU that let most pairs go uncomputed. For two boxes with Gaussians S1, S2 and centres d
# apart, the Bhattacharyya distance is d^T (S1 + S2)^-1 d / 4 + (a term >= 0) up to ultralytics' eps terms,
# so at least |d|^2 / (4 trace(S1 + S2)) = 1.5 |d|^2 / (w1^2 + h1^2 + w2^2 + h2^2). The eps terms are
# negligible for "well-formed" boxes: finite, at least 0.35 px thick and at most 100 times longer than thick.


def _well_formed(img: Tensor, rows: Tensor, batch: int) -> Tensor:
    """[B] bool: every candidate box of the image is well-formed (see above)."""
    w, h = rows[:, 2].double().abs(), rows[:, 3].double().abs()
    thin, thick = torch.minimum(w, h), torch.maximum(w, h)
    ok = torch.isfinite(rows[:, [0, 1, 2, 3, 6]]).all(1) & (thin >= 0.35) & (thin * 100 >= thick)
    return torch.ones(batch, dtype=torch.bool, device=rows.device).scatter_reduce(0, img, ok, "amin")


def _classes_apart(img: Tensor, rows: Tensor, batch: int) -> Tensor:
    """[B] bool: for well-formed boxes, no two boxes of different classes can have a probIoU above 0 once
    offset by ultralytics' 7680 px per class: |dx| >= 7680 - (the spread of the centres' x), and a margin of 4
    box diagonals puts the distance above 20, where 1 - exp(-d) rounds to 1 and the probIoU to <= 0."""
    r = rows.double()
    inf = torch.full((batch,), float("inf"), dtype=r.dtype, device=r.device)
    x_max = (-inf).scatter_reduce(0, img, r[:, 0], "amax")
    x_min = inf.scatter_reduce(0, img, r[:, 0], "amin")
    diag2 = torch.zeros_like(inf).scatter_reduce(0, img, r[:, 2] ** 2 + r[:, 3] ** 2, "amax")
    margin = ULTRALYTICS_MAX_WH - (x_max - x_min)
    return (margin > 0) & (margin * margin >= 16 * diag2)


def _far_apart(boxes: Tensor, i: Tensor, j: Tensor, iou_thres: float) -> Tensor:
    """[P] bool: the pair's probIoU is provably <= iou_thres (for well-formed boxes): the distance bound above
    exceeds, with a margin of 1, the distance below which 1 - sqrt(1 - exp(-d) + eps) passes the threshold."""
    limit = -math.log(1.0 - (1.0 - iou_thres) ** 2 + _PROBIOU_EPS) + 1.0
    x, y, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    dx, dy = x[i] - x[j], y[i] - y[j]
    spread = w[i] ** 2 + h[i] ** 2 + w[j] ** 2 + h[j] ** 2
    return 1.4 * (dx * dx + dy * dy) > limit * spread


_PAIR_CHUNK = 1 << 22  # pairs per step: bounds the memory of an image compared all against all


def _fast_nms_suppressed(boxes: Tensor, group: Tensor, iou_thres: float, well: Tensor) -> Tensor:
    """Fast-NMS over boxes in rank order: [K] bool, True where a box of the same group earlier in the order has
    a probIoU above iou_thres with it, whether that box is itself suppressed or not. `well` [K] bool: the box
    is in an image of well-formed boxes, where far-apart pairs need no probIoU."""
    k = boxes.shape[0]
    suppressed = torch.zeros(k, dtype=torch.bool, device=boxes.device)
    if k < 2:
        return suppressed
    grouped = torch.sort(group, stable=True)  # rank order kept within a group
    members = grouped.indices
    _, sizes = torch.unique_consecutive(grouped.values, return_counts=True)
    starts = torch.cumsum(sizes, 0) - sizes
    size_of = torch.repeat_interleave(sizes, sizes)
    rank = torch.arange(k, device=boxes.device) - torch.repeat_interleave(starts, sizes)
    later = size_of - 1 - rank  # each member pairs with the later members of its group
    ends = torch.cumsum(later, 0)
    total = int(ends[-1])
    cov = _covariance(boxes)
    first = 0
    while first < k:  # members [first, last) hold at most _PAIR_CHUNK pairs (or one member's)
        base = int(ends[first - 1]) if first else 0
        last = max(int(torch.searchsorted(ends, base + _PAIR_CHUNK, right=True)), first + 1)
        counts = later[first:last]
        n_pairs = int(ends[last - 1]) - base
        if n_pairs:
            a = torch.repeat_interleave(torch.arange(first, last, device=boxes.device), counts, output_size=n_pairs)
            b = a + 1 + torch.arange(n_pairs, device=boxes.device) - (ends[a] - later[a] - base)
            i, j = members[a], members[b]
            near = ~(well[i] & _far_apart(boxes, i, j, iou_thres))
            i, j = i[near], j[near]
            hit = _probiou_pairs(boxes, cov, i, j) > iou_thres
            suppressed[j[hit]] = True
        first = last
        if base + n_pairs >= total:
            break
    return suppressed


def _covariance(boxes: Tensor):
    """Per box (a, b, c, det): the Gaussian of a rotated box (covariance [[a, c], [c, b]], det clamped at 0),
    with ultralytics' operations in its order, so that every value rounds as its own does."""
    wh = boxes[:, 2:4].pow(2) / 12
    a, b = wh[:, 0], wh[:, 1]
    cos, sin = boxes[:, 4].cos(), boxes[:, 4].sin()
    cos2, sin2 = cos.pow(2), sin.pow(2)
    a, b, c = a * cos2 + b * sin2, a * sin2 + b * cos2, (a - b) * cos * sin
    return a, b, c, (a * b - c.pow(2)).clamp_(0)


_PROBIOU_EPS = 1e-7


def _probiou_pairs(boxes: Tensor, cov, i: Tensor, j: Tensor) -> Tensor:
    """probIoU (1 - the Hellinger distance of the boxes' Gaussians) of the pairs (i, j), with ultralytics'
    eps terms and clamps, computed in its operation order."""
    eps = _PROBIOU_EPS
    a, b, c, det = cov
    x, y = boxes[:, 0], boxes[:, 1]
    sa, sb, sc = a[i] + a[j], b[i] + b[j], c[i] + c[j]
    dx, dy = x[i] - x[j], y[i] - y[j]
    d = sa * sb - sc.pow(2)
    t1 = ((sa * dy.pow(2) + sb * dx.pow(2)) / (d + eps)) * 0.25
    t2 = ((sc * (x[j] - x[i]) * dy) / (d + eps)) * 0.5
    t3 = (d / (4 * (det[i] * det[j]).sqrt() + eps) + eps).log() * 0.5
    bd = (t1 + t2 + t3).clamp(eps, 100.0)
    return 1 - (1.0 - (-bd).exp() + eps).sqrt()
