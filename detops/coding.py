"""Box coding: one pair of ops serves SSD (weights (10, 10, 5, 5), i.e. variances (0.1, 0.2)) and Faster
R-CNN (torchvision's BoxCoder, weights (10, 10, 5, 5) or (1, 1, 1, 1)).

Kernels: csrc/cpu/coding.cpp, csrc/cuda/coding.cu; formulas: csrc/box_math.h; reference:
detops/reference/coding.py.
"""

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

DEFAULT_CLAMP = math.log(1000.0 / 16)  # torchvision's bbox_xform_clip
SSD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def encode_boxes(boxes: Tensor, anchors: Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """Regression targets of boxes relative to anchors.

    ``dx = wx (gcx - acx) / aw``, ``dy = wy (gcy - acy) / ah``, ``dw = ww log(gw / aw)``,
    ``dh = wh log(gh / ah)``, with centres and sizes taken from the xyxy corners.

    Args:
        boxes (Tensor[..., 4]): xyxy boxes, floating point.
        anchors (Tensor[..., 4]): xyxy anchors, broadcast against boxes (``[P, 4]`` serves ``[B, P, 4]``
            without a copy).
        weights (4 floats): ``(wx, wy, ww, wh)``; SSD uses ``(10, 10, 5, 5)``.

    Returns:
        Tensor[..., 4]: deltas in the broadcast shape and the input dtype (float16/bfloat16 computed in
        float32). Differentiable.
    """
    return torch.ops.detops.encode_boxes(boxes, anchors, [float(w) for w in weights])


def decode_boxes(
    deltas: Tensor,
    anchors: Tensor,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    clamp: Optional[float] = DEFAULT_CLAMP,
) -> Tensor:
    """Boxes from regression deltas: the inverse of :func:`encode_boxes`.

    Args:
        deltas (Tensor[..., 4]): ``(dx, dy, dw, dh)``.
        anchors (Tensor[..., 4]): xyxy anchors, broadcast against deltas.
        weights (4 floats): as for encode_boxes.
        clamp (float or None): ``dw / ww`` and ``dh / wh`` are clamped from above at this value before
            ``exp`` (torchvision's ``bbox_xform_clip``, ``log(1000 / 16)``); ``None`` disables it.

    Returns:
        Tensor[..., 4]: xyxy boxes in the broadcast shape and the input dtype. Differentiable.
    """
    return torch.ops.detops.decode_boxes(deltas, anchors, [float(w) for w in weights], clamp)
