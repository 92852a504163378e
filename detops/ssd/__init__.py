"""SSD300 and its training targets, built on detops ops (seed 002, the SSD tutorial, at its best)."""

from detops.ssd.loss import MultiBoxLoss
from detops.ssd.priors import SSD300_CONFIG, prior_boxes, ssd300_prior_boxes

__all__ = ["MultiBoxLoss", "SSD300_CONFIG", "prior_boxes", "ssd300_prior_boxes"]
