"""Box overlaps, areas and format conversion, with torchvision.ops' names, signatures and results.

Kernels: csrc/cpu/boxes.cpp and csrc/cuda/boxes.cu; formulas: csrc/box_math.h; reference:
detops/reference/boxes.py. Boxes are ``(x1, y1, x2, y2)`` unless an argument says otherwise; coordinates may
be pixels or fractions, negative or huge. float32/float64 compute in their own precision; float16/bfloat16
compute in float32; integer boxes compute exactly and return float32, as torchvision does.
"""

import torch
import torchvision
from torch import Tensor

_AXIS_ALIGNED = ("xyxy", "xywh", "cxcywh")
_ROTATED = ("cxcywhr", "xywhr", "xyxyxyxy")


def box_overlap(boxes1: Tensor, boxes2: Tensor, mode: str = "iou", eps: float = 1e-7, fmt: str = "xyxy") -> Tensor:
    """Pairwise overlap matrix of two sets of boxes, in one fused kernel.

    Args:
        boxes1 (Tensor[..., N, 4]): boxes in format ``fmt``.
        boxes2 (Tensor[..., M, 4]): boxes in format ``fmt``; leading dimensions broadcast against boxes1's
            (``[B, N, 4]`` with ``[M, 4]`` compares every image's boxes with one shared set).
        mode (str): ``"iou"``, ``"giou"``, ``"diou"``, ``"ciou"`` (torchvision's formulas) or ``"iof"``
            (intersection over the area of boxes1, as mmcv's ``bbox_overlaps(mode="iof")``).
        eps (float): added to the enclosing box's squared diagonal (diou, ciou) and to CIoU's alpha
            denominator, as torchvision does; unused by the other modes.
        fmt (str): ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``. The kernel reads the boxes as given:
            corners are computed in the compute dtype, and the areas of xywh and cxcywh boxes are ``w * h``, as
            torchvision's ``box_iou(fmt=...)`` takes them (docs/reliability.md: where ``x + w`` rounds ``w``
            away, the corners' area would be 0).

    Returns:
        Tensor[..., N, M]: float32 for integer, float16 and bfloat16 input, else the input dtype; boxes of
        two dtypes are promoted first (``torch.promote_types``), as torchvision's arithmetic promotes them.
        Empty when N or M is 0. Differentiable with respect to both inputs.
    """
    _check_axis_aligned(fmt)
    boxes1, boxes2 = _promote(boxes1, boxes2)
    return torch.ops.detops.box_overlap(boxes1, boxes2, mode, eps, fmt)


def _promote(boxes1: Tensor, boxes2: Tensor):
    if boxes1.dtype == boxes2.dtype:
        return boxes1, boxes2
    dtype = torch.promote_types(boxes1.dtype, boxes2.dtype)
    return boxes1.to(dtype), boxes2.to(dtype)


def _check_axis_aligned(fmt: str) -> None:
    if fmt not in _AXIS_ALIGNED:
        raise ValueError(f"fmt must be one of {_AXIS_ALIGNED} for detops overlaps, got {fmt!r}")


def box_iou(boxes1: Tensor, boxes2: Tensor, fmt: str = "xyxy") -> Tensor:
    """Intersection over union of every pair, as ``torchvision.ops.box_iou``.

    Args:
        boxes1 (Tensor[..., N, 4]): first set of boxes, in format ``fmt``.
        boxes2 (Tensor[..., M, 4]): second set of boxes, in format ``fmt``.
        fmt (str): ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``; or a rotated format, ``"cxcywhr"``,
            ``"xywhr"`` or ``"xyxyxyxy"`` (:func:`detops.rotated.box_iou`, last dimension 5 or 8).

    Returns:
        Tensor[..., N, M]: IoU values; NaN where both boxes have zero area (0 / 0), as torchvision. For
        ``"xywh"`` and ``"cxcywh"`` the areas are ``w * h`` and the intersection comes from the corners,
        as torchvision computes them.
    """
    if fmt in _ROTATED:  # rotated boxes: detops.rotated (docs/rotated.md)
        from detops import rotated

        return rotated.box_iou(boxes1, boxes2, fmt)
    return box_overlap(boxes1, boxes2, "iou", fmt=fmt)


def box_iof(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over the area of the boxes1 box ("over foreground"):
    ``[..., N, 4] x [..., M, 4] -> [..., N, M]``."""
    return box_overlap(boxes1, boxes2, "iof")


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalized IoU of every pair (Rezatofighi et al. 2019), as ``torchvision.ops.generalized_box_iou``.

    Args:
        boxes1 (Tensor[..., N, 4]), boxes2 (Tensor[..., M, 4]): xyxy boxes.

    Returns:
        Tensor[..., N, M]: values in [-1, 1] for valid boxes.
    """
    return box_overlap(boxes1, boxes2, "giou")


def distance_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Distance IoU of every pair (Zheng et al. 2020), as ``torchvision.ops.distance_box_iou``.

    Args:
        boxes1 (Tensor[..., N, 4]), boxes2 (Tensor[..., M, 4]): xyxy boxes.
        eps (float): added to the enclosing box's squared diagonal.

    Returns:
        Tensor[..., N, M]
    """
    return box_overlap(boxes1, boxes2, "diou", eps)


def complete_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Complete IoU of every pair (Zheng et al. 2020), as ``torchvision.ops.complete_box_iou``.

    Args:
        boxes1 (Tensor[..., N, 4]), boxes2 (Tensor[..., M, 4]): xyxy boxes.
        eps (float): added to the squared diagonal and to the aspect-ratio weight's denominator.

    Returns:
        Tensor[..., N, M]
    """
    return box_overlap(boxes1, boxes2, "ciou", eps)


def box_iou_aligned(boxes1: Tensor, boxes2: Tensor, mode: str = "iou", eps: float = 1e-7) -> Tensor:
    """Overlap of each aligned pair ``(boxes1[i], boxes2[i])``, differentiable; the IoU losses' core.

    Computed as torchvision's IoU losses compute it: ``inter / (union + eps)``, the enclosing box's area and
    squared diagonal plus ``eps``. ``1 - box_iou_aligned(a, b, "giou")`` is
    ``torchvision.ops.generalized_box_iou_loss(a, b)``, and likewise for diou and ciou.

    Args:
        boxes1 (Tensor[..., 4]), boxes2 (Tensor[..., 4]): xyxy boxes of one shape.
        mode (str): ``"iou"``, ``"giou"``, ``"diou"``, ``"ciou"`` or ``"iof"``.
        eps (float): see above.

    Returns:
        Tensor[...]: in the input's dtype (float32 for integer input; two dtypes are promoted first). Empty
        for empty input.
    """
    boxes1, boxes2 = _promote(boxes1, boxes2)
    return torch.ops.detops.box_iou_aligned(boxes1, boxes2, mode, eps)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _aligned_loss(mode):
    def loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
        # torchvision's dtype rule: anything but float32/float64 is computed and returned in float32.
        boxes1, boxes2 = _upcast_non_float(boxes1), _upcast_non_float(boxes2)
        return _reduce(1 - box_iou_aligned(boxes1, boxes2, mode, eps), reduction)

    return loss


def _upcast_non_float(t: Tensor) -> Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def generalized_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """``1 - GIoU`` of aligned pairs, as ``torchvision.ops.generalized_box_iou_loss``.

    float32 for every input dtype but float64 (float16, bfloat16 and integer boxes too), as torchvision.

    Args:
        boxes1 (Tensor[..., 4]), boxes2 (Tensor[..., 4]): xyxy boxes of one shape.
        reduction (str): ``"none"`` | ``"mean"`` | ``"sum"``; the mean of an empty input is 0.
        eps (float): small number preventing division by zero.
    """
    return _aligned_loss("giou")(boxes1, boxes2, reduction, eps)


def distance_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """``1 - DIoU`` of aligned pairs, as ``torchvision.ops.distance_box_iou_loss`` (arguments as for GIoU)."""
    return _aligned_loss("diou")(boxes1, boxes2, reduction, eps)


def complete_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """``1 - CIoU`` of aligned pairs, as ``torchvision.ops.complete_box_iou_loss`` (arguments as for GIoU)."""
    return _aligned_loss("ciou")(boxes1, boxes2, reduction, eps)


def box_area(boxes: Tensor, fmt: str = "xyxy") -> Tensor:
    """Area of each box, as ``torchvision.ops.box_area``.

    Args:
        boxes (Tensor[..., 4]): boxes in format ``fmt`` (``"xyxy"``, ``"xywh"`` or ``"cxcywh"``).

    Returns:
        Tensor[...]: float16/bfloat16 input gives float32, int8/int16 give int32, as torchvision.
    """
    if fmt not in _AXIS_ALIGNED:
        raise ValueError(f"Unsupported Bounding Box area for given format {fmt}")
    boxes = _upcast(boxes)
    if fmt == "xyxy":
        return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return boxes[..., 2] * boxes[..., 3]


def _upcast(t: Tensor) -> Tensor:
    # Products of small types overflow (int8) or lose precision (float16): widen first, as torchvision.
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Converts boxes between ``"xyxy"``, ``"xywh"`` and ``"cxcywh"``, as ``torchvision.ops.box_convert``.

    Rotated formats (``"xywhr"``, ``"cxcywhr"``, ``"xyxyxyxy"``): :func:`detops.rotated.box_convert`.

    Args:
        boxes (Tensor[..., 4]): boxes in ``in_fmt``; any leading dimensions.

    Returns:
        Tensor[..., 4]: a new tensor in ``out_fmt``, same dtype.
    """
    if in_fmt in _ROTATED or out_fmt in _ROTATED:  # rotated boxes: detops.rotated (docs/rotated.md)
        from detops import rotated

        return rotated.box_convert(boxes, in_fmt, out_fmt)
    if in_fmt not in _AXIS_ALIGNED or out_fmt not in _AXIS_ALIGNED:
        return torchvision.ops.box_convert(boxes, in_fmt, out_fmt)
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    # (a, b, c, d) is now xyxy
    if out_fmt == "xywh":
        a, b, c, d = a, b, c - a, d - b
    elif out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    return torch.stack((a, b, c, d), dim=-1)
