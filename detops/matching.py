"""Training targets for anchor-based detectors: the SSD matching rule (:func:`match_priors`) and torchvision's
``Matcher`` rule (:func:`match_boxes`). Hard negative mining is its own family (:mod:`detops.hard_negatives`).

Kernels: csrc/cpu/matching.cpp and csrc/cuda/matching.cu; formulas: csrc/box_math.h; reference:
detops/reference/matching.py (including step-by-step mirrors of the SSD tutorial).
"""

from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from detops.coding import SSD_WEIGHTS

BoxesArg = Union[Tensor, Sequence[Tensor]]


def pack_targets(
    gt_boxes: BoxesArg, gt_labels: BoxesArg, counts: Optional[Tensor] = None, device=None
) -> Tuple[Tensor, Tensor, Tensor]:
    """Ground truth as padded tensors: (boxes [B, G, 4], labels [B, G] int64, counts [B] int64).

    Args:
        gt_boxes: a list of B tensors [G_i, 4] (xyxy), or a padded tensor [B, G, 4].
        gt_labels: a list of B tensors [G_i] (integers), or a padded tensor [B, G].
        counts (Tensor[B], optional): objects per image for padded input; ``None`` means every row is an object.
        device: where the list input is packed (default: the device of its first tensor).

    Padding rows are zero boxes with label 0. On CUDA the counts are computed on the device, so packing a
    list makes no host synchronisation.
    """
    if isinstance(gt_boxes, Tensor):
        if not isinstance(gt_labels, Tensor):
            raise TypeError("gt_boxes is a padded tensor, so gt_labels must be one too ([B, G]); got a list")
        if gt_boxes.dim() != 3 or gt_boxes.size(-1) != 4:
            raise ValueError(f"padded gt_boxes must have shape [B, G, 4], got {list(gt_boxes.shape)}")
        if gt_labels.shape != gt_boxes.shape[:2]:
            raise ValueError(
                f"gt_labels must have shape [B, G] = {list(gt_boxes.shape[:2])} to go with gt_boxes, "
                f"got {list(gt_labels.shape)}"
            )
        if counts is None:
            counts = torch.full((gt_boxes.size(0),), gt_boxes.size(1), dtype=torch.long, device=gt_boxes.device)
        return gt_boxes, gt_labels, counts
    if isinstance(gt_labels, Tensor):
        raise TypeError("gt_boxes is a list, so gt_labels must be a list of [G_i] tensors too; got a tensor")
    gt_boxes, gt_labels = list(gt_boxes), list(gt_labels)
    if len(gt_boxes) != len(gt_labels):
        raise ValueError(f"gt_boxes has {len(gt_boxes)} images but gt_labels has {len(gt_labels)}")
    for i, (b, l) in enumerate(zip(gt_boxes, gt_labels)):
        if b.dim() != 2 or b.size(-1) != 4:
            raise ValueError(f"gt_boxes[{i}] must have shape [G, 4] (xyxy), got {list(b.shape)}")
        if l.dim() != 1 or l.size(0) != b.size(0):
            raise ValueError(
                f"gt_labels[{i}] must have shape [{b.size(0)}] to go with gt_boxes[{i}], got {list(l.shape)}"
            )
    if device is None:
        device = gt_boxes[0].device if gt_boxes else torch.device("cpu")
    B = len(gt_boxes)
    if B == 0:
        return (
            torch.zeros((0, 0, 4), device=device),
            torch.zeros((0, 0), dtype=torch.long, device=device),
            torch.zeros((0,), dtype=torch.long, device=device),
        )
    sizes = [b.size(0) for b in gt_boxes]
    first = gt_boxes[0]
    dtype = first.dtype if first.is_floating_point() else torch.promote_types(first.dtype, torch.float32)
    boxes = torch.nn.utils.rnn.pad_sequence([b.to(device=device, dtype=dtype) for b in gt_boxes], batch_first=True)
    labels = torch.nn.utils.rnn.pad_sequence(
        [l.to(device=device, dtype=torch.long) for l in gt_labels], batch_first=True
    )
    if torch.device(device).type == "cpu":
        counts = torch.tensor(sizes, dtype=torch.long)
    else:
        counts = _counts_on_device(sizes, device)
    return boxes, labels, counts


def _counts_on_device(sizes: List[int], device) -> Tensor:
    """Tensor(sizes) made on `device` without a host-to-device copy: torch.tensor(sizes, device=cuda) would
    synchronise (and break CUDA graph capture); counting ones padded with zeros does not."""
    ones = torch.ones(sum(sizes), dtype=torch.long, device=device).split(sizes)
    return torch.nn.utils.rnn.pad_sequence(list(ones), batch_first=True).sum(1)


def match_priors(
    gt_boxes: BoxesArg,
    gt_labels: BoxesArg,
    priors_cxcy: Tensor,
    threshold: float = 0.5,
    counts: Optional[Tensor] = None,
    weights: Sequence[float] = SSD_WEIGHTS,
) -> Tuple[Tensor, Tensor, Tensor]:
    """SSD's matching of priors to ground truth for a whole batch, in one fused kernel call.

    Per image (docs/ops.md, "Matching"; the SSD tutorial's MultiBoxLoss loop): each prior takes
    the object it overlaps most (first object on ties); each object's best prior (first prior on ties) is
    forced to it with overlap 1, a later object winning a prior two objects share; a prior is positive when
    its overlap is >= ``threshold``. IoUs are computed on the fly: no [B, G, P] tensor exists at any point.
    Deterministic, the same on CPU and CUDA.

    Args:
        gt_boxes: list of B tensors [G_i, 4] or padded Tensor[B, G, 4]; xyxy, fractional (or any unit the
            priors use). G_i = 0 is allowed. On CPU, non-finite (NaN, inf) coordinates or x2 < x1 / y2 < y1
            raise; a zero-width positive object gives -inf targets, as the tutorial's encoding does.
        gt_labels: list of B tensors [G_i] or padded Tensor[B, G]; integers >= 0 (0 is background).
        priors_cxcy (Tensor[P, 4]): priors in center-size form (cx, cy, w, h), w and h > 0.
        threshold (float): the IoU at or above which a prior is positive, compared in the boxes' dtype.
        counts (Tensor[B], optional): objects per image for padded input (default: all G rows).
        weights (4 floats): box coding weights; (10, 10, 5, 5) are SSD's variances (0.1, 0.2).

    Returns:
        labels (Tensor[B, P] int64): the matched object's label, 0 for background.
        matched (Tensor[B, P] int64): the matched object's index in its image, -1 for background.
        targets (Tensor[B, P, 4]): the matched box encoded against its prior (the tutorial's
            ``cxcy_to_gcxgcy(xy_to_cxcy(box), prior)``), 0 for background; the boxes' dtype.
        An image without objects is all background.
    """
    if not isinstance(priors_cxcy, Tensor) or priors_cxcy.dim() != 2 or priors_cxcy.size(-1) != 4:
        shape = list(priors_cxcy.shape) if isinstance(priors_cxcy, Tensor) else type(priors_cxcy).__name__
        raise ValueError(f"priors_cxcy must have shape [P, 4] (center-size priors), got {shape}")
    boxes, labels, counts = pack_targets(gt_boxes, gt_labels, counts, device=priors_cxcy.device)
    if boxes.dtype != priors_cxcy.dtype and boxes.is_floating_point():
        boxes = boxes.to(priors_cxcy.dtype)
    return torch.ops.detops.match_priors(
        boxes, labels, counts, priors_cxcy, float(threshold), [float(w) for w in weights]
    )


def match_boxes(
    match_quality_matrix: Tensor,
    high_threshold: float,
    low_threshold: float,
    allow_low_quality_matches: bool = False,
) -> Tensor:
    """torchvision's ``Matcher`` rule (Faster R-CNN's RPN and box heads) as a kernel.

    For each prediction (column), the ground truth of highest quality (first on ties) if that quality is
    >= ``high_threshold``; -1 (``Matcher.BELOW_LOW_THRESHOLD``) below ``low_threshold``; -2
    (``Matcher.BETWEEN_THRESHOLDS``) in between. With ``allow_low_quality_matches``, every prediction that
    ties some ground truth's highest quality keeps its best match whatever its quality.

    Args:
        match_quality_matrix (Tensor[..., G, P]): e.g. ``box_iou(gt, anchors)``; leading dims are a batch.
        high_threshold, low_threshold (float): ``low <= high``.
        allow_low_quality_matches (bool): as torchvision's.

    Returns:
        Tensor[..., P] int64, equal to ``torchvision.models.detection._utils.Matcher(high, low, allow)(m)``.
        G = 0 gives all -1 (torchvision raises); P = 0 gives an empty result.
    """
    return torch.ops.detops.match_boxes(
        match_quality_matrix, float(high_threshold), float(low_threshold), bool(allow_low_quality_matches)
    )
