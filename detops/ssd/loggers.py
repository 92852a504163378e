"""What the Trainer reports, and where: callbacks it is given (:class:`TrainerCallback`).

- :class:`ProgressBar`: a tqdm bar per epoch (loss, learning rate).
- :class:`EpochPrinter`: one plain line per epoch (loss, lr, images/s, time) and per validation; for logs and
  ``--no-progress``.
- :class:`CSVLogger`: one row per epoch (and its validation values) in a CSV file.
- :class:`TensorBoardLogger`: scalars (loss, lr, images/s, validation) and preview images with the model's
  detections drawn.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor


class TrainerCallback:
    """Hooks the Trainer calls; every method is a no-op here, subclasses override what they need.

    ``stats`` of :meth:`on_epoch_end`: ``epoch`` (completed), ``step``, ``loss`` (the epoch's mean), ``lr``,
    ``images_per_s``, ``seconds``. ``result`` of :meth:`on_validation`: ``epoch``, ``step``, ``val_loss`` and
    what the metric's ``compute()`` returned.
    """

    def on_fit_start(self, trainer) -> None: ...

    def on_epoch_start(self, trainer) -> None: ...

    def on_step(self, trainer, loss: float, lr: float) -> None: ...

    def on_epoch_end(self, trainer, stats: dict) -> None: ...

    def on_validation(self, trainer, result: dict) -> None: ...

    def on_fit_end(self, trainer) -> None: ...

    def close(self) -> None: ...


class ProgressBar(TrainerCallback):
    """A tqdm bar per epoch showing the step loss and learning rate."""

    def __init__(self):
        self.bar = None

    def on_epoch_start(self, trainer):
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=trainer.steps_per_epoch,
            initial=trainer.batch_in_epoch,
            leave=False,
            desc=f"epoch {trainer.epoch + 1}/{trainer.cfg.epochs}",
            dynamic_ncols=True,
        )

    def on_step(self, trainer, loss, lr):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")

    def on_epoch_end(self, trainer, stats):
        self.close()

    def on_fit_end(self, trainer):
        self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EpochPrinter(TrainerCallback):
    """One line per epoch and per validation, to ``file`` (stdout by default)."""

    def __init__(self, file=None):
        self.file = file

    def _print(self, line: str) -> None:
        print(line, file=self.file or sys.stdout, flush=True)

    def on_epoch_end(self, trainer, stats):
        self._print(
            f"epoch {stats['epoch']:>3d}/{trainer.cfg.epochs}  step {stats['step']:>6d}  "
            f"loss {stats['loss']:.4f}  lr {stats['lr']:.2e}  {stats['images_per_s']:.1f} images/s  "
            f"{stats['seconds']:.1f} s"
        )

    def on_validation(self, trainer, result):
        values = [f"val loss {result['val_loss']:.4f}"] if "val_loss" in result else []
        values += [
            f"{k} {v:.4f}"
            for k, v in result.items()
            if k.startswith("map") and isinstance(v, float) and not math.isnan(v)
        ]
        self._print(f"  validation after epoch {result['epoch']}: " + "  ".join(values))


class CSVLogger(TrainerCallback):
    """Appends one row per epoch to ``path``: epoch, step, loss, lr, images_per_s, seconds, and the validation
    values of that epoch: the loss, ``map`` (the metric's headline) and the values of the other metrics'
    columns (empty when the epoch was not validated or the metric does not give them). A resumed run appends
    to the same file."""

    VALUES = ("val_loss", "map", "map_voc07", "map_area", "map_coco", "map_coco_50", "map_coco_75", "mar_coco_100")
    FIELDS = ("epoch", "step", "loss", "lr", "images_per_s", "seconds") + VALUES

    def __init__(self, path: str):
        self.path = path
        self._pending: Optional[dict] = None

    def on_epoch_end(self, trainer, stats):
        self._flush()
        self._pending = {k: stats.get(k, "") for k in self.FIELDS}

    def on_validation(self, trainer, result):
        if self._pending is not None:
            for k in self.VALUES:
                self._pending[k] = result.get(k, "")

    def _flush(self):
        if self._pending is None:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(self._pending)
        self._pending = None

    def on_fit_end(self, trainer):
        self._flush()

    def close(self):
        self._flush()


class TensorBoardLogger(TrainerCallback):
    """TensorBoard scalars (``train/loss`` and ``train/lr`` every ``log_every`` steps, ``train/epoch_loss``,
    ``train/images_per_s``, ``val/*``) and, every ``image_every`` epochs, ``preview_images`` with the model's
    detections drawn.

    Args:
        log_dir: the event file directory.
        preview_images (Tensor[N, 3, S, S], optional): normalised images to draw detections on.
        class_names: names of labels 1..C-1, for the captions.
        mean, std: the images' normalisation, undone for drawing.
    """

    def __init__(
        self,
        log_dir: str,
        preview_images: Optional[Tensor] = None,
        class_names: Optional[Sequence[str]] = None,
        log_every: int = 10,
        image_every: int = 1,
        mean=None,
        std=None,
    ):
        from torch.utils.tensorboard import SummaryWriter

        from detops.ssd.transforms import IMAGENET_MEAN, IMAGENET_STD

        self.writer = SummaryWriter(log_dir)
        self.preview_images = preview_images
        self.class_names = class_names
        self.log_every = max(1, int(log_every))
        self.image_every = int(image_every)
        self.mean = IMAGENET_MEAN if mean is None else mean
        self.std = IMAGENET_STD if std is None else std

    def on_step(self, trainer, loss, lr):
        if trainer.step % self.log_every == 0:
            self.writer.add_scalar("train/loss", loss, trainer.step)
            self.writer.add_scalar("train/lr", lr, trainer.step)

    def on_epoch_end(self, trainer, stats):
        self.writer.add_scalar("train/epoch_loss", stats["loss"], stats["epoch"])
        self.writer.add_scalar("train/images_per_s", stats["images_per_s"], stats["epoch"])
        if self.image_every and self.preview_images is not None and stats["epoch"] % self.image_every == 0:
            self.log_images(trainer.model, stats["epoch"])
        self.writer.flush()

    def on_validation(self, trainer, result):
        for k, v in result.items():
            if (k == "val_loss" or k.startswith("map")) and isinstance(v, float):
                self.writer.add_scalar(f"val/{k}", v, result["epoch"])
        self.writer.flush()

    @torch.no_grad()
    def log_images(self, model, epoch: int) -> None:
        """Writes the preview images with ``model``'s detections (score >= 0.3) drawn."""
        from detops.ssd.drawing import denormalize, draw_detections

        was_training = model.training
        model.eval()
        images = self.preview_images.to(model.priors_cxcy.device)
        locs, scores = model(images)
        boxes, labels, scores = model.detect_objects(locs, scores, min_score=0.3, max_overlap=0.45, top_k=20)
        for i in range(images.size(0)):
            pil = denormalize(images[i], self.mean, self.std)
            pil = draw_detections(pil, boxes[i].cpu(), labels[i].cpu(), scores[i].cpu(), self.class_names)
            self.writer.add_image(f"detections/{i}", torch.from_numpy(np.array(pil)).permute(2, 0, 1), epoch)
        model.train(was_training)

    def on_fit_end(self, trainer):
        self.writer.flush()

    def close(self):
        self.writer.close()
