"""TEMPORARY plain-PyTorch stand-ins for pieces other branches deliver (NMS).

Imported only through detops/ssd/_deps.py. Delete once the real modules are merged.
"""


import torch
import torchvision


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
