"""Plain-PyTorch references of the NMS family: the truth the kernels are tested against (slow, simple).

Semantics are those of detops.nms (see its module docstring): rank = decreasing score, ties by lower index;
suppression when IoU > threshold strictly, the IoU computed as torchvision computes it and compared in
float64 against the threshold (as torchvision's CPU kernel does); NaN boxes or scores are never kept.

Also here: :func:`tutorial_detect_objects`, a re-statement of the SSD tutorial's per-image, per-class
``detect_objects`` loop, the benchmark baseline and the oracle of the SSD code's tests.
"""

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from detops.reference import in_compute_dtype
from detops.reference.matching import tutorial_cxcy_to_xy, tutorial_find_jaccard_overlap, tutorial_gcxgcy_to_cxcy


def _valid(boxes: Tensor, scores: Tensor) -> Tensor:
    return ~(torch.isnan(scores) | torch.isnan(boxes).any(dim=-1))


def _rank(scores: Tensor, candidates: Tensor) -> Tensor:
    """candidates (ascending indices) in rank order: decreasing score, ties by lower index."""
    order = torch.sort(scores[candidates], descending=True, stable=True).indices
    return candidates[order]


def _iou_one_to_many(box: Tensor, others: Tensor) -> Tensor:
    area_a = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    w = (torch.minimum(box[2], others[:, 2]) - torch.maximum(box[0], others[:, 0])).clamp(min=0)
    h = (torch.minimum(box[3], others[:, 3]) - torch.maximum(box[1], others[:, 1])).clamp(min=0)
    inter = w * h
    return inter / (area_a + areas - inter)


def _greedy(boxes: Tensor, iou_threshold: float, max_keep: Optional[int] = None) -> List[int]:
    """Greedy NMS over boxes already in rank order; returns kept positions."""
    n = boxes.shape[0]
    removed = torch.zeros(n, dtype=torch.bool)
    keep: List[int] = []
    for i in range(n):
        if removed[i]:
            continue
        keep.append(i)
        if max_keep is not None and len(keep) >= max_keep:
            break
        if i + 1 < n:
            ovr = _iou_one_to_many(boxes[i], boxes[i + 1 :])
            removed[i + 1 :] |= (ovr.double() > iou_threshold).cpu()
    return keep


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Reference of :func:`detops.nms`: ``Tensor[N, 4], Tensor[N] -> int64 Tensor[K]``."""
    boxes, scores = in_compute_dtype(boxes), in_compute_dtype(scores)
    order = _rank(scores, torch.nonzero(_valid(boxes, scores)).flatten())
    keep = _greedy(boxes[order], iou_threshold)
    return order[torch.tensor(keep, dtype=torch.int64, device=boxes.device)]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Reference of :func:`detops.batched_nms`: NMS per category, result by decreasing score then index."""
    boxes, scores = in_compute_dtype(boxes), in_compute_dtype(scores)
    valid = _valid(boxes, scores)
    kept = []
    for c in torch.unique(idxs[valid]).tolist():
        members = torch.nonzero(valid & (idxs == c)).flatten()
        order = _rank(scores, members)
        keep = _greedy(boxes[order], iou_threshold)
        kept.append(order[torch.tensor(keep, dtype=torch.int64, device=boxes.device)])
    if not kept:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    all_kept = torch.sort(torch.cat(kept)).values
    return _rank(scores, all_kept)


def multiclass_nms(
    boxes: Tensor,
    scores: Tensor,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    *,
    background_class: Optional[int] = None,
    max_candidates_per_class: Optional[int] = None,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Reference of :func:`detops.multiclass_nms` (per image, per class loops)."""
    out_dtype = scores.dtype
    boxes, scores = in_compute_dtype(boxes), in_compute_dtype(scores)
    b_, p_, c_ = scores.shape
    cap = p_ if max_candidates_per_class is None else min(p_, max_candidates_per_class)
    searched = max(0, c_ - (0 if background_class is None else 1))
    k_ = min(max_detections, searched * cap)  # no more rows than candidates
    out_boxes = torch.zeros(b_, k_, 4, dtype=scores.dtype, device=scores.device)
    out_scores = torch.zeros(b_, k_, dtype=scores.dtype, device=scores.device)
    out_labels = torch.full((b_, k_), -1, dtype=torch.int64, device=scores.device)
    counts = torch.zeros(b_, dtype=torch.int64, device=scores.device)
    thr = torch.tensor(score_threshold, dtype=torch.float64)
    for b in range(b_):
        dets = []  # (score, class, prior)
        for c in range(c_):
            if c == background_class:
                continue
            cls_boxes = boxes[b, :, c] if boxes.dim() == 4 else boxes[b]
            s = scores[b, :, c]
            ok = _valid(cls_boxes, s) & (s.double() > thr)
            order = _rank(s, torch.nonzero(ok).flatten())
            if max_candidates_per_class is not None:
                order = order[:max_candidates_per_class]
            keep = _greedy(cls_boxes[order], iou_threshold, max_keep=k_)
            for pos in keep:
                prior = int(order[pos])
                dets.append((float(s[prior]), c, prior))
        dets.sort(key=lambda d: (-d[0], d[1], d[2]))
        dets = dets[:k_]
        counts[b] = len(dets)
        for k, (_, c, prior) in enumerate(dets):
            out_boxes[b, k] = boxes[b, prior, c] if boxes.dim() == 4 else boxes[b, prior]
            out_scores[b, k] = scores[b, prior, c]
            out_labels[b, k] = c
    return out_boxes.to(out_dtype), out_scores.to(out_dtype), out_labels, counts


def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 0.001,
    method: str = "gaussian",
) -> Tuple[Tensor, Tensor]:
    """Reference of :func:`detops.soft_nms`."""
    if method not in ("linear", "gaussian"):
        raise ValueError(f"method must be 'linear' or 'gaussian', got {method!r}")
    out_dtype = scores.dtype
    boxes, scores = in_compute_dtype(boxes), in_compute_dtype(scores)
    alive = torch.nonzero(_valid(boxes, scores)).flatten().tolist()
    cur = scores.clone()
    thr = torch.tensor(iou_threshold, dtype=scores.dtype)
    keep, kept_scores = [], []
    while alive:
        vals = cur[alive]
        best = int(torch.argmax(vals))  # first maximum: the lowest index among ties
        if not bool(vals[best] >= score_threshold):
            break
        i = alive.pop(best)
        keep.append(i)
        kept_scores.append(cur[i].clone())
        if not alive:
            break
        rest = torch.tensor(alive, dtype=torch.int64)
        ov = _iou_one_to_many(boxes[i], boxes[rest])
        if method == "linear":
            w = torch.where(ov > thr, 1 - ov, torch.ones_like(ov))
        else:
            w = torch.exp(-(ov * ov) / sigma)
        cur[rest] = cur[rest] * w
        alive = [j for j in alive if bool(cur[j] >= score_threshold)]
    keep_t = torch.tensor(keep, dtype=torch.int64, device=boxes.device)
    scores_t = torch.stack(kept_scores) if kept_scores else scores.new_empty(0)
    return keep_t, scores_t.to(out_dtype)


# ---- the SSD tutorial's detect_objects, re-stated ----


def _tutorial_decode(predicted_locs: Tensor, priors_cxcy: Tensor) -> Tensor:
    """Offsets (g_cx, g_cy, g_w, g_h) w.r.t. center-size priors, variances 10 and 5 -> fractional xyxy."""
    return tutorial_cxcy_to_xy(tutorial_gcxgcy_to_cxcy(predicted_locs, priors_cxcy))


def tutorial_detect_objects(
    priors_cxcy: Tensor,
    predicted_locs: Tensor,
    predicted_scores: Tensor,
    min_score: float,
    max_overlap: float,
    top_k: int,
    n_classes: int,
) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
    """The SSD tutorial's ``SSD300.detect_objects``: softmax, decode, then per image and per non-background
    class a threshold, a sort, a full IoU matrix and a Python loop over boxes; ``top_k`` per image.

    Args:
        priors_cxcy (Tensor[P, 4]): priors, fractional center-size.
        predicted_locs (Tensor[B, P, 4]): offsets w.r.t. the priors (variances 10 and 5).
        predicted_scores (Tensor[B, P, n_classes]): logits; class 0 is the background.
        min_score, max_overlap, top_k: the tutorial's thresholds (evaluation: 0.01, 0.45, 200).

    Returns:
        (boxes, labels, scores): lists of length B with ``Tensor[n, 4]`` fractional xyxy boxes, ``Tensor[n]``
        int64 labels and ``Tensor[n]`` scores; classes in increasing order, each by decreasing score, and
        sorted by decreasing score when cut to ``top_k``. An image without detections gets the tutorial's
        placeholder: box ``[0, 0, 1, 1]``, label 0 (background), score 0.
    """
    device = predicted_locs.device
    batch_size = predicted_locs.size(0)
    predicted_scores = F.softmax(predicted_scores, dim=2)
    all_boxes, all_labels, all_scores = [], [], []
    for i in range(batch_size):
        decoded_locs = _tutorial_decode(predicted_locs[i], priors_cxcy)
        image_boxes, image_labels, image_scores = [], [], []
        for c in range(1, n_classes):
            class_scores = predicted_scores[i][:, c]
            above = class_scores > min_score
            n_above = int(above.sum().item())
            if n_above == 0:
                continue
            class_scores = class_scores[above]
            class_locs = decoded_locs[above]
            class_scores, sort_ind = class_scores.sort(dim=0, descending=True)
            class_locs = class_locs[sort_ind]
            overlap = tutorial_find_jaccard_overlap(class_locs, class_locs)
            suppress = torch.zeros(n_above, dtype=torch.bool, device=device)
            for box in range(class_locs.size(0)):
                if suppress[box]:
                    continue
                suppress = suppress | (overlap[box] > max_overlap)
                suppress[box] = False
            image_boxes.append(class_locs[~suppress])
            image_labels.append(torch.full((int((~suppress).sum().item()),), c, dtype=torch.int64, device=device))
            image_scores.append(class_scores[~suppress])
        if len(image_boxes) == 0:
            image_boxes.append(torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=device))
            image_labels.append(torch.tensor([0], dtype=torch.int64, device=device))
            image_scores.append(torch.tensor([0.0], device=device))
        image_boxes = torch.cat(image_boxes, dim=0)
        image_labels = torch.cat(image_labels, dim=0)
        image_scores = torch.cat(image_scores, dim=0)
        if image_scores.size(0) > top_k:
            image_scores, sort_ind = image_scores.sort(dim=0, descending=True)
            image_scores = image_scores[:top_k]
            image_boxes = image_boxes[sort_ind][:top_k]
            image_labels = image_labels[sort_ind][:top_k]
        all_boxes.append(image_boxes)
        all_labels.append(image_labels)
        all_scores.append(image_scores)
    return all_boxes, all_labels, all_scores
