"""Reference overlaps (kernels: csrc/cpu/boxes.cpp, csrc/cuda/boxes.cu), written from the formulas in
docs/ops.md ("Boxes") and torchvision's documentation: pairwise matrices and aligned pairs, in every mode."""

import math

import torch

from detops.reference import compute_dtype

MODES = ("iou", "giou", "diou", "ciou", "iof")


def _area(b):
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def _overlap(a, b, mode, eps, aligned):
    """a and b broadcast against each other; the same formula serves pairwise and aligned forms."""
    inter_w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    inter_h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = inter_w * inter_h
    area_a, area_b = _area(a), _area(b)
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


def box_overlap(boxes1, boxes2, mode="iou", eps=1e-7):
    """Pairwise overlaps: boxes1[..., N, 4] xyxy, boxes2[..., M, 4] xyxy -> [..., N, M]."""
    assert mode in MODES
    dtype = compute_dtype(boxes1.dtype)
    a = boxes1.to(dtype)[..., :, None, :]
    b = boxes2.to(dtype)[..., None, :, :]
    return _overlap(a, b, mode, eps, aligned=False).to(result_dtype(boxes1.dtype, False))


def box_iou_aligned(boxes1, boxes2, mode="iou", eps=1e-7):
    """Overlap of each aligned pair: boxes1[..., 4], boxes2[..., 4] -> [...] (torchvision's loss formulas)."""
    assert mode in MODES
    dtype = compute_dtype(boxes1.dtype)
    return _overlap(boxes1.to(dtype), boxes2.to(dtype), mode, eps, aligned=True).to(result_dtype(boxes1.dtype, True))
