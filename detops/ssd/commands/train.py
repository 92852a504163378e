"""``detops train``: train an SSD on a VOC-format dataset."""

from __future__ import annotations

import os
import shlex
import signal

from detops.errors import UserError
from detops.ssd.commands.common import open_dataset, resolve_classes, resolve_device
from detops.ssd.trainer import OPTIMIZERS, TrainConfig

_D = TrainConfig()


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="VOC-format root (JPEGImages/, Annotations/, ImageSets/Main/)")
    p.add_argument("--split", default="trainval", help="the training split (ImageSets/Main/<split>.txt)")
    p.add_argument(
        "--val-split",
        default=None,
        help="a split to validate on (loss and --metric) every --val-every epochs; best.pt follows it",
    )
    p.add_argument(
        "--classes",
        default=None,
        help="'voc', 'synthetic' or comma-separated names (background excluded); "
        "default: the names found in the data (or the checkpoint's with --resume)",
    )
    p.add_argument(
        "--backbone",
        default=None,
        choices=["vgg16", "resnet18", "resnet34", "resnet50", "tiny"],
        help="the base network (default vgg16, or the checkpoint's with --resume)",
    )
    p.add_argument("--width", type=int, default=None, help="channel width of the tiny backbone (default 16)")
    p.add_argument(
        "--backbone-weights",
        default=None,
        help="torchvision state dict file for the base (vgg16: fc6/fc7 decimated); never downloaded",
    )
    p.add_argument("--epochs", type=int, default=_D.epochs, help="epochs to train (in all, counting resumed ones)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=_D.batch_size,
        help="images per step per process (under torchrun the global batch is N times this)",
    )
    p.add_argument(
        "--optimizer",
        default=_D.optimizer,
        choices=OPTIMIZERS,
        help="sgd (the paper), adam (L2 weight decay) or adamw (decoupled weight decay)",
    )
    p.add_argument("--lr", type=float, default=_D.lr, help="peak learning rate (biases get 2x with sgd)")
    p.add_argument("--momentum", type=float, default=_D.momentum, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=_D.weight_decay, help="weight decay")
    p.add_argument(
        "--schedule",
        default=_D.schedule,
        choices=["step", "cosine"],
        help="step: x0.1 at 2/3 and 5/6 of all steps; cosine: down to 2%% of the peak",
    )
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=_D.warmup_steps,
        help="linear warm-up steps, capped at a quarter of all steps",
    )
    p.add_argument("--grad-clip", type=float, default=_D.grad_clip, help="max gradient L2 norm; 0 disables")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument(
        "--augment",
        default="ssd",
        choices=["ssd", "flip"],
        help="ssd: the paper's photometric/expand/crop/flip pipeline; flip: resize and flips only",
    )
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=_D.seed, help="seed of initialisation, data order, augmentation")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when a GPU is visible)")
    p.add_argument(
        "--out", default="runs/ssd", help="run directory: last.pt, best.pt, metrics.csv, tensorboard/, lr_find.png"
    )
    p.add_argument("--resume", default=None, help="checkpoint to continue from (e.g. OUT/last.pt)")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=_D.checkpoint_every,
        help="epochs between checkpoints (0: only at the end)",
    )
    p.add_argument(
        "--checkpoint-every-steps",
        type=int,
        default=_D.checkpoint_every_steps,
        help="also write last.pt every N steps (0: never)",
    )
    p.add_argument("--val-every", type=int, default=_D.val_every, help="epochs between validations (with --val-split)")
    from detops.ssd.evaluation import METRICS

    p.add_argument("--metric", default=_D.metric, choices=sorted(METRICS), help="validation metric; best.pt by it")
    p.add_argument("--log-dir", default=None, help="TensorBoard directory (default OUT/tensorboard)")
    p.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard events")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch is printed)")
    p.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="leave out unreadable images and bad annotations with a warning instead of stopping",
    )
    p.add_argument(
        "--find-lr",
        action="store_true",
        help="run the learning-rate range test instead of training: OUT/lr_find.png and a suggestion",
    )
    p.add_argument("--find-lr-steps", type=int, default=100, help="steps of the learning-rate range test")


def _count_objects(dataset) -> int:
    return sum(int(dataset.annotation(i)[1].numel()) for i in range(len(dataset)))


def _resume_command(argv, checkpoint: str) -> str:
    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--resume":
            skip = True
            continue
        if a.startswith("--resume="):
            continue
        args.append(a)
    return shlex.join(["detops", *args, "--resume", checkpoint])


def run(args) -> int:
    import torch

    from detops.ssd.checkpoint import CheckpointError, build_model, check_compatible, load_checkpoint
    from detops.ssd.loggers import CSVLogger, EpochPrinter, ProgressBar, TensorBoardLogger
    from detops.ssd.trainer import Trainer, distributed_env
    from detops.ssd.transforms import FlipTransform, ssd_transforms

    device = resolve_device(args.device)
    if args.epochs < 1 or args.batch_size < 1:
        raise UserError(f"--epochs and --batch-size must be at least 1, got {args.epochs} and {args.batch_size}")
    state = None
    if args.resume:
        try:
            state = load_checkpoint(args.resume)
        except CheckpointError as exc:
            raise UserError(str(exc)) from None
    stored = (state or {}).get("model_args") or {}
    backbone = args.backbone or stored.get("backbone", "vgg16")
    width = args.width if args.width is not None else stored.get("width", 16)
    classes = resolve_classes(args.classes)
    if classes is None and state is not None:
        classes = state.get("class_names")
    torch.manual_seed(args.seed)
    size = 160 if backbone == "tiny" else 300
    train_tf = ssd_transforms(True, size=size) if args.augment == "ssd" else FlipTransform(size)
    dataset = open_dataset(
        args.data,
        args.split,
        transforms=train_tf,
        keep_difficult=False,
        classes=classes,
        skip_corrupt=args.skip_corrupt,
    )
    classes = dataset.classes
    if _count_objects(dataset) == 0:
        raise UserError(
            f"{args.data}: split {args.split!r} has no (non-difficult) object of the classes "
            f"{classes}; check --classes against the names in Annotations/"
        )
    if state is not None:
        try:
            check_compatible(
                state, args.resume, {"backbone": backbone, "width": width, "n_classes": len(classes) + 1}, classes
            )
        except CheckpointError as exc:
            raise UserError(str(exc)) from None
    val_set = None
    if args.val_split:
        val_set = open_dataset(
            args.data,
            args.val_split,
            transforms=ssd_transforms(False, size=size),
            keep_difficult=True,
            classes=classes,
            skip_corrupt=args.skip_corrupt,
        )
    model = build_model(len(classes) + 1, backbone, width, args.backbone_weights)
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
        grad_clip=args.grad_clip or None,
        amp=not args.no_amp,
        num_workers=args.workers,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        checkpoint_every_steps=args.checkpoint_every_steps,
        val_every=args.val_every,
        metric=args.metric,
    )
    is_main = distributed_env()["rank"] == 0
    callbacks = [EpochPrinter()] + ([] if args.no_progress else [ProgressBar()])
    if is_main:
        callbacks.append(CSVLogger(os.path.join(args.out, "metrics.csv")))
        if not args.no_tensorboard:
            callbacks.append(
                TensorBoardLogger(
                    args.log_dir or os.path.join(args.out, "tensorboard"),
                    torch.stack([val_set[i][0] for i in range(min(4, len(val_set)))]) if val_set is not None else None,
                    classes,
                )
            )
    try:
        trainer = Trainer(
            model,
            dataset,
            cfg,
            device=device if distributed_env()["world_size"] == 1 else None,
            checkpoint_dir=args.out,
            class_names=classes,
            val_set=val_set,
            callbacks=callbacks,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if state is not None:
        trainer.load_checkpoint(state)
    try:
        return _train(args, trainer, backbone, classes, len(dataset))
    finally:
        trainer.close()
        if trainer.distributed:
            torch.distributed.destroy_process_group()


def _train(args, trainer, backbone, classes, n_images) -> int:
    cfg = trainer.cfg
    if trainer.is_main:
        where = f"from {args.resume} (epoch {trainer.epoch}, step {trainer.step}) " if args.resume else ""
        print(
            f"training a {backbone} SSD ({trainer.model.n_priors} priors, {len(classes)} classes: "
            f"{', '.join(classes)}) on {n_images} images of {args.data} [{args.split}] {where}on {trainer.device}"
            f"\n  {trainer.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, batch {cfg.batch_size} per process x "
            f"{trainer.env['world_size']} process(es); {cfg.optimizer} lr {cfg.lr:g}, {cfg.schedule} schedule, "
            f"warm-up {trainer.warmup_steps} steps; writing {args.out}",
            flush=True,
        )
    if args.find_lr:
        from detops.ssd.drawing import plot_lr_find

        found = trainer.find_lr(steps=args.find_lr_steps)
        if trainer.is_main:
            os.makedirs(args.out, exist_ok=True)
            path = os.path.join(args.out, "lr_find.png")
            plot_lr_find(found["lrs"], found["losses"], path, found["suggestion"])
            s = found["suggestion"]
            print(
                f"learning-rate range test over {len(found['lrs'])} steps: suggested --lr "
                f"{'none (too few steps)' if s is None else f'{s:.2e}'}; plot {path}"
            )
        return 0
    trainer.fit(handle_signals=True)
    if trainer.stopped:
        if trainer.is_main:
            print(
                f"stopped ({trainer.stop_requested}) at epoch {trainer.epoch} + {trainer.batch_in_epoch} "
                f"batches, step {trainer.step}; checkpoint {trainer.last_path}\nresume with: "
                f"{_resume_command(args.argv, trainer.last_path)}",
                flush=True,
            )
        return 128 + (signal.SIGTERM if trainer.stop_requested == "SIGTERM" else signal.SIGINT)
    if trainer.is_main:
        losses = [h["epoch_loss"] for h in trainer.history if "epoch_loss" in h]
        best = f", best {cfg.metric} {trainer.best:.4f} ({trainer.best_path})" if trainer.best is not None else ""
        print(
            f"done: {trainer.epoch} epochs, {trainer.step} steps, last epoch loss "
            f"{losses[-1] if losses else float('nan'):.4f}; checkpoint {trainer.last_path}{best}",
            flush=True,
        )
    return 0
