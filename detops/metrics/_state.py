"""What the metric objects share: checking a batch of torchvision-style dicts, keeping it as flat tensors on
its device, and gathering every rank's images once in ``compute()`` under ``torch.distributed``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
from torch import Tensor


def _where(index: int, offset: int) -> str:
    return f"image {offset + index} (entry {index} of this update)"


def _per_box(d: Mapping, key: str, n: int, where: str, side: str) -> Tensor:
    t = d[key]
    if not isinstance(t, Tensor):
        raise TypeError(f"{where}: {side}['{key}'] must be a Tensor, got {type(t).__name__}")
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(f"{where}: {side}['{key}'] must have shape [{n}] (one value per box), got {list(t.shape)}")
    return t


def _boxes(d: Mapping, where: str, side: str) -> Tensor:
    if "boxes" not in d:
        raise ValueError(f"{where}: {side} has no 'boxes'")
    b = d["boxes"]
    if not isinstance(b, Tensor):
        raise TypeError(f"{where}: {side}['boxes'] must be a Tensor, got {type(b).__name__}")
    if b.numel() == 0:
        return b.reshape(0, 4)
    if b.dim() != 2 or b.shape[1] != 4:
        raise ValueError(f"{where}: {side}['boxes'] must have shape [N, 4], got {list(b.shape)}")
    if not b.dtype.is_floating_point:
        b = b.double()
    return b


def _labels(d: Mapping, n: int, where: str, side: str) -> Tensor:
    if "labels" not in d:
        raise ValueError(f"{where}: {side} has no 'labels'")
    t = _per_box(d, "labels", n, where, side)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{where}: {side}['labels'] must be an integer tensor, got {t.dtype}")
    return t


def check_batch(preds: Sequence[Mapping], target: Sequence[Mapping], offset: int, target_extra: Sequence[str]):
    """Check one update's lists; return flat tensors and per-image counts.

    Returns:
        (dict, dict): ``{"boxes", "scores", "labels", "counts"}`` of the detections and ``{"boxes", "labels",
        *target_extra, "counts"}`` of the ground truth (an extra key absent from a dict is None there).
    """
    if not isinstance(preds, Sequence) or not isinstance(target, Sequence):
        raise TypeError("preds and target must be lists of dicts (one per image)")
    if len(preds) != len(target):
        raise ValueError(f"preds and target must have one entry per image, got {len(preds)} and {len(target)}")
    dt = {"boxes": [], "scores": [], "labels": []}
    gt = {"boxes": [], "labels": [], **{k: [] for k in target_extra}}
    for i, (p, t) in enumerate(zip(preds, target)):
        where = _where(i, offset)
        if not isinstance(p, Mapping) or not isinstance(t, Mapping):
            raise TypeError(f"{where}: preds and target entries must be dicts")
        b = _boxes(p, where, "preds")
        if "scores" not in p:
            raise ValueError(f"{where}: preds has no 'scores'")
        dt["boxes"].append(b)
        dt["scores"].append(_per_box(p, "scores", b.shape[0], where, "preds"))
        dt["labels"].append(_labels(p, b.shape[0], where, "preds"))
        g = _boxes(t, where, "target")
        gt["boxes"].append(g)
        gt["labels"].append(_labels(t, g.shape[0], where, "target"))
        for k in target_extra:
            gt[k].append(_per_box(t, k, g.shape[0], where, "target") if k in t else None)
    devices = {x.device for x in dt["boxes"] + gt["boxes"]}
    if len(devices) > 1:
        raise ValueError(f"preds and target must be on one device, got {sorted(map(str, devices))}")
    return dt, gt


def batch_device(dt: Mapping, gt: Mapping) -> torch.device:
    """The device of a checked batch's boxes (the CPU for an empty batch)."""
    boxes = dt["boxes"] + gt["boxes"]
    return boxes[0].device if boxes else torch.device("cpu")


def flags(boxes: Sequence[Tensor], given: Sequence[Tensor | None]) -> list[Tensor]:
    """Per-box flags (``iscrowd``, ``difficult``) of each image: the given ones, zeros where absent."""
    return [torch.zeros(b.shape[0], dtype=torch.uint8) if f is None else f for b, f in zip(boxes, given)]


def flat(parts: Sequence[Tensor], dtype: torch.dtype, device, width: int | None = None) -> Tensor:
    """Concatenate per-image tensors in ``dtype`` on ``device`` (an empty list gives an empty tensor)."""
    shape = (0,) if width is None else (0, width)
    if not parts:
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.cat([p.detach().reshape(-1, *shape[1:]).to(device=device, dtype=dtype) for p in parts])


def counts(parts: Sequence[Tensor], device) -> Tensor:
    return torch.tensor([p.shape[0] for p in parts], dtype=torch.int64, device=device)


def first_bad_image(bad: Tensor, image_of_row: Tensor) -> int | None:
    """The image of the first row flagged in ``bad`` (None when no row is)."""
    rows = bad.nonzero()
    return None if rows.numel() == 0 else int(image_of_row[rows[0, 0]])


def image_index(image_counts: Tensor) -> Tensor:
    return torch.repeat_interleave(torch.arange(image_counts.numel(), device=image_counts.device), image_counts)


def raise_first_bad(checks: Sequence[tuple[Tensor, Tensor, str]]) -> None:
    """Raise ValueError naming the image of the first flagged row of the first check that flags one; each check
    is ``(bad rows, image of each row, message)``."""
    for bad, image_of_row, message in checks:
        image = first_bad_image(bad, image_of_row)
        if image is not None:
            raise ValueError(f"image {image}: {message}")


class Accumulator:
    """Images kept as chunks of flat tensors, one chunk an ``update()``; :meth:`_all` merges them (and every
    rank's under ``torch.distributed``). ``EMPTY`` gives the shape and dtype of each tensor of a chunk, for a
    ``compute()`` before any image."""

    EMPTY: tuple[tuple[tuple[int, ...], torch.dtype], ...] = ()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._chunks: list[tuple[Tensor, ...]] = []
        self._n_images = 0

    def __len__(self) -> int:
        """Number of images accumulated on this rank."""
        return self._n_images

    def _add(self, chunk: tuple[Tensor, ...], n_images: int) -> None:
        self._chunks.append(chunk)
        self._n_images += n_images

    def _all(self) -> tuple[Tensor, ...]:
        if self._chunks:
            device = self._chunks[0][0].device
            merged = [torch.cat([c[j].to(device) for c in self._chunks]) for j in range(len(self.EMPTY))]
        else:
            merged = [torch.empty(shape, dtype=dtype) for shape, dtype in self.EMPTY]
        if distributed():
            merged = gather(merged)
        return tuple(merged)


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather(tensors: Sequence[Tensor]) -> list[Tensor]:
    """Every rank's tensors, concatenated along dim 0 in rank order (one size exchange, one gather each).

    Tensors keep their dtype and device; ranks must pass the same number of tensors with the same dtypes and
    trailing shapes (an empty rank included).
    """
    world = dist.get_world_size()
    device = tensors[0].device
    sizes = torch.tensor([t.shape[0] for t in tensors], dtype=torch.int64, device=device)
    all_sizes = [torch.empty_like(sizes) for _ in range(world)]
    dist.all_gather(all_sizes, sizes)
    all_sizes = torch.stack(all_sizes).cpu()
    out = []
    for j, t in enumerate(tensors):
        longest = int(all_sizes[:, j].max())
        padded = t.new_zeros((longest, *t.shape[1:]))
        padded[: t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        out.append(torch.cat([p[: int(all_sizes[r, j])] for r, p in enumerate(parts)]))
    return out
