"""The training-time replacements :func:`detops.patch_torchvision` installs with ``training=True``.

Each entry replaces one attribute of a torchvision class or module. A replacement computes what the
original computes (the same matches, labels and sampled proposals; losses and gradients to float rounding)
from detops' kernels and batched tensor code, and hands every case it was not written for (a custom matcher
or similarity, mixed dtypes, odd shapes) to the original, so torchvision's result or error comes out there.
The samplers (``BalancedPositiveNegativeSampler``) are not replaced: their ``torch.randperm`` draws see the
same labels and so draw the same proposals.

Not replaced: ``BoxCoder.decode_single`` (the RPN decodes its proposals with it, and detops' decoding
rounds differently in the last bit, which would move proposals and so what NMS and the sampler see), the
Fast R-CNN and RPN losses themselves (already batched in torchvision), FCOS, keypoint and mask heads.
"""

from typing import Any, Callable, List, Tuple

import torch
from torch import Tensor

from detops.coding import encode_boxes
from detops.focal_loss import sigmoid_focal_loss
from detops.matching import match_boxes


def matcher_call(original: Callable) -> Callable:
    """``Matcher.__call__`` as :func:`detops.match_boxes` (torchvision's rule, no boolean-mask writes). It
    serves ``SSDMatcher`` too, whose ``__call__`` starts with ``super().__call__``."""

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        m = match_quality_matrix
        # torchvision raises for an empty matrix; float16 qualities compare with the thresholds in float16
        # there, the kernel in float32: both to the original.
        if (
            not isinstance(m, Tensor)
            or m.dim() != 2
            or m.numel() == 0
            or m.dtype not in (torch.float32, torch.float64)
            or self.BELOW_LOW_THRESHOLD != -1
            or self.BETWEEN_THRESHOLDS != -2
        ):
            return original(self, m)
        return match_boxes(m, self.high_threshold, self.low_threshold, self.allow_low_quality_matches)

    return __call__


def encode_single(original: Callable) -> Callable:
    """``BoxCoder.encode_single`` as :func:`detops.encode_boxes` with the coder's weights. ``encode`` (the
    per-image list form) concatenates and calls ``encode_single``, so it is routed too."""

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        r, p = reference_boxes, proposals
        if (
            isinstance(r, Tensor)
            and isinstance(p, Tensor)
            and r.dim() == 2
            and r.shape == p.shape
            and r.size(1) == 4
            and r.dtype == p.dtype
            and r.dtype in (torch.float32, torch.float64)
            and r.device == p.device
        ):
            return encode_boxes(r, p, self.weights)
        return original(self, r, p)

    return encode_single


def replacements() -> List[Tuple[Any, str, Callable[[Callable], Any]]]:
    """(owner, attribute, factory): the patch calls ``factory(current attribute)`` and sets the result."""
    import torchvision.ops
    import torchvision.ops.focal_loss
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection import retinanet, roi_heads, rpn, ssd

    from detops.patch import rcnn
    from detops.patch import retinanet as retina
    from detops.patch import ssd as ssd_loss

    def same(value):
        return lambda original: value

    return [
        (det_utils.Matcher, "__call__", matcher_call),
        (det_utils.BoxCoder, "encode_single", encode_single),
        (rpn.RegionProposalNetwork, "assign_targets_to_anchors", rcnn.assign_targets_to_anchors),
        (roi_heads.RoIHeads, "assign_targets_to_proposals", rcnn.assign_targets_to_proposals),
        (retinanet.RetinaNet, "compute_loss", retina.compute_loss),
        (retinanet.RetinaNetClassificationHead, "compute_loss", retina.classification_loss),
        (retinanet.RetinaNetRegressionHead, "compute_loss", retina.regression_loss),
        (ssd.SSD, "compute_loss", ssd_loss.compute_loss),
        (torchvision.ops.focal_loss, "sigmoid_focal_loss", same(sigmoid_focal_loss)),
        (torchvision.ops, "sigmoid_focal_loss", same(sigmoid_focal_loss)),
        (retinanet, "sigmoid_focal_loss", same(sigmoid_focal_loss)),
    ]
