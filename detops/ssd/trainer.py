"""Training an SSD: :class:`TrainConfig` and the :class:`Trainer`.

The defaults are the paper's: SGD with lr 1e-3, momentum 0.9, weight decay 5e-4 and twice the learning rate
for biases, decayed by 10x at 2/3 and 5/6 of all steps, after a linear warm-up (at most a quarter of the run,
so short runs reach the requested rate). On CUDA the forward pass runs under autocast (float16) with a
gradient scaler. What the Trainer reports goes through the callbacks it is given (:mod:`detops.ssd.loggers`).

Checkpoints (:mod:`detops.ssd.checkpoint`) are atomic and hold everything needed to continue exactly where
training stopped, mid-epoch included: resuming from the checkpoint of step k gives, with the same seed and
``num_workers=0``, the same losses from step k + 1 on as the uninterrupted run (with workers the data order
is the same, the augmentation draws may differ). ``last.pt`` is written every ``checkpoint_every`` epochs,
every ``checkpoint_every_steps`` steps, at the end and when a stop is requested (Ctrl-C, SIGTERM);
``best.pt`` whenever a validation improves on the best value of the metric.

Multi-process training: launch with ``torchrun --nproc_per_node N -m detops train ...`` (or any launcher that
sets ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``); the Trainer then joins the process group (NCCL on
CUDA, gloo on CPU), wraps the model in DistributedDataParallel and shards the data with a DistributedSampler.
``batch_size`` is per process. Only rank 0 reports and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import signal
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler

from detops.ssd.checkpoint import load_checkpoint, rng_state, save_atomic, set_rng_state
from detops.ssd.loss import MultiBoxLoss
from detops.ssd.voc import collate_fn

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved in every checkpoint)."""

    epochs: int = 10
    batch_size: int = 32  # per process
    optimizer: str = "sgd"  # "sgd" (the paper), "adam" or "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    bias_lr_factor: float = 2.0  # the paper doubles the learning rate of biases
    schedule: str = "step"  # "step" (the paper: x gamma at each milestone) or "cosine"
    lr_milestones: Sequence[float] = (2 / 3, 5 / 6)  # fractions of all steps (the paper: 80k and 100k of 120k)
    lr_gamma: float = 0.1
    warmup_steps: int = 100  # capped at a quarter of all steps
    grad_clip: Optional[float] = 10.0  # max gradient L2 norm; None disables clipping
    amp: bool = True  # autocast + GradScaler, on CUDA only
    num_workers: int = 0
    seed: int = 0
    checkpoint_every: int = 1  # epochs between checkpoints (0: only at the end)
    checkpoint_every_steps: int = 0  # also every N optimizer steps (0: never)
    val_every: int = 1  # epochs between validations, when a validation set is given (0: only at the end)
    metric: str = "voc07"  # the metric best.pt is chosen by (a name in detops.ssd.evaluation.METRICS)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD, Adam or AdamW with two parameter groups: biases at ``bias_lr_factor`` x lr, the rest at lr.
    Weight decay is L2 in the loss for SGD and Adam, decoupled for AdamW."""
    biases, others = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (biases if name.endswith(".bias") else others).append(p)
    groups = [{"params": biases, "lr": cfg.lr * cfg.bias_lr_factor}, {"params": others, "lr": cfg.lr}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {cfg.optimizer!r}")


def effective_warmup(cfg: TrainConfig, total_steps: int) -> int:
    """The warm-up length used: ``warmup_steps``, capped at a quarter of the run."""
    return max(0, min(int(cfg.warmup_steps), total_steps // 4))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Per-step LambdaLR: linear warm-up over :func:`effective_warmup` steps, then the step or cosine schedule."""
    milestones = [int(m * total_steps) if m < 1 else int(m) for m in cfg.lr_milestones]
    warmup = effective_warmup(cfg, total_steps)

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        if cfg.schedule == "cosine":
            t = min(1.0, step / max(1, total_steps))
            return warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))
        return warm * cfg.lr_gamma ** sum(step >= m for m in milestones)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def distributed_env() -> Dict[str, int]:
    """Rank, world size and local rank from the launcher's environment (1 process when unset)."""
    return {
        "rank": int(os.environ.get("RANK", 0)),
        "world_size": int(os.environ.get("WORLD_SIZE", 1)),
        "local_rank": int(os.environ.get("LOCAL_RANK", 0)),
    }


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C and SIGTERM to the training process.

    A terminal's Ctrl-C, and many schedulers' SIGTERM, reach the whole process group. A worker that dies of
    it (torch's worker handler exits on a SIGTERM from anyone but its parent) makes the loader raise "worker
    exited unexpectedly" in the middle of the stop, at whatever line the training process is on (torch
    raises it from its SIGCHLD handler). The training process stops at the end of its step and shuts the
    workers down itself; a worker whose parent is gone exits by itself.

    The worker was forked with the stop signals blocked (:func:`_worker_batches`), so one sent while it
    started is still pending: ignored first, then unblocked, it is discarded.
    """
    for s in _STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


@contextlib.contextmanager
def _worker_batches(loader: DataLoader):
    """``iter(loader)``, its workers started with the stop signals blocked, and shut down on the way out.

    Blocked: a forked worker inherits the signal mask (Linux's default "fork" start method; a "forkserver"
    worker does not, and keeps the short window), so there is no moment between the fork and
    :func:`_ignore_stop_signals` at which a stop signal can kill it; the training process receives a
    signal that came meanwhile as soon as the workers are started. Shut down explicitly: the workers
    ignore SIGTERM, which is also how multiprocessing stops leftover children at exit, so an iterator kept
    alive by an exception's traceback would leave the process waiting for them forever.
    """
    if loader.num_workers == 0:
        yield iter(loader)
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        batches = iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    try:
        yield batches
    finally:
        batches._shutdown_workers()  # what the iterator's __del__ does; idempotent


class _SkippingSampler(Sampler):
    """Another sampler's order with its first ``skip`` indices left out (resuming inside an epoch)."""

    def __init__(self, inner: Sampler):
        self.inner = inner
        self.skip = 0

    def __iter__(self):
        return itertools.islice(iter(self.inner), self.skip, None)

    def __len__(self):
        return max(0, len(self.inner) - self.skip)


class Trainer:
    """Trains an SSD on a dataset yielding ``(image, boxes, labels, difficulties)`` (see ``collate_fn``).

    Args:
        model: the SSD (its ``priors_cxcy`` feed the default MultiBoxLoss; its ``init_args`` go in checkpoints).
        train_set: the training dataset.
        config: a :class:`TrainConfig`.
        criterion: ``criterion(locs, scores, boxes, labels) -> loss``; MultiBoxLoss over the model's priors
            by default.
        device: where to train; CUDA (the local rank's GPU) when available, else CPU.
        checkpoint_dir: where ``last.pt`` and ``best.pt`` go (None: no checkpoints).
        class_names: names of classes 1..C-1 (stored in checkpoints).
        val_set: a validation dataset (eval transforms, difficult objects kept); validated every ``val_every``
            epochs and at the end: loss and the metric.
        metric: the metric object for validation (``update``/``compute``/``reset``, see
            :mod:`detops.ssd.evaluation`); default the one named by ``config.metric``.
        callbacks: :class:`~detops.ssd.loggers.TrainerCallback` objects (rank 0 only calls them).
    """

    def __init__(
        self,
        model: nn.Module,
        train_set: Dataset,
        config: Optional[TrainConfig] = None,
        *,
        criterion: Optional[Callable] = None,
        device=None,
        checkpoint_dir: Optional[str] = None,
        class_names: Optional[Sequence[str]] = None,
        val_set: Optional[Dataset] = None,
        metric=None,
        callbacks: Sequence = (),
    ):
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
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.criterion = criterion or MultiBoxLoss(self.model.priors_cxcy)
        if isinstance(self.criterion, nn.Module):
            self.criterion.to(self.device)
        self.train_set = train_set
        if len(train_set) == 0:
            raise ValueError("the training set is empty")
        if self.distributed:
            inner = DistributedSampler(train_set, shuffle=True, seed=self.cfg.seed, drop_last=True)
        else:
            self.sampler_generator = torch.Generator()
            inner = RandomSampler(train_set, generator=self.sampler_generator)
        self.sampler = _SkippingSampler(inner)
        # The loader draws its workers' base seed from its own generator, not the global one, so that the
        # global generator (the augmentation's) advances the same way in a resumed run.
        self.loader_generator = torch.Generator()
        self.loader = DataLoader(
            train_set,
            batch_size=self.cfg.batch_size,
            sampler=self.sampler,
            collate_fn=collate_fn,
            num_workers=self.cfg.num_workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            generator=self.loader_generator,
            worker_init_fn=_ignore_stop_signals,
        )
        self.steps_per_epoch = len(inner) // self.cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the training set ({len(train_set)} images) is smaller than one batch "
                f"({self.cfg.batch_size} per process x {self.env['world_size']} processes)"
            )
        self.total_steps = self.cfg.epochs * self.steps_per_epoch
        self.warmup_steps = effective_warmup(self.cfg, self.total_steps)
        self.optimizer = make_optimizer(self.model, self.cfg)
        self.scheduler = make_scheduler(self.optimizer, self.cfg, self.total_steps)
        self.use_amp = self.cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps completed
        self.batch_in_epoch = 0  # batches of the current epoch done (non-zero only inside an epoch)
        self._epoch_loss = [0.0, 0]  # sum and count of the current epoch's losses
        self.best = None  # best validation value of the metric so far
        self.history: List[Dict[str, float]] = []  # per step {"step", "loss", "lr"}, per epoch, per validation
        self.checkpoint_dir = checkpoint_dir
        self.class_names = list(class_names) if class_names is not None else None
        self.val_set = val_set
        self.metric = metric
        if self.metric is None and val_set is not None:
            from detops.ssd.evaluation import make_metric

            self.metric = make_metric(self.cfg.metric, self.model.n_classes)
        self.callbacks = list(callbacks) if self.is_main else []
        self.stop_requested: Optional[str] = None  # the reason, once a stop was requested
        self.stopped = False  # fit() returned early because of a stop request

    @property
    def last_path(self) -> Optional[str]:
        return os.path.join(self.checkpoint_dir, "last.pt") if self.checkpoint_dir else None

    @property
    def best_path(self) -> Optional[str]:
        return os.path.join(self.checkpoint_dir, "best.pt") if self.checkpoint_dir else None

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[-1]["lr"]

    def _emit(self, name: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, name)(self, *args)

    # ---------------------------------------------------------------------------------------- one step

    def train_step(self, images: Tensor, boxes: List[Tensor], labels: List[Tensor]) -> float:
        """One optimizer step on one batch; returns the loss (a Python float, one host sync)."""
        images = images.to(self.device, non_blocking=True)
        boxes = [b.to(self.device, non_blocking=True) for b in boxes]
        labels = [lab.to(self.device, non_blocking=True) for lab in labels]
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
            self.sampler.inner.set_epoch(epoch)
        else:
            self.sampler_generator.manual_seed(self.cfg.seed * 100003 + epoch)
        self.loader_generator.manual_seed(self.cfg.seed * 100003 + epoch + 7919)
        self.sampler.skip = self.batch_in_epoch * self.cfg.batch_size

    def train_epoch(self) -> Optional[float]:
        """Trains the rest of the current epoch; returns its mean loss, or None when a stop request ended it
        early (the position inside the epoch is kept, so a checkpoint taken then resumes there)."""
        self.net.train()
        self._set_epoch(self.epoch)
        self._emit("on_epoch_start")
        t0 = time.perf_counter()
        done = 0
        with _worker_batches(self.loader) as batches:
            for images, boxes, labels, _ in batches:
                loss = self.train_step(images, boxes, labels)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss} at step {self.step}")
                self.batch_in_epoch += 1
                self._epoch_loss[0] += loss
                self._epoch_loss[1] += 1
                done += 1
                lr = self.lr
                self.history.append({"step": self.step, "loss": loss, "lr": lr})
                self._emit("on_step", loss, lr)
                every = self.cfg.checkpoint_every_steps
                if every and self.step % every == 0 and self.last_path:
                    self.save_checkpoint(self.last_path)
                if self._agreed_stop():
                    return None
        seconds = time.perf_counter() - t0
        mean = self._epoch_loss[0] / max(1, self._epoch_loss[1])
        self.epoch += 1
        self.batch_in_epoch = 0
        self._epoch_loss = [0.0, 0]
        stats = {
            "epoch": self.epoch,
            "step": self.step,
            "loss": mean,
            "lr": self.lr,
            "seconds": seconds,
            "images_per_s": done * self.cfg.batch_size * self.env["world_size"] / max(seconds, 1e-9),
        }
        self.history.append({"step": self.step, "epoch": self.epoch, "epoch_loss": mean})
        self._emit("on_epoch_end", stats)
        return mean

    def _agreed_stop(self) -> bool:
        """Whether to stop now: a stop request on any process stops all (they must checkpoint together)."""
        flag = self.stop_requested is not None
        if self.distributed:
            t = torch.tensor([int(flag)], device=self.device if self.device.type == "cuda" else "cpu")
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
            if flag and self.stop_requested is None:
                self.stop_requested = "another process"
        return flag

    # -------------------------------------------------------------------------------------- validation

    def validate(self) -> Dict:
        """Loss and metric on the validation set (rank 0 only; other ranks return {}); updates ``best.pt``."""
        if self.val_set is None or not self.is_main:
            return {}
        from detops.ssd.evaluation import evaluate

        result = evaluate(
            self.model,
            self.val_set,
            self.metric,
            batch_size=self.cfg.batch_size,
            device=self.device,
            criterion=self.criterion,
        )
        result = {"epoch": self.epoch, "step": self.step, "val_loss": result.pop("loss"), **result}
        self.history.append(
            {
                "step": self.step,
                "epoch": self.epoch,
                "val_loss": result["val_loss"],
                "map": float(result.get("map", math.nan)),
            }
        )
        value = float(result.get("map", math.nan))
        if math.isfinite(value) and (self.best is None or value > self.best):
            self.best = value
            if self.best_path:
                save_atomic(self.state_dict(), self.best_path)
        self._emit("on_validation", result)
        return result

    # ------------------------------------------------------------------------------------------ fit

    def fit(self, epochs: Optional[int] = None, handle_signals: bool = False):
        """Trains until ``epochs`` (default ``config.epochs``) epochs are complete, from where the Trainer is
        (a loaded checkpoint's position); validates and checkpoints as configured.

        With ``handle_signals``, Ctrl-C (SIGINT) and SIGTERM request a stop: the current step finishes,
        ``last.pt`` is written and fit returns with :attr:`stopped` set. A second Ctrl-C interrupts at once.
        Returns :attr:`history`.
        """
        epochs = self.cfg.epochs if epochs is None else epochs
        self.stopped = False
        with self._signal_handlers() if handle_signals else contextlib.nullcontext():
            self._emit("on_fit_start")
            try:
                while self.epoch < epochs:
                    if self.train_epoch() is None:
                        self.stopped = True
                        break
                    last = self.epoch == epochs
                    if self.val_set is not None and (
                        (self.cfg.val_every and self.epoch % self.cfg.val_every == 0) or last
                    ):
                        self.validate()
                    every = self.cfg.checkpoint_every
                    if self.last_path and ((every and self.epoch % every == 0) or last):
                        self.save_checkpoint(self.last_path)
                    if self._agreed_stop():
                        self.stopped = True
                        break
                if self.stopped and self.last_path:
                    self.save_checkpoint(self.last_path)
            finally:
                self._emit("on_fit_end")
        return self.history

    @contextlib.contextmanager
    def _signal_handlers(self):
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request(signum, frame):
            if self.stop_requested is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop_requested = signal.Signals(signum).name

        previous = {s: signal.signal(s, request) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    # -------------------------------------------------------------------------------- learning rate finder

    def find_lr(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 1.0,
        steps: int = 100,
        smoothing: float = 0.98,
        diverge: float = 4.0,
    ) -> Dict:
        """The learning-rate range test: trains ``steps`` steps with the learning rate growing geometrically
        from ``start_lr`` to ``end_lr`` (stopping early once the smoothed loss exceeds ``diverge`` x its best),
        then puts the model, optimizer, scheduler and random generators back as they were.

        Returns:
            dict: ``lrs`` and ``losses`` (the exponentially smoothed, bias-corrected loss at each step) and
            ``suggestion``: the learning rate where the smoothed loss falls fastest (None with fewer than 3
            points).
        """
        if not (0 < start_lr < end_lr) or steps < 2:
            raise ValueError(f"need 0 < start_lr < end_lr and steps >= 2, got {start_lr}, {end_lr}, {steps}")
        saved = {
            k: v for k, v in self.state_dict().items() if k in ("model", "optimizer", "scheduler", "scaler", "rng")
        }
        saved = _clone(saved)
        counters = (self.epoch, self.step, self.batch_in_epoch, list(self._epoch_loss), list(self.history))
        factors = [g["lr"] for g in self.optimizer.param_groups]
        base = self.cfg.lr
        ratio = (end_lr / start_lr) ** (1 / (steps - 1))
        lrs, losses, avg, best = [], [], 0.0, math.inf
        self.net.train()
        self._set_epoch(0)
        stream = self._batches_forever()
        try:
            for i in range(steps):
                lr = start_lr * ratio**i
                for g, f in zip(self.optimizer.param_groups, factors):
                    g["lr"] = lr * f / base
                images, boxes, labels, _ = next(stream)
                loss = self._plain_step(images, boxes, labels)
                if not math.isfinite(loss):
                    break
                avg = smoothing * avg + (1 - smoothing) * loss
                smoothed = avg / (1 - smoothing ** (i + 1))
                lrs.append(lr)
                losses.append(smoothed)
                best = min(best, smoothed)
                if smoothed > diverge * best:
                    break
        finally:
            stream.close()  # shuts the loader's workers down now, whatever ended the search
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            self.scaler.load_state_dict(saved["scaler"])
            set_rng_state(saved["rng"])
            self.epoch, self.step, self.batch_in_epoch, self._epoch_loss, self.history = counters
        suggestion = None
        if len(losses) >= 3:
            logs = [math.log(v) for v in lrs]
            slopes = [(losses[i + 1] - losses[i - 1]) / (logs[i + 1] - logs[i - 1]) for i in range(1, len(lrs) - 1)]
            suggestion = lrs[1 + min(range(len(slopes)), key=slopes.__getitem__)]
        return {"lrs": lrs, "losses": losses, "suggestion": suggestion}

    def _batches_forever(self):
        """The loader's batches, epoch after epoch (the loader has at least one batch: see __init__)."""
        while True:
            with _worker_batches(self.loader) as batches:
                yield from batches

    def _plain_step(self, images, boxes, labels) -> float:
        """An optimizer step that leaves the scheduler and counters alone (for :meth:`find_lr`)."""
        images = images.to(self.device)
        boxes = [b.to(self.device) for b in boxes]
        labels = [lab.to(self.device) for lab in labels]
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
            locs, scores = self.net(images)
        loss = self.criterion(locs.float(), scores.float(), boxes, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.item()

    # ------------------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict:
        """Everything a checkpoint holds (tensors and plain values only)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "epoch_loss": list(self._epoch_loss),
            "best": self.best,
            "rng": rng_state(),
            "config": _plain(asdict(self.cfg)),
            "history": list(self.history),
            "model_args": dict(getattr(self.model, "init_args", None) or {}) or None,
            "class_names": self.class_names,
        }

    def save_checkpoint(self, path: str) -> None:
        """Writes :meth:`state_dict` atomically to ``path`` (rank 0; all ranks wait for it)."""
        if self.is_main:
            save_atomic(self.state_dict(), path)
        if self.distributed:
            dist.barrier()

    def load_checkpoint(self, path_or_state) -> None:
        """Restores model, optimizer, scheduler, scaler, position (mid-epoch included), best value, history
        and random generators from a checkpoint path or dict."""
        state = load_checkpoint(path_or_state) if isinstance(path_or_state, str) else path_or_state
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.batch_in_epoch = state.get("batch_in_epoch", 0)
        self._epoch_loss = list(state.get("epoch_loss", [0.0, 0]))
        self.best = state.get("best")
        self.history = list(state.get("history", []))
        set_rng_state(state["rng"])

    def close(self) -> None:
        """Closes the callbacks (TensorBoard files, CSV)."""
        for cb in self.callbacks:
            cb.close()


def _plain(value):
    """Tuples to lists, recursively (checkpoints hold plain values)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _clone(value):
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value
