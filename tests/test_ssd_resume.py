"""Nothing lost: training killed with SIGKILL at a random moment (some trials inside a checkpoint write, the
file half written) and resumed loses at most the steps since the last checkpoint, never loads a half-written
file, and reproduces the uninterrupted run's losses exactly from there on."""

import io
import os
import random
import signal
import time

import pytest
import torch

import detops.ssd.checkpoint as checkpoint_module
import detops.ssd.trainer as trainer_module
from detops.ssd.cached import CachedDataset
from detops.ssd.checkpoint import build_model, load_checkpoint
from detops.ssd.synthetic import generate_voc_dataset
from detops.ssd.trainer import TrainConfig, Trainer
from detops.ssd.voc import VOCDataset

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]

CLASSES = ["circle", "square", "triangle", "cross"]
TRIALS = 20
WRITE_KILLS = 6  # trials killed inside a checkpoint write, the rest at a random moment


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("resume"))
    generate_voc_dataset(root, n_train=6, n_test=0, image_size=48, seed=0, classes=CLASSES)
    torch.manual_seed(0)
    return CachedDataset(VOCDataset(root, "train", classes=CLASSES), 160, augment=True)


def _trainer(dataset, out):
    torch.manual_seed(0)
    model = build_model(len(CLASSES) + 1, "tiny", width=4)
    cfg = TrainConfig(
        epochs=2,
        batch_size=2,
        optimizer="adamw",
        lr=1e-3,
        warmup_steps=1,
        schedule="cosine",
        checkpoint_every=1,
        checkpoint_every_steps=1,
        seed=0,
    )
    return Trainer(model, dataset, cfg, device="cpu", checkpoint_dir=out)


def _losses(trainer):
    return {h["step"]: h["loss"] for h in trainer.history if "loss" in h}


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    trainer = _trainer(dataset, str(tmp_path_factory.mktemp("reference")))
    t0 = time.monotonic()
    trainer.fit()
    return _losses(trainer), {k: v.clone() for k, v in trainer.model.state_dict().items()}, time.monotonic() - t0


def _child(dataset, out, progress, block_at_save):
    """Runs in the forked process: trains, appending each completed checkpoint's step to ``progress``. With
    ``block_at_save = k``, the k-th checkpoint write stops half-way (and waits to be killed)."""
    real_save_atomic, real_save = trainer_module.save_atomic, torch.save
    calls = [0]

    def half_save(obj, f):
        buf = io.BytesIO()
        real_save(obj, buf)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        with open(progress + ".writing", "w"):
            pass
        time.sleep(60)

    def save_atomic(obj, path):
        calls[0] += 1
        checkpoint_module.torch.save = half_save if calls[0] == block_at_save else real_save
        real_save_atomic(obj, path)
        with open(progress, "a") as f:
            f.write(f"{obj['step']}\n")

    trainer_module.save_atomic = save_atomic
    trainer = _trainer(dataset, out)
    trainer.fit()


def test_kill_and_resume_loses_nothing(dataset, reference, tmp_path):
    ref_losses, ref_state, duration = reference
    total = max(ref_losses)
    rng = random.Random(0)
    write_kill_trials = set(rng.sample(range(TRIALS), WRITE_KILLS))
    saw_half_written = 0
    for trial in range(TRIALS):
        out = str(tmp_path / f"trial{trial}")
        progress = str(tmp_path / f"progress{trial}")
        block_at = rng.randint(1, total) if trial in write_kill_trials else 0
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                _child(dataset, out, progress, block_at)
            finally:
                os._exit(0)
        if block_at:
            deadline = time.monotonic() + 60
            while not os.path.exists(progress + ".writing") and time.monotonic() < deadline:
                time.sleep(0.002)
        else:
            time.sleep(rng.uniform(0, 1.5 * duration))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

        saved = [int(s) for s in open(progress).read().split()] if os.path.exists(progress) else []
        last = os.path.join(out, "last.pt")
        if block_at:
            leftovers = [f for f in os.listdir(out) if ".tmp." in f]
            assert leftovers, "the kill should have left the half-written temporary file"
            saw_half_written += 1
        resumed = _trainer(dataset, out)
        if os.path.exists(last):
            state = load_checkpoint(last)  # never half written: it loads
            assert state["step"] >= max(saved, default=0)  # at most the steps since the last checkpoint lost
            resumed.load_checkpoint(state)
        else:
            assert not saved  # (a checkpoint was completed only if the file exists)
        start = resumed.step
        resumed.fit()
        got = _losses(resumed)
        for step in range(start + 1, total + 1):
            assert got[step] == ref_losses[step], (trial, step, got[step], ref_losses[step])
        if trial % 5 == 0:
            for k, v in resumed.model.state_dict().items():
                assert torch.equal(v, ref_state[k]), (trial, k)
        assert not [f for f in os.listdir(out) if ".tmp." in f]  # the next write cleaned up
    assert saw_half_written == WRITE_KILLS
