"""SSD training: loss goes down, the schedule, checkpoint resume is exact, DDP with 2 gloo processes, validation,
the learning-rate finder. The command line is tested in test_cli.py."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from detops.ssd.cached import CachedDataset
from detops.ssd.checkpoint import build_model, save_atomic
from detops.ssd.synthetic import generate_voc_dataset
from detops.ssd.loggers import CSVLogger, TrainerCallback
from detops.ssd.trainer import TrainConfig, Trainer
from detops.ssd.transforms import ssd_transforms
from detops.ssd.voc import VOCDataset

CLASSES = ["circle", "square", "triangle", "cross"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic"))
    generate_voc_dataset(root, n_train=16, n_test=4, image_size=96, seed=0, classes=CLASSES)
    return root


@pytest.fixture(scope="module")
def cached(data):
    torch.manual_seed(0)
    return CachedDataset(VOCDataset(data, "train", classes=CLASSES), 160, augment=True)


def _cfg(**kw):
    base = dict(
        epochs=2,
        batch_size=8,
        optimizer="adamw",
        lr=2e-3,
        warmup_steps=2,
        schedule="cosine",
        checkpoint_every=1,
        seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model(len(CLASSES) + 1, "tiny", width=8)


def test_tiny_training_loss_goes_down(cached):
    trainer = Trainer(_model(), cached, _cfg(epochs=8), device="cpu")
    trainer.fit()
    losses = [h["epoch_loss"] for h in trainer.history if "epoch_loss" in h]
    assert len(losses) == 8 and trainer.step == 16
    assert losses[-1] < 0.6 * losses[0], losses


def test_paper_sgd_groups_and_schedule(cached):
    cfg = TrainConfig(epochs=4, batch_size=8, warmup_steps=2, lr_milestones=(0.5,))
    trainer = Trainer(_model(), cached, cfg, device="cpu")
    opt = trainer.optimizer
    assert isinstance(opt, torch.optim.SGD)
    biases, weights = opt.param_groups
    assert biases["initial_lr"] == pytest.approx(2e-3) and weights["initial_lr"] == pytest.approx(1e-3)
    assert weights["momentum"] == 0.9 and weights["weight_decay"] == 5e-4
    lrs = []
    for _ in range(trainer.total_steps):
        lrs.append(opt.param_groups[1]["lr"])
        trainer.scheduler.step()
    assert lrs[0] == pytest.approx(5e-4) and lrs[1] == pytest.approx(1e-3)  # warm-up
    assert lrs[3] == pytest.approx(1e-3) and lrs[4] == pytest.approx(1e-4)  # x0.1 at half of the 8 steps


def test_short_runs_reach_the_requested_lr(cached):
    # 2 steps per epoch x 7 epochs = 14 steps with the default 100 warm-up steps: capped at a quarter (3).
    trainer = Trainer(_model(), cached, TrainConfig(epochs=7, batch_size=8), device="cpu")
    assert trainer.warmup_steps == 3
    lrs = []
    for _ in range(trainer.total_steps):
        lrs.append(trainer.optimizer.param_groups[1]["lr"])
        trainer.scheduler.step()
    assert max(lrs) == pytest.approx(1e-3)


def test_optimizer_names_build_what_they_say(cached):
    for name, cls in (("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        assert type(Trainer(_model(), cached, _cfg(optimizer=name), device="cpu").optimizer) is cls


def test_checkpoint_resume_is_exact(cached, tmp_path):
    ckpt = str(tmp_path / "last.pt")
    after_one = str(tmp_path / "after_one.pt")

    class KeepFirst(TrainerCallback):
        def on_epoch_end(self, trainer, stats):
            if trainer.epoch == 1:
                trainer.save_checkpoint(after_one)

    straight = Trainer(
        _model(), cached, _cfg(epochs=3), device="cpu", checkpoint_dir=str(tmp_path), callbacks=[KeepFirst()]
    )
    straight.fit()

    resumed = Trainer(_model(seed=123), cached, _cfg(epochs=3), device="cpu")  # different init on purpose
    resumed.load_checkpoint(after_one)
    assert resumed.epoch == 1 and resumed.step == 2
    resumed.fit()
    assert resumed.step == straight.step == 6
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, sb = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for k in sa:
        assert torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"])
    assert straight.scheduler.state_dict()["last_epoch"] == resumed.scheduler.state_dict()["last_epoch"]
    # the file written at the end holds the final state, and loads with torch.load's default weights_only=True
    assert torch.load(ckpt)["step"] == 6


def test_save_atomic_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "sub" / "x.pt")
    save_atomic({"a": torch.arange(3)}, path)
    save_atomic({"a": torch.arange(4)}, path)
    assert torch.load(path)["a"].tolist() == [0, 1, 2, 3]
    assert os.listdir(tmp_path / "sub") == ["x.pt"]


# ----------------------------------------------------------------------------------------------- DDP


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, data, out):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    dataset = VOCDataset(data, "train", transforms=ssd_transforms(False, size=160), classes=CLASSES)
    trainer = Trainer(_model(seed=rank), dataset, _cfg(epochs=1, batch_size=4), device="cpu", checkpoint_dir=out)
    assert trainer.distributed and trainer.steps_per_epoch == 2  # 16 images / 2 ranks / batch 4
    trainer.fit()
    torch.save({k: v for k, v in trainer.model.named_parameters()}, os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_ddp_two_gloo_processes(data, tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), data, str(tmp_path)), nprocs=2, join=True)
    p0, p1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    init = dict(_model(seed=0).named_parameters())
    for k in p0:
        assert torch.equal(p0[k], p1[k]), k  # DDP broadcast rank 0's init and averaged the gradients
    assert any(not torch.equal(p0[k], init[k]) for k in p0)
    assert torch.load(tmp_path / "last.pt")["step"] == 2


# ---------------------------------------------------------------------------------- validation, find_lr


@pytest.mark.parametrize("metric", ["voc07", "coco"])
def test_validation_best_and_csv(cached, data, tmp_path, metric):
    val = VOCDataset(data, "test", transforms=ssd_transforms(False, size=160), keep_difficult=True, classes=CLASSES)
    seen = []

    class Record(TrainerCallback):
        def on_validation(self, trainer, result):
            seen.append(result)

    csv_path = str(tmp_path / "metrics.csv")
    trainer = Trainer(
        _model(),
        cached,
        _cfg(epochs=2, val_every=1, metric=metric),
        device="cpu",
        checkpoint_dir=str(tmp_path),
        val_set=val,
        callbacks=[Record(), CSVLogger(csv_path)],
    )
    trainer.fit()
    trainer.close()
    assert [r["epoch"] for r in seen] == [1, 2]
    per_class = "ap_voc07" if metric == "voc07" else "ap_coco"
    assert all("val_loss" in r and isinstance(r["map"], float) and per_class in r for r in seen)
    if metric == "coco":
        assert all(r["map"] == r["map_coco"] and r["map_coco"] <= r["map_coco_50"] for r in seen)
    assert os.path.exists(tmp_path / "best.pt") and os.path.exists(tmp_path / "last.pt")
    best = torch.load(tmp_path / "best.pt")
    assert best["best"] == max(r["map"] for r in seen) or all(r["map"] != r["map"] for r in seen)
    rows = open(csv_path).read().splitlines()
    assert rows[0].startswith("epoch,step,loss,lr") and len(rows) == 3
    import csv

    table = list(csv.DictReader(open(csv_path)))
    assert [float(row["map"]) for row in table] == [r["map"] for r in seen]  # numbers, not reprs
    other = "map_voc07" if metric == "voc07" else "map_coco_50"
    assert [float(row[other]) for row in table] == [r[other] for r in seen]


def test_coco_metric_ignores_difficult_objects_as_voc_does():
    from detops.ssd.evaluation import COCOMetric

    gt = torch.tensor([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]])
    hit = {"boxes": gt[:1], "labels": torch.tensor([1]), "scores": torch.tensor([0.9])}
    on_difficult = {"boxes": gt[1:] + 0.01, "labels": torch.tensor([2]), "scores": torch.tensor([0.8])}
    both = {k: torch.cat([hit[k], on_difficult[k]]) for k in hit}
    metric = COCOMetric(3)
    metric.update([both], [{"boxes": gt, "labels": torch.tensor([1, 2]), "difficult": torch.tensor([0, 1])}])
    with_difficult = metric.compute()
    metric.reset()
    metric.update([hit], [{"boxes": gt[:1], "labels": torch.tensor([1])}])
    without = metric.compute()
    assert with_difficult["map"] == without["map"] == pytest.approx(1.0, abs=1e-12)
    assert (
        with_difficult["ap_coco"][1] == pytest.approx(1.0, abs=1e-12)
        and with_difficult["ap_coco"][2] != with_difficult["ap_coco"][2]
    )


def test_find_lr_sweeps_and_restores(cached):
    trainer = Trainer(_model(), cached, _cfg(), device="cpu")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rng = torch.get_rng_state()
    found = trainer.find_lr(start_lr=1e-5, end_lr=1.0, steps=12)
    assert 3 <= len(found["lrs"]) <= 12 and found["lrs"] == sorted(found["lrs"])
    assert found["suggestion"] in found["lrs"]
    assert trainer.step == 0 and trainer.history == []
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(torch.get_rng_state(), rng)


def _signal_before_the_guard(worker_id):
    # A stop signal that reaches a worker before the trainer's worker_init_fn has run: sent to itself, so
    # torch's worker handler (which exits on any SIGTERM not from the parent) would kill it if it were not
    # held back until the handler is replaced.
    import signal

    from detops.ssd.trainer import _ignore_stop_signals

    os.kill(os.getpid(), signal.SIGTERM)
    _ignore_stop_signals(worker_id)


def test_a_stop_signal_while_workers_start_does_not_kill_them():
    import signal

    from detops.ssd.trainer import _worker_batches

    loader = torch.utils.data.DataLoader(
        list(range(8)), batch_size=2, num_workers=2, worker_init_fn=_signal_before_the_guard
    )
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with _worker_batches(loader) as batches:
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before  # unblocked again in the training process
        got = [b.tolist() for b in batches]
    assert got == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_workers_are_shut_down_when_training_raises():
    # The workers ignore SIGTERM, multiprocessing's way of stopping leftover children at exit: an iterator
    # kept alive by a traceback would leave the process waiting for them forever.
    from detops.ssd.trainer import _ignore_stop_signals, _worker_batches

    loader = torch.utils.data.DataLoader(
        list(range(64)), batch_size=2, num_workers=2, worker_init_fn=_ignore_stop_signals
    )
    with pytest.raises(ZeroDivisionError):
        with _worker_batches(loader) as batches:
            next(batches)
            workers = list(batches._workers)
            assert all(w.is_alive() for w in workers)
            kept = batches  # noqa: F841 (what a traceback does: the iterator outlives the with)
            1 / 0
    for w in workers:
        w.join(timeout=10)
        assert not w.is_alive()
