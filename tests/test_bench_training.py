"""The `training` bench cases (detops/bench/cases/training.py) on tiny sizes: they build, both sides agree,
every loss term and head-output gradient is there, and the command times them."""

import json
import math

import pytest
import torch

from detops.bench import cli, registry
from detops.bench.cases import training

pytest.importorskip("torchvision")


@pytest.fixture
def small_images(monkeypatch):
    # Faster R-CNN and RetinaNet take any size; SSD300 always works at 300 x 300.
    monkeypatch.setitem(training.SIZES, "fasterrcnn_v2", 128)
    monkeypatch.setitem(training.SIZES, "retinanet", 64)


def _case(name):
    (found,) = [c for c in registry.load_cases() if c.name == name]
    return found


@pytest.mark.parametrize(
    "model, keys, leaves",
    [
        ("fasterrcnn_v2", {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}, 12),
        ("retinanet", {"classification", "bbox_regression"}, 2),
        ("ssd300", {"classification", "bbox_regression"}, 2),
    ],
)
def test_losses_case_gives_every_term_and_gradient(small_images, model, keys, leaves):
    pair = _case(f"training_losses/{model}_train/torchvision").build((2,), registry.Context("cpu", torch.float32, 0))
    losses, grads = pair.baseline(*pair.inputs)
    assert set(losses) == keys and all(math.isfinite(float(v)) for v in losses.values())
    assert len(grads) == leaves and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
    again, _ = pair.baseline(*pair.inputs)  # the sampler is reseeded: the same call gives the same losses
    assert all(torch.equal(again[k], losses[k]) for k in keys)


def test_command_times_the_losses_and_a_step(small_images, tmp_path):
    out = tmp_path / "run.json"
    argv = [
        "--ops",
        "training_losses,training_step/retinanet_train/torchvision",
        "--sizes",
        "training:1",
        "--min-time",
        "0.001",
        "--no-progress",
        "--json",
        str(out),
    ]
    assert cli.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert sorted(r["case"] for r in rows) == [
        "training_losses/fasterrcnn_v2_train/torchvision",
        "training_losses/retinanet_train/torchvision",
        "training_losses/ssd300_train/torchvision",
        "training_step/retinanet_train/torchvision",
    ]
    for row in rows:
        assert row["status"] == "ok", row["message"]
        assert row["detops"]["median_ms"] > 0 and row["baseline_time"]["median_ms"] > 0


def test_step_check_names_a_differing_loss():
    same = ({"loss": torch.tensor(1.0)}, torch.ones(3))
    assert training.compare_step(same, same) is None
    assert training.compare_step(({"loss": torch.tensor(1.1)}, torch.ones(3)), same)
    assert training.compare_step(({"loss": torch.tensor(1.0)}, torch.full((3,), 2.0)), same)
