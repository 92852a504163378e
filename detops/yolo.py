"""YOLO post-processing on top of detops' batched NMS: ``[x1, y1, x2, y2, confidence, class]`` per image.

Heads:

* YOLOv3/v5 style ``[B, N, 5 + C]``: ``(cx, cy, w, h, objectness, class probabilities...)``; confidence is
  objectness x class probability, and a prediction needs objectness > ``conf_thres`` as well.
* YOLOv8 style ``[B, 4 + C, N]``: ``(cx, cy, w, h, class probabilities...)`` channels first, no objectness.

Best class per prediction (the default): one native pass (``torch.ops.detops.yolo_candidates``) scores the
whole batch, then one native ``batched_nms`` call suppresses (categories = image x class, or image alone
when class-agnostic). Multi-label, per class: ``multiclass_nms`` on the batch's dense class scores, which is
exactly its rule (per image and class: threshold, NMS; then the best ``max_det`` per image). No per-image
Python loop and no time limit that silently drops images.
"""

from typing import List, Optional, Sequence

import torch
from torch import Tensor

from detops.nms import batched_nms, multiclass_nms


def xywh_to_xyxy(xywh: Tensor) -> Tensor:
    """Center-size ``(cx, cy, w, h)`` to corners ``(x1, y1, x2, y2)``, as YOLO code computes it."""
    half = xywh[..., 2:4] / 2
    return torch.cat([xywh[..., :2] - half, xywh[..., :2] + half], dim=-1)


def _head_layout(prediction: Tensor, head: Optional[str]) -> str:
    if head is None:
        head = "v8" if prediction.shape[1] < prediction.shape[2] else "v5"
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


def candidates(prediction: Tensor, conf_thres: float, multi_label: bool, classes: Optional[Sequence[int]],
               head: str):
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


def _multi_label_by_class(prediction: Tensor, head: str, conf_thres: float, iou_thres: float,
                          classes: Optional[Sequence[int]], max_det: int, max_candidates: int) -> List[Tensor]:
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
    prediction: Tensor,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: Optional[Sequence[int]] = None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 300,
    max_candidates: int = 30000,
    head: Optional[str] = None,
) -> List[Tensor]:
    """YOLO NMS for a whole batch.

    Args:
        prediction (Tensor[B, N, 5 + C] or Tensor[B, 4 + C, N]): raw head output after sigmoid (boxes
            center-size in pixels, probabilities in [0, 1]); see the module docs for the two layouts.
        conf_thres (float): in [0, 1]; candidates need confidence (and, for v5 heads, objectness) above it.
        iou_thres (float): in [0, 1]; NMS threshold (suppress when IoU > iou_thres).
        classes (sequence of int, optional): keep only these classes.
        agnostic (bool): NMS across classes instead of within each class.
        multi_label (bool): every class above the threshold is a candidate (else the best class only).
        max_det (int): detections kept per image.
        max_candidates (int): per image, only this many highest-confidence candidates enter NMS (YOLOv5's
            ``max_nms``).
        head (str, optional): ``"v5"`` or ``"v8"``; by default ``"v8"`` when ``shape[1] < shape[2]``.

    Returns:
        list of B Tensors[n, 6]: ``[x1, y1, x2, y2, confidence, class]`` by decreasing confidence (ties: lower
        prediction index; multi-label and not agnostic, as multiclass_nms orders them: lower class, then lower
        prediction index), n <= max_det; an image without detections gives a ``[0, 6]`` tensor.
    """
    _check(prediction, conf_thres, iou_thres, max_det)
    head = _head_layout(prediction, head)
    batch = prediction.shape[0]
    num_classes = prediction.shape[1] - 4 if head == "v8" else prediction.shape[2] - 5
    if num_classes <= 0:
        raise ValueError(f"prediction has no class channels (head {head}, shape {list(prediction.shape)})")
    if multi_label and not agnostic and batch > 0 and max_det > 0:
        return _multi_label_by_class(prediction, head, conf_thres, iou_thres, classes, max_det, max_candidates)
    img, boxes, conf, cls = candidates(prediction, conf_thres, multi_label, classes, head)
    if conf.numel() > max_candidates and int(torch.bincount(img, minlength=batch).max()) > max_candidates:
        ranked = torch.sort(conf, descending=True, stable=True).indices
        sel = _first_per_image(img, ranked, max_candidates, batch)
        sel = torch.sort(sel).values
        img, boxes, conf, cls = img[sel], boxes[sel], conf[sel], cls[sel]
    groups = img if agnostic else img * num_classes + cls
    keep = batched_nms(boxes, conf, groups, iou_thres)
    keep = _first_per_image(img, keep, max_det, batch)
    out = torch.cat([boxes, conf[:, None], cls[:, None].to(boxes.dtype)], dim=1)[keep]
    counts = torch.bincount(img[keep], minlength=batch).tolist()
    return list(torch.split(out, counts))
