"""Synthetic detection sets for the metrics' tests and benchmarks: COCO-like images with ground truth of every
size (small, medium, large), crowds, annotation areas that differ from the box area (as mask areas do),
detections near the ground truth and elsewhere, wrong classes, and optionally many score ties."""

from __future__ import annotations

import torch
from torch import Tensor


def coco_like(
    n_images: int = 5000,
    n_classes: int = 80,
    gt_per_image: float = 7.0,
    dets_per_image: float = 20.0,
    seed: int = 0,
    crowd_fraction: float = 0.01,
    score_levels: int | None = None,
    classes_per_image: int = 4,
    empty_fraction: float = 0.02,
    width: float = 640.0,
    height: float = 480.0,
) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
    """A random set in ``MeanAveragePrecision.update``'s format (xyxy pixel boxes).

    Args:
        n_images, n_classes: the set's size; labels are ``0 .. n_classes - 1``.
        gt_per_image, dets_per_image: mean counts (each image draws uniformly from 0 .. 2 * mean).
        seed: the generator's seed (the same set on every run and machine).
        crowd_fraction: share of ground-truth boxes marked ``iscrowd``.
        score_levels: when given, scores are rounded to this many levels (many ties).
        classes_per_image: each image's boxes are drawn from this many of the classes (as COCO images hold a
            few categories each).
        empty_fraction: share of images with no ground truth (they still get detections).

    Returns:
        (preds, target): lists of dicts, ``boxes`` float32 [N, 4], ``scores`` float32, ``labels`` int64;
        target also ``iscrowd`` (int64) and ``area`` (float32, 0.6 to 1 times the box area).
    """
    g = torch.Generator().manual_seed(seed)
    preds, target = [], []
    for _ in range(n_images):
        n_gt = int(torch.randint(0, int(2 * gt_per_image) + 1, (), generator=g))
        if float(torch.rand((), generator=g)) < empty_fraction:
            n_gt = 0
        n_dt = int(torch.randint(0, int(2 * dets_per_image) + 1, (), generator=g))
        classes = torch.randperm(n_classes, generator=g)[: max(1, min(classes_per_image, n_classes))]
        gt_boxes = _boxes(n_gt, width, height, g)
        gt_labels = classes[torch.randint(0, classes.numel(), (n_gt,), generator=g)]
        crowd = (torch.rand(n_gt, generator=g) < crowd_fraction).long()
        area = (
            (gt_boxes[:, 2] - gt_boxes[:, 0])
            * (gt_boxes[:, 3] - gt_boxes[:, 1])
            * (0.6 + 0.4 * torch.rand(n_gt, generator=g))
        )
        # Detections: jittered copies of ground-truth boxes (some with the wrong class), the rest anywhere.
        n_near = min(n_dt, int(n_gt * 1.5)) if n_gt else 0
        pick = torch.randint(0, max(n_gt, 1), (n_near,), generator=g)
        near = gt_boxes[pick]
        size = (near[:, 2:] - near[:, :2]).repeat(1, 2)
        near = near + size * 0.15 * torch.randn(n_near, 4, generator=g)
        near = torch.cat([near[:, :2].minimum(near[:, 2:]), near[:, :2].maximum(near[:, 2:])], 1)
        near_labels = gt_labels[pick] if n_gt else torch.zeros(0, dtype=torch.int64)
        flip = torch.rand(n_near, generator=g) < 0.1
        near_labels = torch.where(flip, classes[torch.randint(0, classes.numel(), (n_near,), generator=g)], near_labels)
        far = _boxes(n_dt - n_near, width, height, g)
        far_labels = classes[torch.randint(0, classes.numel(), (n_dt - n_near,), generator=g)]
        dt_boxes = torch.cat([near, far])
        dt_labels = torch.cat([near_labels, far_labels])
        scores = torch.rand(n_dt, generator=g)
        scores[:n_near] = scores[:n_near] * 0.5 + 0.5  # near boxes tend to score higher
        if score_levels:
            scores = (scores * score_levels).floor() / score_levels
        preds.append({"boxes": dt_boxes.float(), "scores": scores.float(), "labels": dt_labels})
        target.append({"boxes": gt_boxes.float(), "labels": gt_labels, "iscrowd": crowd, "area": area.float()})
    return preds, target


def _boxes(n: int, width: float, height: float, g: torch.Generator) -> Tensor:
    # Sides log-uniform in [2, 400] pixels: all three COCO area ranges are well represented.
    wh = torch.exp(torch.empty(n, 2).uniform_(0.7, 6.0, generator=g))
    xy = torch.rand(n, 2, generator=g) * torch.tensor([width, height])
    return torch.cat([xy, xy + wh], 1)
