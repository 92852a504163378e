"""The one place the SSD model/training code imports the pieces other modules provide (priors, loss, NMS,
data, metrics), so model.py, train.py, evaluate.py and demo.py name them in one way."""

from detops.nms import multiclass_nms  # noqa: F401
from detops.ssd.loss import MultiBoxLoss  # noqa: F401
from detops.ssd.metrics import voc_map  # noqa: F401
from detops.ssd.priors import prior_boxes, ssd300_prior_boxes  # noqa: F401
from detops.ssd.synthetic import SYNTHETIC_CLASSES, generate_voc_dataset  # noqa: F401
from detops.ssd.transforms import ssd_transforms  # noqa: F401
from detops.ssd.voc import VOC_CLASSES, VOCDataset, collate_fn  # noqa: F401
