"""Detection metrics: COCO-style mAP with pycocotools' numbers (:mod:`detops.metrics.coco`) and Pascal VOC
mAP as the devkit counts it (:mod:`detops.metrics.voc`).

Both metric objects take torchvision-style lists of dicts with ``update(preds, target)``, then ``compute()``
and ``reset()``; :func:`build_metric` makes either by name, so a training loop or a command can take
``--metric coco|voc07|voc``.
"""

from __future__ import annotations

from detops.metrics.coco import (
    MeanAveragePrecision,
    coco_evaluate,
    evaluate_coco_json,
    summarize,
)
from detops.metrics.voc import (
    VOCMeanAveragePrecision,
    format_ap_table,
    match_detections,
    voc_map,
)

METRICS = ("coco", "voc07", "voc")


def build_metric(name: str, num_classes: int | None = None, **kwargs):
    """A metric object by name.

    Args:
        name (str): ``"coco"`` (:class:`MeanAveragePrecision`, COCO's 0.5:0.95 AP and the rest),
            ``"voc07"`` (:class:`VOCMeanAveragePrecision`, 11-point) or ``"voc"`` (all-point, VOC2010+).
        num_classes (int): classes including background (required for the VOC metrics; for COCO it
            bounds the labels when given).
        **kwargs: passed to the metric's constructor (e.g. ``box_format`` for COCO, ``iou_threshold`` or
            ``empty_classes`` for VOC).

    Returns:
        an object with ``update(preds, target)``, ``compute() -> dict[str, Tensor]`` (``"map"`` always
        present) and ``reset()``.
    """
    if name == "coco":
        return MeanAveragePrecision(num_classes=num_classes, **kwargs)
    if name in ("voc07", "voc"):
        if num_classes is None:
            raise ValueError(f"metric {name!r} needs num_classes (including background)")
        return VOCMeanAveragePrecision(num_classes, method="voc07" if name == "voc07" else "area", **kwargs)
    raise ValueError(f"metric must be one of {METRICS}, got {name!r}")


__all__ = [
    "METRICS",
    "MeanAveragePrecision",
    "VOCMeanAveragePrecision",
    "build_metric",
    "coco_evaluate",
    "evaluate_coco_json",
    "format_ap_table",
    "match_detections",
    "summarize",
    "voc_map",
]
