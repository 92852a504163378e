"""Reference sigmoid focal loss (kernels: csrc/cpu/focal_loss.cpp, csrc/cuda/focal_loss.cu): the formula of
Lin et al. (2017) as torchvision states it, step by step, in the compute dtype."""

import torch
import torch.nn.functional as F

from detops.reference import compute_dtype


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """loss = alpha_t * BCE-with-logits(x, t) * (1 - p_t) ** gamma, p = sigmoid(x), p_t = p t + (1 - p)(1 - t),
    alpha_t = alpha t + (1 - alpha)(1 - t) (no alpha_t for alpha = -1); then none / mean / sum. Mixed dtypes
    promote; float16 and bfloat16 are computed in float32 and the result rounded once."""
    dtype = torch.promote_types(inputs.dtype, targets.dtype)
    x = inputs.to(compute_dtype(dtype))
    t = targets.to(x.dtype)
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    if reduction == "mean":
        loss = loss.double().mean().to(loss.dtype)
    elif reduction == "sum":
        loss = loss.double().sum().to(loss.dtype)
    elif reduction != "none":
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return loss.to(dtype)
