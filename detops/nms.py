"""Non-maximum suppression: nms, batched_nms, multiclass_nms, soft_nms.

Kernels: csrc/cpu/nms.cpp and csrc/cuda/nms.cu; IoU formula: csrc/box_math.h; reference:
detops/reference/nms.py. Semantics (docs/ops.md, "NMS family"):

* boxes are ``(x1, y1, x2, y2)``; any coordinates, negative or huge;
* rank order is decreasing score, ties by lower index;
* a box is suppressed when its IoU with a kept, higher-ranked box is strictly greater than ``iou_threshold``
  (the IoU is computed exactly as torchvision computes it, so float32 results agree bit for bit);
* a box whose score or any coordinate is NaN is never kept and never suppresses another box (torchvision
  ranks NaN scores first; detops drops them, so NaN boxes are never kept ahead of valid ones);
* ``+inf`` / ``-inf`` scores rank first / last and take part normally;
* any threshold that is not NaN is accepted: ``iou_threshold >= 1`` keeps every valid box, a negative one
  keeps only the best box of each group (every IoU, 0 included, exceeds it); NaN raises;
* float32 and float64 compute in their own precision, float16 and bfloat16 in float32; boxes and scores
  must share a dtype and a device.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression, as ``torchvision.ops.nms``.

    Args:
        boxes (Tensor[N, 4]): xyxy boxes, floating point.
        scores (Tensor[N]): their scores, same dtype and device.
        iou_threshold (float): boxes with IoU strictly greater than this with a kept box are discarded.

    Returns:
        Tensor[K] int64: indices of the kept boxes by decreasing score (ties: lower index first); the same
        indices in the same order as torchvision for valid input. Empty for N = 0.
    """
    return torch.ops.detops.nms(boxes, scores, float(iou_threshold))


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category, in one native call (no per-class Python loop, no coordinate offsets).

    Args:
        boxes (Tensor[N, 4]): xyxy boxes; any coordinates (torchvision's offset trick fails for negative
            or huge ones, this does not).
        scores (Tensor[N]): their scores.
        idxs (Tensor[N]): integer category of each box; boxes of different categories never suppress
            each other.
        iou_threshold (float): as in :func:`nms`.

    Returns:
        Tensor[K] int64: indices of the kept boxes by decreasing score, ties by lower index. Empty for N = 0.
    """
    return torch.ops.detops.batched_nms(boxes, scores, idxs, float(iou_threshold))


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
    """Per-class NMS for a whole batch with fixed-shape, padded outputs (the SSD / TensorRT BatchedNMS shape).

    For every image and every class (but ``background_class``): keep the candidates with score strictly
    greater than ``score_threshold``, optionally only the ``max_candidates_per_class`` best of them, run NMS;
    then keep each image's ``max_detections`` highest-scoring detections over all classes. Image order:
    decreasing score, ties by lower class, then by lower prior index (deterministic on both devices).

    On CUDA nothing is copied to the host: the op can be captured in a CUDA graph and compiled with
    ``torch.compile(fullgraph=True)``.

    Args:
        boxes (Tensor[B, P, 4] or Tensor[B, P, C, 4]): xyxy boxes, shared by all classes or one per class.
        scores (Tensor[B, P, C]): class probabilities (no softmax or sigmoid is applied here).
        score_threshold (float): candidates need a score strictly greater than this.
        iou_threshold (float): NMS threshold, as in :func:`nms`.
        max_detections (int): detections per image at most. The padded outputs have K = the smaller of
            this and the candidates an image can have (classes searched times candidates per class), so
            a "no limit" value such as ``10**9`` allocates no more than the input needs.
        background_class (int, optional): a class index to skip (SSD's 0).
        max_candidates_per_class (int, optional): per image and class, only this many best candidates
            enter NMS.

    Returns:
        (boxes Tensor[B, K, 4], scores Tensor[B, K], labels Tensor[B, K] int64, counts Tensor[B] int64):
        the first ``counts[b]`` entries of image b are its detections; the rest is padding (boxes and scores
        0, labels -1). boxes and scores have the input dtype.
    """
    return torch.ops.detops.multiclass_nms(
        boxes,
        scores,
        *multiclass_args(score_threshold, iou_threshold, max_detections, background_class, max_candidates_per_class),
    )


def multiclass_args(score_threshold, iou_threshold, max_detections, background_class, max_candidates_per_class):
    """The scalar arguments of the multiclass_nms schemas (this op's and the rotated one's): None is -1."""
    return (
        float(score_threshold),
        float(iou_threshold),
        int(max_detections),
        -1 if background_class is None else int(background_class),
        -1 if max_candidates_per_class is None else int(max_candidates_per_class),
    )


def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 0.001,
    method: str = "gaussian",
) -> Tuple[Tensor, Tensor]:
    """Soft-NMS (Bodla et al., 2017): overlapping boxes have their scores decayed instead of removed.

    Repeatedly selects the remaining box with the highest current score (ties: lower index) while that score
    is >= ``score_threshold``, and multiplies every other remaining box's score by
    ``1 - IoU`` if ``IoU > iou_threshold`` else 1 (``method="linear"``), or by ``exp(-IoU**2 / sigma)``
    (``method="gaussian"``, the default; ``iou_threshold`` is then unused). Defaults are the paper's.

    Args:
        boxes (Tensor[N, 4]): xyxy boxes.
        scores (Tensor[N]): their scores.

    Returns:
        (keep Tensor[K] int64, scores Tensor[K]): the selected boxes in selection order (non-increasing
        decayed score) and their decayed scores at selection, in the input dtype. Empty for N = 0.
    """
    return torch.ops.detops.soft_nms(boxes, scores, float(iou_threshold), float(sigma), float(score_threshold), method)
