"""Fine-tune torchvision's Faster R-CNN ResNet-50 FPN v2 on a Pascal VOC-format dataset, with detops patched in.

What it does, in order:

1. the data: ``--data ROOT`` (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``), or by default
   detops' synthetic dataset of shapes, generated under ``OUT/data``;
2. the model: ``fasterrcnn_resnet50_fpn_v2`` with one class per dataset class plus background, randomly
   initialised or from ``--weights`` (a state_dict file; tensors whose shape does not fit, such as a COCO box
   predictor, are left at their initial values); nothing is downloaded;
3. training under ``detops.patch_torchvision(training=True)``: the RPN's and ROI heads' matching, box encoding
   and losses, and the NMS, run on detops' kernels (``--no-detops`` runs torchvision's own code instead);
4. after each epoch, COCO mAP@0.5 and mAP@0.5:0.95 on the validation split with
   :class:`detops.metrics.MeanAveragePrecision`; difficult objects count as crowd regions (neither found nor
   missed);
5. logs: TensorBoard scalars (``OUT/tensorboard``), ``OUT/metrics.json``, ``OUT/losses.png``, ``OUT/map.png``,
   the fine-tuned weights ``OUT/model.pt``;
6. inference on ``--infer`` (a folder of images, one image, or a video file; default: the validation images),
   boxes drawn into ``OUT/detections/*.png``.

Run ``python examples/finetune_fasterrcnn.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
from PIL import Image

import detops
from detops.metrics import MeanAveragePrecision
from detops.ssd.synthetic import generate_voc_dataset
from detops.ssd.voc import VOCDataset, load_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
LOSS_KEYS = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")


class UsageError(Exception):
    """A bad argument or input the user can fix; main() prints it and returns 2."""


# ---- data ----


class Detection(torch.utils.data.Dataset):
    """A VOCDataset as torchvision's detectors take it: (image float [3, H, W] in [0, 1], target dict with
    absolute xyxy ``boxes``, ``labels`` and ``iscrowd`` = the VOC difficult flag); ``flip``: random
    horizontal flips."""

    def __init__(self, voc: VOCDataset, flip: bool = False):
        self.voc, self.flip = voc, flip

    def __len__(self):
        return len(self.voc)

    def __getitem__(self, i):
        image, boxes, labels, difficult = self.voc[i]
        h, w = image.shape[-2:]
        boxes = boxes * torch.tensor([w, h, w, h], dtype=boxes.dtype)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # the detector rejects empty boxes
        boxes, labels, difficult = boxes[keep], labels[keep], difficult[keep]
        if self.flip and random.random() < 0.5:
            image = image.flip(-1)
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
        return image, {"boxes": boxes, "labels": labels, "iscrowd": difficult.to(torch.int64)}


def collate(batch):
    return [b[0] for b in batch], [b[1] for b in batch]


def prepare_data(args):
    """(root, train VOCDataset, validation VOCDataset), generating the synthetic dataset when no --data."""
    root = args.data
    if root is None:
        root = os.path.join(args.out, "data")
        if not os.path.isfile(os.path.join(root, "ImageSets", "Main", f"{args.val_split}.txt")):
            generate_voc_dataset(
                root,
                n_train=args.synthetic_train,
                n_test=args.synthetic_val,
                image_size=args.synthetic_size,
                seed=args.seed,
            )
    elif not os.path.isdir(root):
        raise UsageError(f"--data {root}: no such directory")
    try:
        train = VOCDataset(root, args.train_split, keep_difficult=False)
        val = VOCDataset(root, args.val_split, keep_difficult=True, classes=train.classes)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(f"--data {root}: {exc}") from exc
    if len(train) == 0:
        raise UsageError(f"--data {root}: split {args.train_split!r} has no images")
    return root, train, val


# ---- model ----


def build_model(num_classes: int, args):
    from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2

    # The box head runs four 3x3 convolutions on every sampled proposal, so these two numbers set most of the
    # cost of a step on a small dataset.
    sizes = {}
    if args.proposals:
        sizes = dict(
            rpn_pre_nms_top_n_train=args.proposals,
            rpn_post_nms_top_n_train=args.proposals,
            rpn_pre_nms_top_n_test=args.proposals,
            rpn_post_nms_top_n_test=args.proposals,
        )
    model = fasterrcnn_resnet50_fpn_v2(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes,
        min_size=args.min_size,
        max_size=args.max_size,
        box_batch_size_per_image=args.rois_per_image,
        **sizes,
    )
    if args.weights:
        state = torch.load(args.weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]  # torchvision's reference scripts save {"model": ..., "optimizer": ...}
        if not isinstance(state, dict):
            raise UsageError(f"--weights {args.weights}: not a state_dict (got {type(state).__name__})")
        own = model.state_dict()
        fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not fits:
            raise UsageError(f"--weights {args.weights}: no tensor fits fasterrcnn_resnet50_fpn_v2")
        model.load_state_dict(fits, strict=False)
        left = sorted(set(own) - set(fits))
        print(
            f"loaded {len(fits)} tensors from {args.weights}; {len(left)} left at their initial values"
            + (f" ({', '.join(left[:4])}{', ...' if len(left) > 4 else ''})" if left else "")
        )
    return model


def schedule(optimizer, total_steps: int, warmup: int):
    """Linear warm-up from 1/1000 of the learning rate, then a cosine decay to zero."""

    def factor(step):
        if step < warmup:
            return 0.001 + (1 - 0.001) * step / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---- train and evaluate ----


def train_epoch(model, loader, optimizer, scheduler, device, epoch, args, writer, history, bar):
    model.train()
    sums = {}
    for step, (images, targets) in enumerate(loader):
        if args.max_steps and step >= args.max_steps:
            break
        images = [im.to(device) for im in images]
        targets = [{k: v.to(device) for k, v in t.items() if k != "iscrowd"} for t in targets]
        losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise RuntimeError(
                f"epoch {epoch} step {step}: the loss is {loss.item()} "
                f"({ {k: round(v.item(), 4) for k, v in losses.items()} }); lower --lr"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        scheduler.step()
        global_step = len(history["steps"])
        record = {
            "step": global_step,
            "epoch": epoch,
            "loss": loss.item(),
            "lr": optimizer.param_groups[0]["lr"],
            **{k: v.item() for k, v in losses.items()},
        }
        history["steps"].append(record)
        for k in ("loss", *LOSS_KEYS, "lr"):
            if k in record:
                writer.add_scalar(f"train/{k}", record[k], global_step)
                sums[k] = sums.get(k, 0.0) + record[k]
        bar.set_postfix(epoch=epoch, loss=f"{record['loss']:.3f}")
        bar.update(1)
    n = max(1, len([s for s in history["steps"] if s["epoch"] == epoch]))
    return {k: v / n for k, v in sums.items() if k != "lr"}


@torch.no_grad()
def evaluate(model, loader, device, progress: bool):
    from tqdm.auto import tqdm

    model.eval()
    metric = MeanAveragePrecision(box_format="xyxy")
    for images, targets in tqdm(loader, desc="evaluate", leave=False, disable=not progress):
        outputs = model([im.to(device) for im in images])
        metric.update([{k: o[k].cpu() for k in ("boxes", "scores", "labels")} for o in outputs], targets)
    result = metric.compute()
    return {"map": float(result["map"]), "map_50": float(result["map_50"])}


# ---- plots ----


def plot_lines(path: str, series: dict, xlabel: str, ylabel: str, title: str, log_y: bool = False) -> None:
    """Saves ``series`` (name -> (xs, ys)) as a line plot, with matplotlib when it is installed, else Pillow."""
    series = {k: v for k, v in series.items() if len(v[0])}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_with_pillow(path, series, title)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, "o-" if len(xs) < 30 else "-", lw=1.2, ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log_y and all(y > 0 for _, ys in series.values() for y in ys):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if series:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_with_pillow(path: str, series: dict, title: str) -> None:
    from PIL import ImageDraw

    w, h, pad = 700, 400, 40
    image = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([pad, pad, w - pad, h - pad], outline="black")
    draw.text((pad, 10), title, fill="black")
    points = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys) if math.isfinite(y)]
    if points:
        x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
        y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
        sx, sy = (w - 2 * pad) / max(x1 - x0, 1e-9), (h - 2 * pad) / max(y1 - y0, 1e-9)
        colors = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]
        for k, (name, (xs, ys)) in enumerate(series.items()):
            xy = [(pad + (x - x0) * sx, h - pad - (y - y0) * sy) for x, y in zip(xs, ys) if math.isfinite(y)]
            color = colors[k % len(colors)]
            if len(xy) > 1:
                draw.line(xy, fill=color, width=2)
            for x, y in xy:
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
            draw.text((w - pad - 150, pad + 5 + 14 * k), name, fill=color)
    image.save(path)


def write_plots(out: str, history: dict) -> None:
    steps = history["steps"]
    series = {k: ([s["step"] for s in steps if k in s], [s[k] for s in steps if k in s]) for k in ("loss", *LOSS_KEYS)}
    plot_lines(os.path.join(out, "losses.png"), series, "step", "loss", "Faster R-CNN training losses", log_y=True)
    epochs = history["epochs"]
    maps = {
        name: ([e["epoch"] for e in epochs], [e[key] for e in epochs])
        for key, name in (("map_50", "mAP@0.5"), ("map", "mAP@0.5:0.95"))
    }
    plot_lines(os.path.join(out, "map.png"), maps, "epoch", "COCO mAP", "validation mAP")


# ---- inference ----


def video_decoder() -> str | None:
    """What can decode video here: ``"torchvision"``, ``"torchcodec"`` or None."""
    import importlib.util

    import torchvision.io

    if hasattr(torchvision.io, "read_video"):
        return "torchvision"
    return "torchcodec" if importlib.util.find_spec("torchcodec") is not None else None


NO_VIDEO = (
    "this torchvision ({}) cannot decode video (torchvision.io.read_video was removed in 0.24); install "
    "TorchCodec (pip install torchcodec, which needs FFmpeg), or extract the frames to a folder of images "
    "and pass the folder"
)


def read_video(path: str):
    """The frames of a video file as uint8 [3, H, W] tensors.

    torchvision 0.29 has no video decoder (``torchvision.io.read_video`` and ``VideoReader`` were removed in
    0.24 in favour of TorchCodec), so this uses ``torchcodec`` when it is installed, and the old torchvision
    reader where a torchvision still has one.
    """
    import torchvision.io

    backend = video_decoder()
    if backend is None:
        raise UsageError(f"--infer {path}: " + NO_VIDEO.format(torchvision.__version__))
    if backend == "torchvision":
        yield from torchvision.io.read_video(path, pts_unit="sec", output_format="TCHW")[0]
        return
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(path, dimension_order="NCHW")
    for i in range(len(decoder)):
        yield decoder[i]


def inference_inputs(source: str, limit: int, stride: int):
    """(name, uint8 [3, H, W] image) pairs from a folder of images, one image or a video file."""
    if os.path.isdir(source):
        files = sorted(f for f in os.listdir(source) if f.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise UsageError(f"--infer {source}: the folder has no image ({', '.join(IMAGE_SUFFIXES)})")
        for f in files[:limit] if limit else files:
            yield os.path.splitext(f)[0], load_image(os.path.join(source, f))
        return
    if not os.path.isfile(source):
        raise UsageError(f"--infer {source}: no such file or folder")
    suffix = os.path.splitext(source)[1].lower()
    stem = os.path.splitext(os.path.basename(source))[0]
    if suffix in IMAGE_SUFFIXES:
        yield stem, load_image(source)
    elif suffix in VIDEO_SUFFIXES:
        kept = 0
        for i, frame in enumerate(read_video(source)):
            if i % stride:
                continue
            yield f"{stem}_frame{i:06d}", frame
            kept += 1
            if limit and kept >= limit:
                break
    else:
        raise UsageError(
            f"--infer {source}: not an image ({', '.join(IMAGE_SUFFIXES)}) or a video ({', '.join(VIDEO_SUFFIXES)})"
        )


@torch.no_grad()
def run_inference(model, items, classes, out_dir: str, device, threshold: float, progress: bool) -> list:
    from torchvision.utils import draw_bounding_boxes
    from tqdm.auto import tqdm

    os.makedirs(out_dir, exist_ok=True)
    model.eval()
    written = []
    for name, image in tqdm(items, desc="inference", leave=False, disable=not progress):
        out = model([image.to(device).float() / 255])[0]
        keep = out["scores"] >= threshold
        boxes, labels, scores = out["boxes"][keep].cpu(), out["labels"][keep].cpu(), out["scores"][keep].cpu()
        captions = [f"{classes[lb - 1]} {s:.2f}" for lb, s in zip(labels.tolist(), scores.tolist())]
        drawn = draw_bounding_boxes(image, boxes, captions, width=2) if len(boxes) else image
        path = os.path.join(out_dir, f"{name}.png")
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(path)
        written.append({"image": path, "detections": len(boxes)})
    return written


# ---- the command ----


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--data", help="VOC-format dataset root (default: generate the synthetic one under OUT/data)")
    p.add_argument("--train-split", default="train", help="image set to train on")
    p.add_argument("--val-split", default="test", help="image set to evaluate on after each epoch")
    p.add_argument("--out", default="runs/finetune_fasterrcnn", help="output folder")
    p.add_argument("--weights", help="a state_dict file to start from (default: random initialisation)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (0: only evaluate and infer)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.02, help="SGD learning rate (momentum 0.9, weight decay 1e-4)")
    p.add_argument("--warmup-steps", type=int, default=100, help="linear learning-rate warm-up")
    p.add_argument("--max-steps", type=int, default=0, help="at most this many steps per epoch (0: all)")
    p.add_argument("--min-size", type=int, default=512, help="shorter image side the model resizes to")
    p.add_argument("--max-size", type=int, default=853, help="longer image side the model resizes to at most")
    p.add_argument(
        "--proposals",
        type=int,
        default=0,
        help="RPN proposals per image before and after its NMS, "
        "training and test (0: torchvision's 2000/2000 training, 1000/1000 test)",
    )
    p.add_argument("--rois-per-image", type=int, default=512, help="proposals the ROI heads sample per image")
    p.add_argument("--synthetic-train", type=int, default=200, help="synthetic training images (no --data)")
    p.add_argument("--synthetic-val", type=int, default=50, help="synthetic validation images (no --data)")
    p.add_argument("--synthetic-size", type=int, default=320, help="synthetic image side in pixels (no --data)")
    p.add_argument(
        "--infer",
        help="images folder, image or video file to run the model on after training (default: the validation images)",
    )
    p.add_argument("--infer-limit", type=int, default=16, help="at most this many images or video frames (0: all)")
    p.add_argument("--video-stride", type=int, default=10, help="use every N-th video frame")
    p.add_argument("--score-threshold", type=float, default=0.5, help="draw detections scoring at least this")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-detops", action="store_true", help="train on torchvision's own code (for comparison)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    for name in ("epochs", "max_steps", "warmup_steps", "workers", "infer_limit", "synthetic_val", "proposals"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    for name in ("batch_size", "min_size", "max_size", "video_stride", "synthetic_train", "rois_per_image"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.min_size > args.max_size:
        p.error(f"--min-size ({args.min_size}) must not exceed --max-size ({args.max_size})")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        p.error(f"--lr must be a positive number, got {args.lr}")
    if not 0 <= args.score_threshold <= 1:
        p.error(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    if args.weights and not os.path.isfile(args.weights):
        p.error(f"--weights {args.weights}: no such file")
    if args.infer and not os.path.exists(args.infer):
        p.error(f"--infer {args.infer}: no such file or folder")
    if args.infer and os.path.isfile(args.infer) and not args.infer.lower().endswith(IMAGE_SUFFIXES + VIDEO_SUFFIXES):
        p.error(
            f"--infer {args.infer}: not an image ({', '.join(IMAGE_SUFFIXES)}) or a video ({', '.join(VIDEO_SUFFIXES)})"
        )
    if args.infer and args.infer.lower().endswith(VIDEO_SUFFIXES) and video_decoder() is None:
        import torchvision

        p.error(f"--infer {args.infer}: " + NO_VIDEO.format(torchvision.__version__))
    try:
        torch.device(args.device)
    except RuntimeError as exc:
        p.error(f"--device {args.device}: {exc}")
    return args


def run(args) -> dict:
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    device = torch.device(args.device)
    root, train_set, val_set = prepare_data(args)
    classes = train_set.classes
    print(f"data: {root} ({len(train_set)} training, {len(val_set)} validation images, classes {classes})")

    loader_kw = dict(
        batch_size=args.batch_size, collate_fn=collate, num_workers=args.workers, persistent_workers=args.workers > 0
    )
    train_loader = torch.utils.data.DataLoader(
        Detection(train_set, flip=True),
        shuffle=True,
        drop_last=False,
        generator=torch.Generator().manual_seed(args.seed),
        **loader_kw,
    )
    val_loader = torch.utils.data.DataLoader(Detection(val_set), shuffle=False, **loader_kw)

    model = build_model(len(classes) + 1, args).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    steps_per_epoch = min(len(train_loader), args.max_steps or len(train_loader))
    scheduler = schedule(
        optimizer, args.epochs * steps_per_epoch, min(args.warmup_steps, steps_per_epoch * args.epochs)
    )
    writer = SummaryWriter(os.path.join(args.out, "tensorboard"))
    history = {"steps": [], "epochs": [], "detops": not args.no_detops}
    try:
        bar = tqdm(total=args.epochs * steps_per_epoch, desc="train", disable=args.no_progress, dynamic_ncols=True)
        for epoch in range(1, args.epochs + 1):
            t0 = time.perf_counter()
            means = train_epoch(model, train_loader, optimizer, scheduler, device, epoch, args, writer, history, bar)
            result = evaluate(model, val_loader, device, not args.no_progress) if len(val_set) else {}
            record = {"epoch": epoch, "seconds": round(time.perf_counter() - t0, 2), **means, **result}
            history["epochs"].append(record)
            for k in ("map", "map_50"):
                if k in result:
                    writer.add_scalar(f"val/{k}", result[k], epoch)
            for k, v in means.items():
                writer.add_scalar(f"epoch/{k}", v, epoch)
            bar.write(
                f"epoch {epoch}: loss {means.get('loss', float('nan')):.4f}, "
                f"mAP@0.5 {result.get('map_50', float('nan')):.4f}, "
                f"mAP@0.5:0.95 {result.get('map', float('nan')):.4f} ({record['seconds']:.1f} s)"
            )
            write_plots(args.out, history)
        bar.close()
        if args.epochs == 0 and len(val_set):
            history["epochs"].append({"epoch": 0, **evaluate(model, val_loader, device, not args.no_progress)})
            write_plots(args.out, history)
    finally:
        writer.close()
    torch.save(model.state_dict(), os.path.join(args.out, "model.pt"))

    source = args.infer or os.path.join(root, "JPEGImages")
    if args.infer:
        items = inference_inputs(source, args.infer_limit, args.video_stride)
    else:
        chosen = val_set.image_paths if len(val_set) else train_set.image_paths
        chosen = chosen[: args.infer_limit] if args.infer_limit else chosen
        items = ((os.path.splitext(os.path.basename(f))[0], load_image(f)) for f in chosen)
    history["inference"] = run_inference(
        model, items, classes, os.path.join(args.out, "detections"), device, args.score_threshold, not args.no_progress
    )
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(history, f, indent=1)
    print(
        f"wrote {args.out}: metrics.json, losses.png, map.png, model.pt, tensorboard/, "
        f"detections/ ({len(history['inference'])} images)"
    )
    return history


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage and the error
        return int(exc.code or 0)
    try:
        if args.no_detops:
            run(args)
        else:
            with detops.patch_torchvision(training=True):
                run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
