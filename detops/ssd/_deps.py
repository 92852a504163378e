"""The one place the SSD model/training code imports the pieces other modules provide (priors, loss, NMS,
data, metrics). TEMPORARY: points at detops/ssd/_interim.py until the real modules are merged."""

from detops.ssd._interim import (  # noqa: F401
    VOC_CLASSES,
    SYNTHETIC_CLASSES,
    MultiBoxLoss,
    VOCDataset,
    collate_fn,
    generate_voc_dataset,
    multiclass_nms,
    prior_boxes,
    ssd300_prior_boxes,
    ssd_transforms,
    voc_map,
)
