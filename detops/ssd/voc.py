"""Pascal VOC reader: ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``.

The dataset gives what the SSD tutorial's ``PascalVOCDataset`` gives: an image tensor, the objects' boxes in
*fractional* ``(x1, y1, x2, y2)`` coordinates, their labels (1..n_classes-1, 0 is the background) and their
difficult flags.

Coordinates. VOC annotations give 1-based, inclusive pixel indices: ``xmin = 1`` is the first column and
``xmax = W`` the last. Pixel ``i`` (0-based) covers ``[i, i + 1)``, so the box covers the continuous interval
``[xmin - 1, xmax]``; that is the absolute xyxy box this module works with (divided by the image width and
height for the fractional box). Values are parsed as floats (some VOC-format sets write ``273.5``) and
clamped to the image.

Corrupt files. Annotations are parsed when the dataset is built: a malformed XML, a missing field or a
missing image file raises ``ValueError`` naming the file, or, with ``skip_corrupt=True``, the image is left
out of the dataset and one ``warnings.warn`` lists what was left out. Image bytes are decoded when an item is
loaded: an undecodable image raises ``ValueError`` naming the file, or, with ``skip_corrupt=True``, warns and
returns the next loadable item instead (so a DataLoader worker never dies on it).
"""

from __future__ import annotations

import math
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
"""The 20 Pascal VOC classes, in the devkit's order; label ``i + 1`` is ``VOC_CLASSES[i]``, 0 is background."""


@dataclass
class VOCObject:
    """One annotated object: class name, absolute xyxy box (continuous pixels), difficult flag."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool


@dataclass
class VOCAnnotation:
    """One parsed annotation file."""

    path: str
    filename: str
    width: int
    height: int
    objects: list[VOCObject]


def _text(node: ET.Element, tag: str, path: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise ValueError(f"{path}: corrupt VOC annotation: <{node.tag}> has no <{tag}>")
    return child.text.strip()


def parse_voc_annotation(path: str) -> VOCAnnotation:
    """Parse one VOC XML annotation file.

    Args:
        path (str): the ``.xml`` file.

    Returns:
        VOCAnnotation: filename, image size and objects; boxes are absolute continuous xyxy
        (``xmin - 1, ymin - 1, xmax, ymax``), clamped to the image when the size is known.

    Raises:
        ValueError: naming ``path`` when the file cannot be read, is not well-formed XML or lacks a field
            (``filename``, an object's ``name`` or ``bndbox`` coordinates), or a coordinate is not a number.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{path}: corrupt VOC annotation (not well-formed XML: {exc})") from exc
    except OSError as exc:
        raise ValueError(f"{path}: cannot read VOC annotation ({exc})") from exc
    if root.tag != "annotation":
        raise ValueError(f"{path}: corrupt VOC annotation: root element is <{root.tag}>, expected <annotation>")
    filename = _text(root, "filename", path)
    width = height = 0
    size = root.find("size")
    try:
        if size is not None:
            width = int(float(_text(size, "width", path)))
            height = int(float(_text(size, "height", path)))
        objects = []
        for obj in root.iter("object"):
            name = _text(obj, "name", path)
            bnd = obj.find("bndbox")
            if bnd is None:
                raise ValueError(f"{path}: corrupt VOC annotation: object {name!r} has no <bndbox>")
            x1 = float(_text(bnd, "xmin", path)) - 1.0
            y1 = float(_text(bnd, "ymin", path)) - 1.0
            x2 = float(_text(bnd, "xmax", path))
            y2 = float(_text(bnd, "ymax", path))
            diff = obj.find("difficult")
            difficult = diff is not None and diff.text is not None and diff.text.strip() not in ("", "0")
            raw = f"xmin={x1 + 1:g} ymin={y1 + 1:g} xmax={x2:g} ymax={y2:g}"
            where = f"{path}: object {len(objects)} ({name!r}) has an invalid box {raw}"
            if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
                raise ValueError(f"{where}: not a finite number")
            if x2 <= x1 or y2 <= y1:
                raise ValueError(f"{where}: xmin > xmax or ymin > ymax")
            if width > 0 and height > 0:
                x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
                y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
                if x2 <= x1 or y2 <= y1:
                    raise ValueError(f"{where}: outside the {width}x{height} image")
            objects.append(VOCObject(name, (x1, y1, x2, y2), difficult))
    except ValueError as exc:
        if str(exc).startswith(path):
            raise
        raise ValueError(f"{path}: corrupt VOC annotation ({exc})") from exc
    return VOCAnnotation(path, filename, width, height, objects)


def write_voc_annotation(
    path: str,
    filename: str,
    size: Sequence[int],
    objects: Iterable[dict],
    folder: str = "VOC",
) -> None:
    """Write one annotation in the Pascal VOC XML format.

    Args:
        path (str): the ``.xml`` file to write (its directory must exist).
        filename (str): the image file name, e.g. ``"000001.jpg"``.
        size: ``(width, height)`` or ``(width, height, depth)`` of the image.
        objects: dicts with ``name`` (str), ``bbox`` (``xmin, ymin, xmax, ymax`` in VOC's 1-based inclusive
            pixel convention, written as given; ints are usual), optional ``difficult`` (bool/int, default 0)
            and ``truncated`` (default 0).
        folder (str): the ``<folder>`` text.

    The output is deterministic (no dates or hostnames), so equal inputs give byte-identical files.
    """
    width, height = int(size[0]), int(size[1])
    depth = int(size[2]) if len(size) > 2 else 3
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = filename
    size_el = ET.SubElement(root, "size")
    ET.SubElement(size_el, "width").text = str(width)
    ET.SubElement(size_el, "height").text = str(height)
    ET.SubElement(size_el, "depth").text = str(depth)
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        el = ET.SubElement(root, "object")
        ET.SubElement(el, "name").text = str(obj["name"])
        ET.SubElement(el, "pose").text = "Unspecified"
        ET.SubElement(el, "truncated").text = str(int(obj.get("truncated", 0)))
        ET.SubElement(el, "difficult").text = str(int(bool(obj.get("difficult", 0))))
        bnd = ET.SubElement(el, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj["bbox"]):
            ET.SubElement(bnd, tag).text = str(value)
    ET.indent(root, space="\t")
    with open(path, "wb") as f:
        f.write(ET.tostring(root, encoding="utf-8"))
        f.write(b"\n")


def read_split(root: str, split: str) -> list[str]:
    """Image ids listed in ``root/ImageSets/Main/<split>.txt`` (first token of each non-empty line)."""
    path = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(path):
        main = os.path.join(root, "ImageSets", "Main")
        have = sorted(f[:-4] for f in os.listdir(main) if f.endswith(".txt")) if os.path.isdir(main) else []
        raise FileNotFoundError(f"{path}: no such split file (splits found: {have or 'none'})")
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def _names_in_annotations(directory: str) -> set[str]:
    """Class names of every readable ``*.xml`` in ``directory`` (malformed files are ignored here)."""
    names: set[str] = set()
    for entry in sorted(os.listdir(directory)):
        if not entry.endswith(".xml"):
            continue
        try:
            root = ET.parse(os.path.join(directory, entry)).getroot()
        except (ET.ParseError, OSError):
            continue
        for obj in root.iter("object"):
            name = obj.findtext("name")
            if name and name.strip():
                names.add(name.strip())
    return names


def load_image(path: str) -> Tensor:
    """Decode an image file to a ``uint8 [3, H, W]`` RGB tensor.

    Raises:
        ValueError: naming ``path`` when the file cannot be read or decoded.
    """
    # Pillow rather than torchvision.io, whose decoders are deprecated since torchvision 0.29.
    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:  # UnidentifiedImageError and truncation are OSErrors
        raise ValueError(f"{path}: corrupt or unreadable image ({type(exc).__name__}: {exc})") from exc
    image = torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
    if image.ndim != 3 or image.shape[0] != 3 or image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"{path}: corrupt image: decoded to shape {tuple(image.shape)}")
    return image


class VOCDataset(Dataset):
    """A Pascal VOC-format detection dataset, as the SSD tutorial's ``PascalVOCDataset``.

    Args:
        root (str): directory holding ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/<split>.txt``
            (e.g. ``VOCdevkit/VOC2007`` or a :func:`detops.ssd.synthetic.generate_voc_dataset` output).
        split (str): the image set, ``"trainval"``, ``"train"``, ``"val"`` or ``"test"``.
        transforms (callable, optional): called as ``transforms(image, boxes, labels, difficulties)`` with
            ``image`` a ``uint8 [3, H, W]`` tensor, ``boxes`` a float32 ``[n, 4]`` *absolute* xyxy tensor,
            ``labels`` int64 ``[n]`` and ``difficulties`` uint8 ``[n]``; it returns the same four with the
            boxes *fractional* (see :func:`detops.ssd.transforms.ssd_transforms`). ``None``: the image is
            converted to float32 in ``[0, 1]`` at its original size and the boxes divided by its size.
        keep_difficult (bool): keep the objects flagged difficult (needed for a correct VOC evaluation,
            where they are ignored rather than missed); ``False`` drops them, as the tutorial's training.
        classes (sequence of str, optional): the class names; label ``i + 1`` is ``classes[i]``. ``None``:
            :data:`VOC_CLASSES` when every name in the split's annotations is a VOC class, else the sorted
            names found in *all* files of ``Annotations/`` (so every split of one dataset gets the same ids).
            Objects whose class is not in an explicit ``classes`` are ignored.
        skip_corrupt (bool): leave out corrupt files with a warning instead of raising (see the module
            docstring for when each check happens).

    Attributes:
        classes (list[str]): the class names, background not included.
        n_classes (int): ``len(classes) + 1`` (background is label 0).
        ids (list[str]): the image ids, in split-file order (corrupt ones left out with ``skip_corrupt``).
        image_paths (list[str]): the image file of each id.
        skipped (list[str]): paths left out at construction with ``skip_corrupt=True``.

    ``dataset[i]`` returns ``(image [3, H, W] float32, boxes [n, 4] float32 fractional xyxy, labels [n] int64,
    difficulties [n] uint8)``; ``n`` may be 0 (an image whose objects are all difficult, with
    ``keep_difficult=False``).
    """

    def __init__(
        self,
        root: str,
        split: str = "trainval",
        transforms: Callable | None = None,
        keep_difficult: bool = False,
        classes: Sequence[str] | None = None,
        skip_corrupt: bool = False,
    ) -> None:
        self.root = root
        self.split = split
        self.transforms = transforms
        self.keep_difficult = keep_difficult
        self.skip_corrupt = skip_corrupt
        self.skipped: list[str] = []

        annotations: list[VOCAnnotation] = []
        for image_id in read_split(root, split):
            xml_path = os.path.join(root, "Annotations", f"{image_id}.xml")
            try:
                ann = parse_voc_annotation(xml_path)
                image_path = os.path.join(root, "JPEGImages", ann.filename)
                if not os.path.isfile(image_path):  # some VOC-format sets name the image by id only
                    fallback = os.path.join(root, "JPEGImages", f"{image_id}.jpg")
                    if not os.path.isfile(fallback):
                        raise ValueError(f"{image_path}: image file named by {xml_path} does not exist")
                    ann.filename = f"{image_id}.jpg"
            except ValueError as exc:
                if not skip_corrupt:
                    raise
                self.skipped.append(f"{exc}")
                continue
            annotations.append(ann)
        if self.skipped:
            warnings.warn(
                f"VOCDataset({root!r}, {split!r}): skipped {len(self.skipped)} corrupt item(s): "
                + "; ".join(self.skipped),
                stacklevel=2,
            )

        if classes is None:
            found = {obj.name for ann in annotations for obj in ann.objects}
            if found <= set(VOC_CLASSES):
                classes = VOC_CLASSES
            else:
                classes = sorted(found | _names_in_annotations(os.path.join(root, "Annotations")))
        self.classes = list(classes)
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes has duplicate names: {self.classes}")
        self.n_classes = len(self.classes) + 1
        label_of = {name: i + 1 for i, name in enumerate(self.classes)}

        self.ids: list[str] = []
        self.image_paths: list[str] = []
        self._boxes: list[Tensor] = []
        self._labels: list[Tensor] = []
        self._difficulties: list[Tensor] = []
        for ann in annotations:
            objs = [o for o in ann.objects if o.name in label_of and (keep_difficult or not o.difficult)]
            self.ids.append(os.path.splitext(os.path.basename(ann.path))[0])
            self.image_paths.append(os.path.join(root, "JPEGImages", ann.filename))
            self._boxes.append(torch.tensor([o.box for o in objs], dtype=torch.float32).reshape(-1, 4))
            self._labels.append(torch.tensor([label_of[o.name] for o in objs], dtype=torch.int64))
            self._difficulties.append(torch.tensor([int(o.difficult) for o in objs], dtype=torch.uint8))

    def __len__(self) -> int:
        return len(self.ids)

    def annotation(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        """The absolute xyxy boxes, labels and difficulties of item ``index``, without loading the image."""
        return self._boxes[index].clone(), self._labels[index].clone(), self._difficulties[index].clone()

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if not 0 <= index < len(self):
            if -len(self) <= index < 0:
                index += len(self)
            else:
                raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            try:
                image = load_image(self.image_paths[i])
            except ValueError as exc:
                if not self.skip_corrupt:
                    raise
                warnings.warn(f"{exc}; skipped, returning the next image instead", stacklevel=2)
                continue
            return self._prepare(image, i)
        raise ValueError(f"VOCDataset({self.root!r}, {self.split!r}): no image of the split can be decoded")

    def _prepare(self, image: Tensor, i: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        boxes, labels, difficulties = self.annotation(i)
        height, width = image.shape[-2:]
        # The size in the XML may disagree with the file; the decoded image is the truth.
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        if self.transforms is not None:
            return self.transforms(image, boxes, labels, difficulties)
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        return image.float().div_(255), boxes / scale, labels, difficulties


def collate_fn(batch: Sequence[tuple[Tensor, Tensor, Tensor, Tensor]]):
    """Collate ``VOCDataset`` items for a ``DataLoader`` (objects per image vary, so they stay lists).

    Args:
        batch: ``(image [3, H, W], boxes [n_i, 4], labels [n_i], difficulties [n_i])`` items; the images must
            share one size (use a resizing transform).

    Returns:
        ``(images [B, 3, H, W], boxes list of B [n_i, 4], labels list of B [n_i], difficulties list of B [n_i])``.
    """
    if len(batch) == 0:
        raise ValueError("collate_fn got an empty batch")
    sizes = {tuple(item[0].shape) for item in batch}
    if len(sizes) != 1:
        raise ValueError(f"collate_fn: images have different shapes {sorted(sizes)}; resize them first")
    images = torch.stack([item[0] for item in batch])
    return images, [item[1] for item in batch], [item[2] for item in batch], [item[3] for item in batch]
