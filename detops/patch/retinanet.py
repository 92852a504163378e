"""RetinaNet's losses, batched: one match for the whole batch, the focal loss of all images in one
:func:`detops.sigmoid_focal_loss` call, the box loss of all foreground anchors at once.

torchvision sums each image's loss over its selected anchors (``cls_logits[valid]``, ``bbox[foreground]``);
here every anchor's loss is computed and the unselected ones are replaced by zero (``torch.where``, which
also gives them zero gradient), then each image's sum is divided by its foreground count as torchvision does.
"""

from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
from torch import Tensor

from detops.boxes import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss
from detops.coding import encode_boxes
from detops.focal_loss import sigmoid_focal_loss
from detops.patch import targets as tg

_IOU_LOSSES = {"giou": generalized_box_iou_loss, "diou": distance_box_iou_loss, "ciou": complete_box_iou_loss}


def compute_loss(original: Callable) -> Callable:
    """``RetinaNet.compute_loss``: the anchors of all images matched at once; an image without objects
    matches nothing (-1), as torchvision's."""

    def compute_loss(self, targets: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor], anchors: List[Tensor]):
        from torchvision.ops import boxes as box_ops

        gt_boxes = [t["boxes"] for t in targets]
        if not (
            tg.is_plain_matcher(self.proposal_matcher)
            and tg.is_box_iou(box_ops.box_iou)
            and tg.uniform_boxes(gt_boxes, anchors)
        ):
            return original(self, targets, head_outputs, anchors)
        matches = tg.match_batch(gt_boxes, anchors, self.proposal_matcher)
        counts = [a.size(0) for a in anchors]
        empty = [b.numel() == 0 for b in gt_boxes]

        def unmatched(i):
            return torch.full((counts[i],), -1, dtype=torch.int64, device=anchors[i].device)

        return self.head.compute_loss(targets, head_outputs, anchors, tg.split_rows(matches, counts, empty, unmatched))

    return compute_loss


def _stacked(matched_idxs: List[Tensor], count: int):
    if len(matched_idxs) == 0 or any(m.dim() != 1 or m.size(0) != count for m in matched_idxs):
        return None
    return torch.stack(matched_idxs)


def classification_loss(original: Callable) -> Callable:
    """``RetinaNetClassificationHead.compute_loss``: one-hot targets of the foreground anchors' labels
    (negative labels count from the end, as torchvision's indexing does), the focal loss of every anchor
    that is not between the thresholds, per image over its foreground count, averaged over the images."""

    def compute_loss(
        self, targets: List[Dict[str, Tensor]], head_outputs: Dict[str, Tensor], matched_idxs: List[Tensor]
    ):
        logits = head_outputs["cls_logits"]
        labels = [t["labels"] for t in targets]
        matches = _stacked(matched_idxs, logits.size(1)) if logits.dim() == 3 else None
        if (
            matches is None
            or len(labels) != logits.size(0)
            or any(lb.dim() != 1 or lb.device != logits.device or lb.dtype != labels[0].dtype for lb in labels)
            or labels[0].dtype not in (torch.int64, torch.int32)
        ):
            return original(self, targets, head_outputs, matched_idxs)
        num_classes = logits.size(-1)
        foreground = matches >= 0
        rows = max([1] + [lb.size(0) for lb in labels])
        label = tg.pad_values(labels, rows).to(torch.int64).gather(1, matches.clamp(min=0))
        label = torch.where(foreground, label, torch.zeros_like(label))
        label = torch.where(label < 0, label + num_classes, label)
        if logits.device.type == "cpu":
            # torchvision's indexing raises an IndexError here (a device assert on CUDA, as the scatter does).
            bad = (label < 0) | (label >= num_classes)
            if bool(bad.any()):
                i, p = [int(v) for v in bad.nonzero()[0]]
                raise IndexError(
                    f"targets[{i}]['labels'] has a label out of range for {num_classes} classes "
                    f"(matched to anchor {p}); labels must be in [0, {num_classes})"
                )
        target = torch.zeros_like(logits).scatter_(2, label.unsqueeze(2), foreground.unsqueeze(2).to(logits.dtype))
        loss = sigmoid_focal_loss(logits, target, reduction="none")
        valid = (matches != self.BETWEEN_THRESHOLDS).unsqueeze(2)
        per_image = torch.where(valid, loss, torch.zeros_like(loss)).sum((1, 2))
        per_image = per_image / foreground.sum(1).clamp(min=1)
        return per_image.sum() / len(targets)

    return compute_loss


def regression_loss(original: Callable) -> Callable:
    """``RetinaNetRegressionHead.compute_loss`` for every loss type torchvision's ``_box_loss`` knows:
    ``"l1"`` / ``"smooth_l1"`` on :func:`detops.encode_boxes` targets, ``"giou"`` / ``"diou"`` / ``"ciou"``
    on boxes decoded with the head's coder; per image over its foreground count, averaged over the images."""

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        from torchvision.models.detection._utils import BoxCoder

        regression = head_outputs["bbox_regression"]
        gt_boxes = [t["boxes"] for t in targets]
        matches = _stacked(matched_idxs, regression.size(1)) if regression.dim() == 3 else None
        if (
            matches is None
            or self._loss_type not in ("l1", "smooth_l1", "giou", "diou", "ciou")
            or type(self.box_coder) is not BoxCoder
            or not tg.uniform_boxes(gt_boxes, anchors)
            or len(anchors) != regression.size(0)
            or any(a.size(0) != regression.size(1) for a in anchors)
        ):
            return original(self, targets, head_outputs, anchors, matched_idxs)
        foreground = matches >= 0
        fg = foreground.unsqueeze(2)
        anchor = torch.stack(anchors)
        matched = tg.gather_rows(tg.pad_objects(gt_boxes, tg.object_rows(gt_boxes)), matches.clamp(min=0))
        if self._loss_type in ("l1", "smooth_l1"):
            # Background rows get target 0: an image without objects has zero boxes there, whose encoding is
            # -inf, and a non-finite value would reach the gradient through the loss's backward.
            target = encode_boxes(matched, anchor, self.box_coder.weights)
            target = torch.where(fg, target, torch.zeros_like(target))
            if self._loss_type == "l1":
                loss = F.l1_loss(regression, target, reduction="none")
            else:
                loss = F.smooth_l1_loss(regression, target, reduction="none", beta=1.0)
            loss = loss.sum(2)
        else:
            decoded = self.box_coder.decode_single(regression.reshape(-1, 4), anchor.reshape(-1, 4))
            # Background rows compare an anchor with itself: a finite loss whatever the prediction.
            decoded = torch.where(fg, decoded.reshape(regression.shape), anchor)
            loss = _IOU_LOSSES[self._loss_type](decoded, torch.where(fg, matched, anchor), reduction="none", eps=1e-7)
        per_image = torch.where(foreground, loss, torch.zeros_like(loss)).sum(1) / foreground.sum(1).clamp(min=1)
        return per_image.sum() / max(1, len(targets))

    return compute_loss
