"""Rotated boxes: IoU, format conversion and NMS on oriented boxes.

Kernels: csrc/cpu/rotated.cpp and csrc/cuda/rotated.cu; geometry: csrc/rotated_math.h; reference:
detops/reference/rotated.py; semantics: docs/rotated.md. A rotated box is ``(cx, cy, w, h, angle)``
("cxcywhr"): centre, width, height and the angle in degrees, counter-clockwise in the image plane, as
torchvision's rotated formats. ``"xywhr"`` puts the top-left corner first; ``"xyxyxyxy"`` lists the four
corners (top-left, top-right, bottom-right, bottom-left) and is read, as torchvision reads it, as the
rectangle with corner 1, side 1 -> 2 and the height |2 -> 3| (corner 4 is not used).

Rules:

* IoU is exact up to rounding: identical boxes give exactly 1, disjoint boxes exactly 0, never below 0 or
  above 1; a box with ``w <= 0`` or ``h <= 0`` has IoU 0 with every box; a NaN or infinite value gives NaN;
* angles of any size (outside (-180, 180] too) are reduced exactly; coordinates may be negative or huge;
* float32/float64 compute in their own precision, float16/bfloat16 in float32, integers in float64;
  pairwise results are float32 for float16, bfloat16 and integer input (torchvision returns float32 for
  every input, float64 too; detops keeps float64);
* NMS (``nms_rotated``, ``batched_nms_rotated``, ``multiclass_nms_rotated``, ``soft_nms_rotated``: the NMS
  family's ops and kernels with the rotated IoU): suppressed when the IoU with a kept, higher-ranked box is
  strictly greater than the threshold; rank is decreasing score, ties by lower index; boxes with a NaN score
  or a non-finite value are never kept and never suppress.
"""

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from detops.nms import multiclass_args

ROTATED_FORMATS = ("cxcywhr", "xywhr", "xyxyxyxy")
_ALL_FORMATS = ("xyxy", "xywh", "cxcywh", "xywhr", "cxcywhr", "xyxyxyxy")
_WIDTH = {"cxcywhr": 5, "xywhr": 5, "xyxyxyxy": 8}


def _promote(boxes1: Tensor, boxes2: Tensor):
    if boxes1.dtype == boxes2.dtype:
        return boxes1, boxes2
    dtype = torch.promote_types(boxes1.dtype, boxes2.dtype)
    return boxes1.to(dtype), boxes2.to(dtype)


def _check_width(boxes: Tensor, fmt: str, name: str) -> None:
    k = _WIDTH[fmt]
    if boxes.dim() < 1 or boxes.shape[-1] != k:
        raise ValueError(f"{name} must have shape [..., {k}] for fmt={fmt!r}, got {list(boxes.shape)}")


def _as_cxcywhr(boxes: Tensor, fmt: str, name: str) -> Tensor:
    _check_width(boxes, fmt, name)
    return boxes if fmt == "cxcywhr" else box_convert(boxes, fmt, "cxcywhr")


def box_iou_rotated(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of every pair of rotated boxes.

    Args:
        boxes1 (Tensor[..., N, 5]): ``(cx, cy, w, h, angle)`` boxes, angle in degrees.
        boxes2 (Tensor[..., M, 5]): the same; leading dimensions broadcast against boxes1's.

    Returns:
        Tensor[..., N, M]: float32 for integer, float16 and bfloat16 input, else the input dtype (two dtypes
        are promoted first). Empty when N or M is 0. Not differentiable.
    """
    boxes1, boxes2 = _promote(boxes1, boxes2)
    return torch.ops.detops.box_iou_rotated(boxes1, boxes2)


def box_iou_rotated_aligned(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of each aligned pair ``(boxes1[..., i, :], boxes2[..., i, :])`` of rotated boxes.

    Args:
        boxes1 (Tensor[..., 5]), boxes2 (Tensor[..., 5]): ``(cx, cy, w, h, angle)`` boxes of one shape.

    Returns:
        Tensor[...]: in the input dtype (float32 for integers; two dtypes are promoted first).
    """
    boxes1, boxes2 = _promote(boxes1, boxes2)
    return torch.ops.detops.box_iou_rotated_aligned(boxes1, boxes2)


def box_iou(boxes1: Tensor, boxes2: Tensor, fmt: str = "cxcywhr") -> Tensor:
    """``detops.box_iou`` for the rotated formats, as ``torchvision.ops.box_iou(..., fmt=fmt)``.

    Args:
        boxes1 (Tensor[..., N, K]), boxes2 (Tensor[..., M, K]): K = 5 for ``"cxcywhr"`` and ``"xywhr"``,
            8 for ``"xyxyxyxy"``; leading dimensions broadcast.
        fmt (str): one of ``"cxcywhr"``, ``"xywhr"``, ``"xyxyxyxy"``.

    Returns:
        Tensor[..., N, M]: as :func:`box_iou_rotated`.
    """
    if fmt not in ROTATED_FORMATS:
        raise ValueError(f"fmt must be one of {ROTATED_FORMATS} for rotated boxes, got {fmt!r}")
    return box_iou_rotated(_as_cxcywhr(boxes1, fmt, "boxes1"), _as_cxcywhr(boxes2, fmt, "boxes2"))


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Converts between rotated formats, as ``torchvision.ops.box_convert`` (same formulas, same results).

    Conversions between a rotated and an axis-aligned format raise ``NotImplementedError``, as torchvision.
    Integer boxes are converted in floating point and rounded back, as torchvision.

    Args:
        boxes (Tensor[..., K]): boxes in ``in_fmt``.

    Returns:
        Tensor[..., K']: a new tensor in ``out_fmt``, same dtype.
    """
    if in_fmt not in _ALL_FORMATS or out_fmt not in _ALL_FORMATS:
        raise ValueError(f"Unsupported Bounding Box Conversions for given in_fmt {in_fmt} and out_fmt {out_fmt}")
    if in_fmt == out_fmt:
        return boxes.clone()
    if in_fmt not in ROTATED_FORMATS or out_fmt not in ROTATED_FORMATS:
        raise NotImplementedError(
            f"Unsupported Bounding Box Conversions for given in_fmt {in_fmt} and out_fmt {out_fmt}: converting "
            "between rotated and axis-aligned formats is not defined (as in torchvision)"
        )
    _check_width(boxes, in_fmt, "boxes")
    if in_fmt == "cxcywhr":
        boxes = _cxcywhr_to_xywhr(boxes)
        return boxes if out_fmt == "xywhr" else _xywhr_to_corners(boxes)
    if in_fmt == "xywhr":
        return _xywhr_to_cxcywhr(boxes) if out_fmt == "cxcywhr" else _xywhr_to_corners(boxes)
    boxes = _corners_to_xywhr(boxes)
    return boxes if out_fmt == "xywhr" else _xywhr_to_cxcywhr(boxes)


def _finish(out: Tensor, dtype: torch.dtype) -> Tensor:
    # Integer boxes: computed in floating point, rounded to the nearest integer (torchvision's rule).
    if not dtype.is_floating_point:
        out = out.round_().to(dtype)
    return out


def _cos_sin(r: Tensor):
    rad = r * torch.pi / 180.0
    return torch.cos(rad), torch.sin(rad)


def _cxcywhr_to_xywhr(boxes: Tensor) -> Tensor:
    cx, cy, w, h, r = boxes.unbind(-1)
    c, s = _cos_sin(r)
    x1 = cx - w / 2 * c - h / 2 * s
    y1 = cy - h / 2 * c + w / 2 * s
    return _finish(torch.stack((x1, y1, w, h, r), dim=-1), boxes.dtype)


def _xywhr_to_cxcywhr(boxes: Tensor) -> Tensor:
    x1, y1, w, h, r = boxes.unbind(-1)
    c, s = _cos_sin(r)
    cx = x1 + w / 2 * c + h / 2 * s
    cy = y1 - w / 2 * s + h / 2 * c
    return _finish(torch.stack((cx, cy, w, h, r), dim=-1), boxes.dtype)


def _xywhr_to_corners(boxes: Tensor) -> Tensor:
    x1, y1, w, h, r = boxes.unbind(-1)
    c, s = _cos_sin(r)
    x2, y2 = x1 + w * c, y1 - w * s
    x3, y3 = x2 + h * s, y2 + h * c
    x4, y4 = x1 + h * s, y1 + h * c
    return _finish(torch.stack((x1, y1, x2, y2, x3, y3, x4, y4), dim=-1), boxes.dtype)


def _corners_to_xywhr(boxes: Tensor) -> Tensor:
    x1, y1, x2, y2, x3, y3, _, _ = boxes.unbind(-1)
    r = torch.atan2(y1 - y2, x2 - x1) * 180 / torch.pi
    w = ((x2 - x1) ** 2 + (y1 - y2) ** 2).sqrt()
    h = ((x3 - x2) ** 2 + (y3 - y2) ** 2).sqrt()
    return _finish(torch.stack((x1, y1, w, h, r), dim=-1), boxes.dtype)


def nms_rotated(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression of rotated boxes (detectron2's and mmcv's ``nms_rotated``).

    Args:
        boxes (Tensor[N, 5]): ``(cx, cy, w, h, angle)`` boxes, floating point, angle in degrees.
        scores (Tensor[N]): their scores, same dtype and device.
        iou_threshold (float): boxes whose rotated IoU with a kept box is strictly greater are discarded.

    Returns:
        Tensor[K] int64: indices of the kept boxes by decreasing score, ties by lower index. Empty for N = 0.
    """
    return torch.ops.detops.nms_rotated(boxes, scores, float(iou_threshold))


def batched_nms_rotated(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Rotated NMS within each category (detectron2's ``batched_nms_rotated``), in one native call: no
    coordinate offsets, so any coordinates keep their precision.

    Args:
        boxes (Tensor[N, 5]), scores (Tensor[N]): as :func:`nms_rotated`.
        idxs (Tensor[N]): integer category of each box; boxes of different categories never suppress
            each other.
        iou_threshold (float): as in :func:`nms_rotated`.

    Returns:
        Tensor[K] int64: indices of the kept boxes by decreasing score, ties by lower index.
    """
    return torch.ops.detops.batched_nms_rotated(boxes, scores, idxs, float(iou_threshold))


def multiclass_nms_rotated(
    boxes: Tensor,
    scores: Tensor,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    *,
    background_class: Optional[int] = None,
    max_candidates_per_class: Optional[int] = None,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`detops.multiclass_nms` on rotated boxes: per-class NMS for a whole batch with fixed-shape, padded
    outputs, the rotated IoU in place of the axis-aligned one; every other rule (score threshold strictly
    above, candidate cap, image order: decreasing score, then lower class, then lower prior index) is the same.
    On CUDA nothing is copied to the host.

    Args:
        boxes (Tensor[B, P, 5] or Tensor[B, P, C, 5]): ``(cx, cy, w, h, angle)`` boxes, angle in degrees,
            shared by all classes or one per class.
        scores (Tensor[B, P, C]): class probabilities, same dtype and device.
        score_threshold, iou_threshold, max_detections, background_class, max_candidates_per_class: as in
            :func:`detops.multiclass_nms`.

    Returns:
        (boxes Tensor[B, K, 5], scores Tensor[B, K], labels Tensor[B, K] int64, counts Tensor[B] int64): the
        first ``counts[b]`` entries of image b are its detections; the rest is padding (boxes and scores 0,
        labels -1). K is as in :func:`detops.multiclass_nms`.
    """
    return torch.ops.detops.multiclass_nms_rotated(
        boxes,
        scores,
        *multiclass_args(score_threshold, iou_threshold, max_detections, background_class, max_candidates_per_class),
    )


def soft_nms_rotated(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 0.001,
    method: str = "gaussian",
) -> Tuple[Tensor, Tensor]:
    """:func:`detops.soft_nms` on rotated boxes: the same selection and decay (``1 - IoU`` above
    ``iou_threshold`` for ``"linear"``, ``exp(-IoU**2 / sigma)`` for ``"gaussian"``) with the rotated IoU.

    Args:
        boxes (Tensor[N, 5]): ``(cx, cy, w, h, angle)`` boxes, angle in degrees.
        scores (Tensor[N]): their scores, same dtype and device.

    Returns:
        (keep Tensor[K] int64, scores Tensor[K]): the selected boxes in selection order and their decayed
        scores at selection, in the input dtype. Empty for N = 0.
    """
    return torch.ops.detops.soft_nms_rotated(
        boxes, scores, float(iou_threshold), float(sigma), float(score_threshold), method
    )


# Radians, as YOLO-OBB heads emit them, to the degrees every op above takes.
def radians_to_degrees(boxes: Tensor) -> Tensor:
    """``(cx, cy, w, h, angle in radians)`` -> ``(cx, cy, w, h, angle in degrees)`` (a new tensor)."""
    out = boxes.clone()
    out[..., 4] = boxes[..., 4] * (180.0 / math.pi)
    return out
