"""Route torchvision's box ops, NMS and (optionally) training-time target assignment and losses to detops,
for torchvision's own detectors.

torchvision's detection models (Faster R-CNN, RetinaNet, SSD, FCOS, ...) call ``box_ops.batched_nms`` and
``box_ops.box_iou`` through the module ``torchvision.ops.boxes`` at run time; :func:`patch_torchvision`
replaces those module attributes (and the re-exports in ``torchvision.ops``) with detops' kernels. With
``training=True`` it also replaces, on the classes (so models built before the patch use it too), the
methods that turn ground truth into training targets and losses (see :mod:`detops.patch.training`). The
originals are put back exactly on undo. Use it as a context manager or call it and keep the handle::

    with detops.patch_torchvision():
        detections = model(images)

    with detops.patch_torchvision(training=True):
        losses = model(images, targets)

    handle = detops.patch_torchvision(training=True)
    ...
    handle.undo()

Differences from torchvision, by design: boxes with a NaN score or coordinate are never kept (torchvision
ranks NaN scores first). Tied scores come out of the patched ``batched_nms`` in torchvision's own order,
so training draws the same proposals; detops' direct calls order ties by lower index.
"""

from typing import Any, List, Tuple

from detops.patch.inference import REPLACEMENTS as _REPLACEMENTS

_MISSING = object()


class patch_torchvision:
    """Replaces torchvision's ``nms``, ``batched_nms`` and ``box_iou`` with detops' (see the module docs), and
    with ``training=True`` its detectors' target assignment and losses too.

    Args:
        ops (sequence of str): which of ``"nms"``, ``"batched_nms"``, ``"box_iou"`` to route (all by default).
        training (bool): also route training: ``Matcher.__call__`` (:func:`detops.match_boxes`),
            ``BoxCoder.encode_single`` (:func:`detops.encode_boxes`), the RPN's ``assign_targets_to_anchors``
            and the ROI heads' ``assign_targets_to_proposals`` (one batched IoU and match for all images),
            RetinaNet's ``compute_loss`` and its heads' (:func:`detops.sigmoid_focal_loss`, batched), SSD's
            ``compute_loss`` (:func:`detops.hard_negative_mining`, batched) and ``sigmoid_focal_loss`` in
            ``torchvision.ops``. Losses and gradients equal torchvision's to float rounding, and the
            samplers' random draws are untouched (docs/ops.md, "Patching torchvision"). Default False: the
            inference ops only.

    The patch is applied when the object is created; :meth:`undo` (or leaving the ``with`` block) restores
    exactly the attributes that were there before. Nested patches undo in reverse order.
    """

    def __init__(self, ops=("nms", "batched_nms", "box_iou"), training: bool = False):
        import torchvision.ops
        import torchvision.ops.boxes

        unknown = set(ops) - set(_REPLACEMENTS)
        if unknown:
            raise ValueError(f"unknown ops {sorted(unknown)}; choose from {sorted(_REPLACEMENTS)}")
        self._saved: List[Tuple[Any, str, Any]] = []
        self.training = bool(training)
        for module in (torchvision.ops.boxes, torchvision.ops):
            for name in ops:
                self._set(module, name, _REPLACEMENTS[name])
        if self.training:
            from detops.patch import training as _training

            for owner, name, make in _training.replacements():
                self._set(owner, name, make(getattr(owner, name)))
        self.active = True

    def _set(self, owner: Any, name: str, value: Any) -> None:
        self._saved.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, value)

    def undo(self) -> None:
        """Restores torchvision's original functions (a no-op when already undone)."""
        if not self.active:
            return
        for owner, name, original in reversed(self._saved):
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self.active = False

    __call__ = undo

    def __enter__(self) -> "patch_torchvision":
        return self

    def __exit__(self, *exc) -> None:
        self.undo()
