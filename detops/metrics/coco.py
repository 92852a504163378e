"""COCO-style bounding-box evaluation with pycocotools' numbers, on the device the detections are on.

:class:`MeanAveragePrecision` takes what ``torchmetrics.detection.MeanAveragePrecision`` takes (lists of
torchvision-style dicts; ``update`` / ``compute`` / ``reset``) and returns its keys; :func:`evaluate_coco_json`
takes a COCO ground-truth file and a results file (``loadRes`` format). Both give the twelve numbers of
``COCOeval(..., "bbox").summarize()``, per-class AP and the full precision array ``[T, R, K, A, M]`` equal to
pycocotools' (tests/test_metrics_coco.py compares them on random sets with crowds, ties, empty images and
classes). The semantics are pycocotools':

* detections of an (image, class) are ranked by score, highest first, ties in input order (a stable sort),
  and only the first ``max_detection_thresholds[-1]`` of each (image, class) are kept;
* matching is greedy in that order, per IoU threshold and area range: a detection takes the ground-truth
  box of largest IoU >= the threshold (IoU > 1 - 1e-10 at a threshold of 1), a later box winning a tie;
  non-crowd boxes first, so a detection falls on an ignored box only when no regular box is free; a box is
  taken once, except a crowd box (``iscrowd``), whose IoU is the overlap over the *detection's* area and which
  any number of detections may match;
* crowd boxes and boxes whose ``area`` is outside the area range are ignored: they do not count for recall,
  and detections matched to them count for nothing; unmatched detections whose own area (``w * h``) is
  outside the range are ignored too; ranges are inclusive at both ends, ``[0, 1e10]``, ``[0, 32**2]``,
  ``[32**2, 96**2]``, ``[96**2, 1e10]``;
* precision at 101 recall points, the precision curve made non-increasing from the right and read at the
  first rank whose recall reaches each point (0 past the last recall); -1 where a class has no non-ignored
  ground truth in the range, and such entries are left out of every mean (-1 if nothing is left);
* the IoU of two boxes is computed from (x, y, w, h) in float64 exactly as pycocotools computes it.

The two loops pycocotools runs in Python are kernels (``torch.ops.detops.coco_match``,
``torch.ops.detops.coco_accumulate``, CPU and CUDA); grouping and ranking are torch sorts on the same device.

Peak memory, beyond the inputs, is linear in the D detections kept: about ``20 * A * T`` bytes each (the
``[A, T, D]`` int64 match table and its bool masks: 800 bytes with the 4 area ranges and 10 IoU thresholds),
plus ``16 * T * R * K * A * M`` bytes for the precision and score arrays (15.5 MB for 80 classes); on CUDA
also 8 bytes per (detection, ground-truth box of the same image and class) pair for the IoU matrices. For
5,000 images x 80 classes (100,783 detections) that is 78 MiB, where pycocotools' evaluation takes 463 MiB
and faster-coco-eval's 546 MiB (``detops bench --ops MeanAveragePrecision`` measures all three).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from detops.metrics import _state

AREA_RANGES = ((0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))
AREA_LABELS = ("all", "small", "medium", "large")
BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def _linspace(start: float, stop: float, num: int) -> list[float]:
    # numpy.linspace's arithmetic (i * step + start, the last point set to stop), so the thresholds are the
    # same doubles as pycocotools' Params.
    step = (stop - start) / (num - 1)
    values = [i * step + start for i in range(num)]
    values[-1] = stop
    return values


def default_iou_thresholds() -> list[float]:
    """0.5, 0.55, ..., 0.95 as pycocotools' ``Params.iouThrs`` holds them."""
    return _linspace(0.5, 0.95, round((0.95 - 0.5) / 0.05) + 1)


def default_rec_thresholds() -> list[float]:
    """0, 0.01, ..., 1 as pycocotools' ``Params.recThrs`` holds them."""
    return _linspace(0.0, 1.0, round(1.0 / 0.01) + 1)


def to_xywh(boxes: Tensor, box_format: str) -> Tensor:
    """Boxes in ``box_format`` -> float64 ``(x, y, w, h)``, COCO's box (computed in float64)."""
    b = boxes.to(torch.float64)
    if box_format == "xyxy":
        return torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
    if box_format == "cxcywh":
        return torch.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 2], b[:, 3]], 1)
    if box_format == "xywh":
        return b
    raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")


def coco_evaluate(
    dt_boxes: Tensor,
    dt_scores: Tensor,
    dt_labels: Tensor,
    dt_images: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_images: Tensor,
    gt_crowd: Tensor,
    gt_area: Tensor,
    num_classes: int,
    iou_thresholds: Sequence[float] | None = None,
    rec_thresholds: Sequence[float] | None = None,
    max_detection_thresholds: Sequence[int] | None = None,
    gt_counted: Tensor | None = None,
) -> dict[str, Tensor]:
    """pycocotools' ``evaluate()`` + ``accumulate()`` on flat tensors (every box of every image).

    Args:
        dt_boxes (Tensor[D, 4] float64): detections, ``(x, y, w, h)``.
        dt_scores (Tensor[D] float64): their scores.
        dt_labels (Tensor[D] int64): their class index, ``0 .. num_classes - 1``.
        dt_images (Tensor[D] int64): their image index (images are taken in index order, as pycocotools takes
            them in sorted id order; detections of one image keep their input order on score ties).
        gt_boxes (Tensor[G, 4] float64): ground truth, ``(x, y, w, h)``, in input order.
        gt_labels, gt_images (Tensor[G] int64): class and image index.
        gt_crowd (Tensor[G] bool): ``iscrowd``.
        gt_area (Tensor[G] float64): the ``area`` the area ranges are decided on.
        num_classes (int): K.
        iou_thresholds, rec_thresholds, max_detection_thresholds: pycocotools' ``iouThrs`` / ``recThrs`` /
            ``maxDets`` (defaults: its own).
        gt_counted (Tensor[G] bool, optional): False for a box whose annotation id is 0: pycocotools records
            a match with it as id 0, which reads as "no match", so a detection matched to it is a false
            positive (or ignored outside the area range) while the box counts as taken. All True if omitted.

    Returns:
        dict: ``precision`` [T, R, K, A, M], ``scores`` [T, R, K, A, M], ``recall`` [T, K, A, M] (float64,
        -1 where undefined), on the device of the inputs.
    """
    iou_thr = list(default_iou_thresholds() if iou_thresholds is None else iou_thresholds)
    rec_thr = list(default_rec_thresholds() if rec_thresholds is None else rec_thresholds)
    max_dets = sorted(int(m) for m in ([1, 10, 100] if max_detection_thresholds is None else max_detection_thresholds))
    device = dt_boxes.device
    K, A = int(num_classes), len(AREA_RANGES)
    if gt_counted is None:
        gt_counted = torch.ones_like(gt_crowd)

    # Detections grouped by (image, class), by score within a group (stable: input order on ties).
    order = torch.sort(dt_scores, descending=True, stable=True).indices
    d_key = dt_images * K + dt_labels
    order = order[torch.sort(d_key[order], stable=True).indices]
    d_key = d_key[order]
    rank = torch.arange(d_key.numel(), device=device) - torch.searchsorted(d_key, d_key, side="left")
    keep = rank < max_dets[-1]
    order, d_key, rank = order[keep], d_key[keep], rank[keep]
    d_boxes, d_scores, d_labels = dt_boxes[order], dt_scores[order], dt_labels[order]
    d_area = d_boxes[:, 2] * d_boxes[:, 3]

    # Ground truth grouped the same way, input order within a group.
    g_key = gt_images * K + gt_labels
    g_order = torch.sort(g_key, stable=True).indices
    g_key = g_key[g_order]
    g_boxes, g_crowd, g_area = gt_boxes[g_order], gt_crowd[g_order], gt_area[g_order]
    g_counted, g_labels = gt_counted[g_order], gt_labels[g_order]
    ranges = torch.tensor(AREA_RANGES, dtype=torch.float64, device=device)
    g_ignore = g_crowd[None, :] | (g_area[None, :] < ranges[:, :1]) | (g_area[None, :] > ranges[:, 1:])  # [A, G]
    d_outside = (d_area[None, :] < ranges[:, :1]) | (d_area[None, :] > ranges[:, 1:])  # [A, D]

    # One group per (image, class) present in either: the groups then tile both arrays.
    keys = torch.unique(torch.cat([d_key, g_key]))
    d_off = torch.cat([torch.searchsorted(d_key, keys), d_key.new_tensor([d_key.numel()])])
    g_off = torch.cat([torch.searchsorted(g_key, keys), g_key.new_tensor([g_key.numel()])])
    matched = torch.ops.detops.coco_match(
        d_boxes.contiguous(),
        g_boxes.contiguous(),
        g_crowd.contiguous(),
        g_ignore.contiguous(),
        d_off,
        g_off,
        [float(t) for t in iou_thr],
    )

    T, D = len(iou_thr), d_boxes.shape[0]
    # [A, T, D] is the largest shape here: only `matched` is int64, clamped in place once `has` is taken,
    # and the status is built in uint8 (no int64 temporaries).
    if g_boxes.shape[0] and D:
        has = matched >= 0
        m = matched.clamp_(min=0)
        on_ignored = has & g_ignore.gather(1, m.reshape(A, T * D)).reshape(A, T, D)
        real = has & g_counted[m]
        del matched, m
    else:
        on_ignored = real = torch.zeros((A, T, D), dtype=torch.bool, device=device)
    ignored = on_ignored | (~real & d_outside[:, None, :])
    status = real.to(torch.uint8).masked_fill_(ignored, 2)  # 2 ignored, 1 true positive, 0 false positive

    # Rank for accumulation: by class, then score (stable: image order, then rank within the image).
    acc = torch.sort(d_scores, descending=True, stable=True).indices
    acc = acc[torch.sort(d_labels[acc], stable=True).indices]
    class_off = torch.searchsorted(d_labels[acc], torch.arange(K + 1, device=device))
    positives = (
        torch.stack([torch.bincount(g_labels[~g_ignore[a]], minlength=K)[:K] for a in range(A)], 1)
        if K
        else torch.zeros((0, A), dtype=torch.int64, device=device)
    )
    precision, recall, scores = torch.ops.detops.coco_accumulate(
        status[:, :, acc].contiguous(),
        d_scores[acc].contiguous(),
        rank[acc].contiguous(),
        class_off,
        positives.contiguous(),
        torch.tensor(rec_thr, dtype=torch.float64, device=device),
        max_dets,
    )
    return {
        "precision": precision,
        "recall": recall,
        "scores": scores,
        "iou_thresholds": iou_thr,
        "rec_thresholds": rec_thr,
        "max_detection_thresholds": max_dets,
    }


def summarize(result: Mapping, class_ids: Sequence[int] | None = None) -> dict[str, Tensor]:
    """The twelve numbers of ``COCOeval.summarize()`` and per-class values, torchmetrics' keys.

    Args:
        result: what :func:`coco_evaluate` returns.
        class_ids: the id of each class index (default ``0 .. K - 1``).

    Returns:
        dict of float64 tensors on the result's device: ``map``, ``map_50``, ``map_75``, ``map_small``,
        ``map_medium``, ``map_large``, ``mar_{m}`` for each of the three ``max_detection_thresholds`` m,
        ``mar_small``, ``mar_medium``, ``mar_large`` (-1 where nothing is defined, as pycocotools prints;
        ``map`` is read at maxDets 100, as pycocotools reads it, so it is -1 when 100 is not among them),
        ``map_per_class`` [K] and ``mar_{M}_per_class`` [K] (area "all", the last maxDets; -1 for a class
        without ground truth), ``classes`` [K] int64.
    """
    precision, recall = result["precision"], result["recall"]
    iou_thr, max_dets = result["iou_thresholds"], result["max_detection_thresholds"]
    K = precision.shape[2]

    def mean_valid(s: Tensor) -> Tensor:
        valid = s[s > -1]
        return valid.mean() if valid.numel() else torch.tensor(-1.0, dtype=torch.float64, device=s.device)

    def one(ap: bool, iou: float | None = None, area: str = "all", max_det: int | None = None) -> Tensor:
        a = AREA_LABELS.index(area)
        max_det = max_dets[-1] if max_det is None else max_det
        if max_det not in max_dets:
            return torch.tensor(-1.0, dtype=torch.float64, device=precision.device)
        m = max_dets.index(max_det)
        s = precision[:, :, :, a, m] if ap else recall[:, :, a, m]
        if iou is not None:
            t = [i for i, v in enumerate(iou_thr) if v == iou]
            s = s[t]
        return mean_valid(s)

    out = {
        # pycocotools' summarize() reads the overall AP at maxDets 100 whatever maxDets holds (-1 without 100).
        "map": one(True, max_det=100),
        "map_50": one(True, 0.5),
        "map_75": one(True, 0.75),
        "map_small": one(True, area="small"),
        "map_medium": one(True, area="medium"),
        "map_large": one(True, area="large"),
    }
    md = list(max_dets) + [max_dets[-1]] * (3 - len(max_dets))
    for m in md[:3]:
        out[f"mar_{m}"] = one(False, max_det=m)
    out["mar_small"] = one(False, area="small")
    out["mar_medium"] = one(False, area="medium")
    out["mar_large"] = one(False, area="large")
    out["map_per_class"] = (
        torch.stack([mean_valid(precision[:, :, k, 0, -1]) for k in range(K)]) if K else precision.new_zeros(0)
    )
    out[f"mar_{max_dets[-1]}_per_class"] = (
        torch.stack([mean_valid(recall[:, k, 0, -1]) for k in range(K)]) if K else precision.new_zeros(0)
    )
    ids = list(range(K)) if class_ids is None else list(class_ids)
    out["classes"] = torch.tensor(ids, dtype=torch.int64, device=precision.device)
    return out


STATS_KEYS = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)


def stats(summary: Mapping[str, Tensor]) -> list[float]:
    """The twelve numbers in ``COCOeval.stats`` order (for the default maxDets 1, 10, 100)."""
    keys = [k for k in summary if k.startswith("mar_") and not k.endswith("_per_class")][:3]
    order = list(STATS_KEYS[:6]) + keys + list(STATS_KEYS[9:])
    return [float(summary[k]) for k in order]


class MeanAveragePrecision(_state.Accumulator):
    """COCO-style mAP over batches, with ``torchmetrics.detection.MeanAveragePrecision``'s interface (bbox).

    Args:
        box_format (str): ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``, for detections and ground truth.
        iou_thresholds (list of float, optional): default pycocotools' 0.5:0.05:0.95.
        rec_thresholds (list of float, optional): default pycocotools' 0:0.01:1.
        max_detection_thresholds (list of 3 int, optional): default ``[1, 10, 100]``; the last caps the
            detections kept per (image, class).
        extended_summary (bool): also return ``precision`` [T, R, K, A, M], ``recall`` [T, K, A, M] and
            ``scores`` [T, R, K, A, M].
        num_classes (int, optional): when given, labels must be in ``0 .. num_classes - 1``.

    ``update(preds, target)``: one dict per image. ``preds``: ``boxes`` (Tensor[K, 4] float), ``scores``
    (Tensor[K]) and ``labels`` (Tensor[K] int). ``target``: ``boxes`` (Tensor[G, 4]), ``labels``
    (Tensor[G] int), optionally ``iscrowd`` (Tensor[G], 0/1) and ``area`` (Tensor[G]; default ``w * h`` of
    the box, in float64). Bad input (lists of different lengths, boxes not [N, 4], lengths that disagree,
    non-integer or negative or out-of-range labels, NaN or infinite scores or boxes) raises ValueError or
    TypeError naming the image (its index among all images given since the last ``reset()``).

    The batches stay on their device (as float64 xywh boxes); :meth:`compute` evaluates there. Under
    ``torch.distributed`` (more than one rank), :meth:`compute` gathers every rank's images once, in rank
    order, and every rank returns the numbers over all of them; use the backend that handles the device
    (gloo for CPU tensors, NCCL for CUDA).

    The classes are the labels seen in detections or ground truth (sorted), as torchmetrics takes them;
    a class with no ground truth has AP -1 and is left out of the means. Box areas, and so the small /
    medium / large split, are in the boxes' own units (pixels for COCO).
    """

    # A chunk: detections' xywh boxes, scores, labels, per-image counts; ground truth's xywh boxes, labels,
    # crowd flags, areas, per-image counts.
    EMPTY = (
        ((0, 4), torch.float64),
        ((0,), torch.float64),
        ((0,), torch.int64),
        ((0,), torch.int64),
        ((0, 4), torch.float64),
        ((0,), torch.int64),
        ((0,), torch.uint8),
        ((0,), torch.float64),
        ((0,), torch.int64),
    )

    def __init__(
        self,
        box_format: str = "xyxy",
        iou_thresholds: Sequence[float] | None = None,
        rec_thresholds: Sequence[float] | None = None,
        max_detection_thresholds: Sequence[int] | None = None,
        extended_summary: bool = False,
        num_classes: int | None = None,
    ) -> None:
        if box_format not in BOX_FORMATS:
            raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
        if max_detection_thresholds is not None and (
            len(max_detection_thresholds) != 3 or any(int(m) < 1 for m in max_detection_thresholds)
        ):
            raise ValueError(f"max_detection_thresholds must be 3 positive integers, got {max_detection_thresholds}")
        for name, values in (("iou_thresholds", iou_thresholds), ("rec_thresholds", rec_thresholds)):
            if values is not None and (len(values) == 0 or any(not (0.0 <= float(v) <= 1.0) for v in values)):
                raise ValueError(f"{name} must be a non-empty list of numbers in [0, 1], got {values}")
        self.box_format = box_format
        self.iou_thresholds = None if iou_thresholds is None else [float(v) for v in iou_thresholds]
        self.rec_thresholds = None if rec_thresholds is None else [float(v) for v in rec_thresholds]
        self.max_detection_thresholds = (
            None if max_detection_thresholds is None else [int(m) for m in max_detection_thresholds]
        )
        self.extended_summary = extended_summary
        self.num_classes = num_classes
        self.reset()

    def update(self, preds: Sequence[Mapping], target: Sequence[Mapping]) -> None:
        """Add one batch (lists with one dict per image)."""
        dt, gt = _state.check_batch(preds, target, self._n_images, ("iscrowd", "area"))
        device = _state.batch_device(dt, gt)
        crowd = _state.flags(gt["boxes"], gt["iscrowd"])
        d_boxes = to_xywh(_state.flat(dt["boxes"], torch.float64, device, 4), self.box_format)
        g_boxes = to_xywh(_state.flat(gt["boxes"], torch.float64, device, 4), self.box_format)
        g_counts = _state.counts(gt["boxes"], device)
        g_area = g_boxes[:, 2] * g_boxes[:, 3]
        if any(a is not None for a in gt["area"]):
            given = [
                g_area.new_full((b.shape[0],), math.nan) if a is None else a for b, a in zip(gt["boxes"], gt["area"])
            ]
            given = _state.flat(given, torch.float64, device)
            g_area = torch.where(torch.isnan(given), g_area, given) if any(a is None for a in gt["area"]) else given
        chunk = (
            d_boxes,
            _state.flat(dt["scores"], torch.float64, device),
            _state.flat(dt["labels"], torch.int64, device),
            _state.counts(dt["boxes"], device),
            g_boxes,
            _state.flat(gt["labels"], torch.int64, device),
            _state.flat(crowd, torch.uint8, device),
            g_area,
            g_counts,
        )
        self._check_values(chunk, self._n_images, [a is not None for a in gt["area"]])
        self._add(chunk, len(preds))

    def _check_values(self, chunk, offset, area_given) -> None:
        db, ds, dl, dc, gb, gl, _, ga, gc = chunk
        d_image = _state.image_index(dc) + offset
        g_image = _state.image_index(gc) + offset
        hi = self.num_classes
        checks = [
            (~torch.isfinite(ds), d_image, "preds['scores'] must be finite (no NaN or inf)"),
            (~torch.isfinite(db).all(1), d_image, "preds['boxes'] must be finite (no NaN or inf)"),
            (dl < 0, d_image, "preds['labels'] must be >= 0"),
            (~torch.isfinite(gb).all(1), g_image, "target['boxes'] must be finite (no NaN or inf)"),
            (gl < 0, g_image, "target['labels'] must be >= 0"),
            (torch.isnan(ga), g_image, "target['area'] must not be NaN"),
        ]
        if hi is not None:
            checks += [
                (dl >= hi, d_image, f"preds['labels'] must be < num_classes = {hi}"),
                (gl >= hi, g_image, f"target['labels'] must be < num_classes = {hi}"),
            ]
        _state.raise_first_bad(checks)

    def compute(self) -> dict[str, Tensor]:
        """torchmetrics' result dict over everything accumulated (all ranks): see :func:`summarize`."""
        db, ds, dl, dc, gb, gl, gcrowd, ga, gc = self._all()
        classes = torch.unique(torch.cat([dl, gl]))
        d_labels = torch.searchsorted(classes, dl)
        g_labels = torch.searchsorted(classes, gl)
        result = coco_evaluate(
            db,
            ds,
            d_labels,
            _state.image_index(dc),
            gb,
            g_labels,
            _state.image_index(gc),
            gcrowd.bool(),
            ga,
            num_classes=classes.numel(),
            iou_thresholds=self.iou_thresholds,
            rec_thresholds=self.rec_thresholds,
            max_detection_thresholds=self.max_detection_thresholds,
        )
        out = summarize(result, classes.tolist())
        if self.extended_summary:
            out.update(precision=result["precision"], recall=result["recall"], scores=result["scores"])
        return out


def _load(obj):
    if isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__"):
        with open(obj) as f:
            return json.load(f)
    return obj


def evaluate_coco_json(
    ground_truth,
    results,
    device: str | torch.device = "cpu",
    iou_thresholds: Sequence[float] | None = None,
    rec_thresholds: Sequence[float] | None = None,
    max_detection_thresholds: Sequence[int] | None = None,
) -> dict[str, Tensor]:
    """COCO bbox evaluation of a results file against a ground-truth file, as pycocotools runs it.

    Args:
        ground_truth: path of a COCO instances JSON (or the loaded dict): ``images``, ``categories``,
            ``annotations`` with ``image_id``, ``category_id``, ``bbox`` [x, y, w, h], ``area``, ``iscrowd``
            (0 if absent) and ``id``.
        results: path of a results JSON (or the loaded list): ``image_id``, ``category_id``, ``bbox``
            [x, y, w, h], ``score``; an image missing from the ground truth raises ValueError.
        device: where to evaluate.

    Returns:
        :func:`summarize`'s dict (``classes`` are the category ids, sorted), plus ``stats`` (Tensor[12],
        ``COCOeval.stats``' order), ``precision``, ``recall`` and ``scores``. The images are the ground
        truth's (sorted by id) and the classes its categories; detections of other categories are left out,
        as in ``COCOeval``.
    """
    gt = _load(ground_truth)
    res = _load(results)
    if not isinstance(res, list):
        raise ValueError("results must be a list of {image_id, category_id, bbox, score} objects")
    image_ids = sorted({img["id"] for img in gt.get("images", [])})
    cat_ids = sorted({c["id"] for c in gt.get("categories", [])})
    image_index = {i: n for n, i in enumerate(image_ids)}
    cat_index = {c: n for n, c in enumerate(cat_ids)}
    anns = [a for a in gt.get("annotations", []) if a["image_id"] in image_index and a["category_id"] in cat_index]
    # pycocotools visits an image's annotations in file order.
    missing = {r["image_id"] for r in res} - set(image_index)
    if missing:
        raise ValueError(f"results name images that are not in the ground truth: {sorted(missing)[:10]}")
    dets = [r for r in res if r["category_id"] in cat_index]
    for n, r in enumerate(dets):
        if len(r["bbox"]) != 4 or not math.isfinite(float(r["score"])):
            raise ValueError(f"result {n} (image {r['image_id']}): bbox must be [x, y, w, h] and score a number")

    def t(values, dtype, width=None):
        x = torch.tensor(values, dtype=dtype, device=device)
        return x.reshape(-1, width) if width else x

    result = coco_evaluate(
        t([r["bbox"] for r in dets], torch.float64, 4),
        t([r["score"] for r in dets], torch.float64),
        t([cat_index[r["category_id"]] for r in dets], torch.int64),
        t([image_index[r["image_id"]] for r in dets], torch.int64),
        t([a["bbox"] for a in anns], torch.float64, 4),
        t([cat_index[a["category_id"]] for a in anns], torch.int64),
        t([image_index[a["image_id"]] for a in anns], torch.int64),
        t([bool(a.get("iscrowd", 0)) for a in anns], torch.bool),
        t([a["area"] for a in anns], torch.float64),
        num_classes=len(cat_ids),
        iou_thresholds=iou_thresholds,
        rec_thresholds=rec_thresholds,
        max_detection_thresholds=max_detection_thresholds,
        gt_counted=t([a["id"] != 0 for a in anns], torch.bool),
    )
    out = summarize(result, cat_ids)
    out["stats"] = torch.tensor(stats(out), dtype=torch.float64)
    out.update(precision=result["precision"], recall=result["recall"], scores=result["scores"])
    return out
