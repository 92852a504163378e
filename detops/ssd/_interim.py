"""TEMPORARY plain-PyTorch stand-ins for pieces other branches deliver (priors, loss, NMS).

Imported only through detops/ssd/_deps.py. Delete once the real modules are merged.
"""

import math
from itertools import product

import torch
import torch.nn.functional as F
import torchvision

import detops

# ----------------------------------------------------------------------------------------------- priors


def prior_boxes(fmap_dims, obj_scales, aspect_ratios, device=None):
    """Priors [P, 4] cxcywh, tutorial order (map, row, column, aspect ratio; extra prior after ratio 1)."""
    priors = []
    k = len(fmap_dims)
    for i in range(k):
        d = fmap_dims[i]
        for r, c in product(range(d), repeat=2):
            cx, cy = (c + 0.5) / d, (r + 0.5) / d
            for ar in aspect_ratios[i]:
                s = obj_scales[i]
                priors.append([cx, cy, s * math.sqrt(ar), s / math.sqrt(ar)])
                if ar == 1.0:
                    extra = math.sqrt(s * obj_scales[i + 1]) if i + 1 < k else 1.0
                    priors.append([cx, cy, extra, extra])
    return torch.tensor(priors, dtype=torch.float32, device=device)


def ssd300_prior_boxes(device=None):
    return prior_boxes(
        [38, 19, 10, 5, 3, 1],
        [0.1, 0.2, 0.375, 0.55, 0.725, 0.9],
        [[1.0, 2.0, 0.5], [1.0, 2.0, 3.0, 0.5, 1 / 3], [1.0, 2.0, 3.0, 0.5, 1 / 3],
         [1.0, 2.0, 3.0, 0.5, 1 / 3], [1.0, 2.0, 0.5], [1.0, 2.0, 0.5]],
        device=device,
    )


# ------------------------------------------------------------------------------------------------- loss


class MultiBoxLoss(torch.nn.Module):
    def __init__(self, priors_cxcy, threshold=0.5, neg_pos_ratio=3, alpha=1.0, loc_loss="smooth_l1"):
        super().__init__()
        self.register_buffer("priors_cxcy", priors_cxcy, persistent=False)
        self.threshold, self.neg_pos_ratio, self.alpha, self.loc_loss = threshold, neg_pos_ratio, alpha, loc_loss

    def forward(self, predicted_locs, predicted_scores, boxes, labels):
        priors_xy = detops.box_convert(self.priors_cxcy, "cxcywh", "xyxy")
        B, P, C = predicted_scores.shape
        true_locs = torch.zeros(B, P, 4, device=predicted_locs.device)
        true_classes = torch.zeros(B, P, dtype=torch.long, device=predicted_locs.device)
        for i in range(B):
            if boxes[i].numel() == 0:
                continue
            ov = detops.box_iou(boxes[i], priors_xy)  # [G, P]
            ov_p, obj_p = ov.max(dim=0)
            _, prior_o = ov.max(dim=1)
            obj_p[prior_o] = torch.arange(len(prior_o), device=ov.device)
            ov_p[prior_o] = 1.0
            lab = labels[i][obj_p]
            lab[ov_p < self.threshold] = 0
            true_classes[i] = lab
            true_locs[i] = detops.encode_boxes(boxes[i][obj_p], priors_xy, (10.0, 10.0, 5.0, 5.0))
        pos = true_classes != 0
        n_pos = pos.sum(dim=1)
        fn = F.l1_loss if self.loc_loss == "l1" else F.smooth_l1_loss
        loc = fn(predicted_locs[pos], true_locs[pos]) if pos.any() else predicted_locs.sum() * 0
        conf_all = F.cross_entropy(predicted_scores.reshape(-1, C), true_classes.reshape(-1), reduction="none").view(B, P)
        conf_pos = conf_all[pos].sum()
        conf_neg = conf_all.clone()
        conf_neg[pos] = 0
        conf_neg, _ = conf_neg.sort(dim=1, descending=True)
        hard = torch.arange(P, device=conf_all.device)[None] < (self.neg_pos_ratio * n_pos)[:, None]
        conf = (conf_neg[hard].sum() + conf_pos) / n_pos.sum().clamp(min=1).float()
        return conf + self.alpha * loc


# -------------------------------------------------------------------------------------------------- NMS


def multiclass_nms(boxes, scores, score_threshold=0.05, iou_threshold=0.5, max_detections=100, *,
                   background_class=None, max_candidates_per_class=None):
    B, P, C = scores.shape
    K = max_detections
    out_b = boxes.new_zeros(B, K, 4)
    out_s = scores.new_zeros(B, K)
    out_l = torch.full((B, K), -1, dtype=torch.long, device=scores.device)
    counts = torch.zeros(B, dtype=torch.long, device=scores.device)
    for i in range(B):
        s = scores[i].clone()
        if background_class is not None:
            s[:, background_class] = -1
        pi, ci = (s > score_threshold).nonzero(as_tuple=True)
        bx = boxes[i][pi] if boxes.dim() == 3 else boxes[i][pi, ci]
        sc = s[pi, ci]
        keep = torchvision.ops.batched_nms(bx.float(), sc.float(), ci, iou_threshold)[:K]
        n = len(keep)
        out_b[i, :n], out_s[i, :n], out_l[i, :n], counts[i] = bx[keep], sc[keep], ci[keep], n
    return out_b, out_s, out_l, counts
