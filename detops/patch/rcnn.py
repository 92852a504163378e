"""Faster R-CNN's target assignment, batched: the RPN's anchors and the ROI heads' proposals matched to the
ground truth of every image at once (:mod:`detops.patch.targets`), labelled as torchvision labels them."""

from typing import Callable, Dict, List, Tuple

import torch
from torch import Tensor

from detops.patch import targets as tg


def assign_targets_to_anchors(original: Callable) -> Callable:
    """``RegionProposalNetwork.assign_targets_to_anchors``: labels 1 (matched), 0 (below the low threshold,
    or an image without objects), -1 (between the thresholds, ignored by the sampler), float32; each anchor's
    matched box (zeros where the image has none)."""

    def assign_targets_to_anchors(
        self, anchors: List[Tensor], targets: List[Dict[str, Tensor]]
    ) -> Tuple[List[Tensor], List[Tensor]]:
        gt_boxes = [t["boxes"] for t in targets]
        if not (
            tg.is_plain_matcher(self.proposal_matcher)
            and tg.is_box_iou(self.box_similarity)
            and tg.uniform_boxes(gt_boxes, anchors)
        ):
            return original(self, anchors, targets)
        matches = tg.match_batch(gt_boxes, anchors, self.proposal_matcher)
        gt = tg.pad_objects(gt_boxes, tg.object_rows(gt_boxes))
        matched_gt = tg.gather_rows(gt, matches.clamp(min=0))
        labels = (matches >= 0).to(torch.float32)
        labels = torch.where(matches == -2, torch.full_like(labels, -1.0), labels)
        counts = [a.size(0) for a in anchors]
        empty = [b.numel() == 0 for b in gt_boxes]

        def no_labels(i):
            return torch.zeros((counts[i],), dtype=torch.float32, device=anchors[i].device)

        def no_boxes(i):
            return torch.zeros(anchors[i].shape, dtype=torch.float32, device=anchors[i].device)

        return tg.split_rows(labels, counts, empty, no_labels), tg.split_rows(matched_gt, counts, empty, no_boxes)

    return assign_targets_to_anchors


def assign_targets_to_proposals(original: Callable) -> Callable:
    """``RoIHeads.assign_targets_to_proposals``: each proposal's matched object index (clamped at 0) and its
    label: the object's, 0 below the low threshold, -1 between (ignored by the sampler); int64. The ROI heads
    compare with ``box_ops.box_iou`` (not ``self.box_similarity``), so the module attribute decides."""

    def assign_targets_to_proposals(
        self, proposals: List[Tensor], gt_boxes: List[Tensor], gt_labels: List[Tensor]
    ) -> Tuple[List[Tensor], List[Tensor]]:
        from torchvision.ops import boxes as box_ops

        if not (
            tg.is_plain_matcher(self.proposal_matcher)
            and tg.is_box_iou(box_ops.box_iou)
            and tg.uniform_boxes(gt_boxes, proposals)
            and len(gt_labels) == len(gt_boxes)
            and all(
                isinstance(lb, Tensor) and lb.dim() == 1 and lb.device == b.device for lb, b in zip(gt_labels, gt_boxes)
            )
        ):
            return original(self, proposals, gt_boxes, gt_labels)
        for i, (b, lb) in enumerate(zip(gt_boxes, gt_labels)):
            # torchvision would index past the labels (an IndexError, or a device assert on CUDA).
            if lb.size(0) < b.size(0):
                raise ValueError(f"targets[{i}]['labels'] has {lb.size(0)} labels for {b.size(0)} boxes")
        matches = tg.match_batch(gt_boxes, proposals, self.proposal_matcher)
        clamped = matches.clamp(min=0)
        rows = max([tg.object_rows(gt_boxes)] + [lb.size(0) for lb in gt_labels])
        labels = tg.pad_values([lb.to(torch.int64) for lb in gt_labels], rows).gather(1, clamped)
        labels = torch.where(matches == -1, torch.zeros_like(labels), labels)
        labels = torch.where(matches == -2, torch.full_like(labels, -1), labels)
        counts = [p.size(0) for p in proposals]
        empty = [b.numel() == 0 for b in gt_boxes]

        def zeros(i):
            return torch.zeros((counts[i],), dtype=torch.int64, device=proposals[i].device)

        return tg.split_rows(clamped, counts, empty, zeros), tg.split_rows(labels, counts, empty, zeros)

    return assign_targets_to_proposals
