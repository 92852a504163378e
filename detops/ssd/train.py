"""Training an SSD: the :class:`Trainer` and the ``detops train`` command.

The defaults are the paper's (and the SSD tutorial's): SGD with lr 1e-3, momentum 0.9, weight decay 5e-4 and
twice the learning rate for biases, decayed by 10x at fixed steps, after a linear warm-up. On CUDA the forward
pass runs under autocast (float16) with a gradient scaler. Progress goes to a tqdm bar; loss, learning rate
and images with the model's detections drawn on them go to TensorBoard. Checkpoints are written atomically
(temporary file, fsync, ``os.replace``) and hold everything needed to continue exactly where training
stopped: model, optimizer, scheduler, scaler, epoch, step and the random number generators.

Multi-process training: launch with ``torchrun --nproc_per_node N -m detops train ...`` (or any launcher that
sets ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``); the Trainer then joins the process group
(NCCL on CUDA, gloo on CPU), wraps the model in DistributedDataParallel and shards the data with a
DistributedSampler. Only rank 0 logs and writes checkpoints.
"""

import math
import os
import random
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from detops.ssd.loss import MultiBoxLoss
from detops.ssd.synthetic import SYNTHETIC_CLASSES
from detops.ssd.transforms import ssd_transforms
from detops.ssd.voc import VOCDataset, VOC_CLASSES, collate_fn


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved in every checkpoint)."""

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "sgd"  # "sgd" (the paper) or "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    bias_lr_factor: float = 2.0  # the paper doubles the learning rate of biases
    schedule: str = "step"  # "step" (the paper: x gamma at each milestone) or "cosine"
    lr_milestones: Sequence[float] = (2 / 3, 5 / 6)  # fractions of all steps (the paper: 80k and 100k of 120k)
    lr_gamma: float = 0.1
    warmup_steps: int = 100
    grad_clip: Optional[float] = 10.0  # max gradient L2 norm; None disables clipping
    amp: bool = True  # autocast + GradScaler, on CUDA only
    num_workers: int = 0
    seed: int = 0
    log_every: int = 10
    image_every: int = 1  # epochs between TensorBoard detection images (0: never)
    checkpoint_every: int = 1  # epochs between checkpoints (0: only at the end)
    progress: bool = True


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD or Adam with two parameter groups: biases at ``bias_lr_factor`` x lr, everything else at lr."""
    biases, others = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (biases if name.endswith(".bias") else others).append(p)
    groups = [{"params": biases, "lr": cfg.lr * cfg.bias_lr_factor}, {"params": others, "lr": cfg.lr}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {cfg.optimizer!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Per-step LambdaLR: linear warm-up over ``warmup_steps``, then the step or cosine schedule."""
    milestones = [int(m * total_steps) if m < 1 else int(m) for m in cfg.lr_milestones]

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
        if cfg.schedule == "cosine":
            t = min(1.0, step / max(1, total_steps))
            return warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))
        return warm * cfg.lr_gamma ** sum(step >= m for m in milestones)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def distributed_env() -> Dict[str, int]:
    """Rank, world size and local rank from the launcher's environment (1 process when unset)."""
    return {"rank": int(os.environ.get("RANK", 0)), "world_size": int(os.environ.get("WORLD_SIZE", 1)),
            "local_rank": int(os.environ.get("LOCAL_RANK", 0))}


def save_atomic(obj, path: str) -> None:
    """torch.save to ``path`` so that a crash leaves the old file or the new one, never half of one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Trains an SSD on a dataset yielding ``(image, boxes, labels, difficulties)`` (see collate_fn).

    Args:
        model: the SSD (its ``priors_cxcy`` feed the default MultiBoxLoss).
        train_set: the training dataset.
        config: a :class:`TrainConfig`.
        criterion: ``criterion(locs, scores, boxes, labels) -> loss``; MultiBoxLoss over the model's priors
            by default.
        device: where to train; CUDA (the local rank's GPU) when available, else CPU.
        log_dir: TensorBoard directory (None: no TensorBoard).
        checkpoint_path: where checkpoints go (None: none are written).
        class_names: names of classes 1..C-1, for the TensorBoard images.
        preview_images: Tensor[N, 3, S, S] drawn with detections in TensorBoard (default: first 4 training images).
        mean, std: the normalisation of the images, to undo it for drawing.
    """

    def __init__(self, model: nn.Module, train_set: Dataset, config: Optional[TrainConfig] = None, *,
                 criterion: Optional[Callable] = None, device=None, log_dir: Optional[str] = None,
                 checkpoint_path: Optional[str] = None, class_names: Optional[Sequence[str]] = None,
                 preview_images: Optional[Tensor] = None, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
        self.cfg = config or TrainConfig()
        self.env = distributed_env()
        self.distributed = self.env["world_size"] > 1
        if device is None:
            device = f"cuda:{self.env['local_rank']}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.distributed and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo", init_method="env://")
        self.is_main = self.env["rank"] == 0
        torch.manual_seed(self.cfg.seed + self.env["rank"])  # different augmentation per rank
        self.model = model.to(self.device)
        self.net = self.model
        if self.distributed:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.criterion = criterion or MultiBoxLoss(self.model.priors_cxcy)
        if isinstance(self.criterion, nn.Module):
            self.criterion.to(self.device)
        self.train_set = train_set
        if self.distributed:
            self.sampler = DistributedSampler(train_set, shuffle=True, seed=self.cfg.seed, drop_last=True)
        else:
            self.sampler_generator = torch.Generator()
            self.sampler = RandomSampler(train_set, generator=self.sampler_generator)
        self.loader = DataLoader(train_set, batch_size=self.cfg.batch_size, sampler=self.sampler,
                                 collate_fn=collate_fn, num_workers=self.cfg.num_workers, drop_last=True,
                                 pin_memory=self.device.type == "cuda", persistent_workers=False)
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise ValueError(f"the training set ({len(train_set)} images) is smaller than one batch "
                             f"({self.cfg.batch_size} x {self.env['world_size']} processes)")
        self.total_steps = self.cfg.epochs * self.steps_per_epoch
        self.optimizer = make_optimizer(self.model, self.cfg)
        self.scheduler = make_scheduler(self.optimizer, self.cfg, self.total_steps)
        self.use_amp = self.cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps completed
        self.history: List[Dict[str, float]] = []  # one entry per logged step (and per epoch, "epoch_loss")
        self.checkpoint_path = checkpoint_path
        self.class_names = list(class_names) if class_names is not None else None
        self.mean, self.std = mean, std
        self.writer = None
        if log_dir is not None and self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir)
        self.preview_images = preview_images
        if self.preview_images is None and self.writer is not None and self.cfg.image_every:
            self.preview_images = torch.stack([train_set[i][0] for i in range(min(4, len(train_set)))])

    # ---------------------------------------------------------------------------------------- one step

    def train_step(self, images: Tensor, boxes: List[Tensor], labels: List[Tensor]) -> float:
        """One optimizer step on one batch; returns the loss (a Python float, one host sync)."""
        images = images.to(self.device, non_blocking=True)
        boxes = [b.to(self.device, non_blocking=True) for b in boxes]
        labels = [l.to(self.device, non_blocking=True) for l in labels]
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
            locs, scores = self.net(images)
        loss = self.criterion(locs.float(), scores.float(), boxes, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return loss.item()

    def _set_epoch(self, epoch: int) -> None:
        # The data order of an epoch depends only on (seed, epoch): a resumed run sees the same batches.
        if self.distributed:
            self.sampler.set_epoch(epoch)
        else:
            self.sampler_generator.manual_seed(self.cfg.seed * 100003 + epoch)

    def train_epoch(self) -> float:
        """One pass over the training set; returns the mean loss."""
        from tqdm.auto import tqdm

        self.net.train()
        self._set_epoch(self.epoch)
        bar = tqdm(self.loader, desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}", leave=False,
                   disable=not (self.cfg.progress and self.is_main), dynamic_ncols=True)
        total, n, t0 = 0.0, 0, time.perf_counter()
        for images, boxes, labels, _ in bar:
            loss = self.train_step(images, boxes, labels)
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at step {self.step}")
            total += loss
            n += 1
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.optimizer.param_groups[1]['lr']:.2e}")
            if self.step % self.cfg.log_every == 0:
                lr = self.optimizer.param_groups[1]["lr"]
                self.history.append({"step": self.step, "loss": loss, "lr": lr})
                if self.writer is not None:
                    self.writer.add_scalar("train/loss", loss, self.step)
                    self.writer.add_scalar("train/lr", lr, self.step)
        self.epoch += 1
        mean = total / max(1, n)
        elapsed = time.perf_counter() - t0
        self.history.append({"step": self.step, "epoch": self.epoch, "epoch_loss": mean})
        if self.writer is not None:
            self.writer.add_scalar("train/epoch_loss", mean, self.epoch)
            self.writer.add_scalar("train/images_per_s",
                                   n * self.cfg.batch_size * self.env["world_size"] / elapsed, self.epoch)
            if self.cfg.image_every and self.epoch % self.cfg.image_every == 0:
                self.log_images()
            self.writer.flush()
        return mean

    def fit(self, epochs: Optional[int] = None, callback: Optional[Callable[["Trainer", float], None]] = None):
        """Trains until ``epochs`` (default ``config.epochs``) epochs are complete, resuming from
        ``self.epoch``; writes a checkpoint every ``checkpoint_every`` epochs and at the end."""
        epochs = self.cfg.epochs if epochs is None else epochs
        while self.epoch < epochs:
            loss = self.train_epoch()
            if callback is not None:
                callback(self, loss)
            every = self.cfg.checkpoint_every
            if self.checkpoint_path and ((every and self.epoch % every == 0) or self.epoch == epochs):
                self.save_checkpoint(self.checkpoint_path)
        if self.writer is not None:
            self.writer.flush()
        return self.history

    # ------------------------------------------------------------------------------------- TensorBoard

    @torch.no_grad()
    def log_images(self) -> None:
        """Writes the preview images with the current model's detections to TensorBoard."""
        if self.writer is None or self.preview_images is None:
            return
        from detops.ssd.detect import draw_detections, denormalize

        was_training = self.model.training
        self.model.eval()
        images = self.preview_images.to(self.device)
        locs, scores = self.model(images)
        boxes, labels, scores = self.model.detect_objects(locs, scores, min_score=0.3, max_overlap=0.45, top_k=20)
        for i in range(images.size(0)):
            pil = denormalize(images[i].cpu(), self.mean, self.std)
            pil = draw_detections(pil, boxes[i].cpu(), labels[i].cpu(), scores[i].cpu(), self.class_names)
            arr = torch.from_numpy(np.array(pil)).permute(2, 0, 1)
            self.writer.add_image(f"detections/{i}", arr, self.epoch)
        self.model.train(was_training)

    # ------------------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "epoch": self.epoch, "step": self.step, "rng": rng_state(), "config": asdict(self.cfg),
                "history": self.history, "model_args": getattr(self.model, "init_args", None),
                "class_names": self.class_names}

    def save_checkpoint(self, path: str) -> None:
        if self.is_main:
            save_atomic(self.state_dict(), path)
        if self.distributed:
            dist.barrier()

    def load_checkpoint(self, path: str) -> None:
        """Restores model, optimizer, scheduler, scaler, counters and RNG states from ``path``."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.history = list(state.get("history", []))
        rng = state["rng"]
        rng["torch"] = rng["torch"].cpu()
        if "cuda" in rng:
            rng["cuda"] = [s.cpu() for s in rng["cuda"]]
        set_rng_state(rng)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --------------------------------------------------------------------------------------------- the CLI


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="VOC-format root (JPEGImages, Annotations, ImageSets/Main)")
    p.add_argument("--split", default="trainval")
    p.add_argument("--classes", default="voc",
                   help="'voc', 'synthetic' or comma-separated class names (background excluded)")
    p.add_argument("--backbone", default="vgg16", choices=["vgg16", "resnet18", "resnet34", "resnet50", "tiny"])
    p.add_argument("--width", type=int, default=16, help="channel width of the tiny backbone")
    p.add_argument("--backbone-weights", default=None,
                   help="torchvision state dict file for the base (vgg16: fc6/fc7 decimated); never downloaded")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--momentum", type=float, default=TrainConfig.momentum)
    p.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay)
    p.add_argument("--schedule", default="step", choices=["step", "cosine"])
    p.add_argument("--warmup-steps", type=int, default=TrainConfig.warmup_steps)
    p.add_argument("--grad-clip", type=float, default=TrainConfig.grad_clip, help="0 disables clipping")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--augment", default="ssd", choices=["ssd", "flip"],
                   help="'ssd': the paper's photometric/expand/crop/flip pipeline; 'flip': flips only")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--checkpoint", default="ssd_checkpoint.pt", help="where checkpoints are written")
    p.add_argument("--resume", default=None, help="checkpoint to continue from")
    p.add_argument("--log-dir", default=None, help="TensorBoard directory")
    p.add_argument("--no-progress", action="store_true")


def resolve_classes(spec: str) -> List[str]:
    if spec == "voc":
        return list(VOC_CLASSES)
    if spec == "synthetic":
        return list(SYNTHETIC_CLASSES)
    return [c.strip() for c in spec.split(",") if c.strip()]


def build_model(n_classes: int, backbone: str, width: int = 16, backbone_weights: Optional[str] = None):
    from detops.ssd.model import SSD300

    model = SSD300(n_classes, backbone=backbone, backbone_weights=backbone_weights, width=width)
    model.init_args = {"n_classes": n_classes, "backbone": backbone, "width": width}
    return model


def load_model(checkpoint: str, device="cpu"):
    """The model stored in a checkpoint written by the Trainer, in eval mode; returns (model, class_names)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    args = state.get("model_args")
    if args is None:
        raise ValueError(f"{checkpoint} has no model_args: not written by detops.ssd.train.Trainer")
    model = build_model(**args)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state.get("class_names")


def run(args) -> Trainer:
    """``detops train``."""
    torch.manual_seed(args.seed)
    classes = resolve_classes(args.classes)
    model = build_model(len(classes) + 1, args.backbone, args.width, args.backbone_weights)
    transforms = (ssd_transforms(True, size=model.input_size) if args.augment == "ssd"
                  else _flip_transforms(model.input_size))
    dataset = VOCDataset(args.data, args.split, transforms=transforms, keep_difficult=True, classes=classes)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                      momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule,
                      warmup_steps=args.warmup_steps, grad_clip=args.grad_clip or None, amp=not args.no_amp,
                      num_workers=args.workers, seed=args.seed, progress=not args.no_progress)
    trainer = Trainer(model, dataset, cfg, device=args.device, log_dir=args.log_dir,
                      checkpoint_path=args.checkpoint, class_names=classes)
    if args.resume:
        trainer.load_checkpoint(args.resume)
    if trainer.is_main:
        print(f"training {args.backbone} SSD ({model.n_priors} priors, {len(classes)} classes) on "
              f"{len(dataset)} images, {trainer.env['world_size']} process(es), device {trainer.device}")
    trainer.fit()
    if trainer.is_main:
        last = [h["epoch_loss"] for h in trainer.history if "epoch_loss" in h]
        print(f"done: {trainer.epoch} epochs, {trainer.step} steps, last epoch loss {last[-1]:.4f}; "
              f"checkpoint {args.checkpoint}")
    trainer.close()
    if trainer.distributed:
        dist.destroy_process_group()
    return trainer


def _flip_transforms(size: int):
    """Resize + random horizontal flip (a light augmentation for short runs)."""
    resize = ssd_transforms(False, size=size)

    def t(image, boxes, labels, difficulties):
        x, b, l, d = resize(image, boxes, labels, difficulties)
        if random.random() < 0.5:
            x = x.flip(-1)
            b = torch.stack([1 - b[:, 2], b[:, 1], 1 - b[:, 0], b[:, 3]], dim=1)
        return x, b, l, d

    return t
