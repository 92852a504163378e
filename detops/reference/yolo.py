"""YOLO post-processing in plain PyTorch: the candidate scoring that the yolo_candidates kernels compute
(csrc/cpu/yolo.cpp, csrc/cuda/yolo.cu), the usual per-image loop over torchvision.ops.nms with the
class-offset trick, which detops.yolo.non_max_suppression must reproduce, and the per-image loop of YOLO-OBB
heads in both rules (exact rotated IoU with greedy NMS; probIoU with Fast-NMS, ultralytics' rule)."""

import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor


def _xywh_to_xyxy(xywh: Tensor) -> Tensor:
    half = xywh[..., 2:4] / 2
    return torch.cat([xywh[..., :2] - half, xywh[..., :2] + half], dim=-1)


def yolo_candidates(
    prediction: Tensor, conf_thres: float, objectness: bool = True
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Rows of prediction [B, N, 4 (+1) + C] whose best class score (x objectness) is above conf_thres, and
    whose objectness is too: (flat row index b * N + n, corner boxes, best score, its first class index)."""
    b, n, d = prediction.shape
    rows = prediction.reshape(b * n, d)
    if objectness:
        scores = rows[:, 5:] * rows[:, 4:5]
        ok = rows[:, 4] > conf_thres
    else:
        scores = rows[:, 4:]
        ok = torch.ones(b * n, dtype=torch.bool, device=prediction.device)
    best, label = scores.max(-1)  # first index of the maximum; a row with a NaN gives NaN, never above
    index = torch.nonzero(ok & (best > conf_thres)).squeeze(1)
    return index, _xywh_to_xyxy(rows[index, :4]), best[index], label[index]


def yolo_non_max_suppression(
    prediction: Tensor,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes=None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 300,
    max_candidates: int = 30000,
    head: Optional[str] = None,
    max_wh: float = 7680.0,
) -> List[Tensor]:
    """The per-image loop YOLOv5-style code runs (no time limit): the baseline of detops.yolo."""
    import torchvision

    from detops.yolo import _head_layout  # argument handling only

    head = _head_layout(prediction, head)
    if head == "v8":
        prediction = prediction.transpose(1, 2)
    output = []
    for x in prediction:
        if head == "v5":
            x = x[x[:, 4] > conf_thres]
            scores = x[:, 5:] * x[:, 4:5]
        else:
            scores = x[:, 4:]
        box = _xywh_to_xyxy(x[:, :4])
        if multi_label:
            i, j = (scores > conf_thres).nonzero(as_tuple=False).T
            x = torch.cat((box[i], scores[i, j, None], j[:, None].to(box.dtype)), 1)
        else:
            conf, j = scores.max(1, keepdim=True)
            x = torch.cat((box, conf, j.to(box.dtype)), 1)[conf.view(-1) > conf_thres]
        if classes is not None:
            x = x[(x[:, 5:6] == torch.tensor(classes, device=x.device)).any(1)]
        if not x.shape[0]:
            output.append(x.new_zeros(0, 6))
            continue
        x = x[x[:, 4].argsort(descending=True, stable=True)[:max_candidates]]
        c = x[:, 5:6] * (0 if agnostic else max_wh)
        i = torchvision.ops.nms(x[:, :4] + c, x[:, 4], iou_thres)[:max_det]
        output.append(x[i])
    return output


def probiou_matrix(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """probIoU [N, M] of (cx, cy, w, h, angle in radians) boxes: 1 - the Hellinger distance between the
    boxes' Gaussians (covariance R diag(w^2, h^2) R^T / 12), with the eps terms and clamps ultralytics uses."""

    def gaussian(b):
        a, bb = b[:, 2].pow(2) / 12, b[:, 3].pow(2) / 12
        cos, sin = b[:, 4].cos(), b[:, 4].sin()
        return a * cos.pow(2) + bb * sin.pow(2), a * sin.pow(2) + bb * cos.pow(2), (a - bb) * cos * sin

    a1, b1, c1 = (t[:, None] for t in gaussian(boxes1))
    a2, b2, c2 = (t[None] for t in gaussian(boxes2))
    x1, y1 = boxes1[:, 0, None], boxes1[:, 1, None]
    x2, y2 = boxes2[None, :, 0], boxes2[None, :, 1]
    det = (a1 + a2) * (b1 + b2) - (c1 + c2).pow(2)
    t1 = (((a1 + a2) * (y1 - y2).pow(2) + (b1 + b2) * (x1 - x2).pow(2)) / (det + eps)) * 0.25
    t2 = (((c1 + c2) * (x2 - x1) * (y1 - y2)) / (det + eps)) * 0.5
    own = (a1 * b1 - c1.pow(2)).clamp(0) * (a2 * b2 - c2.pow(2)).clamp(0)
    t3 = (det / (4 * own.sqrt() + eps) + eps).log() * 0.5
    distance = (t1 + t2 + t3).clamp(eps, 100.0)
    return 1 - (1.0 - (-distance).exp() + eps).sqrt()


def yolo_obb_non_max_suppression(
    prediction: Tensor,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes=None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 300,
    max_candidates: int = 30000,
    overlap: str = "iou",
    max_wh: float = 7680.0,
) -> List[Tensor]:
    """A YOLO-OBB head [B, 4 + C + 1, N] image by image: rows [K, 7] (cx, cy, w, h, conf, class, angle).

    ``overlap="iou"``: candidates capped by decreasing confidence (stable), greedy NMS per class with the
    reference rotated IoU. ``"probiou"``: ultralytics' rule, every pair of the image on class-offset boxes
    (the whole probIoU matrix), a box dropped when any earlier box in its (unstable) sort order overlaps it."""
    from detops.reference.rotated import batched_nms_rotated

    c = prediction.shape[1] - 5
    dtype = torch.promote_types(prediction.dtype, torch.float32) if overlap == "probiou" else prediction.dtype
    output = []
    for x in prediction.transpose(1, 2):
        x = x[x[:, 4 : 4 + c].amax(1) > conf_thres]
        scores = x[:, 4 : 4 + c]
        if multi_label:
            i, j = (scores > conf_thres).nonzero(as_tuple=True)
            conf = scores[i, j]
        else:
            conf, j = scores.max(1)
            i = torch.nonzero(conf > conf_thres).flatten()
            conf, j = conf[i], j[i]
        rows = torch.cat([x[i, :4].to(dtype), conf[:, None].to(dtype), j[:, None].to(dtype), x[i, -1:].to(dtype)], 1)
        if classes is not None:
            rows = rows[(rows[:, 5:6] == torch.tensor(classes, dtype=dtype, device=rows.device)).any(1)]
        if overlap == "probiou":
            if rows.shape[0] > max_candidates:
                rows = rows[rows[:, 4].argsort(descending=True)[:max_candidates]]
            rows = rows[rows[:, 4].argsort(descending=True)]
            offset = rows[:, 5:6] * (0 if agnostic else max_wh)
            boxes = torch.cat([rows[:, :2] + offset, rows[:, 2:4], rows[:, 6:]], 1)
            overlapping = probiou_matrix(boxes, boxes).triu(1) > iou_thres
            rows = rows[~overlapping.any(0)][:max_det]
        else:
            rows = rows[torch.sort(rows[:, 4], descending=True, stable=True).indices[:max_candidates]]
            compute = torch.promote_types(dtype, torch.float32)
            degrees = torch.cat([rows[:, :4].to(compute), rows[:, 6:].to(compute) * (180.0 / math.pi)], 1)
            groups = torch.zeros(rows.shape[0], dtype=torch.int64) if agnostic else rows[:, 5].long()
            keep = batched_nms_rotated(degrees, rows[:, 4], groups, iou_thres)
            rows = rows[keep[:max_det]]
        output.append(rows)
    return output
