"""Plain Pascal VOC mean average precision: the truth :mod:`detops.ssd.metrics` is tested against.

One class at a time, one detection at a time, in Python floats, exactly as the VOC devkit (``VOCevaldet``)
and the SSD tutorial's ``calculate_mAP`` describe it:

1. the class's detections from all images are sorted by score, highest first (a stable sort: equal scores
   keep their input order, image by image);
2. each detection takes the ground-truth box of its class *in its image* with the highest IoU (the first
   one on ties); if that IoU is strictly greater than the threshold it is a match, otherwise a false
   positive;
3. a match with a difficult box is ignored (neither true nor false positive); a match with a box already
   claimed by a higher-scored detection is a false positive; otherwise it is a true positive and claims it;
4. precision and recall follow at every rank (recall over the class's non-difficult boxes), and AP is the
   VOC2007 11-point value (mean over recall thresholds 0, 0.1, ..., 1 of the best precision at a recall at
   least that threshold, 0 where none) or the all-point ("area") value (area under the precision curve made
   non-increasing from the right, VOC2010 and later).

The recall thresholds are the exact fractions k/10 (``10 * TP >= k * n_positives`` in integers), not
floating-point ``arange`` values. Classes with no non-difficult box have no AP (NaN) and are left out of the
mean. Detections labelled 0 (background, the tutorial's "no detection" placeholder) are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def average_precision(tp: list[int], fp: list[int], n_positives: int, method: str = "voc07") -> float:
    """AP of a ranked list of detections given their TP/FP flags (ignored ones removed)."""
    precisions, true_counts = [], []
    n_tp = n_fp = 0
    for t, f in zip(tp, fp):
        n_tp += t
        n_fp += f
        precisions.append(n_tp / (n_tp + n_fp))
        true_counts.append(n_tp)
    if method == "voc07":
        total = 0.0
        for k in range(11):
            best = 0.0
            for p, n in zip(precisions, true_counts):
                if 10 * n >= k * n_positives:
                    best = max(best, p)
            total += best
        return total / 11
    if method == "area":
        recalls = [0.0] + [n / n_positives for n in true_counts] + [1.0]
        envelope = [0.0] + precisions + [0.0]
        for i in range(len(envelope) - 2, -1, -1):
            envelope[i] = max(envelope[i], envelope[i + 1])
        return sum((recalls[i + 1] - recalls[i]) * envelope[i + 1] for i in range(len(recalls) - 1))
    raise ValueError(f"method must be 'voc07' or 'area', got {method!r}")


def voc_map(
    det_boxes: Sequence[Tensor],
    det_labels: Sequence[Tensor],
    det_scores: Sequence[Tensor],
    true_boxes: Sequence[Tensor],
    true_labels: Sequence[Tensor],
    true_difficulties: Sequence[Tensor],
    n_classes: int,
    method: str = "voc07",
    iou_threshold: float = 0.5,
) -> tuple[float, dict[int, float]]:
    """VOC mAP, one list entry per image (same arguments and result as :func:`detops.ssd.metrics.voc_map`)."""
    n_images = len(true_boxes)
    dets = [
        list(zip(det_boxes[i].tolist(), det_labels[i].tolist(), det_scores[i].tolist())) for i in range(n_images)
    ]
    gts = [
        list(zip(true_boxes[i].tolist(), true_labels[i].tolist(), true_difficulties[i].tolist()))
        for i in range(n_images)
    ]
    aps: dict[int, float] = {}
    for c in range(1, n_classes):
        class_gts = [[(box, bool(d)) for box, label, d in gts[i] if label == c] for i in range(n_images)]
        n_positives = sum(1 for image in class_gts for _, d in image if not d)
        if n_positives == 0:
            aps[c] = math.nan
            continue
        class_dets = [(score, i, box) for i in range(n_images) for box, label, score in dets[i] if label == c]
        class_dets.sort(key=lambda d: -d[0])  # Python's sort is stable
        claimed = [[False] * len(image) for image in class_gts]
        tp, fp = [], []
        for _, i, box in class_dets:
            best_iou, best_j = -1.0, -1
            for j, (gt_box, _) in enumerate(class_gts[i]):
                iou = _iou(box, gt_box)
                if iou > best_iou:
                    best_iou, best_j = iou, j
            if best_j >= 0 and best_iou > iou_threshold:
                if class_gts[i][best_j][1]:
                    continue  # difficult: ignored
                if not claimed[i][best_j]:
                    claimed[i][best_j] = True
                    tp.append(1)
                    fp.append(0)
                else:
                    tp.append(0)
                    fp.append(1)
            else:
                tp.append(0)
                fp.append(1)
        aps[c] = average_precision(tp, fp, n_positives, method)
    valid = [ap for ap in aps.values() if not math.isnan(ap)]
    return (sum(valid) / len(valid) if valid else math.nan), aps
