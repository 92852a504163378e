"""SSD300 (Liu et al., 2016) in plain PyTorch on detops ops, as the SSD tutorial (seed 002) builds it: priors,
training targets and the MultiBox loss, the model, training, evaluation, detection and the demo."""

from detops.ssd.loss import MultiBoxLoss
from detops.ssd.priors import SSD300_CONFIG, prior_boxes, ssd300_prior_boxes
from detops.ssd.model import SSD300, L2Norm, load_vgg16_weights, tiny_ssd  # noqa: E402
from detops.ssd.train import TrainConfig, Trainer, load_model  # noqa: E402

__all__ = [
    "L2Norm",
    "MultiBoxLoss",
    "SSD300",
    "SSD300_CONFIG",
    "TrainConfig",
    "Trainer",
    "load_model",
    "load_vgg16_weights",
    "prior_boxes",
    "ssd300_prior_boxes",
    "tiny_ssd",
]
