"""The MultiBox loss of the SSD paper: localisation over positive priors plus confidence over positives and
hard negatives, both divided by the batch's number of positives. Matching, the per-prior cross-entropy that
ranks the negatives, and mining run as detops kernels."""

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detops.hard_negatives import hard_negative_mining, softmax_cross_entropy
from detops.matching import match_priors, pack_targets


class MultiBoxLoss(nn.Module):
    """The SSD loss, with the PyTorch SSD tutorial's interface (``MultiBoxLoss(priors_cxcy, threshold,
    neg_pos_ratio, alpha)`` and ``forward(predicted_locs, predicted_scores, boxes, labels)``).

    ``loss = (sum of cross-entropy over positives and hard negatives) / N + alpha * loc``, where N is the
    number of positive priors in the batch and ``loc`` is the mean over the 4 N positive coordinates of the
    L1 (``loc_loss="l1"``, the tutorial's ``nn.L1Loss``) or smooth L1 (``"smooth_l1"``, beta 1, the paper's)
    distance between predicted and target offsets. Priors are matched by :func:`detops.match_priors` and hard
    negatives chosen by :func:`detops.hard_negative_mining` (``neg_pos_ratio`` per positive, per image).

    A batch without positives gives 0 for both terms (the tutorial gives NaN). On CUDA, forward and backward
    make no host synchronisation (masked sums divided by max(N, 1), no boolean indexing), so the step can be
    captured in a CUDA graph when the targets are given as padded tensors.

    Args:
        priors_cxcy (Tensor[P, 4]): center-size priors (e.g. :func:`detops.ssd.ssd300_prior_boxes`); kept as a
            non-persistent buffer, so ``.to(device)`` moves it.
        threshold (float): IoU for a positive match.
        neg_pos_ratio (int): hard negatives per positive.
        alpha (float): weight of the localisation term.
        loc_loss (str): ``"smooth_l1"`` (default) or ``"l1"``.
    """

    def __init__(
        self,
        priors_cxcy: Tensor,
        threshold: float = 0.5,
        neg_pos_ratio: int = 3,
        alpha: float = 1.0,
        loc_loss: str = "smooth_l1",
    ):
        super().__init__()
        if not isinstance(priors_cxcy, Tensor) or priors_cxcy.dim() != 2 or priors_cxcy.size(1) != 4:
            shape = list(priors_cxcy.shape) if isinstance(priors_cxcy, Tensor) else type(priors_cxcy).__name__
            raise ValueError(f"priors_cxcy must have shape [P, 4] (center-size priors), got {shape}")
        if loc_loss not in ("smooth_l1", "l1"):
            raise ValueError(f'loc_loss must be "smooth_l1" or "l1", got {loc_loss!r}')
        if neg_pos_ratio < 0:
            raise ValueError(f"neg_pos_ratio must be >= 0, got {neg_pos_ratio}")
        self.register_buffer("priors_cxcy", priors_cxcy, persistent=False)
        self.threshold = float(threshold)
        self.neg_pos_ratio = int(neg_pos_ratio)
        self.alpha = float(alpha)
        self.loc_loss = loc_loss

    def forward(
        self,
        predicted_locs: Tensor,
        predicted_scores: Tensor,
        boxes: Union[Tensor, Sequence[Tensor]],
        labels: Union[Tensor, Sequence[Tensor]],
        counts: Optional[Tensor] = None,
    ) -> Tensor:
        """Args:
            predicted_locs (Tensor[B, P, 4]): predicted offsets from the priors.
            predicted_scores (Tensor[B, P, C]): class scores (logits), class 0 background.
            boxes: list of B Tensor[G_i, 4] xyxy fractional (G_i may be 0), or padded Tensor[B, G, 4].
            labels: list of B Tensor[G_i] in [0, C), or padded Tensor[B, G].
            counts (Tensor[B], optional): objects per image for padded boxes/labels.

        Returns:
            Tensor: the scalar loss, differentiable with respect to both predictions.
        """
        if predicted_locs.dim() != 3 or predicted_locs.size(2) != 4:
            raise ValueError(f"predicted_locs must have shape [B, P, 4], got {list(predicted_locs.shape)}")
        if predicted_scores.dim() != 3 or predicted_scores.shape[:2] != predicted_locs.shape[:2]:
            raise ValueError(
                f"predicted_scores must have shape [B, P, C] with [B, P] = {list(predicted_locs.shape[:2])}, "
                f"got {list(predicted_scores.shape)}"
            )
        B, P, C = predicted_scores.shape
        priors = self.priors_cxcy
        if priors.size(0) != P:
            raise ValueError(f"the predictions have {P} priors but priors_cxcy has {priors.size(0)}")
        n_images = boxes.size(0) if isinstance(boxes, Tensor) else len(boxes)
        if n_images != B:
            raise ValueError(f"the predictions are for {B} images but boxes has {n_images}")
        if priors.device != predicted_locs.device:
            priors = priors.to(predicted_locs.device)
        gt_boxes, gt_labels, counts = pack_targets(boxes, labels, counts, device=predicted_locs.device)
        if gt_labels.device.type == "cpu" and gt_labels.numel() > 0 and not torch.compiler.is_compiling():
            valid = torch.arange(gt_labels.size(1)).unsqueeze(0) < counts.unsqueeze(1)
            bad = valid & ((gt_labels < 0) | (gt_labels >= C))
            if bool(bad.any()):
                raise ValueError(f"labels must be in [0, {C}) for {C} classes, got {gt_labels[bad][0].item()}")

        with torch.no_grad():
            true_classes, _, true_locs = match_priors(
                gt_boxes, gt_labels, priors.to(predicted_locs.dtype), self.threshold, counts=counts
            )
        positives = true_classes != 0  # [B, P]
        if predicted_locs.device.type == "cpu" and not self._masked and not torch.compiler.is_compiling():
            return self._indexed_loss(predicted_locs, predicted_scores, true_locs, true_classes, positives)
        n_pos = positives.sum().to(predicted_locs.dtype).clamp(min=1)

        # Localisation: the mean over the 4 n_pos positive coordinates (nn.L1Loss / nn.SmoothL1Loss on the
        # positives), as a masked sum so nothing depends on n_pos's value on the host.
        loc = torch.where(positives.unsqueeze(-1), self._loc_distance(predicted_locs, true_locs), 0.0).sum() / (
            4 * n_pos
        )

        # Confidence: cross-entropy over positives and hard negatives, divided by n_pos.
        conf_all = softmax_cross_entropy(predicted_scores, true_classes)  # [B, P]
        hard_neg = hard_negative_mining(conf_all.detach(), positives, self.neg_pos_ratio)
        conf = torch.where(positives | hard_neg, conf_all, 0.0).sum() / n_pos
        return conf + self.alpha * loc

    # The masked path above is the one for CUDA (no host synchronisation) and torch.compile; on the CPU,
    # where reading a count costs nothing, gathering the few selected priors first skips the backward pass
    # through every unselected prior's softmax. Same value and gradients; tests compare the two.
    _masked = False

    def _loc_distance(self, pred, target):
        if self.loc_loss == "l1":
            return F.l1_loss(pred, target, reduction="none")
        return F.smooth_l1_loss(pred, target, reduction="none")

    def _indexed_loss(self, predicted_locs, predicted_scores, true_locs, true_classes, positives):
        B, P, C = predicted_scores.shape
        flat_scores = predicted_scores.reshape(B * P, C)
        n_pos = positives.sum().clamp(min=1).to(predicted_locs.dtype)
        pos_idx = torch.nonzero(positives.view(-1)).flatten()
        loc = self._loc_distance(predicted_locs.reshape(B * P, 4)[pos_idx], true_locs.view(B * P, 4)[pos_idx])
        loc = loc.sum() / (4 * n_pos)
        with torch.no_grad():
            conf_all = softmax_cross_entropy(predicted_scores, true_classes)
            hard_neg = hard_negative_mining(conf_all, positives, self.neg_pos_ratio)
            sel_idx = torch.nonzero((positives | hard_neg).view(-1)).flatten()
        conf = F.cross_entropy(flat_scores[sel_idx], true_classes.view(-1)[sel_idx], reduction="sum") / n_pos
        return conf + self.alpha * loc

    def extra_repr(self) -> str:
        return (
            f"priors={self.priors_cxcy.size(0)}, threshold={self.threshold}, neg_pos_ratio={self.neg_pos_ratio}, "
            f"alpha={self.alpha}, loc_loss={self.loc_loss!r}"
        )
