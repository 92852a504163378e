"""Evaluation: ``detops eval``. Runs the model over a dataset, detects with
:meth:`~detops.ssd.model.SSD300.detect_objects` and scores the detections with VOC mean average precision,
both the VOC2007 11-point value the tutorial reports and the all-point area, difficult objects ignored."""

import time
from typing import Dict, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from detops.metrics import voc_map
from detops.ssd.transforms import ssd_transforms
from detops.ssd.voc import VOCDataset, collate_fn


@torch.no_grad()
def evaluate(model, dataset: Dataset, *, batch_size: int = 32, min_score: float = 0.01, max_overlap: float = 0.45,
             top_k: int = 200, num_workers: int = 0, device=None) -> Dict:
    """VOC mAP of ``model`` on ``dataset`` (which should keep difficult objects, so they can be ignored).

    Returns a dict: ``map_voc07`` and ``map_area`` (floats), ``ap_voc07`` and ``ap_area`` ({label: AP}),
    ``images``, ``seconds`` (forward + detection, data loading excluded), ``images_per_s``.
    """
    device = torch.device(device) if device is not None else model.priors_cxcy.device
    model = model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn,
                        num_workers=num_workers)
    det_boxes, det_labels, det_scores, true_boxes, true_labels, true_diff = [], [], [], [], [], []
    seconds = 0.0
    for images, boxes, labels, difficulties in loader:
        images = images.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        locs, scores = model(images)
        b, l, s = model.detect_objects(locs, scores, min_score=min_score, max_overlap=max_overlap, top_k=top_k)
        seconds += time.perf_counter() - t0  # detect_objects ends with a host sync (the counts)
        det_boxes += [x.cpu() for x in b]
        det_labels += [x.cpu() for x in l]
        det_scores += [x.cpu() for x in s]
        true_boxes += boxes
        true_labels += labels
        true_diff += difficulties
    n_classes = model.n_classes
    m07, ap07 = voc_map(det_boxes, det_labels, det_scores, true_boxes, true_labels, true_diff, n_classes,
                              method="voc07")
    marea, aparea = voc_map(det_boxes, det_labels, det_scores, true_boxes, true_labels, true_diff,
                                  n_classes, method="area")
    n = len(det_boxes)
    return {"map_voc07": float(m07), "map_area": float(marea), "ap_voc07": dict(ap07), "ap_area": dict(aparea),
            "images": n, "seconds": seconds, "images_per_s": n / seconds if seconds > 0 else float("nan")}


def format_table(result: Dict, class_names: Optional[Sequence[str]] = None) -> str:
    """The per-class AP table (VOC07 11-point and all-point) with the means as its last row."""
    rows = [f"{'class':<16s} {'AP (VOC07)':>10s} {'AP (area)':>10s}", "-" * 38]
    for key in result["ap_voc07"]:
        label = int(key) if not isinstance(key, str) else key
        if class_names is not None and isinstance(label, int) and 0 < label <= len(class_names):
            name = class_names[label - 1]
        else:
            name = str(key)
        rows.append(f"{name:<16s} {result['ap_voc07'][key]:>10.4f} {result['ap_area'].get(key, float('nan')):>10.4f}")
    rows.append("-" * 38)
    rows.append(f"{'mAP':<16s} {result['map_voc07']:>10.4f} {result['map_area']:>10.4f}")
    return "\n".join(rows)


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="VOC-format root")
    p.add_argument("--split", default="test")
    p.add_argument("--classes", default=None, help="as for train; default: the names stored in the checkpoint")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--min-score", type=float, default=0.01)
    p.add_argument("--max-overlap", type=float, default=0.45)
    p.add_argument("--top-k", type=int, default=200)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default=None)


def run(args) -> Dict:
    """``detops eval``."""
    from detops.ssd.train import load_model, resolve_classes

    model, class_names = load_model(args.checkpoint, args.device or "cpu")
    if args.classes is not None:
        class_names = resolve_classes(args.classes)
    dataset = VOCDataset(args.data, args.split, transforms=ssd_transforms(False, size=model.input_size),
                               keep_difficult=True, classes=class_names)
    result = evaluate(model, dataset, batch_size=args.batch_size, min_score=args.min_score,
                      max_overlap=args.max_overlap, top_k=args.top_k, num_workers=args.workers)
    print(format_table(result, class_names))
    print(f"{result['images']} images, {result['images_per_s']:.1f} images/s (forward + detection)")
    return result
