"""The inference-time replacements: torchvision's ``nms``, ``batched_nms`` and ``box_iou`` by detops'."""

from typing import Any, Callable, Dict

from torch import Tensor

from detops.boxes import box_iou as _detops_box_iou
from detops.nms import batched_nms as _detops_batched_nms
from detops.nms import nms as _detops_nms


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """detops' kept boxes in torchvision's order. Its large-input path (more than 4000 coordinates on the
    CPU, 100000 on CUDA) collects the kept indices in index order and orders them with one
    ``torch.sort(descending=True)`` of their scores, which orders exactly tied scores its own way; the same
    sort of the same indices gives the same order, so a model (the RPN's ROI sampler) sees the proposals
    in the order it sees without the patch. Its small-input path is one ``nms``: decreasing score, ties by
    lower index, which is detops' order already."""
    keep = _detops_batched_nms(boxes, scores, idxs, iou_threshold)
    if boxes.numel() > (4000 if boxes.device.type == "cpu" else 100_000):
        keep = keep.sort().values
        keep = keep[scores[keep].sort(descending=True)[1]]
    return keep


REPLACEMENTS: Dict[str, Callable[..., Any]] = {
    "nms": _detops_nms,
    "batched_nms": batched_nms,
    "box_iou": _detops_box_iou,
}
