"""Route torchvision's box and NMS ops to detops, for torchvision's own detectors.

torchvision's detection models (Faster R-CNN, RetinaNet, SSD, FCOS, ...) call ``box_ops.batched_nms`` and
``box_ops.box_iou`` through the module ``torchvision.ops.boxes`` at run time; :func:`patch_torchvision`
replaces those module attributes (and the re-exports in ``torchvision.ops``) with detops' kernels, and puts
the originals back exactly on undo. Use it as a context manager or call it and keep the handle::

    with detops.patch_torchvision():
        detections = model(images)

    handle = detops.patch_torchvision()
    ...
    handle.undo()

Differences from torchvision, by design: boxes with a NaN score or coordinate are never kept (torchvision
ranks NaN scores first). Tied scores come out of the patched ``batched_nms`` in torchvision's own order,
so training draws the same proposals; detops' direct calls order ties by lower index. Models that stored ``box_ops.box_iou`` in an attribute at construction
(``rpn.box_similarity``, ``roi_heads.box_similarity``; training-time matching only) keep torchvision's.
"""

from typing import Any, Callable, Dict, List, Tuple

from torch import Tensor

from detops.boxes import box_iou as _detops_box_iou
from detops.nms import batched_nms as _detops_batched_nms
from detops.nms import nms as _detops_nms


def _batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
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


_REPLACEMENTS: Dict[str, Callable[..., Any]] = {"nms": _detops_nms, "batched_nms": _batched_nms, "box_iou": _detops_box_iou}
_MISSING = object()


class patch_torchvision:
    """Replaces torchvision's ``nms``, ``batched_nms`` and ``box_iou`` with detops' (see the module docs).

    Args:
        ops (sequence of str): which of ``"nms"``, ``"batched_nms"``, ``"box_iou"`` to route (all by default).

    The patch is applied when the object is created; :meth:`undo` (or leaving the ``with`` block) restores
    exactly the attributes that were there before. Nested patches undo in reverse order.
    """

    def __init__(self, ops=("nms", "batched_nms", "box_iou")):
        import torchvision.ops
        import torchvision.ops.boxes

        unknown = set(ops) - set(_REPLACEMENTS)
        if unknown:
            raise ValueError(f"unknown ops {sorted(unknown)}; choose from {sorted(_REPLACEMENTS)}")
        self._saved: List[Tuple[Any, str, Any]] = []
        for module in (torchvision.ops.boxes, torchvision.ops):
            for name in ops:
                self._saved.append((module, name, module.__dict__.get(name, _MISSING)))
                setattr(module, name, _REPLACEMENTS[name])
        self.active = True

    def undo(self) -> None:
        """Restores torchvision's original functions (a no-op when already undone)."""
        if not self.active:
            return
        for module, name, original in reversed(self._saved):
            if original is _MISSING:
                delattr(module, name)
            else:
                setattr(module, name, original)
        self.active = False

    __call__ = undo

    def __enter__(self) -> "patch_torchvision":
        return self

    def __exit__(self, *exc) -> None:
        self.undo()
