"""Reference SSD training targets (kernels: csrc/cpu/matching.cpp, csrc/cuda/matching.cu): priors, matching
and the MultiBox loss (docs/ops.md, "SSD priors" to "MultiBox loss").

The ``tutorial_*`` functions mirror the SSD tutorial (sgrvinod's a-PyTorch-Tutorial-to-Object-Detection) step by
step: the per-image loop, ``torch.max`` tie rules (first index), the forced-match overwrite
``object_for_each_prior[prior_for_each_object] = range(n_objects)`` (a later object wins a shared prior) and, in
its loss, the sort-based hard negative mining. They are the truth the kernels are tested against and the
benchmarks' baseline. :func:`match_boxes` states torchvision's Matcher rule in plain PyTorch. Hard negative
mining's references are in :mod:`detops.reference.hard_negatives`.
"""

from math import sqrt

import torch
import torch.nn.functional as F

# ------------------------------------------------------------------------------- the tutorial's utilities


def tutorial_xy_to_cxcy(xy):
    return torch.cat([(xy[:, 2:] + xy[:, :2]) / 2, xy[:, 2:] - xy[:, :2]], 1)


def tutorial_cxcy_to_xy(cxcy):
    return torch.cat([cxcy[:, :2] - (cxcy[:, 2:] / 2), cxcy[:, :2] + (cxcy[:, 2:] / 2)], 1)


def tutorial_cxcy_to_gcxgcy(cxcy, priors_cxcy):
    """Encoding with variances (0.1, 0.2): (gcx, gcy) = 10 (c - pc) / pwh, (gw, gh) = 5 log(wh / pwh)."""
    return torch.cat(
        [
            (cxcy[:, :2] - priors_cxcy[:, :2]) / (priors_cxcy[:, 2:] / 10),
            torch.log(cxcy[:, 2:] / priors_cxcy[:, 2:]) * 5,
        ],
        1,
    )


def tutorial_gcxgcy_to_cxcy(gcxgcy, priors_cxcy):
    """The inverse of :func:`tutorial_cxcy_to_gcxgcy` (decoding)."""
    return torch.cat(
        [
            gcxgcy[:, :2] * priors_cxcy[:, 2:] / 10 + priors_cxcy[:, :2],
            torch.exp(gcxgcy[:, 2:] / 5) * priors_cxcy[:, 2:],
        ],
        1,
    )


def tutorial_find_intersection(set_1, set_2):
    lower_bounds = torch.max(set_1[:, :2].unsqueeze(1), set_2[:, :2].unsqueeze(0))
    upper_bounds = torch.min(set_1[:, 2:].unsqueeze(1), set_2[:, 2:].unsqueeze(0))
    intersection_dims = torch.clamp(upper_bounds - lower_bounds, min=0)
    return intersection_dims[:, :, 0] * intersection_dims[:, :, 1]


def tutorial_find_jaccard_overlap(set_1, set_2):
    intersection = tutorial_find_intersection(set_1, set_2)
    areas_set_1 = (set_1[:, 2] - set_1[:, 0]) * (set_1[:, 3] - set_1[:, 1])
    areas_set_2 = (set_2[:, 2] - set_2[:, 0]) * (set_2[:, 3] - set_2[:, 1])
    union = areas_set_1.unsqueeze(1) + areas_set_2.unsqueeze(0) - intersection
    return intersection / union


TUTORIAL_FMAP_DIMS = {"conv4_3": 38, "conv7": 19, "conv8_2": 10, "conv9_2": 5, "conv10_2": 3, "conv11_2": 1}
TUTORIAL_OBJ_SCALES = {
    "conv4_3": 0.1,
    "conv7": 0.2,
    "conv8_2": 0.375,
    "conv9_2": 0.55,
    "conv10_2": 0.725,
    "conv11_2": 0.9,
}
TUTORIAL_ASPECT_RATIOS = {
    "conv4_3": [1.0, 2.0, 0.5],
    "conv7": [1.0, 2.0, 3.0, 0.5, 0.333],
    "conv8_2": [1.0, 2.0, 3.0, 0.5, 0.333],
    "conv9_2": [1.0, 2.0, 3.0, 0.5, 0.333],
    "conv10_2": [1.0, 2.0, 0.5],
    "conv11_2": [1.0, 2.0, 0.5],
}


def tutorial_create_prior_boxes(device=None):
    """SSD300.create_prior_boxes() of the tutorial: 8732 center-size priors, clamped to [0, 1] as it does."""
    fmaps = list(TUTORIAL_FMAP_DIMS.keys())
    prior_boxes = []
    for k, fmap in enumerate(fmaps):
        for i in range(TUTORIAL_FMAP_DIMS[fmap]):
            for j in range(TUTORIAL_FMAP_DIMS[fmap]):
                cx = (j + 0.5) / TUTORIAL_FMAP_DIMS[fmap]
                cy = (i + 0.5) / TUTORIAL_FMAP_DIMS[fmap]
                for ratio in TUTORIAL_ASPECT_RATIOS[fmap]:
                    s = TUTORIAL_OBJ_SCALES[fmap]
                    prior_boxes.append([cx, cy, s * sqrt(ratio), s / sqrt(ratio)])
                    if ratio == 1.0:
                        try:
                            additional_scale = sqrt(s * TUTORIAL_OBJ_SCALES[fmaps[k + 1]])
                        except IndexError:
                            additional_scale = 1.0
                        prior_boxes.append([cx, cy, additional_scale, additional_scale])
    prior_boxes = torch.FloatTensor(prior_boxes).to(device)
    prior_boxes.clamp_(0, 1)
    return prior_boxes


# ------------------------------------------------------------------------------------------- matching


def tutorial_match_image(boxes, labels, priors_cxcy, threshold=0.5):
    """One image of the tutorial's MultiBoxLoss.forward loop.

    Returns (label_for_each_prior [P], object_for_each_prior [P] with -1 where the overlap is below the
    threshold, true_locs [P, 4] encoded for every prior as the tutorial computes them).
    """
    priors_xy = tutorial_cxcy_to_xy(priors_cxcy)
    n_objects = boxes.size(0)
    overlap = tutorial_find_jaccard_overlap(boxes, priors_xy)  # (n_objects, P)
    overlap_for_each_prior, object_for_each_prior = overlap.max(dim=0)
    _, prior_for_each_object = overlap.max(dim=1)
    object_for_each_prior[prior_for_each_object] = torch.LongTensor(range(n_objects)).to(boxes.device)
    overlap_for_each_prior[prior_for_each_object] = 1.0
    true_locs = tutorial_cxcy_to_gcxgcy(tutorial_xy_to_cxcy(boxes[object_for_each_prior]), priors_cxcy)
    label_for_each_prior = labels[object_for_each_prior]
    label_for_each_prior[overlap_for_each_prior < threshold] = 0
    matched = torch.where(overlap_for_each_prior < threshold, -1, object_for_each_prior)
    return label_for_each_prior, matched, true_locs


def tutorial_match(boxes, labels, priors_cxcy, threshold=0.5):
    """The per-image loop over a batch (lists of [G_i, 4] xyxy boxes and [G_i] labels), with an image without
    objects made all-background (the tutorial itself fails on one). Background targets are zeroed (the
    tutorial encodes a box for every prior; only the positives' are ever used).

    Returns labels [B, P] int64, matched [B, P] int64 (-1 background), targets [B, P, 4].
    """
    B, P = len(boxes), priors_cxcy.size(0)
    true_classes = torch.zeros((B, P), dtype=torch.long, device=priors_cxcy.device)
    matched = torch.full((B, P), -1, dtype=torch.long, device=priors_cxcy.device)
    true_locs = torch.zeros((B, P, 4), dtype=priors_cxcy.dtype, device=priors_cxcy.device)
    for i in range(B):
        if boxes[i].size(0) == 0:
            continue
        lab, mat, locs = tutorial_match_image(boxes[i], labels[i], priors_cxcy, threshold)
        true_classes[i] = lab
        matched[i] = mat
        true_locs[i] = torch.where((mat >= 0).unsqueeze(1), locs, torch.zeros_like(locs))
    return true_classes, matched, true_locs


def match_boxes(match_quality_matrix, high_threshold, low_threshold, allow_low_quality_matches=False):
    """torchvision's Matcher rule on one quality matrix [G, P] -> matches [P] (-1 below low, -2 between); an
    empty G gives all -1 (torchvision raises)."""
    q = match_quality_matrix
    if q.size(0) == 0:
        return torch.full((q.size(1),), -1, dtype=torch.long, device=q.device)
    matched_vals, matches = q.max(dim=0)
    all_matches = matches.clone()
    matches[matched_vals < low_threshold] = -1
    matches[(matched_vals >= low_threshold) & (matched_vals < high_threshold)] = -2
    if allow_low_quality_matches:
        highest, _ = q.max(dim=1)
        pred_inds = torch.where(q == highest[:, None])[1]
        matches[pred_inds] = all_matches[pred_inds]
    return matches


# ----------------------------------------------------------------------------------------------- loss


def tutorial_multibox_loss(
    predicted_locs,
    predicted_scores,
    boxes,
    labels,
    priors_cxcy,
    threshold=0.5,
    neg_pos_ratio=3,
    alpha=1.0,
    loc_loss="l1",
):
    """The tutorial's MultiBoxLoss.forward (``loc_loss="l1"``: its nn.L1Loss; ``"smooth_l1"``: the paper's,
    nn.SmoothL1Loss). A batch without positives gives NaN, as the tutorial's does."""
    batch_size = predicted_locs.size(0)
    n_priors = priors_cxcy.size(0)
    n_classes = predicted_scores.size(2)
    assert n_priors == predicted_locs.size(1) == predicted_scores.size(1)
    device = predicted_locs.device
    # The tutorial's per-image matching loop; only the positives' targets are used below.
    true_classes, _, true_locs = tutorial_match(boxes, labels, priors_cxcy, threshold)
    true_classes, true_locs = true_classes.to(device), true_locs.to(device=device, dtype=predicted_locs.dtype)
    positive_priors = true_classes != 0
    criterion = torch.nn.L1Loss() if loc_loss == "l1" else torch.nn.SmoothL1Loss()
    loc = criterion(predicted_locs[positive_priors], true_locs[positive_priors])
    n_positives = positive_priors.sum(dim=1)
    n_hard_negatives = neg_pos_ratio * n_positives
    conf_loss_all = F.cross_entropy(predicted_scores.view(-1, n_classes), true_classes.view(-1), reduction="none")
    conf_loss_all = conf_loss_all.view(batch_size, n_priors)
    conf_loss_pos = conf_loss_all[positive_priors]
    conf_loss_neg = conf_loss_all.clone()
    conf_loss_neg[positive_priors] = 0.0
    conf_loss_neg, _ = conf_loss_neg.sort(dim=1, descending=True)
    hardness_ranks = torch.LongTensor(range(n_priors)).unsqueeze(0).expand_as(conf_loss_neg).to(device)
    hard_negatives = hardness_ranks < n_hard_negatives.unsqueeze(1)
    conf_loss_hard_neg = conf_loss_neg[hard_negatives]
    conf = (conf_loss_hard_neg.sum() + conf_loss_pos.sum()) / n_positives.sum().to(conf_loss_all.dtype)
    return conf + alpha * loc
