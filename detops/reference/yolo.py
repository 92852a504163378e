"""YOLO post-processing in plain PyTorch: the candidate scoring that the yolo_candidates kernels compute
(csrc/cpu/yolo.cpp, csrc/cuda/yolo.cu), and the usual per-image loop over torchvision.ops.nms with the
class-offset trick, which detops.yolo.non_max_suppression must reproduce."""

from typing import List, Optional, Tuple

import torch
from torch import Tensor


def _xywh_to_xyxy(xywh: Tensor) -> Tensor:
    half = xywh[..., 2:4] / 2
    return torch.cat([xywh[..., :2] - half, xywh[..., :2] + half], dim=-1)


def yolo_candidates(prediction: Tensor, conf_thres: float, objectness: bool = True) -> Tuple[Tensor, Tensor, Tensor,
                                                                                              Tensor]:
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
