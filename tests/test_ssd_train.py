"""SSD training: loss goes down, checkpoint resume is exact, DDP with 2 gloo processes, the CLI end to end."""

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from detops import cli
from detops.ssd.synthetic import generate_voc_dataset
from detops.ssd.transforms import ssd_transforms
from detops.ssd.voc import VOCDataset
from detops.ssd.demo import CachedDataset
from detops.ssd.train import TrainConfig, Trainer, build_model, load_model, save_atomic

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
    base = dict(epochs=2, batch_size=8, optimizer="adam", lr=2e-3, warmup_steps=2, schedule="cosine", progress=False,
                log_every=1, image_every=0, checkpoint_every=1, seed=0)
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
    cfg = TrainConfig(epochs=3, batch_size=8, warmup_steps=2, lr_milestones=(0.5,), progress=False, image_every=0)
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
    assert lrs[2] == pytest.approx(1e-3) and lrs[3] == pytest.approx(1e-4)  # x0.1 at half of the 6 steps


def test_checkpoint_resume_is_exact(cached, tmp_path):
    ckpt = str(tmp_path / "run.pt")
    after_one = str(tmp_path / "after_one.pt")

    def keep_first(trainer, loss):
        if trainer.epoch == 1:
            trainer.save_checkpoint(after_one)

    straight = Trainer(_model(), cached, _cfg(epochs=3), device="cpu", checkpoint_path=ckpt)
    straight.fit(callback=keep_first)

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
    # the file written at the end holds the final state
    assert torch.load(ckpt, weights_only=False)["step"] == 6


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
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dataset = VOCDataset(data, "train", transforms=ssd_transforms(False, size=160), classes=CLASSES)
    trainer = Trainer(_model(seed=rank), dataset, _cfg(epochs=1, batch_size=4), device="cpu",
                      checkpoint_path=os.path.join(out, "ddp.pt"))
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
    assert torch.load(tmp_path / "ddp.pt", weights_only=False)["step"] == 2


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_train_eval_detect(data, tmp_path, capsys):
    ckpt = str(tmp_path / "ckpt.pt")
    cli.main(["train", "--data", data, "--split", "train", "--classes", ",".join(CLASSES), "--backbone", "tiny",
              "--width", "8", "--epochs", "1", "--batch-size", "8", "--optimizer", "adam", "--lr", "1e-3",
              "--augment", "flip", "--workers", "0", "--checkpoint", ckpt, "--log-dir", str(tmp_path / "tb"),
              "--no-progress"])
    assert os.path.exists(ckpt)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb"))
    model, names = load_model(ckpt)
    assert names == CLASSES and model.n_classes == 5

    cli.main(["eval", "--checkpoint", ckpt, "--data", data, "--split", "test"])
    out = capsys.readouterr().out
    assert "mAP" in out and "images/s" in out and "circle" in out

    image = os.path.join(data, "JPEGImages", sorted(os.listdir(os.path.join(data, "JPEGImages")))[-1])
    png = str(tmp_path / "det.png")
    cli.main(["detect", image, "--checkpoint", ckpt, "--out", png, "--min-score", "0.0"])
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == Image.open(image).size


def test_python_dash_m_detops_detect(data, tmp_path):
    ckpt = str(tmp_path / "ckpt.pt")
    model = _model()
    torch.save({"model": model.state_dict(), "model_args": model.init_args, "class_names": CLASSES}, ckpt)
    image = os.path.join(data, "JPEGImages", sorted(os.listdir(os.path.join(data, "JPEGImages")))[0])
    png = str(tmp_path / "out.png")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "detops", "detect", image, "--checkpoint", ckpt, "--out", png],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "detection(s)" in r.stdout and os.path.getsize(png) > 0


def test_demo_pipeline_runs(tmp_path, capsys):
    cli.main(["demo", "--out", str(tmp_path / "demo"), "--train-images", "16", "--test-images", "4", "--epochs", "1",
              "--batch-size", "8", "--width", "8", "--n-draw", "2", "--no-progress"])
    out = capsys.readouterr().out
    assert "mAP (VOC07 11-point)" in out
    for f in ("loss_curve.png", "checkpoint.pt", "results.json", "detections/test_00.png"):
        assert os.path.exists(tmp_path / "demo" / f), f
