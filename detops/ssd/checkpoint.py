"""Checkpoints: written atomically, loadable with ``torch.load(path, weights_only=True)``, and able to rebuild
the model they hold.

A checkpoint written by :class:`detops.ssd.trainer.Trainer` is a dict of tensors and plain Python values:
``model`` (state dict), ``model_args`` (the model's constructor arguments, ``SSD300.init_args``),
``class_names``, ``optimizer``, ``scheduler``, ``scaler``, ``epoch``, ``step``, ``batch_in_epoch`` (the
position inside an interrupted epoch), ``rng`` (every random number generator), ``config`` and ``history``.

Writes go to a temporary file in the same directory, are flushed and fsynced, then renamed over the target
(``os.replace`` is atomic), so a process killed at any moment leaves the previous checkpoint or the new one,
never a half-written file under the checkpoint's name.
"""

from __future__ import annotations

import glob
import os
import random
from typing import Optional, Sequence

import numpy as np
import torch

from detops.ssd.model import SSD300

_TMP_SUFFIX = ".tmp."


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit what is asked of it (the message says why)."""


def save_atomic(obj, path: str) -> None:
    """``torch.save(obj, path)`` so that a crash at any moment leaves the old file or the new one.

    Leftover temporary files of earlier killed writes of ``path`` are removed first.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(glob.escape(path) + _TMP_SUFFIX + "*"):
        try:
            os.remove(stale)
        except OSError:
            pass
    tmp = f"{path}{_TMP_SUFFIX}{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def rng_state() -> dict:
    """The state of torch's, NumPy's, Python's (and CUDA's) global generators, as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restores what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """``torch.load(path, weights_only=True)``, with errors a user understands.

    Raises:
        CheckpointError: the file is missing, truncated, or not a detops checkpoint.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    if _is_exported_program(path):
        raise CheckpointError(
            f"{path}: an exported program (detops export), not a training checkpoint; run it "
            "with detops.ssd.export.load(path).module()(images), or import detops before "
            "torch.export.load"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated zip, a pickle of arbitrary objects, ...
        if "Weights only load failed" in str(exc):
            why = "it holds Python objects, not only tensors and plain values, so it was not written by detops"
        else:
            why = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        raise CheckpointError(f"{path}: not a readable checkpoint ({why})") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a detops checkpoint (no 'model' entry)")
    return state


def _is_exported_program(path: str) -> bool:
    """Whether ``path`` is a ``torch.export.save`` archive (a zip with an ``archive_format`` entry)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.rsplit("/", 1)[-1] == "archive_format" for n in z.namelist())


def build_model(
    n_classes: int, backbone: str = "vgg16", width: int = 16, backbone_weights: Optional[str] = None
) -> SSD300:
    """``SSD300(n_classes, backbone, backbone_weights, width)``; the model records these in ``init_args``."""
    return SSD300(n_classes, backbone=backbone, backbone_weights=backbone_weights, width=width)


def model_from_checkpoint(state: dict, path: str = "checkpoint") -> SSD300:
    """The model a checkpoint dict holds (weights loaded, train mode)."""
    args = state.get("model_args")
    if not isinstance(args, dict):
        raise CheckpointError(f"{path}: has no model_args, so the model it holds cannot be rebuilt")
    model = build_model(**args)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: its weights do not fit the model it names ({args}): {exc}") from exc
    return model


def load_model(path: str, device="cpu") -> tuple[SSD300, Optional[list]]:
    """The model stored in a checkpoint, in eval mode on ``device``; returns ``(model, class_names)``."""
    state = load_checkpoint(path)
    model = model_from_checkpoint(state, path)
    names = state.get("class_names")
    return model.to(device).eval(), list(names) if names is not None else None


def check_compatible(state: dict, path: str, model_args: dict, class_names: Optional[Sequence[str]]) -> None:
    """Raises :class:`CheckpointError` naming every option in which the checkpoint differs from the run that
    wants to resume from it (classes, backbone, width)."""
    stored = state.get("model_args") or {}
    diffs = []
    for key, option in (("backbone", "--backbone"), ("width", "--width"), ("n_classes", "the number of classes")):
        if key in stored and key in model_args and stored[key] != model_args[key]:
            if key == "width" and model_args.get("backbone") != "tiny":
                continue
            diffs.append(f"{option}: checkpoint {stored[key]!r}, this run {model_args[key]!r}")
    stored_names = state.get("class_names")
    if class_names is not None and stored_names is not None and list(stored_names) != list(class_names):
        diffs.append(f"classes: checkpoint {list(stored_names)}, this run {list(class_names)}")
    if diffs:
        raise CheckpointError(
            f"{path} was trained with other options ({'; '.join(diffs)}); "
            "drop them to use the checkpoint's, or start a new run without --resume"
        )
