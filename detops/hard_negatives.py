"""SSD's hard negative mining (:func:`hard_negative_mining`) and the per-prior cross-entropy that ranks the
negatives (:func:`softmax_cross_entropy`).

Kernels: csrc/cpu/hard_negatives.cpp and csrc/cuda/hard_negatives.cu; reference:
detops/reference/hard_negatives.py (including the SSD tutorial's sort-based selection).
"""

import torch
from torch import Tensor


def hard_negative_mining(conf_loss: Tensor, positives: Tensor, neg_pos_ratio: int = 3) -> Tensor:
    """SSD's hard negative mining by per-row selection (no sort of the whole row).

    Per row: with n_pos positives, the ``min(neg_pos_ratio * n_pos, n_neg)`` non-positive entries of highest
    loss are selected; NaN counts as the highest; among equal losses at the boundary the lower indices are
    taken (deterministic on both devices). For non-negative losses (cross-entropy) the selected losses sum to
    exactly what the SSD tutorial's sort-based selection sums. A row without positives selects nothing.

    Args:
        conf_loss (Tensor[B, P]): per-prior loss, floating point (not differentiated through).
        positives (Tensor[B, P] bool): the positive priors.
        neg_pos_ratio (int): negatives per positive, >= 0.

    Returns:
        Tensor[B, P] bool: the hard negatives (never a positive).
    """
    return torch.ops.detops.hard_negative_mining(conf_loss.detach(), positives, int(neg_pos_ratio))


def softmax_cross_entropy(logits: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
    """Per-row softmax cross-entropy: ``F.cross_entropy(logits.flatten(0, -2), targets.flatten(),
    reduction="none", ignore_index=ignore_index)`` in the shape of ``targets``, computed in one pass with no
    ``[..., C]`` intermediate.

    SSD's hard negative mining ranks every prior by this loss; ``log_softmax`` over all priors (and its
    output, as large as the logits) is most of what that ranking costs with plain PyTorch.

    Args:
        logits (Tensor[..., C]): unnormalised class scores, floating point (float16/bfloat16 computed in
            float32).
        targets (Tensor[...] int64 or int32): class indices in ``[0, C)``, or ``ignore_index``. Any other
            value: on the CPU an error naming the first such row and its value, on CUDA NaN (checking there
            would need a host synchronisation).
        ignore_index (int): rows with this target have loss 0 and gradient 0 (``F.cross_entropy``'s
            default, -100).

    Returns:
        Tensor[...]: the loss per row, in the logits' dtype. Differentiable with respect to ``logits``
        (the gradient is ``softmax(logits) - one_hot(targets)``).
    """
    return torch.ops.detops.softmax_cross_entropy(logits, targets, int(ignore_index))
