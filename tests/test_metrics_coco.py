"""COCO-style evaluation (detops.metrics.coco) against pycocotools on the same inputs: the twelve summary
numbers, per-class AP and the full precision / recall / scores arrays, to 1e-9 (in practice bit-equal)."""

import contextlib
import io
import json
import math
import os
import socket

import pytest
import torch

from detops.metrics import MeanAveragePrecision, build_metric, evaluate_coco_json
from detops.metrics.coco import (
    default_iou_thresholds,
    default_rec_thresholds,
    stats,
    to_xywh,
)
from detops.metrics.workloads import coco_like

pycocotools = pytest.importorskip("pycocotools")
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

pytestmark = pytest.mark.usefixtures("one_thread")


def _coco_dicts(preds, target, box_format="xyxy", first_ann_id=1):
    """The same set as pycocotools' ground-truth dataset and results list (boxes converted as detops does)."""
    labels = set()
    images, anns, results = [], [], []
    ann_id = first_ann_id
    for i, (p, t) in enumerate(zip(preds, target)):
        images.append({"id": i + 1})
        g = to_xywh(t["boxes"].reshape(-1, 4), box_format)
        area = t["area"].double() if "area" in t else g[:, 2] * g[:, 3]
        crowd = t.get("iscrowd", torch.zeros(len(g), dtype=torch.int64))
        for b, lab, a, c in zip(g.tolist(), t["labels"].tolist(), area.tolist(), crowd.tolist()):
            anns.append({"id": ann_id, "image_id": i + 1, "category_id": lab, "bbox": b, "area": a, "iscrowd": int(c)})
            ann_id += 1
            labels.add(lab)
        d = to_xywh(p["boxes"].reshape(-1, 4), box_format)
        for b, lab, s in zip(d.tolist(), p["labels"].tolist(), p["scores"].double().tolist()):
            results.append({"image_id": i + 1, "category_id": lab, "bbox": b, "score": s})
            labels.add(lab)
    gt = {"images": images, "annotations": anns, "categories": [{"id": c} for c in sorted(labels)]}
    return gt, results


def _pycocotools(gt, results, iou_thresholds=None, max_dets=None):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(json.loads(json.dumps(results)))
        else:
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        e = COCOeval(coco_gt, coco_dt, "bbox")
        if iou_thresholds is not None:
            e.params.iouThrs = np.array(iou_thresholds)
        if max_dets is not None:
            e.params.maxDets = list(max_dets)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def _per_class(precision):
    out = []
    for k in range(precision.shape[2]):
        s = precision[:, :, k, 0, -1]
        s = s[s > -1]
        out.append(float(np.mean(s)) if s.size else -1.0)
    return out


def _assert_equal_to_pycocotools(got, e):
    assert np.allclose(stats(got), e.stats, atol=1e-9, rtol=0), (stats(got), e.stats.tolist())
    for key in ("precision", "recall", "scores"):
        ours = got[key].cpu().numpy()
        assert ours.shape == e.eval[key].shape, key
        assert np.abs(ours - e.eval[key]).max(initial=0) <= 1e-9, key
    assert np.allclose(got["map_per_class"].cpu().numpy(), _per_class(e.eval["precision"]), atol=1e-9, rtol=0)
    assert got["classes"].tolist() == sorted(e.params.catIds)


def _evaluate(preds, target, device="cpu", **kw):
    metric = MeanAveragePrecision(extended_summary=True, **kw)
    mv = lambda d: {k: v.to(device) for k, v in d.items()}
    half = len(preds) // 2
    metric.update([mv(p) for p in preds[:half]], [mv(t) for t in target[:half]])
    metric.update([mv(p) for p in preds[half:]], [mv(t) for t in target[half:]])
    return metric.compute()


def test_thresholds_are_pycocotools_doubles():
    p = COCOeval(iouType="bbox").params
    assert default_iou_thresholds() == p.iouThrs.tolist()
    assert default_rec_thresholds() == p.recThrs.tolist()


@pytest.mark.parametrize("seed", range(6))
def test_random_sets_equal_pycocotools(seed, device):
    preds, target = coco_like(
        n_images=40,
        n_classes=6,
        gt_per_image=5,
        dets_per_image=12,
        seed=seed,
        crowd_fraction=0.15,
        score_levels=8 if seed % 2 else None,
        empty_fraction=0.1,
    )
    got = _evaluate(preds, target, device)
    _assert_equal_to_pycocotools(got, _pycocotools(*_coco_dicts(preds, target)))
    assert got["map"].device.type == torch.device(device).type


def test_ties_crowds_and_more_than_100_detections_per_image(device):
    g = torch.Generator().manual_seed(3)
    preds, target = coco_like(
        n_images=6, n_classes=3, gt_per_image=30, dets_per_image=10, seed=4, crowd_fraction=0.3, classes_per_image=2
    )
    # One image with 250 detections of one class, on only 4 score levels; another with many copies of one box.
    box = target[0]["boxes"][:1]
    many = box + torch.randn(250, 4, generator=g) * 4
    preds[0] = {
        "boxes": many,
        "scores": (torch.rand(250, generator=g) * 4).floor() / 4,
        "labels": target[0]["labels"][:1].repeat(250),
    }
    preds[1] = {
        "boxes": target[1]["boxes"].repeat(5, 1),
        "scores": torch.full((5 * len(target[1]["boxes"]),), 0.5),
        "labels": target[1]["labels"].repeat(5),
    }
    got = _evaluate(preds, target, device)
    _assert_equal_to_pycocotools(got, _pycocotools(*_coco_dicts(preds, target)))


def test_empty_images_classes_tiny_and_huge_boxes(device):
    t = lambda *rows: torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)
    i64 = lambda *v: torch.tensor(v, dtype=torch.int64)
    f32 = lambda *v: torch.tensor(v, dtype=torch.float32)
    preds = [
        {
            "boxes": t([0, 0, 10, 10], [0, 0, 1e-3, 1e-3], [0, 0, 1e6, 1e6]),
            "scores": f32(0.9, 0.8, 0.7),
            "labels": i64(1, 1, 2),
        },
        {"boxes": t(), "scores": f32(), "labels": i64()},  # no detections
        {"boxes": t([5, 5, 6, 6]), "scores": f32(0.3), "labels": i64(7)},  # a class with detections only
        {"boxes": t([0, 0, 2e5, 1e5]), "scores": f32(0.6), "labels": i64(2)},  # an image with no ground truth
    ]
    target = [
        {"boxes": t([0, 0, 10, 10], [0, 0, 1e-3, 1e-3], [0, 0, 1e6, 1e6]), "labels": i64(1, 1, 2)},
        {"boxes": t([0, 0, 40, 40]), "labels": i64(4)},  # a class with ground truth only
        {"boxes": t([0, 0, 100, 100]), "labels": i64(1), "iscrowd": i64(1)},
        {"boxes": t(), "labels": i64()},
    ]
    got = _evaluate(preds, target, device)
    _assert_equal_to_pycocotools(got, _pycocotools(*_coco_dicts(preds, target)))
    assert got["classes"].tolist() == [1, 2, 4, 7]
    assert got["map_per_class"][3] == -1  # class 7 has no ground truth


def test_no_detections_at_all_and_nothing_at_all():
    preds, target = coco_like(n_images=5, n_classes=3, seed=1)
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}] * 5
    got = _evaluate(empty, target)
    _assert_equal_to_pycocotools(got, _pycocotools(*_coco_dicts(empty, target)))
    assert float(MeanAveragePrecision().compute()["map"]) == -1


@pytest.mark.parametrize("box_format", ["xywh", "cxcywh"])
def test_box_formats(box_format):
    preds, target = coco_like(n_images=20, n_classes=4, seed=7, crowd_fraction=0.1)
    # Dyadic coordinates: every format converts exactly, so all three describe the same boxes.
    for d in preds + target:
        d["boxes"] = (d["boxes"] * 4).round() / 4
    conv = {
        "xywh": lambda b: torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], 1),
        "cxcywh": lambda b: torch.cat([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], 1),
    }[box_format]
    preds2 = [dict(p, boxes=conv(p["boxes"])) for p in preds]
    target2 = [dict(t, boxes=conv(t["boxes"])) for t in target]
    got = _evaluate(preds2, target2, box_format=box_format)
    _assert_equal_to_pycocotools(got, _pycocotools(*_coco_dicts(preds, target)))


def test_custom_thresholds_and_max_detections():
    preds, target = coco_like(n_images=30, n_classes=5, seed=8, dets_per_image=15)
    iou = [0.3, 0.5, 0.7]
    got = _evaluate(preds, target, iou_thresholds=iou, max_detection_thresholds=[2, 5, 20])
    e = _pycocotools(*_coco_dicts(preds, target), iou_thresholds=iou, max_dets=[2, 5, 20])
    _assert_equal_to_pycocotools(got, e)
    assert "mar_20" in got and "mar_20_per_class" in got


def test_json_files_equal_pycocotools(tmp_path):
    preds, target = coco_like(n_images=25, n_classes=5, seed=9, crowd_fraction=0.1, score_levels=5)
    # Annotation ids from 0: pycocotools reads a match with id 0 as no match; so must we.
    gt, results = _coco_dicts(preds, target, first_ann_id=0)
    gt["images"] = gt["images"][::-1]  # image order in the file does not matter (sorted by id)
    gt["categories"].append({"id": 99})  # a category nobody uses
    results.append({"image_id": 1, "category_id": 55, "bbox": [0, 0, 5, 5], "score": 0.99})  # unknown category
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    got = evaluate_coco_json(str(tmp_path / "gt.json"), tmp_path / "res.json")
    e = _pycocotools(gt, results)
    _assert_equal_to_pycocotools(got, e)
    assert got["stats"].tolist() == pytest.approx(e.stats.tolist(), abs=1e-12)
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_coco_json(gt, [{"image_id": 12345, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])


def test_bad_input_names_the_image():
    preds, target = coco_like(n_images=4, n_classes=3, seed=2, empty_fraction=0.0)
    metric = MeanAveragePrecision(num_classes=3)
    with pytest.raises(ValueError, match="one entry per image, got 4 and 3"):
        metric.update(preds, target[:3])
    metric.update(preds[:2], target[:2])
    bad = [dict(p) for p in preds[2:]]
    bad[1]["boxes"] = torch.zeros(len(bad[1]["scores"]), 3)
    with pytest.raises(ValueError, match=r"image 3 \(entry 1 of this update\): preds\['boxes'\] must have shape"):
        metric.update(bad, target[2:])
    bad = [dict(p) for p in preds[2:]]
    bad[0] = {"boxes": torch.ones(2, 4), "scores": torch.tensor([0.5, math.nan]), "labels": torch.tensor([0, 1])}
    with pytest.raises(ValueError, match=r"image 2: preds\['scores'\] must be finite"):
        metric.update(bad, target[2:])
    bad[0] = {"boxes": torch.ones(2, 4), "scores": torch.tensor([0.5, 0.1]), "labels": torch.tensor([0, 3])}
    with pytest.raises(ValueError, match=r"image 2: preds\['labels'\] must be < num_classes = 3"):
        metric.update(bad, target[2:])
    bad[0] = {"boxes": torch.ones(2, 4), "scores": torch.tensor([0.5, 0.1]), "labels": torch.tensor([0])}
    with pytest.raises(ValueError, match=r"image 2 .*preds\['labels'\] must have shape \[2\]"):
        metric.update(bad, target[2:])
    bad[0] = {"boxes": torch.ones(2, 4), "scores": torch.tensor([0.5, 0.1]), "labels": torch.tensor([0.0, 1.0])}
    with pytest.raises(TypeError, match=r"image 2 .*labels'\] must be an integer tensor"):
        metric.update(bad, target[2:])
    wrong = [dict(t) for t in target[2:]]
    wrong[1]["labels"] = -wrong[1]["labels"] - 1
    with pytest.raises(ValueError, match=r"image 3: target\['labels'\] must be >= 0"):
        metric.update(preds[2:], wrong)
    wrong = [dict(t) for t in target[2:]]
    wrong[0]["boxes"] = wrong[0]["boxes"].clone()
    wrong[0]["boxes"][0, 1] = math.inf
    with pytest.raises(ValueError, match=r"image 2: target\['boxes'\] must be finite"):
        metric.update(preds[2:], wrong)
    assert len(metric) == 2  # failed updates add nothing
    with pytest.raises(ValueError, match="box_format"):
        MeanAveragePrecision(box_format="yxyx")
    assert isinstance(build_metric("coco"), MeanAveragePrecision)


def test_ops_pass_opcheck():
    db = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 5, 5]], dtype=torch.float64)
    gb = torch.tensor([[0.0, 0, 10, 10], [2, 2, 8, 8]], dtype=torch.float64)
    crowd = torch.tensor([False, True])
    ignore = torch.tensor([[False, True], [True, True]])
    off = torch.tensor([0, 2, 3])
    goff = torch.tensor([0, 2, 2])
    args = (db, gb, crowd, ignore, off, goff, [0.5, 0.75])
    torch.library.opcheck(torch.ops.detops.coco_match.default, args)
    from detops.reference import metrics as ref

    assert torch.equal(torch.ops.detops.coco_match(*args), ref.coco_match(*args))
    status = torch.tensor([[[1, 0, 2]], [[0, 2, 1]]], dtype=torch.uint8)
    acc = (
        status,
        torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64),
        torch.tensor([0, 0, 1]),
        torch.tensor([0, 2, 3]),
        torch.tensor([[1, 2], [0, 1]]),
        torch.tensor(default_rec_thresholds(), dtype=torch.float64),
        [1, 10],
    )
    torch.library.opcheck(torch.ops.detops.coco_accumulate.default, acc)
    for got, want in zip(torch.ops.detops.coco_accumulate(*acc), ref.coco_accumulate(*acc)):
        assert torch.equal(got, want)


def _ddp_worker(rank, world, port, preds, target, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    metric = MeanAveragePrecision(extended_summary=True)
    share = len(preds) // world
    mine = slice(rank * share, (rank + 1) * share if rank < world - 1 else len(preds))
    metric.update(preds[mine], target[mine])
    got = metric.compute()
    torch.save({k: v for k, v in got.items()}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_distributed_gather_equals_one_process(tmp_path):
    preds, target = coco_like(n_images=30, n_classes=5, seed=10, crowd_fraction=0.1, score_levels=6)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, preds, target, str(tmp_path)), nprocs=2, join=True)
    single = _evaluate(preds, target)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for k, v in single.items():
            assert torch.equal(got[k], v), (rank, k)
