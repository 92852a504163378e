"""SSD's loss, batched (``SSD.compute_loss``; the matching itself runs in ``SSD.forward`` through the patched
``Matcher``): the box loss of all foreground anchors at once on :func:`detops.encode_boxes` targets, and
the hard negatives by :func:`detops.hard_negative_mining` instead of a double argsort of every row.

torchvision ranks each row's negatives by ``cls_loss`` (positives set to -inf) with ``sort`` and keeps the
ranks below ``neg_to_pos_ratio * n_pos``. While that count is at most the row's negatives, the kept ones are
its hardest negatives, the set :func:`detops.hard_negative_mining` selects (equal losses at the boundary:
detops takes the lower index, the sort its own tie order; the sums are the same). When it is larger (more
than a quarter of the anchors positive at the default ratio 3), the ranks reach into the -inf positives and
torchvision adds some of their losses a second time, which ones decided by the sort's order of equal keys;
then, and for a ratio that is not an integer, the batch goes through torchvision's own sort.
"""

from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
from torch import Tensor

from detops.coding import encode_boxes
from detops.hard_negatives import hard_negative_mining
from detops.patch import targets as tg


def _sorted_negatives(cls_loss: Tensor, foreground: Tensor, ratio: float) -> Tensor:
    """torchvision's selection, step by step."""
    num_negative = ratio * foreground.sum(1, keepdim=True)
    negative_loss = cls_loss.clone()
    negative_loss[foreground] = -float("inf")
    _, idx = negative_loss.sort(1, descending=True)
    return idx.sort(1)[1] < num_negative


def compute_loss(original: Callable) -> Callable:
    """``SSD.compute_loss``: smooth L1 over the foreground anchors' encoded boxes, cross-entropy over the
    positives and the hard negatives, both over the batch's foreground count, as torchvision's."""

    def compute_loss(
        self,
        targets: List[Dict[str, Tensor]],
        head_outputs: Dict[str, Tensor],
        anchors: List[Tensor],
        matched_idxs: List[Tensor],
    ) -> Dict[str, Tensor]:
        from torchvision.models.detection._utils import BoxCoder

        regression, logits = head_outputs["bbox_regression"], head_outputs["cls_logits"]
        gt_boxes = [t["boxes"] for t in targets]
        labels = [t["labels"] for t in targets]
        B = len(targets)
        if (
            type(self.box_coder) is not BoxCoder
            or regression.dim() != 3
            or logits.dim() != 3
            or not tg.uniform_boxes(gt_boxes, anchors)
            or len(matched_idxs) != B
            or regression.size(0) != B
            or any(a.size(0) != regression.size(1) or m.shape != a.shape[:1] for a, m in zip(anchors, matched_idxs))
            or any(lb.dim() != 1 or lb.dtype != labels[0].dtype or lb.device != logits.device for lb in labels)
        ):
            return original(self, targets, head_outputs, anchors, matched_idxs)
        matches = torch.stack(matched_idxs)
        foreground = matches >= 0
        index = matches.clamp(min=0)
        num_foreground = foreground.sum().clamp(min=1)

        matched = tg.gather_rows(tg.pad_objects(gt_boxes, tg.object_rows(gt_boxes)), index)
        target = encode_boxes(matched, torch.stack(anchors), self.box_coder.weights)
        fg = foreground.unsqueeze(2)
        # Background rows get target 0: their gathered box may be a zero box, whose encoding is -inf.
        target = torch.where(fg, target, torch.zeros_like(target))
        box_loss = F.smooth_l1_loss(regression, target, reduction="none")
        box_loss = torch.where(fg, box_loss, torch.zeros_like(box_loss)).sum()

        rows = max([1] + [lb.size(0) for lb in labels])
        cls_targets = tg.pad_values(labels, rows).gather(1, index)
        cls_targets = torch.where(foreground, cls_targets, torch.zeros_like(cls_targets))
        num_classes = logits.size(-1)
        cls_loss = F.cross_entropy(logits.view(-1, num_classes), cls_targets.view(-1), reduction="none")
        cls_loss = cls_loss.view(cls_targets.size())

        positive = cls_targets > 0
        ratio = self.neg_to_pos_ratio
        negatives = None
        if ratio >= 0 and float(ratio).is_integer():
            n_pos = positive.sum(1)
            overflow = int(ratio) * n_pos > positive.size(1) - n_pos
            if not bool(overflow.any()):  # one read of the device per batch (torchvision: one per image)
                negatives = hard_negative_mining(cls_loss, positive, int(ratio))
        if negatives is None:
            negatives = _sorted_negatives(cls_loss, positive, ratio)
        zero = torch.zeros_like(cls_loss)
        cls_sum = torch.where(positive, cls_loss, zero).sum() + torch.where(negatives, cls_loss, zero).sum()
        return {"bbox_regression": box_loss / num_foreground, "classification": cls_sum / num_foreground}

    return compute_loss
