"""Reference hard negative mining and the per-row cross-entropy that ranks the negatives (kernels:
csrc/cpu/hard_negatives.cpp, csrc/cuda/hard_negatives.cu): the SSD tutorial's sort-based selection, and
plain-PyTorch statements of the kernels' exact outputs."""

import torch
import torch.nn.functional as F

from detops.reference import in_compute_dtype


def tutorial_hard_negative_loss(conf_loss_all, positive_priors, neg_pos_ratio=3):
    """The tutorial's sort-based selection: the summed loss of the hard negatives of each image, [B]."""
    n_priors = conf_loss_all.size(1)
    n_hard_negatives = neg_pos_ratio * positive_priors.sum(dim=1)
    conf_loss_neg = conf_loss_all.clone()
    conf_loss_neg[positive_priors] = 0.0
    conf_loss_neg, _ = conf_loss_neg.sort(dim=1, descending=True)
    hardness_ranks = torch.arange(n_priors, device=conf_loss_all.device).unsqueeze(0).expand_as(conf_loss_neg)
    hard_negatives = hardness_ranks < n_hard_negatives.unsqueeze(1)
    return torch.where(hard_negatives, conf_loss_neg, torch.zeros_like(conf_loss_neg)).sum(dim=1)


def hard_negative_mining(conf_loss, positives, neg_pos_ratio=3):
    """The kernels' exact mask: per row, the min(ratio * n_pos, n_neg) non-positive priors of highest loss,
    NaN highest, ties broken towards the lower index (a stable descending sort)."""
    mask = torch.zeros_like(positives)
    for b in range(conf_loss.size(0)):
        neg = torch.nonzero(~positives[b]).flatten()
        k = min(neg_pos_ratio * int(positives[b].sum()), neg.numel())
        if k == 0:
            continue
        vals = conf_loss[b, neg].double()
        vals = torch.where(vals == 0, torch.zeros_like(vals), vals)  # -0 ranks with +0
        order = torch.sort(vals, descending=True, stable=True).indices
        mask[b, neg[order[:k]]] = True
    return mask


def softmax_cross_entropy(logits, targets, ignore_index=-100):
    """Per-row cross-entropy of logits[..., C] against class indices targets[...]: F.cross_entropy with
    reduction="none" (float16/bfloat16 computed in float32, returned in the logits' dtype); rows whose target
    is ignore_index have loss 0."""
    C = logits.shape[-1]
    x = in_compute_dtype(logits)
    loss = F.cross_entropy(x.reshape(-1, C), targets.reshape(-1).long(), reduction="none", ignore_index=ignore_index)
    return loss.view(targets.shape).to(logits.dtype)
