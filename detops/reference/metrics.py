"""Plain Pascal VOC mean average precision: the truth :mod:`detops.metrics.voc` is tested against.

(COCO-style evaluation, :mod:`detops.metrics.coco`, is tested against pycocotools itself.)

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
floating-point ``arange`` values. A class with no non-difficult box (all its boxes difficult, or none at all)
gets AP 0 and counts in the mean, as the devkit and the tutorial count it (``empty_classes="zero"``); with
``empty_classes="nan"`` its AP is NaN and it is left out of the mean. Detections labelled 0 (background, the
tutorial's "no detection" placeholder) are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
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
    empty_classes: str = "zero",
) -> tuple[float, dict[int, float]]:
    """VOC mAP, one list entry per image (same arguments and result as :func:`detops.metrics.voc_map`)."""
    n_images = len(true_boxes)
    dets = [list(zip(det_boxes[i].tolist(), det_labels[i].tolist(), det_scores[i].tolist())) for i in range(n_images)]
    gts = [
        list(zip(true_boxes[i].tolist(), true_labels[i].tolist(), true_difficulties[i].tolist()))
        for i in range(n_images)
    ]
    aps: dict[int, float] = {}
    for c in range(1, n_classes):
        class_gts = [[(box, bool(d)) for box, label, d in gts[i] if label == c] for i in range(n_images)]
        n_positives = sum(1 for image in class_gts for _, d in image if not d)
        if n_positives == 0:
            aps[c] = 0.0 if empty_classes == "zero" else math.nan
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


# ---- COCO-style evaluation: the two kernels of detops.metrics.coco, one loop at a time ----


def coco_box_iou(d: Sequence[float], g: Sequence[float], crowd: bool) -> float:
    """pycocotools' IoU of two (x, y, w, h) boxes; a crowd box divides by the detection's area."""
    w = min(d[2] + d[0], g[2] + g[0]) - max(d[0], g[0])
    if w <= 0:
        return 0.0
    h = min(d[3] + d[1], g[3] + g[1]) - max(d[1], g[1])
    if h <= 0:
        return 0.0
    inter = w * h
    da, ga = d[2] * d[3], g[2] * g[3]
    return inter / (da if crowd else da + ga - inter)


def coco_match(dt_boxes, gt_boxes, gt_crowd, gt_ignore, dt_offsets, gt_offsets, iou_thresholds):
    """``torch.ops.detops.coco_match`` in Python loops: [A, T, D] int64, the matched ground-truth row or -1.

    Group n holds detections ``dt_offsets[n] .. dt_offsets[n + 1]`` (already in score order) and ground truth
    ``gt_offsets[n] .. gt_offsets[n + 1]``. Per area range a and threshold t, each detection in turn takes,
    among the boxes sorted non-ignored first (stably), the last one of largest IoU >= min(t, 1 - 1e-10) that
    is not yet taken (crowd boxes can be taken again), and stops looking at ignored boxes once it holds a
    regular one: pycocotools' evaluateImg loop.
    """
    db, gb = dt_boxes.tolist(), gt_boxes.tolist()
    crowd, ignore = gt_crowd.tolist(), gt_ignore.tolist()
    doff, goff = dt_offsets.tolist(), gt_offsets.tolist()
    A, T, D = len(ignore), len(iou_thresholds), len(db)
    out = [[[-1] * D for _ in range(T)] for _ in range(A)]
    for n in range(len(doff) - 1):
        dts, gts = range(doff[n], doff[n + 1]), range(goff[n], goff[n + 1])
        for a in range(A):
            order = sorted(gts, key=lambda g: ignore[a][g])  # stable: regular boxes first
            for t, thr in enumerate(iou_thresholds):
                taken = set()
                for d in dts:
                    best, m = min(thr, 1 - 1e-10), -1
                    for g in order:
                        if g in taken and not crowd[g]:
                            continue
                        if m > -1 and not ignore[a][m] and ignore[a][g]:
                            break
                        iou = coco_box_iou(db[d], gb[g], crowd[g])
                        if iou < best:
                            continue
                        best, m = iou, g
                    if m > -1:
                        taken.add(m)
                        out[a][t][d] = m
    return torch.tensor(out, dtype=torch.int64).reshape(A, T, D)


def coco_accumulate(status, scores, rank, class_offsets, positives, rec_thresholds, max_detections):
    """``torch.ops.detops.coco_accumulate`` in Python loops (pycocotools' accumulate on ranked statuses).

    status [A, T, D]: 0 false positive, 1 true positive, 2 ignored; detections of class k are
    ``class_offsets[k] .. class_offsets[k + 1]``, ranked; those with ``rank >= maxDet`` are left out.
    Returns precision [T, R, K, A, M], recall [T, K, A, M], scores [T, R, K, A, M], -1 where the class has
    no positive in the area range.
    """
    st, sc, rk = status.tolist(), scores.tolist(), rank.tolist()
    off, pos, thr = class_offsets.tolist(), positives.tolist(), list(rec_thresholds.tolist())
    A, T, K, R, M = len(st), len(st[0]) if st else 0, len(off) - 1, len(thr), len(max_detections)
    precision = torch.full((T, R, K, A, M), -1.0, dtype=torch.float64)
    recall = torch.full((T, K, A, M), -1.0, dtype=torch.float64)
    out_scores = torch.full((T, R, K, A, M), -1.0, dtype=torch.float64)
    eps = 2.220446049250313e-16
    for t in range(T):
        for k in range(K):
            for a in range(A):
                npig = pos[k][a]
                if npig == 0:
                    continue
                for m, max_det in enumerate(max_detections):
                    rows = [i for i in range(off[k], off[k + 1]) if rk[i] < max_det]
                    tp = fp = 0.0
                    rc, pr, ss = [], [], []
                    for i in rows:
                        tp += st[a][t][i] == 1
                        fp += st[a][t][i] == 0
                        rc.append(tp / npig)
                        pr.append(tp / ((fp + tp) + eps))
                        ss.append(sc[i])
                    recall[t, k, a, m] = rc[-1] if rows else 0.0
                    for i in range(len(pr) - 1, 0, -1):
                        pr[i - 1] = max(pr[i - 1], pr[i])
                    for r, v in enumerate(thr):
                        first = next((j for j, x in enumerate(rc) if x >= v), None)
                        precision[t, r, k, a, m] = 0.0 if first is None else pr[first]
                        out_scores[t, r, k, a, m] = 0.0 if first is None else ss[first]
    return precision, recall, out_scores
