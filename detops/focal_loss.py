"""RetinaNet's sigmoid focal loss (:func:`sigmoid_focal_loss`), torchvision's name, signature and reductions,
as one fused pass with a closed-form backward.

Kernels: csrc/cpu/focal_loss.cpp and csrc/cuda/focal_loss.cu; formulas: csrc/ops/focal_loss.h; reference:
detops/reference/focal_loss.py.
"""

import torch
from torch import Tensor


def sigmoid_focal_loss(
    inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2, reduction: str = "none"
) -> Tensor:
    """Focal loss (Lin et al. 2017), as ``torchvision.ops.sigmoid_focal_loss``.

    ``loss = alpha_t * BCE_with_logits(x, t) * (1 - p_t) ** gamma`` with ``p = sigmoid(x)``,
    ``p_t = p t + (1 - p)(1 - t)`` and ``alpha_t = alpha t + (1 - alpha)(1 - t)`` (no weight for
    ``alpha = -1``). One pass over the elements: no sigmoid, cross-entropy or weight tensors are stored, only
    the output (and, in the backward, the gradient).

    Args:
        inputs (Tensor[...]): logits, floating point, any shape.
        targets (Tensor[...]): the same shape; binary labels (0 or 1; values in between are used as given, as
            torchvision's formula does). Mixed floating dtypes promote, as torchvision's arithmetic does.
        alpha (float): weight of the positives in [0, 1], or -1 for none.
        gamma (float): the focusing exponent (2 by default; any number that is not NaN).
        reduction (str): ``"none"`` (the elementwise loss), ``"mean"`` (NaN for empty input, as
            torchvision's) or ``"sum"``.

    Returns:
        Tensor: the loss in the promoted dtype (float16 and bfloat16 computed in float32, rounded once; the
        reductions add in float64), equal to torchvision's, NaN and infinities included (an infinite logit
        whose label agrees with it gives NaN there, as ``binary_cross_entropy_with_logits`` does).
        Differentiable with respect to ``inputs`` (closed form) and ``targets`` (the reference's gradient).
        On CUDA, no host synchronisation; the reductions are deterministic on both devices.
    """
    if not isinstance(reduction, str) or reduction not in ("none", "mean", "sum"):
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return torch.ops.detops.sigmoid_focal_loss(inputs, targets, float(alpha), float(gamma), reduction)
