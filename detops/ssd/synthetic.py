"""A synthetic Pascal VOC-format dataset of coloured shapes: the default data of the demo and the tests.

Each image has a textured background (smooth colour noise, stripes or a checkerboard, muted, plus pixel noise
and a few thin distractor lines) and 1 to ``max_objects`` filled shapes. Sizes are mostly medium (12-45% of
the shorter image side), some tiny (2-7%) and some huge (55-95%, often truncated by the image border).
Shapes may overlap; bigger ones are usually drawn first. Each class has its own hue (jittered; one object in
five gets a random colour instead), so colour helps but shape decides.

Annotations follow VOC: the box is the tight box of the object's *visible* pixels, in 1-based inclusive
pixel indices. An object is flagged ``difficult`` when its visible box is smaller than 12 pixels on its
longer side or when less than 40% of it is visible; an object with no visible pixel is not annotated. Every
image has at least one object that is not difficult.

Determinism: image ``k`` is drawn from ``numpy.random.default_rng([seed, k])``, so the same seed (and
Pillow/libjpeg version) gives byte-identical files, and changing ``n_test`` does not change the training
images.
"""

from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from detops.ssd.voc import write_voc_annotation

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "star", "ring")
"""Shape classes the generator can draw."""

DEFAULT_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
"""The classes :func:`generate_voc_dataset` draws by default (label ids follow the reader's ``classes``)."""
SYNTHETIC_CLASSES = DEFAULT_CLASSES

_TINY_DIFFICULT_PX = 12
_MIN_VISIBLE_FRACTION = 0.4


def _polygon(shape: str, x0: float, y0: float, w: float, h: float, rng: np.random.Generator) -> list[tuple]:
    """Vertices of a polygonal shape inside the box (x0, y0, w, h)."""
    cx, cy = x0 + w / 2, y0 + h / 2
    if shape == "square":
        return [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
    if shape == "triangle":
        pts = [(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)]  # apex up, then rotated by a multiple of 90 degrees
        turn = int(rng.integers(4))
        for _ in range(turn):
            pts = [(1.0 - v, u) for u, v in pts]
        return [(x0 + u * w, y0 + v * h) for u, v in pts]
    if shape == "cross":
        t = 0.17  # half arm thickness, as a fraction of the side
        a, b = 0.5 - t, 0.5 + t
        pts = [(a, 0), (b, 0), (b, a), (1, a), (1, b), (b, b), (b, 1), (a, 1), (a, b), (0, b), (0, a), (a, a)]
        return [(x0 + u * w, y0 + v * h) for u, v in pts]
    if shape == "star":
        pts = []
        for k in range(10):
            r = 0.5 if k % 2 == 0 else 0.21
            ang = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + r * w * math.cos(ang), cy + r * h * math.sin(ang)))
        return pts
    raise AssertionError(shape)


def _draw_mask(shape: str, box: tuple[float, float, float, float], size: tuple[int, int], rng):
    """Mask of one shape whose extent is ``box`` = (x0, y0, w, h) (may leave the image).

    Returns ``(mask, (x_lo, y_lo))``: a boolean mask of the image region the extent covers, and that
    region's top-left pixel; ``mask`` is empty when the extent misses the image.
    """
    width, height = size
    x0, y0, w, h = box
    x_lo, y_lo = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
    x_hi, y_hi = min(int(math.ceil(x0 + w)) + 1, width), min(int(math.ceil(y0 + h)) + 1, height)
    if x_hi <= x_lo or y_hi <= y_lo:
        return np.zeros((0, 0), dtype=bool), (0, 0)
    canvas = Image.new("L", (x_hi - x_lo, y_hi - y_lo), 0)
    draw = ImageDraw.Draw(canvas)
    x0, y0 = x0 - x_lo, y0 - y_lo
    if shape == "circle":
        draw.ellipse([x0, y0, x0 + w, y0 + h], fill=255)
    elif shape == "ring":
        draw.ellipse([x0, y0, x0 + w, y0 + h], fill=255)
        t = 0.28
        draw.ellipse([x0 + t * w, y0 + t * h, x0 + (1 - t) * w, y0 + (1 - t) * h], fill=0)
    else:
        draw.polygon(_polygon(shape, x0, y0, w, h, rng), fill=255)
    return np.asarray(canvas) > 127, (x_lo, y_lo)


def _muted(colour: np.ndarray) -> np.ndarray:
    """Halfway to grey (the last axis is RGB), so the shapes stand out from the background."""
    return 0.5 * colour + 0.5 * colour.mean(axis=-1, keepdims=True)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A muted textured background, float32 [H, W, 3] in 0..255."""
    kind = int(rng.integers(3))
    base = rng.uniform(60, 190, size=3)
    if kind == 0:  # smooth colour noise
        gh, gw = (int(v) for v in rng.integers(2, 7, size=2))
        grid = _muted(rng.uniform(-60, 60, size=(gh, gw, 3)) * 0.6 + base)
        img = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
        return np.asarray(img, dtype=np.float32)
    yy = np.arange(height, dtype=np.float32)[:, None]
    xx = np.arange(width, dtype=np.float32)[None, :]
    other = np.clip(base + rng.uniform(-45, 45, size=3), 0, 255)
    if kind == 1:  # stripes at a random angle and period
        ang = rng.uniform(0, math.pi)
        k = np.float32(2 * math.pi / rng.uniform(6, 40))
        wave = np.float32(0.5) + np.float32(0.5) * np.sin(
            xx * (k * np.float32(math.cos(ang))) + yy * (k * np.float32(math.sin(ang)))
        )
    else:  # checkerboard
        cell = int(rng.integers(8, 50))
        wave = ((xx // cell + yy // cell) % 2).astype(np.float32)
    base32, other32 = _muted(base).astype(np.float32), _muted(other).astype(np.float32)
    return base32 + wave[..., None] * (other32 - base32)


def _object_colour(rng: np.random.Generator, class_index: int, n_classes: int) -> tuple[int, int, int]:
    if rng.random() < 0.2:
        hue = rng.random()
    else:
        hue = (class_index / n_classes + rng.uniform(-0.04, 0.04)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.65, 1.0), rng.uniform(0.7, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _sample_extent(rng: np.random.Generator, width: int, height: int) -> tuple[float, float, float, float]:
    side = min(width, height)
    u = rng.random()
    if u < 0.12:
        s = rng.uniform(0.02, 0.07)
    elif u < 0.85:
        s = rng.uniform(0.12, 0.45)
    else:
        s = rng.uniform(0.55, 0.95)
    aspect = math.exp(rng.uniform(-0.25, 0.25))
    w, h = max(s * side * aspect, 3.0), max(s * side / aspect, 3.0)
    x0 = rng.uniform(-0.2 * w, width - 0.8 * w)
    y0 = rng.uniform(-0.2 * h, height - 0.8 * h)
    return x0, y0, w, h


def _box_iou(a, b) -> float:
    ax1, ay1, ax2, ay2 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx1, by1, bx2, by2 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def render_image(
    rng: np.random.Generator,
    size: tuple[int, int],
    classes: Sequence[str],
    max_objects: int = 6,
) -> tuple[Image.Image, list[dict]]:
    """Draw one image and its VOC objects (``name``, ``bbox`` 1-based inclusive, ``difficult``, ``truncated``)."""
    width, height = size
    while True:
        n = int(rng.integers(1, max_objects + 1))
        extents: list[tuple] = []
        for _ in range(n):
            for _try in range(20):
                ext = _sample_extent(rng, width, height)
                if all(_box_iou(ext, e) <= 0.35 for e in extents):
                    extents.append(ext)
                    break
        if rng.random() < 0.8:  # usually big first, so small shapes sit on top
            extents.sort(key=lambda e: -e[2] * e[3])
        labels = [int(rng.integers(len(classes))) for _ in extents]

        canvas = _background(rng, width, height)
        for _ in range(int(rng.integers(0, 4))):  # thin distractor lines
            p = rng.uniform(0, 1, size=4) * np.array([width, height, width, height])
            line = Image.new("L", (width, height), 0)
            ImageDraw.Draw(line).line([float(v) for v in p], fill=255, width=int(rng.integers(1, 3)))
            m = np.asarray(line) > 127
            canvas[m] = 0.5 * canvas[m] + 0.5 * rng.uniform(40, 220, size=3).astype(np.float32)

        owner = np.full((height, width), -1, dtype=np.int32)
        placed = []
        for k, (ext, lab) in enumerate(zip(extents, labels)):
            mask, (x_lo, y_lo) = _draw_mask(classes[lab], ext, (width, height), rng)
            colour = np.array(_object_colour(rng, lab, len(classes)), dtype=np.float32)
            shade = rng.uniform(-25, 25, size=3).astype(np.float32) * np.float32(rng.uniform(-1, 1))
            region = (slice(y_lo, y_lo + mask.shape[0]), slice(x_lo, x_lo + mask.shape[1]))
            canvas[region][mask] = colour + shade
            owner[region][mask] = k
            placed.append((region, int(mask.sum())))

        objects = []
        for k, lab in enumerate(labels):
            region, full_area = placed[k]
            vis = owner[region] == k
            n_vis = int(vis.sum())
            if n_vis == 0:
                continue
            cols = np.flatnonzero(vis.any(axis=0))
            rows = np.flatnonzero(vis.any(axis=1))
            x1, x2 = int(cols[0]) + region[1].start, int(cols[-1]) + region[1].start
            y1, y2 = int(rows[0]) + region[0].start, int(rows[-1]) + region[0].start
            tiny = max(x2 - x1 + 1, y2 - y1 + 1) < _TINY_DIFFICULT_PX
            occluded = n_vis < _MIN_VISIBLE_FRACTION * full_area
            ext = extents[k]
            truncated = ext[0] < 0 or ext[1] < 0 or ext[0] + ext[2] > width or ext[1] + ext[3] > height
            objects.append(
                {
                    "name": classes[lab],
                    "bbox": (x1 + 1, y1 + 1, x2 + 1, y2 + 1),
                    "difficult": int(tiny or occluded),
                    "truncated": int(truncated),
                }
            )
        if any(not o["difficult"] for o in objects):
            break

    amplitude = np.float32(rng.uniform(6, 20))  # uniform pixel noise in +-amplitude/2
    canvas += (rng.random((height, width, 3), dtype=np.float32) - np.float32(0.5)) * amplitude
    pixels = np.clip(canvas, 0, 255).round().astype(np.uint8)
    return Image.fromarray(pixels, "RGB"), objects


def generate_voc_dataset(
    root: str,
    n_train: int = 400,
    n_test: int = 100,
    image_size: int | tuple[int, int] = 300,
    seed: int = 0,
    classes: Sequence[str] = DEFAULT_CLASSES,
    max_objects: int = 6,
    jpeg_quality: int = 92,
) -> dict:
    """Write a synthetic Pascal VOC-format dataset of shapes under ``root``.

    Args:
        root (str): output directory; ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/`` are created
            (existing files of the same names are overwritten).
        n_train (int): training images (ids ``000001``...), listed in ``train.txt`` and ``trainval.txt``.
        n_test (int): held-out images (the ids after the training ones), listed in ``test.txt``.
        image_size: ``W`` for square images or ``(W, H)``.
        seed (int): the same seed gives byte-identical files.
        classes: shape names, a subset of :data:`SHAPES` (default circle, square, triangle, cross).
        max_objects (int): at most this many shapes per image (at least 1).
        jpeg_quality (int): JPEG quality of the images.

    Returns:
        dict: ``root``, ``classes`` (the names as given), ``image_size`` ``(W, H)``, ``seed``, ``splits``
        (split name -> list of ids), ``n_images``, ``n_objects``, ``n_difficult``.
    """
    unknown = [c for c in classes if c not in SHAPES]
    if unknown or len(classes) == 0 or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct names from {SHAPES}, got {tuple(classes)}")
    if isinstance(image_size, int):
        width = height = image_size
    else:
        width, height = (int(v) for v in image_size)
    if width < 32 or height < 32:
        raise ValueError(f"image_size must be at least 32 x 32, got {(width, height)}")
    if n_train < 0 or n_test < 0 or max_objects < 1:
        raise ValueError(f"need n_train, n_test >= 0 and max_objects >= 1, got {n_train}, {n_test}, {max_objects}")

    ann_dir = os.path.join(root, "Annotations")
    img_dir = os.path.join(root, "JPEGImages")
    set_dir = os.path.join(root, "ImageSets", "Main")
    for d in (ann_dir, img_dir, set_dir):
        os.makedirs(d, exist_ok=True)

    ids = [f"{k + 1:06d}" for k in range(n_train + n_test)]
    n_objects = n_difficult = 0
    for k, image_id in enumerate(ids):
        rng = np.random.default_rng([seed, k])
        image, objects = render_image(rng, (width, height), list(classes), max_objects)
        image.save(os.path.join(img_dir, f"{image_id}.jpg"), format="JPEG", quality=jpeg_quality)
        write_voc_annotation(
            os.path.join(ann_dir, f"{image_id}.xml"),
            f"{image_id}.jpg",
            (width, height, 3),
            objects,
            folder="detops-synthetic",
        )
        n_objects += len(objects)
        n_difficult += sum(o["difficult"] for o in objects)

    splits = {"train": ids[:n_train], "trainval": ids[:n_train], "test": ids[n_train:]}
    for name, members in splits.items():
        with open(os.path.join(set_dir, f"{name}.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"{m}\n" for m in members)
    return {
        "root": root,
        "classes": list(classes),
        "image_size": (width, height),
        "seed": seed,
        "splits": splits,
        "n_images": len(ids),
        "n_objects": n_objects,
        "n_difficult": n_difficult,
    }


if __name__ == "__main__":  # python -m detops.ssd.synthetic OUT ... is detops data synthetic OUT ...
    import sys

    from detops.cli import main

    sys.exit(main(["data", "synthetic", *sys.argv[1:]]))
