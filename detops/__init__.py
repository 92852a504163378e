"""detops: fast, correct object-detection ops for PyTorch, and an SSD300 built on them.

Every op is a ``torch.ops.detops.*`` operator with CPU and CUDA kernels, a fake kernel (torch.compile,
torch.export) and a plain-PyTorch reference in :mod:`detops.reference`. Names, signatures and results
follow ``torchvision.ops`` where torchvision has the op.
"""

from detops._extension import load_library as _load_library

_load_library()

from detops import _autograd, _fakes  # noqa: E402,F401  (registration side effects)
from detops.boxes import (  # noqa: E402
    box_area,
    box_convert,
    box_iof,
    box_iou,
    box_iou_aligned,
    box_overlap,
    complete_box_iou,
    complete_box_iou_loss,
    distance_box_iou,
    distance_box_iou_loss,
    generalized_box_iou,
    generalized_box_iou_loss,
)
from detops.coding import decode_boxes, encode_boxes  # noqa: E402
from detops.focal_loss import sigmoid_focal_loss  # noqa: E402
from detops.hard_negatives import hard_negative_mining, softmax_cross_entropy  # noqa: E402
from detops.matching import match_boxes, match_priors  # noqa: E402
from detops.nms import batched_nms, multiclass_nms, nms, soft_nms  # noqa: E402
from detops.patch import patch_torchvision  # noqa: E402
from detops.rotated import (  # noqa: E402
    batched_nms_rotated,
    box_iou_rotated,
    box_iou_rotated_aligned,
    multiclass_nms_rotated,
    nms_rotated,
    soft_nms_rotated,
)

__version__ = "0.1.0"

__all__ = [
    "batched_nms",
    "batched_nms_rotated",
    "box_area",
    "box_convert",
    "box_iof",
    "box_iou",
    "box_iou_aligned",
    "box_iou_rotated",
    "box_iou_rotated_aligned",
    "box_overlap",
    "complete_box_iou",
    "complete_box_iou_loss",
    "decode_boxes",
    "distance_box_iou",
    "distance_box_iou_loss",
    "encode_boxes",
    "generalized_box_iou",
    "generalized_box_iou_loss",
    "hard_negative_mining",
    "match_boxes",
    "match_priors",
    "multiclass_nms",
    "multiclass_nms_rotated",
    "nms",
    "nms_rotated",
    "patch_torchvision",
    "sigmoid_focal_loss",
    "soft_nms",
    "soft_nms_rotated",
    "softmax_cross_entropy",
]
