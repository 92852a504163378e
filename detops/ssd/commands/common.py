"""Checks and helpers shared by the SSD commands: each turns a user mistake into a :class:`UserError`."""

from __future__ import annotations

import os
from typing import List, Optional

import torch

from detops.errors import UserError
from detops.ssd.synthetic import SYNTHETIC_CLASSES
from detops.ssd.voc import VOC_CLASSES


def resolve_device(spec: Optional[str]) -> torch.device:
    """``--device``: None picks CUDA when a GPU is visible, else the CPU."""
    if spec is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise UserError(f"--device {spec!r} is not a device ({exc})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {spec}: no CUDA GPU is visible (torch {torch.__version__}, "
                f"CUDA {torch.version.cuda or 'none'}); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {spec}: only {torch.cuda.device_count()} GPU(s) visible")
    elif device.type != "cpu":
        raise UserError(f"--device {spec!r}: only cpu and cuda are supported")
    return device


def resolve_classes(spec: Optional[str]) -> Optional[List[str]]:
    """``--classes``: None (read from the data), ``voc``, ``synthetic`` or comma-separated names."""
    if spec is None:
        return None
    if spec == "voc":
        return list(VOC_CLASSES)
    if spec == "synthetic":
        return list(SYNTHETIC_CLASSES)
    names = [c.strip() for c in spec.split(",") if c.strip()]
    if not names:
        raise UserError(f"--classes {spec!r} names no class")
    return names


def check_data_root(root: str, option: str = "--data") -> None:
    if not os.path.isdir(root):
        raise UserError(f"{option} {root}: no such directory")
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        if not os.path.isdir(os.path.join(root, sub)):
            raise UserError(
                f"{option} {root}: not a VOC-format dataset (no {sub}/ inside); "
                "make one with: detops data synthetic DIR"
            )


def open_dataset(root: str, split: str, **kwargs):
    """A VOCDataset, with reader errors (corrupt file, missing split) turned into one-line user errors."""
    from detops.ssd.voc import VOCDataset

    check_data_root(root)
    try:
        dataset = VOCDataset(root, split, **kwargs)
    except (FileNotFoundError, ValueError) as exc:
        hint = " (--skip-corrupt leaves such files out)" if "corrupt" in str(exc) or "box" in str(exc) else ""
        raise UserError(f"{exc}{hint}") from None
    if len(dataset) == 0:
        raise UserError(
            f"{root}: split {split!r} lists no images "
            f"({os.path.join(root, 'ImageSets', 'Main', split + '.txt')} is empty)"
        )
    return dataset


def check_output_path(path: str, option: str) -> None:
    """Fails before any work when ``path``'s directory does not exist."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UserError(f"{option} {path}: the directory {directory} does not exist")


def load_model_or_fail(path: str, device):
    from detops.ssd.checkpoint import CheckpointError, load_model

    try:
        return load_model(path, device)
    except CheckpointError as exc:
        raise UserError(str(exc)) from None
