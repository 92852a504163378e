"""YOLO post-processing on top of detops' batched NMS: ``[x1, y1, x2, y2, confidence, class]`` per image.

Heads:

* YOLOv3/v5 style ``[B, N, 5 + C]``: ``(cx, cy, w, h, objectness, class probabilities...)``; confidence is
  objectness x class probability, and a prediction needs objectness > ``conf_thres`` as well.
* YOLOv8 style ``[B, 4 + C, N]``: ``(cx, cy, w, h, class probabilities...)`` channels first, no objectness.

The whole batch goes through one native ``batched_nms`` call (categories = image x class, or image alone
when class-agnostic): no per-image Python loop and no time limit that silently drops images.
"""

from typing import List, Optional, Sequence

import torch
from torch import Tensor

from detops.nms import batched_nms


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
    """(image, box xywh, confidence, class) of every candidate above the threshold, for the whole batch."""
    if head == "v8":
        pred = prediction.transpose(1, 2)
        img_of = None
        xywh, scores = pred[..., :4], pred[..., 4:]
    else:
        obj_ok = prediction[..., 4] > conf_thres
        n_ok = int(obj_ok.sum())
        if 2 * n_ok < obj_ok.numel():
            # Few rows pass objectness (as YOLOv5 filters first): gather them, then form their class scores.
            # index_select of whole rows (a copy per row) is several times faster than advanced indexing
            # prediction[img, box], which goes element by element.
            flat_idx = torch.nonzero(obj_ok.view(-1)).squeeze(1)
            rows = prediction.reshape(-1, prediction.shape[-1]).index_select(0, flat_idx)
            img_of = torch.div(flat_idx, prediction.shape[1], rounding_mode="floor")
            xywh, scores = rows[:, :4], rows[:, 5:].mul_(rows[:, 4:5])  # rows is our copy: no new tensor
        else:
            # Most rows pass: score the whole tensor in place of a large gather; failing rows score 0.
            img_of = None
            xywh = prediction[..., :4]
            scores = prediction[..., 5:] * (prediction[..., 4:5] * obj_ok[..., None])
    if scores.shape[-1] == 0:
        raise ValueError("prediction has no class channels")
    if multi_label:
        where = torch.nonzero(scores > conf_thres, as_tuple=True)
        cls = where[-1]
        conf = scores[where]
        box_xywh = xywh[where[:-1]]
    else:
        best, cls_all = _max_first(scores)
        where = torch.nonzero(best > conf_thres, as_tuple=True)
        if len(where) == 1:  # gathered rows: index_select copies whole rows, advanced indexing goes by element
            conf, cls, box_xywh = (t.index_select(0, where[0]) for t in (best, cls_all, xywh))
        else:
            conf, cls = best[where], cls_all[where]
            box_xywh = xywh[where]
    img = where[0] if img_of is None else img_of[where[0]]
    if classes is not None:
        ok = torch.isin(cls, torch.as_tensor(list(classes), device=cls.device))
        img, box_xywh, cls, conf = img[ok], box_xywh[ok], cls[ok], conf[ok]
    return img, box_xywh, conf, cls


def _max_first(scores: Tensor):
    """scores.max(-1): the maximum and the first index where it occurs, in passes that are each several times
    faster on the CPU than max(dim)'s values-and-indices reduction (or argmax on floats): amax, then argmax of
    the equality mask (argmax documents that it returns the first maximal index). A NaN row gives NaN."""
    best = scores.amax(dim=-1)
    hit = scores == best.unsqueeze(-1)
    return best, hit.view(torch.uint8).argmax(dim=-1)


def _first_per_image(img: Tensor, order: Tensor, limit: int, batch: int) -> Tensor:
    """The first `limit` entries of each image in `order` (ranked), grouped image-major, rank kept within.

    A counting sort over the (few) images: a cumulative count per image gives each entry its place, so no
    general sort is needed (ATen's parallel sort is slow on a busy 2-core machine).
    """
    key = img[order]
    counts = torch.bincount(key, minlength=batch)
    starts = torch.cumsum(counts, 0) - counts
    member = key[None, :] == torch.arange(batch, device=key.device)[:, None]  # [batch, n], rows contiguous
    within = torch.cumsum(member, 1).gather(0, key[None, :]).squeeze(0) - 1  # rank inside its image
    grouped = torch.empty_like(order)
    grouped[starts[key] + within] = order
    keep = torch.arange(order.numel(), device=order.device) - starts[img[grouped]] < limit
    return grouped[keep]


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
        candidate index), n <= max_det; an image without detections gives a ``[0, 6]`` tensor.
    """
    _check(prediction, conf_thres, iou_thres, max_det)
    head = _head_layout(prediction, head)
    batch = prediction.shape[0]
    num_classes = prediction.shape[1] - 4 if head == "v8" else prediction.shape[2] - 5
    img, xywh, conf, cls = candidates(prediction, conf_thres, multi_label, classes, head)
    if conf.numel() > max_candidates and int(torch.bincount(img, minlength=batch).max()) > max_candidates:
        ranked = torch.sort(conf, descending=True, stable=True).indices
        sel = _first_per_image(img, ranked, max_candidates, batch)
        sel = torch.sort(sel).values
        img, xywh, conf, cls = img[sel], xywh[sel], conf[sel], cls[sel]
    boxes = xywh_to_xyxy(xywh)
    groups = img if agnostic else img * num_classes + cls
    keep = batched_nms(boxes, conf, groups, iou_thres)
    keep = _first_per_image(img, keep, max_det, batch)
    out = torch.cat([boxes, conf[:, None], cls[:, None].to(boxes.dtype)], dim=1)[keep]
    counts = torch.bincount(img[keep], minlength=batch).tolist()
    return list(torch.split(out, counts))
