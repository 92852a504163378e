"""COCO-style evaluation (detops.metrics, kernels in csrc/*/metrics.*) against pycocotools and faster-coco-eval.

Each side starts from the input format its users hold: detops from the per-image tensors a model returns
(``update`` then ``compute``), the COCO tools from the ground-truth dataset and the results list as dicts
(index, ``loadRes``, evaluate, accumulate, summarize). Converting the tensors to those dicts is left out of
the baselines' time. The check compares the twelve summary numbers to 1e-9.

Each row also states the peak memory of one evaluation on each side (``memory`` in the JSON): measured in a
fresh process, once the inputs are built, as the rise of the process's resident set (Linux's ``VmHWM``, reset
through ``/proc/self/clear_refs``) over what it held before the call. Resident memory counts every allocator
alike (Python objects, numpy, torch's CPU allocator, faster-coco-eval's C++), which tracemalloc (Python-side
allocations only) does not; on CUDA the torch allocator's peak is given too.
"""

import contextlib
import copy
import gc
import io
import json
import os
import subprocess
import sys

import torch

from detops.bench import workloads as W
from detops.bench.registry import Pair, case

W.WORKLOADS.setdefault(
    "coco_like",
    "COCO-like validation set: 640x480 images, 80 classes (4 per image), 0-14 objects of every size per image "
    "(1% crowds, annotation areas 0.6-1x the box), 0-40 detections near the objects and elsewhere",
)


def _dataset(n_images):
    from detops.metrics.workloads import coco_like

    return coco_like(n_images=n_images, n_classes=80, seed=0)


def _coco_dicts(preds, target):
    images, anns, results, labels = [], [], [], set()
    for i, (p, t) in enumerate(zip(preds, target)):
        images.append({"id": i + 1})
        g = t["boxes"].double()
        g = torch.cat([g[:, :2], g[:, 2:] - g[:, :2]], 1)
        for k, (b, lab, a, c) in enumerate(
            zip(g.tolist(), t["labels"].tolist(), t["area"].double().tolist(), t["iscrowd"].tolist())
        ):
            anns.append(
                {"id": len(anns) + 1, "image_id": i + 1, "category_id": lab, "bbox": b, "area": a, "iscrowd": int(c)}
            )
            labels.add(lab)
        d = p["boxes"].double()
        d = torch.cat([d[:, :2], d[:, 2:] - d[:, :2]], 1)
        for b, lab, s in zip(d.tolist(), p["labels"].tolist(), p["scores"].double().tolist()):
            results.append({"image_id": i + 1, "category_id": lab, "bbox": b, "score": s})
            labels.add(lab)
    gt = {"images": images, "annotations": anns, "categories": [{"id": c} for c in sorted(labels)]}
    return gt, results


def _detops(preds, target):
    from detops.metrics import MeanAveragePrecision
    from detops.metrics.coco import stats

    metric = MeanAveragePrecision()
    metric.update(preds, target)
    return torch.tensor(stats(metric.compute()), dtype=torch.float64)


def _on_device(preds, target, device):
    mv = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
    return [mv(p) for p in preds], [mv(t) for t in target]


def _same_stats(ours, theirs):
    diff = float((ours - theirs).abs().max())
    return None if diff <= 1e-9 else f"summary numbers differ by {diff:.3g}: {ours.tolist()} vs {theirs.tolist()}"


def _pycocotools(gt, results):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        e = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return torch.tensor(e.stats, dtype=torch.float64)


def _faster_coco_eval(gt, results):
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(copy.deepcopy(gt))
        e = COCOeval_faster(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "bbox", print_function=print)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return torch.tensor(e.stats[:12], dtype=torch.float64)


BASELINES = {"pycocotools": _pycocotools, "faster_coco_eval": _faster_coco_eval}


def _status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {key}")


def _evaluation(side, n_images, device):
    preds, target = _dataset(n_images)
    if side == "detops":
        preds, target = _on_device(preds, target, device)
        return lambda: _detops(preds, target)
    gt, results = _coco_dicts(preds, target)
    return lambda: BASELINES[side](gt, results)


def measure_peak(side, n_images, device, threads):
    """In a fresh process: build the inputs of ``side`` ("detops" or a :data:`BASELINES` key), then run one
    evaluation and print its peak memory as JSON (bytes above what the process held before the call).

    A five-image evaluation runs first, so that loading libraries and first-call set-up (code pages, thread
    pools) are not counted as the evaluation's memory."""
    torch.set_num_threads(threads)
    _evaluation(side, 5, device)()
    run = _evaluation(side, n_images, device)
    cuda = str(device).startswith("cuda")
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        device_before = torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    before = _status_kib("VmRSS")
    run()
    if cuda:
        torch.cuda.synchronize()
    out = {"bytes": (_status_kib("VmHWM") - before) * 1024}
    if cuda:
        out["device_bytes"] = torch.cuda.max_memory_allocated() - device_before
    print(json.dumps(out))


def _peak_in_subprocess(side, n_images, device):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    code = (
        f"from detops.bench.cases.metrics import measure_peak; "
        f"measure_peak({side!r}, {int(n_images)}, {str(device)!r}, {torch.get_num_threads()})"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {side} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _peak_memory(n_images, device, baseline):
    ours, theirs = _peak_in_subprocess("detops", n_images, device), _peak_in_subprocess(baseline, n_images, "cpu")
    return {
        "detops_bytes": ours["bytes"],
        "detops_device_bytes": ours.get("device_bytes"),
        "baseline_bytes": theirs["bytes"],
        "method": "peak resident set of one evaluation above the process's before it, in a fresh process",
    }


def _coco_pair(dims, ctx, baseline):
    """detops from the per-image tensors on ctx.device against ``BASELINES[baseline]`` from the COCO dicts."""
    preds, target = _dataset(dims[0])
    gt, results = _coco_dicts(preds, target)
    preds, target = _on_device(preds, target, ctx.device)
    return Pair(
        (preds, target),
        _detops,
        lambda p, t: BASELINES[baseline](gt, results),
        check=_same_stats,
        dtype=torch.float32,
        memory=lambda: _peak_memory(dims[0], ctx.device, baseline),
    )


@case(
    "metrics",
    "MeanAveragePrecision",
    "pycocotools COCOeval",
    "coco_like",
    sizes=("500", "5000"),
    quick=("50",),
    requires=("pycocotools",),
    size_label="images",
)
def coco_vs_pycocotools(dims, ctx):
    """COCO bbox mAP (the twelve summary numbers) against pycocotools' COCO + loadRes + COCOeval."""
    return _coco_pair(dims, ctx, "pycocotools")


@case(
    "metrics",
    "MeanAveragePrecision",
    "faster-coco-eval",
    "coco_like",
    sizes=("500", "5000"),
    quick=("50",),
    requires=("faster_coco_eval",),
    size_label="images",
)
def coco_vs_faster_coco_eval(dims, ctx):
    """COCO bbox mAP against faster-coco-eval's C++ COCOeval_faster (pycocotools' numbers, compiled)."""
    return _coco_pair(dims, ctx, "faster_coco_eval")


W.WORKLOADS.setdefault(
    "ssd_detections",
    "SSD-like VOC evaluation: 1-7 objects per image (fractional xyxy, 10% difficult), the given number of "
    "detections per image near them, 70% with the right class, 20 classes",
)


def _ssd_like(n_images, dets_per_image, seed, n_classes=21):
    g = torch.Generator().manual_seed(seed)
    out = [[] for _ in range(6)]
    for _ in range(n_images):
        n = int(torch.randint(1, 8, (), generator=g))
        xy = torch.rand(n, 2, generator=g) * 0.7
        tb = torch.cat([xy, xy + 0.05 + 0.25 * torch.rand(n, 2, generator=g)], 1)
        tl = torch.randint(1, n_classes, (n,), generator=g)
        td = (torch.rand(n, generator=g) < 0.1).to(torch.uint8)
        pick = torch.randint(0, n, (dets_per_image,), generator=g)
        db = tb[pick] + 0.05 * torch.randn(dets_per_image, 4, generator=g)
        wrong = torch.randint(1, n_classes, (dets_per_image,), generator=g)
        dl = torch.where(torch.rand(dets_per_image, generator=g) < 0.7, tl[pick], wrong)
        for store, value in zip(out, (db, dl, torch.rand(dets_per_image, generator=g), tb, tl, td)):
            store.append(value)
    return (*out, n_classes)


@case(
    "metrics",
    "voc_map",
    "tutorial per-detection loop",
    "ssd_detections",
    sizes=("200x50", "1000x200"),
    quick=("50x20",),
    devices=("cpu",),
    size_label="images x detections",
)
def voc_map_vs_tutorial(dims, ctx):
    """VOC07 11-point mAP against the tutorial's calculate_mAP algorithm (detops.reference.metrics.voc_map)."""
    from detops.metrics import voc_map
    from detops.reference.metrics import voc_map as tutorial_voc_map

    def same(ours, theirs):
        diff = abs(ours[0] - theirs[0])
        return None if diff <= 1e-12 else f"mAP differs by {diff:.3g}: {ours[0]} vs {theirs[0]}"

    return Pair(_ssd_like(dims[0], dims[1], ctx.seed), voc_map, tutorial_voc_map, check=same, dtype=torch.float32)
