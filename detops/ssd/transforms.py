"""The SSD data augmentation (Liu et al. 2016, section 2.2) on ``torchvision.transforms.v2``.

Training, in the tutorial's order:

1. photometric distortion: brightness, contrast, saturation, hue, each with probability 0.5, in random order
   (the hue turn is a YIQ chroma rotation, :func:`rotate_hue`: one 3x3 matrix product instead of an HSV
   round trip);
2. zoom out: expand the canvas 1-4x with probability 0.5, filled with the normalisation mean
   (``v2.RandomZoomOut``);
3. IoU crop, the SSD sampler: minimum IoU with some box 0, 0.1, 0.3, 0.5, 0.7, 0.9 or no crop; sides 0.3-1 of
   the image's, aspect 0.5-2; boxes whose centres leave the crop are dropped with their labels and
   difficulties. :func:`sample_iou_crop` draws it with one :func:`detops.box_iou` call per option, not
   ``v2.RandomIoUCrop``'s trial-by-trial loop (`detops bench --ops ssd_transforms` times both), and
   ``v2.functional.crop`` applies it;
4. horizontal flip with probability 0.5 (``v2.RandomHorizontalFlip``);
5. resize to ``size x size`` (``v2.Resize``), boxes made fractional, normalise.

Evaluation: resize, fractional boxes, normalise.

Boxes travel as ``tv_tensors.BoundingBoxes`` (xyxy) beside a ``tv_tensors.Image``, so every geometric step
moves them with the pixels; labels and difficulties follow the kept boxes by index. Randomness comes from
the global torch generator (seed it, or rely on DataLoader's per-worker seeding).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

import detops
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# The tutorial's photometric ranges (utils.photometric_distort): factors in [0.5, 1.5], hue shift in
# +-18/255 of a turn, each applied with probability 0.5, in a random order.
_HUE_DELTA = 18.0 / 255.0
_IOU_CROP_OPTIONS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]  # 1.0: "leave as is" (the tutorial's None)


_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]], dtype=torch.float64
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def rotate_hue(image: Tensor, turns: float) -> Tensor:
    """Shift the hue of a float ``[3, H, W]`` image in ``[0, 1]`` by ``turns`` of the colour wheel.

    A rotation of the chroma plane in YIQ space: one 3x3 colour matrix instead of the exact HSV round trip
    of ``adjust_hue`` (per-pixel max/min and branches), the same to the eye for the small shifts augmentation uses
    (luma is kept exactly; saturated colours may clip).
    """
    angle = -2 * torch.pi * float(turns)  # YIQ angles run opposite to HSV hue
    c, s = torch.cos(torch.tensor(angle, dtype=torch.float64)), torch.sin(torch.tensor(angle, dtype=torch.float64))
    rotation = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)
    matrix = (_YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ).to(image.dtype)
    return torch.einsum("ij,jhw->ihw", matrix, image).clamp_(0.0, 1.0)


def photometric_distort(image: Tensor, p: float = 0.5) -> Tensor:
    """Randomly adjust brightness, contrast, saturation and hue (each with probability ``p``, random order).

    The tutorial's ranges: brightness, contrast and saturation factors in ``[0.5, 1.5]``, hue shifted by up
    to 18/255 of a turn (with :func:`rotate_hue`).

    Args:
        image (Tensor[3, H, W]): float in ``[0, 1]``.

    Returns:
        Tensor[3, H, W]: float in ``[0, 1]``.
    """
    for k in torch.randperm(4).tolist():
        if torch.rand(()) >= p:
            continue
        if k == 3:
            image = rotate_hue(image, float(torch.empty(()).uniform_(-_HUE_DELTA, _HUE_DELTA)))
        else:
            factor = float(torch.empty(()).uniform_(0.5, 1.5))
            adjust = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation)[k]
            image = adjust(image, factor)
    return image


def sample_iou_crop(
    boxes: Tensor, height: int, width: int, trials: int = 50
) -> tuple[int, int, int, int, Tensor] | None:
    """Draw an SSD crop (the tutorial's ``random_crop`` sampler), all trials of one option at once.

    An option is drawn uniformly from minimum IoUs 0, 0.1, 0.3, 0.5, 0.7, 0.9 and "no crop". For an IoU
    option, up to ``trials`` crops are drawn (each side 0.3-1 of the image's, aspect ratio 0.5-2, integer
    position); the first one that overlaps some box with IoU >= the option and contains at least one box
    centre is taken; when none qualifies a new option is drawn. Equivalent to drawing the trials one by one,
    but one :func:`detops.box_iou` call instead of up to 50 Python iterations.

    Args:
        boxes (Tensor[n, 4]): absolute xyxy boxes, n >= 1.
        height, width (int): image size.

    Returns:
        ``(top, left, crop_height, crop_width, keep)`` with ``keep`` the bool ``[n]`` mask of the boxes whose
        centres lie strictly inside the crop, or ``None`` for "no crop".
    """
    boxes = boxes.float()
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    while True:
        option = _IOU_CROP_OPTIONS[int(torch.randint(len(_IOU_CROP_OPTIONS), ()))]
        if option >= 1.0:
            return None
        scale = 0.3 + 0.7 * torch.rand(trials, 2)
        crop_w = (scale[:, 0] * width).long().clamp(min=1)
        crop_h = (scale[:, 1] * height).long().clamp(min=1)
        ratio = crop_h.float() / crop_w.float()
        left = (torch.rand(trials) * (width - crop_w + 1).float()).long()
        top = (torch.rand(trials) * (height - crop_h + 1).float()).long()
        crops = torch.stack([left, top, left + crop_w, top + crop_h], dim=1).float()
        iou = torch.nan_to_num(detops.box_iou(crops, boxes), nan=0.0)  # [trials, n]
        inside = (cx[None] > crops[:, 0:1]) & (cx[None] < crops[:, 2:3])
        inside &= (cy[None] > crops[:, 1:2]) & (cy[None] < crops[:, 3:4])
        ok = (ratio >= 0.5) & (ratio <= 2.0) & (iou.amax(dim=1) >= option) & inside.any(dim=1)
        hits = torch.nonzero(ok)
        if hits.numel():
            t = int(hits[0, 0])
            return int(top[t]), int(left[t]), int(crop_h[t]), int(crop_w[t]), inside[t]


class SSDTransform:
    """Callable ``(image, boxes, labels, difficulties) -> (image, boxes, labels, difficulties)``.

    Build it with :func:`ssd_transforms`. Input: ``image`` ``uint8 [3, H, W]`` (or float in ``[0, 1]``),
    ``boxes`` float ``[n, 4]`` absolute xyxy pixels, ``labels`` int64 ``[n]``, ``difficulties`` uint8 ``[n]``
    (``n`` may be 0). Output: ``image`` float32 ``[3, size, size]`` normalised, ``boxes`` float32 ``[m, 4]``
    fractional xyxy in ``[0, 1]``, and the ``m <= n`` labels and difficulties of the boxes kept (``m == n``
    except when the IoU crop drops boxes whose centres fall outside it).
    """

    def __init__(
        self,
        train: bool,
        size: int = 300,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        photometric: bool = True,
    ) -> None:
        self.train = train
        self.photometric = photometric
        self.size = int(size)
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        # The zoom-out canvas shows the mean colour, which normalisation maps to 0.
        self._zoom_out = v2.RandomZoomOut(
            fill={tv_tensors.Image: tuple(self.mean), "others": 0}, side_range=(1.0, 4.0), p=0.5
        )
        self._flip = v2.RandomHorizontalFlip(p=0.5)
        self._resize = v2.Resize((self.size, self.size), antialias=True)

    def __repr__(self) -> str:
        return (
            f"SSDTransform(train={self.train}, size={self.size}, mean={self.mean}, std={self.std}, "
            f"photometric={self.photometric})"
        )

    def __call__(self, image: Tensor, boxes: Tensor, labels: Tensor, difficulties: Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must have shape [3, H, W], got {list(image.shape)}")
        if boxes.ndim != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"boxes must have shape [n, 4], got {list(boxes.shape)}")
        n = boxes.shape[0]
        if labels.shape != (n,) or difficulties.shape != (n,):
            raise ValueError(
                f"labels and difficulties must have shape [{n}], got {list(labels.shape)} and "
                f"{list(difficulties.shape)}"
            )
        height, width = image.shape[-2:]
        img = tv_tensors.Image(F.to_dtype(image, torch.float32, scale=True))
        bxs = tv_tensors.BoundingBoxes(boxes.float(), format="XYXY", canvas_size=(height, width))
        keep = torch.arange(n)

        if self.train:
            if self.photometric:
                img = tv_tensors.wrap(photometric_distort(img.as_subclass(Tensor)), like=img)
            img, bxs = self._zoom_out(img, bxs)
            crop = sample_iou_crop(bxs.as_subclass(Tensor), *img.shape[-2:]) if n > 0 else None
            if crop is not None:
                top, left, crop_h, crop_w, inside = crop
                # v2's crop moves and clamps the boxes; a kept box has its centre strictly inside the crop,
                # so its clamped extent stays positive.
                img = F.crop(img, top, left, crop_h, crop_w)
                bxs = F.crop(bxs, top, left, crop_h, crop_w)
                keep = keep[inside]
                bxs = tv_tensors.wrap(bxs[inside], like=bxs)
            img, bxs = self._flip(img, bxs)

        img, bxs = self._resize(img, bxs)
        out_h, out_w = img.shape[-2:]
        scale = torch.tensor([out_w, out_h, out_w, out_h], dtype=torch.float32)
        frac = (bxs.as_subclass(Tensor).float() / scale).clamp_(0.0, 1.0)
        out = F.normalize(img.as_subclass(Tensor), mean=self.mean, std=self.std)
        return out, frac, labels[keep], difficulties[keep]


def hflip_boxes(boxes: Tensor) -> Tensor:
    """Fractional xyxy boxes ``[n, 4]`` of a horizontally flipped image: ``(1 - x2, y1, 1 - x1, y2)``."""
    return torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], dim=1)


class FlipTransform:
    """A light augmentation for short runs: the evaluation pipeline (resize, normalise), then a horizontal
    flip with probability 0.5 (drawn from the global torch generator). Same call as :class:`SSDTransform`."""

    def __init__(self, size: int = 300, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self._resize = SSDTransform(False, size, mean, std)

    def __call__(self, image: Tensor, boxes: Tensor, labels: Tensor, difficulties: Tensor):
        x, b, lab, d = self._resize(image, boxes, labels, difficulties)
        if torch.rand(()) < 0.5:
            x, b = x.flip(-1), hflip_boxes(b)
        return x, b, lab, d


def ssd_transforms(
    train: bool,
    size: int = 300,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    photometric: bool = True,
) -> SSDTransform:
    """The SSD300 data pipeline for :class:`detops.ssd.voc.VOCDataset` (``transforms=``).

    Args:
        train (bool): augment (photometric distortion, zoom out, IoU crop, flip) before resizing, or only
            resize (evaluation).
        size (int): output side; SSD300 uses 300.
        mean, std: per-channel normalisation of the ``[0, 1]`` image (ImageNet's by default); the zoom-out
            canvas is filled with ``mean``.
        photometric (bool): include the photometric distortion in training (geometry-only when False).

    Returns:
        SSDTransform: ``(image uint8 [3, H, W], boxes [n, 4] absolute xyxy, labels [n], difficulties [n])``
        -> ``(image float32 [3, size, size], boxes [m, 4] fractional xyxy, labels [m], difficulties [m])``.
    """
    return SSDTransform(train, size, mean, std, photometric)
