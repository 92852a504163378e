"""Reference overlaps (kernels: csrc/cpu/boxes.cpp, csrc/cuda/boxes.cu), written from the formulas in
docs/ops.md ("Boxes") and torchvision's documentation: pairwise matrices and aligned pairs, in every mode."""

import math

import torch

from detops.reference import compute_dtype

MODES = ("iou", "giou", "diou", "ciou", "iof")


def _area(b):
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def _overlap(a, b, mode, eps, aligned, area_a=None, area_b=None):
    """a and b broadcast against each other; the same formula serves pairwise and aligned forms. The areas
    default to the corners' own."""
    inter_w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    inter_h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = inter_w * inter_h
    area_a = _area(a) if area_a is None else area_a
    area_b = _area(b) if area_b is None else area_b
    # The aligned form follows torchvision's IoU losses: eps on the union and enclosing box, no clamp there.
    pad = eps if aligned else 0.0
    if mode == "iof":
        return inter / (area_a + pad)
    union = area_a + area_b - inter
    iou = inter / (union + pad)
    if mode == "iou":
        return iou
    cw = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])
    ch = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])
    if not aligned:
        cw, ch = cw.clamp(min=0), ch.clamp(min=0)
    if mode == "giou":
        area_c = cw * ch
        return iou - (area_c - union) / (area_c + pad)
    dx = (a[..., 0] + a[..., 2]) / 2 - (b[..., 0] + b[..., 2]) / 2
    dy = (a[..., 1] + a[..., 3]) / 2 - (b[..., 1] + b[..., 3]) / 2
    diou = iou - (dx**2 + dy**2) / (cw**2 + ch**2 + eps)
    if mode == "diou":
        return diou
    v = (4 / math.pi**2) * (
        torch.atan((b[..., 2] - b[..., 0]) / (b[..., 3] - b[..., 1]))
        - torch.atan((a[..., 2] - a[..., 0]) / (a[..., 3] - a[..., 1]))
    ) ** 2
    with torch.no_grad():  # CIoU's trade-off weight is a constant for the gradient (Zheng et al. 2020)
        alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


def result_dtype(dtype, keep_reduced_float):
    """The overlaps' output dtype for boxes of `dtype`: float32 for integers (as torchvision), and for
    float16/bfloat16 unless keep_reduced_float (the aligned form keeps them); otherwise `dtype`."""
    if not dtype.is_floating_point:
        return torch.float32
    return compute_dtype(dtype) if not keep_reduced_float else dtype


def _corners_and_area(boxes, fmt):
    """Boxes of `fmt` as xyxy corners, and their areas: w * h for xywh and cxcywh, as torchvision's
    box_area(fmt=...) gives them (not the corners' (x2 - x1) * (y2 - y1), which x + w can round to 0)."""
    if fmt == "xyxy":
        return boxes, _area(boxes)
    x, y, w, h = boxes.unbind(-1)
    if fmt == "xywh":
        corners = torch.stack((x, y, x + w, y + h), -1)
    else:
        corners = torch.stack((x - w / 2, y - h / 2, x + w / 2, y + h / 2), -1)
    return corners, w * h


def box_overlap(boxes1, boxes2, mode="iou", eps=1e-7, fmt="xyxy"):
    """Pairwise overlaps: boxes1[..., N, 4], boxes2[..., M, 4] in `fmt` (xyxy, xywh, cxcywh) -> [..., N, M]."""
    assert mode in MODES and fmt in ("xyxy", "xywh", "cxcywh")
    dtype = compute_dtype(boxes1.dtype)
    a, area_a = _corners_and_area(boxes1.to(dtype), fmt)
    b, area_b = _corners_and_area(boxes2.to(dtype), fmt)
    out = _overlap(a[..., :, None, :], b[..., None, :, :], mode, eps, False, area_a[..., :, None], area_b[..., None, :])
    return out.to(result_dtype(boxes1.dtype, False))


def box_iou_aligned(boxes1, boxes2, mode="iou", eps=1e-7):
    """Overlap of each aligned pair: boxes1[..., 4], boxes2[..., 4] -> [...] (torchvision's loss formulas)."""
    assert mode in MODES
    dtype = compute_dtype(boxes1.dtype)
    return _overlap(boxes1.to(dtype), boxes2.to(dtype), mode, eps, aligned=True).to(result_dtype(boxes1.dtype, True))
