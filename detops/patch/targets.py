"""Batched target assignment shared by the training replacements: every image's ground truth matched to its
anchors or proposals with one :func:`detops.box_iou` and one :func:`detops.match_boxes` call.

torchvision matches image by image, and its ``Matcher`` writes through boolean masks (``matches[mask] = -1``,
``torch.where``), each a host synchronisation on CUDA. Here images are padded to a common number of objects
and predictions; nothing reads a device value on the host.

Padding that cannot change a match: an image's missing object rows repeat its first object. ``torch.max``
(and the kernel) take the first of equal maxima, so a repeated row never wins a prediction, and its best
quality equals the first row's, so it adds no low-quality match that the first row does not already add.
Missing prediction columns (zero boxes) only decide their own, discarded, matches when low-quality matches
are off; with them on, a column enters every object's best quality, so unequal prediction counts are matched
image by image instead (anchors always come in equal counts; the ROI heads' proposals do not, but their
matcher allows no low-quality matches).
"""

from typing import List, Optional, Sequence

import torch
from torch import Tensor

from detops.boxes import box_iou as _detops_box_iou
from detops.matching import match_boxes


def is_box_iou(fn) -> bool:
    """Whether ``fn`` is torchvision's ``box_iou`` or detops' (a model stores the one it was built with)."""
    if fn is _detops_box_iou:
        return True
    return getattr(fn, "__module__", None) == "torchvision.ops.boxes" and getattr(fn, "__name__", None) == "box_iou"


def is_plain_matcher(matcher) -> bool:
    """A ``Matcher`` (not a subclass) with torchvision's -1 / -2 codes: the rule :func:`match_boxes` computes."""
    from torchvision.models.detection._utils import Matcher

    return type(matcher) is Matcher and matcher.BELOW_LOW_THRESHOLD == -1 and matcher.BETWEEN_THRESHOLDS == -2


def uniform_boxes(gt_boxes: Sequence[Tensor], predictions: Sequence[Tensor]) -> bool:
    """The batched path's preconditions: as many ground-truth sets as prediction sets, all ``[n, 4]``
    float32/float64 tensors of one dtype on one device. Anything else goes to torchvision's own code, which
    gives torchvision's result or error."""
    if len(gt_boxes) != len(predictions) or len(predictions) == 0:
        return False
    first = predictions[0]
    if not isinstance(first, Tensor) or first.dtype not in (torch.float32, torch.float64):
        return False
    for t in list(gt_boxes) + list(predictions):
        if not isinstance(t, Tensor) or t.dim() != 2 or t.size(-1) != 4:
            return False
        if t.dtype != first.dtype or t.device != first.device:
            return False
    return True


def pad_objects(boxes: Sequence[Tensor], rows: int) -> Tensor:
    """[B, rows, 4]: each image's boxes, missing rows repeating its first box (zeros for an image without
    objects, whose matches the callers replace)."""
    out = []
    for b in boxes:
        n = b.size(0)
        if n == 0:
            out.append(b.new_zeros((rows, 4)))
        elif n < rows:
            out.append(torch.cat([b, b[:1].expand(rows - n, 4)]))
        else:
            out.append(b)
    return torch.stack(out)


def pad_values(values: Sequence[Tensor], rows: int) -> Tensor:
    """[B, rows]: 1-D per-image values (labels) padded with zeros; ``rows`` >= every length."""
    return torch.stack([torch.cat([v, v.new_zeros((rows - v.size(0),))]) if v.size(0) < rows else v for v in values])


def object_rows(gt_boxes: Sequence[Tensor]) -> int:
    """Padded object count: the largest image's, at least 1 (so a gather always has a row to read)."""
    return max([1] + [b.size(0) for b in gt_boxes])


def match_batch(gt_boxes: Sequence[Tensor], predictions: Sequence[Tensor], matcher) -> Tensor:
    """torchvision's per-image ``matcher(box_iou(gt, predictions))`` for every image at once.

    Returns [B, P_max] int64 (the matched object, -1 below the low threshold, -2 between). Columns past an
    image's own prediction count, and whole rows of images without objects, hold meaningless values that
    the callers discard or replace, as torchvision treats those images apart.
    """
    high, low, allow = matcher.high_threshold, matcher.low_threshold, matcher.allow_low_quality_matches
    counts = [p.size(0) for p in predictions]
    width = max(counts)
    gt = pad_objects(gt_boxes, object_rows(gt_boxes))
    if all(c == width for c in counts):
        return match_boxes(_detops_box_iou(gt, torch.stack(list(predictions))), high, low, allow)
    if not allow:
        preds = torch.nn.utils.rnn.pad_sequence(list(predictions), batch_first=True)
        return match_boxes(_detops_box_iou(gt, preds), high, low, allow)
    rows = [match_boxes(_detops_box_iou(g, p), high, low, allow) for g, p in zip(gt, predictions)]
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=-1)


def gather_rows(padded: Tensor, index: Tensor) -> Tensor:
    """``padded[b, index[b, p]]`` for [B, G, ...] values and a [B, P] index: [B, P, ...]."""
    shape = index.shape + padded.shape[2:]
    expanded = index.reshape(index.shape + (1,) * (padded.dim() - 2)).expand(shape)
    return torch.gather(padded, 1, expanded)


def split_rows(batched: Tensor, counts: Sequence[int], empty: Optional[List[bool]] = None, fill=None) -> List[Tensor]:
    """Per-image views ``batched[i, :counts[i]]``; images flagged in ``empty`` get ``fill(i)`` instead."""
    out = []
    for i, n in enumerate(counts):
        out.append(fill(i) if empty is not None and empty[i] else batched[i, :n])
    return out
