"""``detops demo``: the whole pipeline on a CPU in a few minutes.

1. generate a synthetic VOC-format dataset (shapes on noisy backgrounds),
2. train the small SSD (``SSD300(n, backbone="tiny")``, 160x160 input) on the CPU,
3. evaluate it on the held-out test images (VOC07 11-point and all-point mAP with the per-class table, and
   COCO AP@[.5:.95] and AP@.5 from the same detections),
4. draw its detections on held-out images and plot the loss curve,
5. print where everything went.
"""

from __future__ import annotations

import json
import os
import time


def add_arguments(p) -> None:
    p.add_argument("--out", default="detops_demo", help="directory for data, checkpoint, plots, TensorBoard")
    p.add_argument("--train-images", type=int, default=2000, help="synthetic training images")
    p.add_argument("--test-images", type=int, default=300, help="synthetic held-out images")
    p.add_argument("--epochs", type=int, default=8, help="training epochs")
    p.add_argument("--batch-size", type=int, default=32, help="images per step")
    p.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (cosine schedule)")
    p.add_argument("--width", type=int, default=16, help="channel width of the tiny backbone")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the training")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--n-draw", type=int, default=8, help="held-out images to draw detections on")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import torch

    from detops.ssd.cached import CachedDataset
    from detops.ssd.checkpoint import build_model
    from detops.ssd.drawing import denormalize, draw_detections, plot_loss
    from detops.metrics.voc import VOC07Metric
    from detops.ssd.evaluation import COCOMetric, MetricSet, evaluate, format_result
    from detops.ssd.loggers import EpochPrinter, ProgressBar, TensorBoardLogger
    from detops.ssd.synthetic import SYNTHETIC_CLASSES, generate_voc_dataset
    from detops.ssd.trainer import TrainConfig, Trainer
    from detops.ssd.voc import VOCDataset

    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = os.path.abspath(args.out)
    data = os.path.join(out, "data")
    os.makedirs(out, exist_ok=True)
    classes = list(SYNTHETIC_CLASSES)
    size = 160

    print(f"[1/5] generating {args.train_images} training + {args.test_images} held-out images in {data}", flush=True)
    generate_voc_dataset(
        data, n_train=args.train_images, n_test=args.test_images, image_size=size, seed=args.seed, classes=classes
    )
    train_set = CachedDataset(VOCDataset(data, "train", classes=classes), size, augment=True)
    test_set = CachedDataset(VOCDataset(data, "test", keep_difficult=True, classes=classes), size)

    model = build_model(len(classes) + 1, "tiny", width=args.width)
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer="adamw",
        lr=args.lr,
        weight_decay=1e-4,
        bias_lr_factor=1.0,
        schedule="cosine",
        warmup_steps=min(100, len(train_set) // args.batch_size),
        grad_clip=10.0,
        seed=args.seed,
        checkpoint_every=0,
    )
    preview = torch.stack([test_set[i][0] for i in range(min(4, len(test_set)))])
    callbacks = [
        EpochPrinter(),
        TensorBoardLogger(
            os.path.join(out, "tensorboard"), preview, classes, log_every=5, image_every=max(1, args.epochs // 4)
        ),
    ]
    if not args.no_progress:
        callbacks.append(ProgressBar())
    trainer = Trainer(model, train_set, cfg, device="cpu", checkpoint_dir=out, class_names=classes, callbacks=callbacks)
    print(
        f"[2/5] training the tiny SSD ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
        f"{model.n_priors} priors) for {args.epochs} epochs on {torch.get_num_threads()} CPU thread(s)",
        flush=True,
    )
    t0 = time.perf_counter()
    trainer.fit(handle_signals=True)
    trainer.close()
    train_s = time.perf_counter() - t0
    if trainer.stopped:
        print(f"stopped ({trainer.stop_requested}); checkpoint {trainer.last_path}")
        return 130

    print("[3/5] evaluating on the held-out images", flush=True)
    result = evaluate(
        model, test_set, MetricSet(VOC07Metric(model.n_classes), COCOMetric(model.n_classes)), batch_size=64
    )
    print(format_result(result, classes))

    print("[4/5] drawing detections and the loss curve", flush=True)
    det_dir = os.path.join(out, "detections")
    os.makedirs(det_dir, exist_ok=True)
    model.eval()
    with torch.no_grad():
        images = torch.stack([test_set[i][0] for i in range(min(args.n_draw, len(test_set)))])
        locs, scores = model(images)
        boxes, labels, scores = model.detect_objects(locs, scores, min_score=0.3, max_overlap=0.45, top_k=20)
    for i in range(images.size(0)):
        draw_detections(denormalize(images[i]).resize((320, 320)), boxes[i], labels[i], scores[i], classes).save(
            os.path.join(det_dir, f"test_{i:02d}.png")
        )
    curve = os.path.join(out, "loss_curve.png")
    plot_loss(trainer.history, curve, title="tiny SSD on synthetic shapes")

    total_s = time.perf_counter() - t_start
    summary = {
        "map_voc07": result["map_voc07"],
        "map_area": result["map_area"],
        "map_coco": result["map_coco"],
        "map_coco_50": result["map_coco_50"],
        "train_seconds": train_s,
        "total_seconds": total_s,
        "epochs": args.epochs,
        "train_images": len(train_set),
        "test_images": len(test_set),
        "eval_images_per_s": result["images_per_s"],
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("[5/5] done")
    print(
        f"  mAP (VOC07 11-point) on {len(test_set)} held-out images: {result['map_voc07']:.3f}"
        f"   (all-point: {result['map_area']:.3f})"
    )
    print(f"  COCO AP@[.5:.95] {result['map_coco']:.3f}   AP@.5 {result['map_coco_50']:.3f}")
    print(f"  training {train_s:.0f} s, total {total_s:.0f} s")
    print(f"  dataset      {data}")
    print(f"  checkpoint   {trainer.last_path}")
    print(f"  detections   {det_dir}/test_*.png")
    print(f"  loss curve   {curve}")
    print(f"  TensorBoard  tensorboard --logdir {os.path.join(out, 'tensorboard')}")
    print(f"  results      {os.path.join(out, 'results.json')}")
    return 0
