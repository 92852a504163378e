"""Speed of the SSD data and evaluation half: VOC mAP, the training transform, the synthetic generator.

Prints tables (markdown) comparing against a baseline measured in the same run:
  - detops.metrics.voc_map vs the per-detection loop of detops.reference.metrics.voc_map (the tutorial's
    calculate_mAP algorithm), on SSD-like output: top-k detections per image over VOC's 20 classes;
  - the SSD training transform with detops' vectorised IoU-crop sampler vs the same pipeline with
    torchvision's v2.RandomIoUCrop (trial-by-trial loop) + SanitizeBoundingBoxes;
  - synthetic dataset generation (images/s, JPEG + XML written).

Usage: PYTHONPATH=$PWD python benchmarks/bench_ssd_data.py [--quick]
"""

import argparse
import tempfile
import time

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from detops.reference.metrics import voc_map as reference_voc_map
from detops.metrics import voc_map
from detops.ssd.synthetic import generate_voc_dataset
from detops.ssd.transforms import ssd_transforms
from detops.ssd.voc import VOCDataset


def _best_of(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _ssd_like_case(n_images, dets_per_image, n_classes=21, seed=0):
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
        ds = torch.rand(dets_per_image, generator=g)
        for store, value in zip(out, (db, dl, ds, tb, tl, td)):
            store.append(value)
    return (*out, n_classes)


def bench_map(quick):
    rows = []
    for n_images, k in ([(100, 50), (200, 200)] if quick else [(200, 50), (500, 200), (1000, 200)]):
        case = _ssd_like_case(n_images, k)
        t_ours = _best_of(lambda: voc_map(*case), 3)
        t_ref = _best_of(lambda: reference_voc_map(*case), 1)
        assert abs(voc_map(*case)[0] - reference_voc_map(*case)[0]) < 1e-12
        rows.append((n_images, k, n_images / t_ref, n_images / t_ours, t_ref / t_ours))
    print("\n### VOC mAP (VOC07 11-point, 20 classes), images/s\n")
    print("| images | detections/image | reference loop | detops voc_map | speed-up |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:,.0f} | {r[3]:,.0f} | {r[4]:.1f}x |")


def _torchvision_iou_crop_pipeline(size=300):
    mean = (0.485, 0.456, 0.406)
    pipeline = v2.Compose([
        v2.RandomZoomOut(fill={tv_tensors.Image: mean, "others": 0}, side_range=(1.0, 4.0), p=0.5),
        v2.RandomIoUCrop(sampler_options=[0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0], trials=50),
        v2.SanitizeBoundingBoxes(labels_getter=lambda sample: sample[2]),
        v2.RandomHorizontalFlip(0.5),
        v2.Resize((size, size), antialias=True),
        v2.Normalize(mean, (0.229, 0.224, 0.225)),
    ])

    def run(image, boxes, labels, difficulties):
        img = tv_tensors.Image(image.float() / 255)
        bxs = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=image.shape[-2:])
        return pipeline(img, bxs, labels)

    return run


def bench_transforms(root, n_items):
    raw = VOCDataset(root, "train")
    items = [(raw[i][0].mul(255).byte(), *raw.annotation(i)) for i in range(n_items)]
    ours = ssd_transforms(True, photometric=False)
    theirs = _torchvision_iou_crop_pipeline()
    full = ssd_transforms(True)
    evaluation = ssd_transforms(False)

    def run(tf):
        torch.manual_seed(0)
        for image, boxes, labels, diff in items:
            tf(image, boxes, labels, diff)

    rows = [
        (
            "geometry: zoom out, torchvision v2.RandomIoUCrop + SanitizeBoundingBoxes, flip, resize",
            _best_of(lambda: run(theirs), 2),
        ),
        ("geometry: zoom out, detops sample_iou_crop + v2 crop, flip, resize", _best_of(lambda: run(ours), 2)),
        ("full training transform (with photometric distortion)", _best_of(lambda: run(full), 2)),
        ("evaluation transform (resize, normalise)", _best_of(lambda: run(evaluation), 2)),
    ]
    print(f"\n### SSD transforms, 300x300 synthetic images, {n_items} items, one thread, images/s\n")
    print("| pipeline | images/s |")
    print("|---|---:|")
    for name, t in rows:
        print(f"| {name} | {n_items / t:,.0f} |")
    print(f"\nIoU-crop sampler speed-up over v2.RandomIoUCrop pipeline: {rows[0][1] / rows[1][1]:.1f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    bench_map(args.quick)
    with tempfile.TemporaryDirectory() as root:
        n = 40 if args.quick else 200
        t = _best_of(lambda: generate_voc_dataset(root, n_train=n, n_test=0, image_size=300, seed=0), 1)
        print(f"\n### Synthetic generator\n\n{n} images of 300x300 (JPEG + XML): {n / t:,.0f} images/s")
        bench_transforms(root, 40 if args.quick else 150)


if __name__ == "__main__":
    main()
