"""The one place the SSD model/training code imports the pieces other modules provide (priors, loss, NMS,
data, metrics). TEMPORARY indirection: priors, loss and NMS point at detops/ssd/_interim.py until the real
modules are merged."""

from detops.ssd._interim import MultiBoxLoss, multiclass_nms, prior_boxes, ssd300_prior_boxes  # noqa: F401
from detops.ssd.metrics import voc_map  # noqa: F401
from detops.ssd.synthetic import SYNTHETIC_CLASSES, generate_voc_dataset  # noqa: F401
from detops.ssd.transforms import ssd_transforms  # noqa: F401
from detops.ssd.voc import VOC_CLASSES, VOCDataset, collate_fn  # noqa: F401
