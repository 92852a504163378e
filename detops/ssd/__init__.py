"""A pure-PyTorch SSD (Liu et al., 2016) on detops ops: model, training, evaluation, detection, demo."""

from detops.ssd.model import SSD300, L2Norm, load_vgg16_weights, tiny_ssd  # noqa: F401
from detops.ssd.train import TrainConfig, Trainer, load_model  # noqa: F401

__all__ = ["SSD300", "L2Norm", "load_vgg16_weights", "tiny_ssd", "TrainConfig", "Trainer", "load_model"]
