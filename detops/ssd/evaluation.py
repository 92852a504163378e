"""Evaluation: runs a model over a dataset, detects with :meth:`~detops.ssd.model.SSD300.detect_objects`, and
feeds the detections to a metric object; optionally also the MultiBox loss of the same batches.

A metric is any object with ``update(preds: list[dict], target: list[dict])``, ``compute() -> dict`` and
``reset()`` (torchmetrics' detection interface): ``preds`` dicts hold ``boxes``, ``scores`` and ``labels``,
``target`` dicts ``boxes``, ``labels`` and ``difficult``; ``compute()``'s ``"map"`` entry is the headline value.
:data:`METRICS` maps the names ``detops eval --metric`` and ``detops train --metric`` accept to factories
``factory(n_classes) -> metric``.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Dict, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from detops.metrics import MeanAveragePrecision, format_ap_table
from detops.metrics.voc import VOC07Metric
from detops.ssd.voc import collate_fn


class COCOMetric:
    """COCO-style AP for the SSD's evaluation (:class:`detops.metrics.MeanAveragePrecision` underneath), with
    plain values as the Trainer's loggers and ``detops eval`` take them.

    ``update`` takes what :func:`evaluate` gives: ``difficult`` ground truth becomes COCO's ``iscrowd`` (it
    is then ignored, as VOC ignores it: a detection on it is neither a hit nor a false positive).
    ``compute()`` returns ``map`` (AP@[.5:.95], the headline), ``map_coco`` (the same), ``map_coco_50``,
    ``map_coco_75``, ``mar_coco_100`` and ``ap_coco`` (``{label: AP@[.5:.95]}``, NaN for a class without
    ground truth). COCO's small/medium/large split is left out: it reads areas in pixels of the original
    image, and these boxes are fractional.
    """

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes
        self.inner = MeanAveragePrecision(num_classes=n_classes)

    def reset(self) -> None:
        self.inner.reset()

    def update(self, preds, target) -> None:
        target = [
            {
                "boxes": t["boxes"],
                "labels": t["labels"],
                "iscrowd": t.get("difficult", torch.zeros(len(t["labels"]), dtype=torch.bool)).to(torch.uint8),
            }
            for t in target
        ]
        self.inner.update(preds, target)

    def compute(self) -> Dict:
        r = self.inner.compute()

        def value(x) -> float:
            v = float(x)
            return v if v >= 0 else math.nan  # -1: undefined (no ground truth)

        out = {
            "map": value(r["map"]),
            "map_coco": value(r["map"]),
            "map_coco_50": value(r["map_50"]),
            "map_coco_75": value(r["map_75"]),
            "mar_coco_100": value(r["mar_100"]),
        }
        per_class = {int(c): value(v) for c, v in zip(r["classes"], r["map_per_class"])}
        out["ap_coco"] = {c: per_class.get(c, math.nan) for c in range(1, self.n_classes)}
        return out


class MetricSet:
    """Several metrics fed the same detections: ``compute()`` merges their results, the first metric's keys
    (its ``map`` the headline) winning where two give the same key. The demo reports VOC07 and COCO AP
    this way from one pass over the images."""

    def __init__(self, *metrics) -> None:
        self.metrics = metrics

    def reset(self) -> None:
        for m in self.metrics:
            m.reset()

    def update(self, preds, target) -> None:
        for m in self.metrics:
            m.update(preds, target)

    def compute(self) -> Dict:
        out: Dict = {}
        for m in self.metrics:
            for k, v in m.compute().items():
                out.setdefault(k, v)
        return out


METRICS: Dict[str, Callable[[int], object]] = {
    "voc07": lambda n_classes: VOC07Metric(n_classes),
    "voc": lambda n_classes: VOC07Metric(n_classes, headline="area"),
    "coco": lambda n_classes: COCOMetric(n_classes),
}
"""Metric name -> ``factory(n_classes)``; every factory's metric has ``update``/``compute``/``reset`` and its
``compute()`` gives floats and per-class ``ap_*`` dicts: ``voc07`` (VOC2007 11-point mAP as the headline,
all-point beside it), ``voc`` (the same two, all-point as the headline), ``coco`` (:class:`COCOMetric`)."""


def make_metric(name: str, n_classes: int):
    """The metric called ``name`` in :data:`METRICS`, for ``n_classes`` classes (background included)."""
    if name not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {name!r}")
    return METRICS[name](n_classes)


@torch.no_grad()
def evaluate(
    model,
    dataset: Dataset,
    metric=None,
    *,
    batch_size: int = 32,
    min_score: float = 0.01,
    max_overlap: float = 0.45,
    top_k: int = 200,
    num_workers: int = 0,
    device=None,
    criterion: Optional[Callable] = None,
) -> Dict:
    """Scores ``model`` on ``dataset`` (which should keep difficult objects, so that they are ignored).

    Args:
        model: an SSD (``forward`` and ``detect_objects``).
        dataset: yields ``(image, fractional xyxy boxes, labels, difficulties)`` at the model's input size.
        metric: a metric object (see the module docstring); default VOC mAP (:class:`VOC07Metric`). It is
            reset first.
        criterion: when given, ``criterion(locs, scores, boxes, labels)`` is averaged over the batches as
            ``loss``.

    Returns:
        dict: what ``metric.compute()`` returns, plus ``images``, ``seconds`` (forward + detection, data
        loading excluded), ``images_per_s`` and, with a criterion, ``loss``.
    """
    device = torch.device(device) if device is not None else model.priors_cxcy.device
    was_training = model.training
    model = model.to(device).eval()
    metric = metric if metric is not None else VOC07Metric(model.n_classes)
    metric.reset()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn, num_workers=num_workers)
    seconds, n_images, loss_sum, n_batches = 0.0, 0, 0.0, 0
    for images, boxes, labels, difficulties in loader:
        images = images.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        locs, scores = model(images)
        b, lab, s = model.detect_objects(locs, scores, min_score=min_score, max_overlap=max_overlap, top_k=top_k)
        seconds += time.perf_counter() - t0  # detect_objects ends with a host sync (the counts)
        if criterion is not None:
            loss_sum += float(
                criterion(locs.float(), scores.float(), [x.to(device) for x in boxes], [x.to(device) for x in labels])
            )
            n_batches += 1
        metric.update(
            [{"boxes": bb.cpu(), "labels": ll.cpu(), "scores": ss.cpu()} for bb, ll, ss in zip(b, lab, s)],
            [{"boxes": tb, "labels": tl, "difficult": td.bool()} for tb, tl, td in zip(boxes, labels, difficulties)],
        )
        n_images += images.size(0)
    model.train(was_training)
    result = dict(metric.compute())
    result.update(images=n_images, seconds=seconds, images_per_s=n_images / seconds if seconds > 0 else float("nan"))
    if criterion is not None:
        result["loss"] = loss_sum / n_batches if n_batches else math.nan
    return result


def format_result(result: Dict, class_names: Optional[Sequence[str]] = None) -> str:
    """A plain-text report of :func:`evaluate`'s result: the per-class AP table when the metric gives per-class
    values (``ap_*`` dicts), then every scalar ``map*`` value."""
    lines = []
    columns = {key: value for key, value in result.items() if key.startswith("ap_") and isinstance(value, dict)}
    if columns:
        names = list(class_names) if class_names is not None else [str(k) for k in sorted(next(iter(columns.values())))]
        titles = {"ap_voc07": "AP (VOC07)", "ap_area": "AP (all-point)", "ap_coco": "AP (COCO)"}
        lines.append(format_ap_table(names, {titles.get(k, k): v for k, v in columns.items()}))
    scalars = [f"{k} {float(v):.4f}" for k, v in result.items() if k.startswith("map") and not isinstance(v, dict)]
    if scalars:
        lines.append("  ".join(scalars))
    return "\n".join(lines)


def to_json(result: Dict, class_names: Optional[Sequence[str]] = None) -> Dict:
    """``result`` with per-class dicts keyed by class name (when known) and NaN as None, ready for json.dump."""

    def clean(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, torch.Tensor):
            return clean(v.tolist()) if v.numel() != 1 else clean(float(v))
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                if isinstance(k, int) and class_names is not None and 0 < k <= len(class_names):
                    k = class_names[k - 1]
                out[str(k)] = clean(x)
            return out
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return clean(dict(result))
