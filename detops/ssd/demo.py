"""``detops demo``: the whole pipeline on a CPU in a few minutes.

1. generate a synthetic VOC-format dataset (shapes on noisy backgrounds),
2. train the small SSD (``SSD300(n, backbone="tiny")``, 160x160 input) on the CPU,
3. evaluate it on the held-out test images (VOC07 11-point and all-point mAP, per-class AP table),
4. draw its detections on held-out images and plot the loss curve,
5. print where everything went.
"""

import json
import os
import time

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from detops.ssd.synthetic import SYNTHETIC_CLASSES, generate_voc_dataset
from detops.ssd.voc import VOCDataset
from detops.ssd.detect import MEAN, STD


class CachedDataset(Dataset):
    """Decodes a dataset once and serves it from memory, with cheap augmentation for training: horizontal
    flip and brightness/contrast jitter (fast enough that a 2-core CPU spends its time in the network)."""

    def __init__(self, dataset: Dataset, size: int, augment: bool = False, mean=MEAN, std=STD):
        # The dataset gives [0, 1] images at their own size (transforms=None); resize and normalise once.
        # Stored as uint8 (2000 images at 160x160: 150 MB), normalised when served.
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
        self.items = []
        for i in range(len(dataset)):
            x, boxes, labels, diff = dataset[i]
            if x.shape[-2:] != (size, size):
                x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False)[0]
            self.items.append(((x * 255).round().clamp(0, 255).to(torch.uint8), boxes, labels, diff))
        self.augment = augment

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        x, boxes, labels, diff = self.items[i]
        x = (x.float() / 255 - self.mean) / self.std
        if self.augment:
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
                boxes = torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], dim=1)
            if torch.rand(()) < 0.5:
                x = x * (0.8 + 0.4 * torch.rand(())) + 0.4 * (torch.rand(()) - 0.5)
        return x, boxes, labels, diff


def plot_loss(history, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history if "loss" in h]
    losses = [h["loss"] for h in history if "loss" in h]
    ep_steps = [h["step"] for h in history if "epoch_loss" in h]
    ep_losses = [h["epoch_loss"] for h in history if "epoch_loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, lw=0.8, alpha=0.6, label="step loss")
    ax.plot(ep_steps, ep_losses, "o-", label="epoch mean")
    ax.set_xlabel("step")
    ax.set_ylabel("MultiBox loss")
    ax.set_yscale("log")
    ax.set_title("SSD (tiny) on synthetic shapes")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def add_arguments(p) -> None:
    p.add_argument("--out", default="detops_demo", help="directory for data, checkpoint, plots, TensorBoard")
    p.add_argument("--train-images", type=int, default=2000)
    p.add_argument("--test-images", type=int, default=300)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--n-draw", type=int, default=8, help="held-out images to draw detections on")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> dict:
    from detops.ssd.detect import denormalize, draw_detections
    from detops.ssd.evaluate import evaluate, format_table
    from detops.ssd.train import TrainConfig, Trainer, build_model

    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = os.path.abspath(args.out)
    data = os.path.join(out, "data")
    os.makedirs(out, exist_ok=True)
    classes = list(SYNTHETIC_CLASSES)
    size = 160

    print(f"[1/5] generating {args.train_images} training + {args.test_images} held-out images in {data}")
    generate_voc_dataset(data, n_train=args.train_images, n_test=args.test_images, image_size=size,
                               seed=args.seed, classes=classes)
    train_set = CachedDataset(VOCDataset(data, "train", classes=classes), size, augment=True)
    test_set = CachedDataset(VOCDataset(data, "test", keep_difficult=True, classes=classes), size)

    model = build_model(len(classes) + 1, "tiny", width=args.width)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer="adam", lr=args.lr,
                      weight_decay=1e-4, bias_lr_factor=1.0, schedule="cosine",
                      warmup_steps=min(100, len(train_set) // args.batch_size), grad_clip=10.0,
                      seed=args.seed, log_every=5, image_every=max(1, args.epochs // 4), checkpoint_every=0,
                      progress=not args.no_progress)
    trainer = Trainer(model, train_set, cfg, device="cpu", log_dir=os.path.join(out, "tensorboard"),
                      checkpoint_path=os.path.join(out, "checkpoint.pt"), class_names=classes,
                      preview_images=torch.stack([test_set[i][0] for i in range(min(4, len(test_set)))]))
    print(f"[2/5] training the tiny SSD ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
          f"{model.n_priors} priors) for {args.epochs} epochs on {torch.get_num_threads()} CPU thread(s)")
    t0 = time.perf_counter()

    def report(tr, loss):
        print(f"      epoch {tr.epoch:3d}/{args.epochs}  loss {loss:.4f}  ({time.perf_counter() - t0:.0f} s)")

    trainer.fit(callback=report)
    trainer.close()
    train_s = time.perf_counter() - t0

    print("[3/5] evaluating on the held-out images")
    result = evaluate(model, test_set, batch_size=64)
    print(format_table(result, classes))

    print("[4/5] drawing detections and the loss curve")
    det_dir = os.path.join(out, "detections")
    os.makedirs(det_dir, exist_ok=True)
    model.eval()
    with torch.no_grad():
        images = torch.stack([test_set[i][0] for i in range(min(args.n_draw, len(test_set)))])
        locs, scores = model(images)
        boxes, labels, scores = model.detect_objects(locs, scores, min_score=0.3, max_overlap=0.45, top_k=20)
    drawn = []
    for i in range(images.size(0)):
        path = os.path.join(det_dir, f"test_{i:02d}.png")
        draw_detections(denormalize(images[i]).resize((320, 320)), boxes[i], labels[i], scores[i],
                        classes).save(path)
        drawn.append(path)
    curve = os.path.join(out, "loss_curve.png")
    plot_loss(trainer.history, curve)

    total_s = time.perf_counter() - t_start
    summary = {"map_voc07": result["map_voc07"], "map_area": result["map_area"], "train_seconds": train_s,
               "total_seconds": total_s, "epochs": args.epochs, "train_images": len(train_set),
               "test_images": len(test_set), "eval_images_per_s": result["images_per_s"]}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("[5/5] done")
    print(f"  mAP (VOC07 11-point) on {len(test_set)} held-out images: {result['map_voc07']:.3f}"
          f"   (all-point: {result['map_area']:.3f})")
    print(f"  training {train_s:.0f} s, total {total_s:.0f} s")
    print(f"  dataset      {data}")
    print(f"  checkpoint   {os.path.join(out, 'checkpoint.pt')}")
    print(f"  detections   {det_dir}/test_*.png")
    print(f"  loss curve   {curve}")
    print(f"  TensorBoard  tensorboard --logdir {os.path.join(out, 'tensorboard')}")
    print(f"  results      {os.path.join(out, 'results.json')}")
    return summary
