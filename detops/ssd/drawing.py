"""Pictures: images to and from the network's normalised tensors, detections drawn on images, and the plots
the trainer writes (loss curve, learning-rate sweep)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from detops.ssd.transforms import IMAGENET_MEAN, IMAGENET_STD

_PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
]


def to_input(image: Image.Image, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Tensor:
    """PIL image -> Tensor[3, size, size] float32, resized (bilinear) and normalised with ``mean``/``std``."""
    image = image.convert("RGB").resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def denormalize(x: Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Image.Image:
    """Tensor[3, H, W] normalised image -> PIL RGB image (the inverse of the normalisation, clamped)."""
    x = x.detach().float().cpu() * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr)


def draw_detections(
    image: Image.Image,
    boxes: Tensor,
    labels: Tensor,
    scores: Optional[Tensor] = None,
    class_names: Optional[Sequence[str]] = None,
    fractional: bool = True,
) -> Image.Image:
    """Draws boxes with "name score" captions on a copy of ``image``.

    Args:
        image: a PIL image.
        boxes (Tensor[n, 4]): xyxy, fractions of the image when ``fractional``, else pixels.
        labels (Tensor[n]): class labels; 0 (background, the placeholder for "nothing found") is not drawn.
        scores (Tensor[n], optional): shown after the name.
        class_names: ``class_names[i]`` names label ``i + 1``.

    Returns:
        a new RGB image.
    """
    image = image.convert("RGB").copy()
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    w, h = image.size
    scale = torch.tensor([w, h, w, h], dtype=torch.float32) if fractional else torch.ones(4)
    for k in range(len(labels)):
        label = int(labels[k])
        if label <= 0:
            continue
        x1, y1, x2, y2 = (boxes[k].float().cpu() * scale).tolist()
        color = _PALETTE[(label - 1) % len(_PALETTE)]
        draw.rectangle([x1, y1, x2, y2], outline=color, width=2)
        name = class_names[label - 1] if class_names is not None and label - 1 < len(class_names) else str(label)
        text = name if scores is None else f"{name} {float(scores[k]):.2f}"
        tx1, ty1, tx2, ty2 = draw.textbbox((x1, y1), text, font=font)
        ty = max(0.0, y1 - (ty2 - ty1) - 2)
        draw.rectangle([x1, ty, x1 + (tx2 - tx1) + 4, ty + (ty2 - ty1) + 2], fill=color)
        draw.text((x1 + 2, ty), text, fill=(0, 0, 0) if sum(color) > 380 else (255, 255, 255), font=font)
    return image


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, ax, path: str, title: Optional[str]) -> None:
    """The plots' common finish: the title when given, a light grid, then the file."""
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_loss(history: Sequence[dict], path: str, title: Optional[str] = None) -> None:
    """Saves the training (and validation) loss curve as an image.

    Args:
        history: :attr:`Trainer.history`: dicts with ``step`` and ``loss`` (a logged step), or ``step`` and
            ``epoch_loss`` (an epoch's mean), or ``step`` and ``val_loss``.
        path: the image file (its extension picks the format, e.g. ``.png``).
        title: the plot's title (none by default).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, style, label in (
        ("loss", "-", "step loss"),
        ("epoch_loss", "o-", "epoch mean"),
        ("val_loss", "s--", "validation"),
    ):
        points = [(h["step"], h[key]) for h in history if key in h]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, style, lw=0.8 if key == "loss" else 1.5, alpha=0.6 if key == "loss" else 1.0, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("MultiBox loss")
    ax.set_yscale("log")
    ax.legend()
    _save(plt, fig, ax, path, title)


def plot_lr_find(
    lrs: Sequence[float],
    losses: Sequence[float],
    path: str,
    suggestion: Optional[float] = None,
    title: Optional[str] = None,
) -> None:
    """Saves a learning-rate sweep (smoothed loss against the learning rate, log x axis) as an image, with the
    suggested learning rate marked when given."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(lrs, losses, lw=1.2)
    if suggestion is not None:
        ax.axvline(suggestion, color="tab:red", ls="--", label=f"suggested {suggestion:.2e}")
        ax.legend()
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed loss")
    _save(plt, fig, ax, path, title)
