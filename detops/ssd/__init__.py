"""SSD300 (Liu et al., 2016) in plain PyTorch on detops ops, built as the well-known PyTorch SSD tutorial builds
it: priors, training targets and the MultiBox loss, the model, the Trainer, evaluation and drawing. The
``detops`` subcommands live in :mod:`detops.ssd.commands`."""

from detops.ssd.checkpoint import build_model, load_model
from detops.ssd.loss import MultiBoxLoss
from detops.ssd.model import SSD300, L2Norm, load_vgg16_weights, tiny_ssd
from detops.ssd.priors import PRESETS, SSD300_CONFIG, TINY_CONFIG, prior_boxes, preset_prior_boxes, ssd300_prior_boxes
from detops.ssd.trainer import TrainConfig, Trainer

__all__ = [
    "L2Norm",
    "MultiBoxLoss",
    "PRESETS",
    "SSD300",
    "SSD300_CONFIG",
    "TINY_CONFIG",
    "TrainConfig",
    "Trainer",
    "build_model",
    "load_model",
    "load_vgg16_weights",
    "preset_prior_boxes",
    "prior_boxes",
    "ssd300_prior_boxes",
    "tiny_ssd",
]
