"""Pascal VOC mean average precision (mAP), vectorised, with the overlaps from :func:`detops.box_iou_aligned`.

The definition is the VOC devkit's and the SSD tutorial's ``calculate_mAP`` (spelled out step by step in
:mod:`detops.reference.metrics`, which this module is tested against): per class, detections sorted by
score (stable on ties); each takes the same-class ground-truth box of its image with the highest IoU; a
match needs IoU strictly above ``iou_threshold``; a match with a difficult box is ignored; a second match
with a claimed box is a false positive. AP is the VOC2007 11-point value (``method="voc07"``, what the
tutorial reports) or the all-point area under the interpolated precision curve (``method="area"``, VOC2010+).

Conventions:
    - The 11 recall thresholds are the exact fractions k/10 (integer comparison ``10 * TP >= k * n_pos``).
    - A class with no non-difficult ground-truth box (all its boxes difficult, or none at all) gets AP 0 and
      counts in the mean, as the devkit and the tutorial count it (``empty_classes="zero"``, the default), so
      the mAP is over all classes ``1 .. n_classes - 1``. With ``empty_classes="nan"`` such a class has no AP
      (NaN, recall being undefined) and is left out of the mean; the mAP is then NaN when no class has a box.
    - Detections labelled 0 (background; the tutorial's ``detect_objects`` returns one such placeholder for an
      image with no detection) are ignored. Labels must otherwise be in ``1 .. n_classes - 1``.
    - Boxes may be fractional or absolute (IoU does not care) as long as detections and ground truth agree.
      Degenerate boxes overlap nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

import detops
from detops.metrics import _state

METHODS = ("voc07", "area")
EMPTY_CLASSES = ("zero", "nan")


def _check_options(method: str, empty_classes: str, n_classes: int, n_classes_name: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if empty_classes not in EMPTY_CLASSES:
        raise ValueError(f"empty_classes must be one of {EMPTY_CLASSES}, got {empty_classes!r}")
    if n_classes < 2:
        raise ValueError(f"{n_classes_name} counts the background and must be at least 2, got {n_classes}")


def _check_lists(det_boxes, det_labels, det_scores, true_boxes, true_labels, true_difficulties) -> int:
    n = len(true_boxes)
    lengths = [len(x) for x in (det_boxes, det_labels, det_scores, true_boxes, true_labels, true_difficulties)]
    if any(length != n for length in lengths):
        raise ValueError(
            "det_boxes, det_labels, det_scores, true_boxes, true_labels and true_difficulties must be lists "
            f"with one entry per image, got lengths {lengths}"
        )
    for i in range(n):
        k, g = det_boxes[i].reshape(-1, 4).shape[0], true_boxes[i].reshape(-1, 4).shape[0]
        if det_boxes[i].numel() % 4 or true_boxes[i].numel() % 4:
            raise ValueError(f"image {i}: boxes must have shape [n, 4]")
        if det_labels[i].numel() != k or det_scores[i].numel() != k:
            raise ValueError(
                f"image {i}: {k} detected boxes but {det_labels[i].numel()} labels and {det_scores[i].numel()} scores"
            )
        if true_labels[i].numel() != g or true_difficulties[i].numel() != g:
            raise ValueError(
                f"image {i}: {g} true boxes but {true_labels[i].numel()} labels and "
                f"{true_difficulties[i].numel()} difficulties"
            )
    return n


def _cat(tensors: Sequence[Tensor], dtype: torch.dtype, width: int | None = None) -> tuple[Tensor, Tensor]:
    """Concatenate per-image tensors on the CPU in ``dtype``; also each row's image index."""
    shape = (0,) if width is None else (0, width)
    if len(tensors) == 0:
        return torch.empty(shape, dtype=dtype), torch.empty(0, dtype=torch.int64)
    parts = [t.detach().reshape(shape[0] - 1, *shape[1:]) for t in tensors]
    counts = torch.tensor([p.shape[0] for p in parts], dtype=torch.int64)
    values = torch.cat([p.to(device="cpu", dtype=dtype) for p in parts])
    return values, torch.repeat_interleave(torch.arange(len(parts)), counts)


def _match(d_boxes, d_labels, d_image, g_boxes, g_labels, g_image, iou_threshold) -> tuple[Tensor, Tensor]:
    """:func:`match_detections` on concatenated tensors (``*_image``: each row's image index)."""
    n_det = d_boxes.shape[0]
    if n_det == 0:
        return torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.float64)
    stride = int(max(int(d_labels.max()), int(g_labels.max()) if g_labels.numel() else 0)) + 1
    d_key = d_image * stride + d_labels
    g_key = g_image * stride + g_labels
    g_order = torch.sort(g_key, stable=True).indices  # boxes grouped by (image, class), image order kept
    g_sorted = g_key[g_order]
    first = torch.searchsorted(g_sorted, d_key, side="left")
    count = torch.searchsorted(g_sorted, d_key, side="right") - first
    # Every (detection, box of the same image and class) pair.
    pair_det = torch.repeat_interleave(torch.arange(n_det), count)
    within = torch.arange(pair_det.numel()) - torch.repeat_interleave(count.cumsum(0) - count, count)
    pair_gt = g_order[torch.repeat_interleave(first, count) + within]
    iou = torch.nan_to_num(detops.box_iou_aligned(d_boxes[pair_det], g_boxes[pair_gt], "iou", 0.0), nan=0.0)
    best = torch.full((n_det,), -1.0, dtype=torch.float64).scatter_reduce(0, pair_det, iou, reduce="amax")
    at_best = iou == best[pair_det]
    best_gt = torch.full((n_det,), g_boxes.shape[0], dtype=torch.int64).scatter_reduce(
        0, pair_det[at_best], pair_gt[at_best], reduce="amin"
    )
    matched = torch.where(best > iou_threshold, best_gt, torch.full_like(best_gt, -1))
    return matched, best


def match_detections(
    det_boxes: Sequence[Tensor],
    det_labels: Sequence[Tensor],
    true_boxes: Sequence[Tensor],
    true_labels: Sequence[Tensor],
    iou_threshold: float = 0.5,
) -> tuple[Tensor, Tensor]:
    """For every detection (all images concatenated), its best same-class ground-truth box in its image.

    Vectorised over all images at once: every (detection, same-image same-class box) pair is listed with
    sorted keys and ``searchsorted``, and their IoUs come from one :func:`detops.box_iou_aligned` call.

    Returns:
        (Tensor[D] int64, Tensor[D] float64): the index of the matched box in the concatenation of
        ``true_boxes`` (-1 when the best same-class IoU is not strictly above ``iou_threshold`` or the image
        has no box of that class; the first such box on ties) and that best IoU (-1 with no same-class box).
    """
    d_boxes, d_image = _cat(det_boxes, torch.float64, 4)
    g_boxes, g_image = _cat(true_boxes, torch.float64, 4)
    d_labels, _ = _cat(det_labels, torch.int64)
    g_labels, _ = _cat(true_labels, torch.int64)
    return _match(d_boxes, d_labels, d_image, g_boxes, g_labels, g_image, iou_threshold)


def _average_precision(is_tp: Tensor, n_positives: int, method: str) -> float:
    """AP of ranked TP flags (bool [D], ignored detections removed) against ``n_positives`` boxes."""
    if is_tp.numel() == 0:
        return 0.0
    cum_tp = is_tp.long().cumsum(0)
    ranks = torch.arange(1, is_tp.numel() + 1, dtype=torch.int64)
    precision = cum_tp.double() / ranks.double()
    # Best precision at this rank or any later one (recall only grows with rank).
    envelope = precision.flip(0).cummax(0).values.flip(0)
    if method == "voc07":
        # First rank whose recall reaches k/10, exactly: 10 * TP >= k * n_positives.
        targets = torch.arange(11, dtype=torch.int64) * n_positives
        first = torch.searchsorted(10 * cum_tp, targets, side="left")
        reached = first < is_tp.numel()
        best = envelope[first.clamp(max=is_tp.numel() - 1)]
        values = torch.where(reached, best, torch.zeros(11, dtype=torch.float64))
        return float(values.sum() / 11)
    recall = cum_tp.double() / n_positives
    steps = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((steps * envelope).sum())


def voc_map(
    det_boxes: Sequence[Tensor],
    det_labels: Sequence[Tensor],
    det_scores: Sequence[Tensor],
    true_boxes: Sequence[Tensor],
    true_labels: Sequence[Tensor],
    true_difficulties: Sequence[Tensor],
    n_classes: int,
    method: str = "voc07",
    iou_threshold: float = 0.5,
    empty_classes: str = "zero",
) -> tuple[float, dict[int, float]]:
    """Pascal VOC mean average precision, as the tutorial's ``calculate_mAP`` (one list entry per image).

    Args:
        det_boxes (list of Tensor[k_i, 4]): detected xyxy boxes of each image (fractional or absolute, as the
            ground truth).
        det_labels (list of Tensor[k_i] int): their labels; 0 (background) is ignored.
        det_scores (list of Tensor[k_i] float): their scores.
        true_boxes (list of Tensor[g_i, 4]): ground-truth xyxy boxes.
        true_labels (list of Tensor[g_i] int): their labels, in ``1 .. n_classes - 1``.
        true_difficulties (list of Tensor[g_i]): 1 (or True) for difficult boxes, which are ignored: a
            detection matching one is neither a true nor a false positive, and they do not count for recall.
        n_classes (int): number of classes *including* background (21 for VOC).
        method (str): ``"voc07"`` (11-point interpolation, the tutorial's number) or ``"area"`` (all-point).
        iou_threshold (float): a detection matches when its IoU is strictly greater than this.
        empty_classes (str): ``"zero"`` (the devkit's rule): a class without a non-difficult box gets AP 0 and
            counts in the mean; ``"nan"``: it gets NaN and is left out of the mean.

    Returns:
        (float, dict[int, float]): the mAP and the AP of every class ``1 .. n_classes - 1``. Tensors may be
        on any device; the work is done on the CPU in float64. Empty lists give ``(0.0, {c: 0.0})``
        (``(nan, {c: nan})`` with ``empty_classes="nan"``).
    """
    _check_options(method, empty_classes, n_classes, "n_classes")
    _check_lists(det_boxes, det_labels, det_scores, true_boxes, true_labels, true_difficulties)
    t_boxes, t_image = _cat(true_boxes, torch.float64, 4)
    t_labels, _ = _cat(true_labels, torch.int64)
    t_difficult, _ = _cat(true_difficulties, torch.bool)
    d_boxes, d_image = _cat(det_boxes, torch.float64, 4)
    d_labels, _ = _cat(det_labels, torch.int64)
    d_scores, _ = _cat(det_scores, torch.float64)
    if t_labels.numel() and (int(t_labels.min()) < 1 or int(t_labels.max()) >= n_classes):
        raise ValueError(
            f"true_labels must be in 1 .. {n_classes - 1} (n_classes={n_classes} counts background), "
            f"got values in [{int(t_labels.min())}, {int(t_labels.max())}]"
        )
    if d_labels.numel() and (int(d_labels.min()) < 0 or int(d_labels.max()) >= n_classes):
        raise ValueError(
            f"det_labels must be in 0 .. {n_classes - 1}, got values in [{int(d_labels.min())}, {int(d_labels.max())}]"
        )
    matched, _ = _match(d_boxes, d_labels, d_image, t_boxes, t_labels, t_image, iou_threshold)

    # Rank all detections at once: grouped by class, by descending score within a class (stable on ties).
    order = torch.sort(d_scores, descending=True, stable=True).indices
    order = order[torch.sort(d_labels[order], stable=True).indices]
    labels, gt = d_labels[order], matched[order]
    # Matches with difficult boxes are ignored: drop them from the ranking.
    hit = gt >= 0
    ignored = torch.zeros_like(hit)
    ignored[hit] = t_difficult[gt[hit]]
    labels, gt = labels[~ignored], gt[~ignored]
    hit = gt >= 0
    # A true positive is the first (highest-scored) detection matching its box; boxes are class-specific,
    # so one pass over all classes works.
    rank = torch.arange(gt.numel(), dtype=torch.int64)
    first = torch.full((t_labels.numel(),), gt.numel(), dtype=torch.int64)
    first.scatter_reduce_(0, gt[hit], rank[hit], reduce="amin")
    if t_labels.numel():
        is_tp = hit & (first[gt.clamp(min=0)] == rank)
    else:  # no ground truth anywhere: every detection is a false positive
        is_tp = torch.zeros_like(hit)
    bounds = torch.searchsorted(labels, torch.arange(n_classes + 1, dtype=torch.int64)).tolist()

    positives = torch.bincount(t_labels[~t_difficult], minlength=n_classes).tolist()
    aps: dict[int, float] = {}
    for c in range(1, n_classes):
        if positives[c] == 0:
            aps[c] = 0.0 if empty_classes == "zero" else math.nan
            continue
        aps[c] = _average_precision(is_tp[bounds[c] : bounds[c + 1]], positives[c], method)
    valid = [ap for ap in aps.values() if not math.isnan(ap)]
    return (sum(valid) / len(valid) if valid else math.nan), aps


class VOCMeanAveragePrecision(_state.Accumulator):
    """Pascal VOC mAP over batches of torchvision-style dicts: ``update(preds, target)``, ``compute()``,
    ``reset()``, as :class:`detops.metrics.MeanAveragePrecision` (the COCO metric) takes them.

    Args:
        num_classes (int): number of classes *including* background (21 for VOC); labels are
            ``1 .. num_classes - 1``, detections labelled 0 are ignored.
        method (str): ``"voc07"`` (11-point, the tutorial's number) or ``"area"`` (all-point, VOC2010+).
        iou_threshold (float): a detection matches when its IoU is strictly greater than this.
        empty_classes (str): ``"zero"`` (devkit) or ``"nan"``, see :func:`voc_map`.

    ``preds``: one dict per image with ``boxes`` (Tensor[K, 4], xyxy, fractional or absolute as the ground
    truth), ``scores`` (Tensor[K]) and ``labels`` (Tensor[K] int). ``target``: ``boxes`` (Tensor[G, 4]),
    ``labels`` (Tensor[G] int) and optionally ``difficult`` (Tensor[G], 1 or True for difficult boxes;
    none difficult when absent). Batches stay on their device until :meth:`compute`; under
    ``torch.distributed`` every rank's images are gathered once there (ranks in order), so each rank gets
    the mAP over all images.

    :meth:`compute` returns ``{"map": Tensor[], "map_per_class": Tensor[num_classes - 1], "classes":
    Tensor[num_classes - 1]}`` (float64, int64; NaN entries only with ``empty_classes="nan"``).
    """

    # A chunk: detections' boxes, scores, labels, per-image counts; ground truth's boxes, labels, difficult
    # flags, per-image counts.
    EMPTY = (
        ((0, 4), torch.float64),
        ((0,), torch.float64),
        ((0,), torch.int64),
        ((0,), torch.int64),
        ((0, 4), torch.float64),
        ((0,), torch.int64),
        ((0,), torch.uint8),
        ((0,), torch.int64),
    )

    def __init__(
        self, num_classes: int, method: str = "voc07", iou_threshold: float = 0.5, empty_classes: str = "zero"
    ) -> None:
        _check_options(method, empty_classes, num_classes, "num_classes")
        self.num_classes = num_classes
        self.method = method
        self.iou_threshold = iou_threshold
        self.empty_classes = empty_classes
        self.reset()

    def update(self, preds: Sequence[dict], target: Sequence[dict]) -> None:
        """Add one batch (lists with one dict per image); raises naming the image on bad input."""
        dt, gt = _state.check_batch(preds, target, self._n_images, ("difficult",))
        device = _state.batch_device(dt, gt)
        difficult = _state.flags(gt["boxes"], gt["difficult"])
        chunk = (
            _state.flat(dt["boxes"], torch.float64, device, 4),
            _state.flat(dt["scores"], torch.float64, device),
            _state.flat(dt["labels"], torch.int64, device),
            _state.counts(dt["boxes"], device),
            _state.flat(gt["boxes"], torch.float64, device, 4),
            _state.flat(gt["labels"], torch.int64, device),
            _state.flat(difficult, torch.uint8, device),
            _state.counts(gt["boxes"], device),
        )
        _check_values(chunk, self.num_classes, self._n_images)
        self._add(chunk, len(preds))

    def compute(self) -> dict[str, Tensor]:
        """``{"map", "map_per_class", "classes"}`` over everything accumulated (all ranks)."""
        db, ds, dl, dc, gb, gl, gd, gc = (t.cpu() for t in self._all())
        dc, gc = dc.tolist(), gc.tolist()
        m, aps = voc_map(
            db.split(dc),
            dl.split(dc),
            ds.split(dc),
            gb.split(gc),
            gl.split(gc),
            gd.split(gc),
            n_classes=self.num_classes,
            method=self.method,
            iou_threshold=self.iou_threshold,
            empty_classes=self.empty_classes,
        )
        classes = list(range(1, self.num_classes))
        return {
            "map": torch.tensor(m, dtype=torch.float64),
            "map_per_class": torch.tensor([aps[c] for c in classes], dtype=torch.float64),
            "classes": torch.tensor(classes, dtype=torch.int64),
        }


def _check_values(chunk: tuple[Tensor, ...], num_classes: int, offset: int) -> None:
    db, ds, dl, dc, gb, gl, _, gc = chunk
    d_image = _state.image_index(dc) + offset
    g_image = _state.image_index(gc) + offset
    checks = [
        (~torch.isfinite(ds), d_image, "preds['scores'] must be finite (no NaN or inf)"),
        (~torch.isfinite(db).all(1), d_image, "preds['boxes'] must be finite"),
        ((dl < 0) | (dl >= num_classes), d_image, f"preds['labels'] must be in 0 .. {num_classes - 1}"),
        (~torch.isfinite(gb).all(1), g_image, "target['boxes'] must be finite"),
        (
            (gl < 1) | (gl >= num_classes),
            g_image,
            f"target['labels'] must be in 1 .. {num_classes - 1} (num_classes={num_classes} counts background)",
        ),
    ]
    _state.raise_first_bad(checks)


def format_ap_table(
    class_names: Sequence[str],
    aps: dict[str, dict[int, float]],
) -> str:
    """A plain-text per-class AP table.

    Args:
        class_names: names of labels ``1 .. n``, background excluded (``VOCDataset.classes``).
        aps: column title -> ``{label: AP}`` (e.g. ``{"AP (VOC07 11-pt)": aps07, "AP (all-point)": aps_area}``).

    Returns:
        str: one row per class and a final ``mAP`` row (mean over the classes that have an AP).
    """
    titles = list(aps)
    width = max([len("class"), len("mAP")] + [len(c) for c in class_names])
    lines = ["  ".join([f"{'class':<{width}}"] + [f"{t:>{max(len(t), 6)}}" for t in titles])]
    for label, name in enumerate(class_names, start=1):
        cells = []
        for t in titles:
            v = aps[t].get(label, math.nan)
            cells.append(f"{'-' if math.isnan(v) else f'{v:.4f}':>{max(len(t), 6)}}")
        lines.append("  ".join([f"{name:<{width}}"] + cells))
    means = []
    for t in titles:
        vals = [v for v in aps[t].values() if not math.isnan(v)]
        means.append(f"{(sum(vals) / len(vals) if vals else math.nan):>{max(len(t), 6)}.4f}")
    lines.append("  ".join([f"{'mAP':<{width}}"] + means))
    return "\n".join(lines)


class VOC07Metric:
    """VOC mAP by both counts at once, for the SSD's evaluation: the VOC2007 11-point value and the
    all-point area, with per-class APs as dicts.

    Args:
        n_classes (int): number of classes including background.
        iou_threshold (float): match threshold (strictly greater).

    ``update(preds, target)`` takes what :class:`VOCMeanAveragePrecision` takes. ``compute()`` returns
    ``map`` (the headline value: the ``headline`` count, VOC2007 11-point by default), ``map_voc07``,
    ``map_area`` (all-point), ``ap_voc07`` and ``ap_area`` (``{label: AP}``).
    """

    def __init__(self, n_classes: int, iou_threshold: float = 0.5, headline: str = "voc07") -> None:
        if headline not in METHODS:
            raise ValueError(f"headline must be one of {METHODS}, got {headline!r}")
        self.headline = headline
        self._metrics = {
            method: VOCMeanAveragePrecision(n_classes, method=method, iou_threshold=iou_threshold)
            for method in ("voc07", "area")
        }

    def reset(self) -> None:
        """Forget everything accumulated."""
        for m in self._metrics.values():
            m.reset()

    def update(self, preds: Sequence[dict], target: Sequence[dict]) -> None:
        """Add a batch of images (see the class docstring)."""
        for m in self._metrics.values():
            m.update(preds, target)

    def compute(self) -> dict:
        """The mAPs and per-class APs of everything accumulated (see the class docstring)."""
        out = {}
        for method, m in self._metrics.items():
            r = m.compute()
            out[f"map_{method}"] = float(r["map"])
            out[f"ap_{method}"] = {int(c): float(v) for c, v in zip(r["classes"], r["map_per_class"])}
        out["map"] = out[f"map_{self.headline}"]
        return out
