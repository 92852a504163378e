"""examples/: the Faster R-CNN fine-tuning example end to end on a tiny configuration, and its argument errors."""

import importlib.util
import json
import math
import pathlib

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"

# Tiny on purpose: 64-pixel images, few proposals, two one-step epochs. The numbers mean nothing; every
# output must still exist and be finite.
TINY = [
    "--synthetic-train",
    "2",
    "--synthetic-val",
    "1",
    "--synthetic-size",
    "64",
    "--min-size",
    "64",
    "--max-size",
    "64",
    "--batch-size",
    "2",
    "--epochs",
    "2",
    "--proposals",
    "16",
    "--rois-per-image",
    "8",
    "--workers",
    "0",
    "--infer-limit",
    "1",
    "--score-threshold",
    "0",
    "--device",
    "cpu",
    "--no-progress",
]


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("finetune_fasterrcnn", ROOT / "examples" / "finetune_fasterrcnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(example, tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune")
    assert example.main(TINY + ["--out", str(out)]) == 0
    return out


def test_training_writes_logs_plots_metrics_and_drawn_images(trained):
    assert list((trained / "tensorboard").glob("events.out.tfevents.*"))
    for name in ("losses.png", "map.png"):
        assert (trained / name).read_bytes()[:8] == PNG
    drawn = list((trained / "detections").glob("*.png"))
    assert len(drawn) == 1 and drawn[0].read_bytes()[:8] == PNG
    history = json.loads((trained / "metrics.json").read_text())
    assert history["detops"] is True
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    for epoch in history["epochs"]:
        for key in ("loss", "loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"):
            assert math.isfinite(epoch[key]) and epoch[key] >= 0, (key, epoch)
        # -1 would mean no class had ground truth: the validation image has objects, so both are real values.
        assert 0 <= epoch["map"] <= epoch["map_50"] <= 1, epoch
    assert len(history["steps"]) == 2 and all(math.isfinite(s["loss"]) for s in history["steps"])


def test_weights_and_folder_inference(example, trained, tmp_path):
    # The saved weights load back in full, and --epochs 0 only evaluates and runs inference.
    state = torch.load(trained / "model.pt", weights_only=True)
    assert state["roi_heads.box_predictor.cls_score.weight"].shape[0] == 5  # four shapes and background
    out = tmp_path / "again"
    argv = TINY + [
        "--out",
        str(out),
        "--data",
        str(trained / "data"),
        "--epochs",
        "0",
        "--weights",
        str(trained / "model.pt"),
        "--infer",
        str(trained / "detections"),
    ]
    assert example.main(argv) == 0
    history = json.loads((out / "metrics.json").read_text())
    assert history["steps"] == [] and history["epochs"][0]["epoch"] == 0
    assert [pathlib.Path(d["image"]).name for d in history["inference"]] == sorted(
        p.name for p in (trained / "detections").glob("*.png")
    )


def test_video_frames_follow_the_stride_and_limit(example, tmp_path, monkeypatch):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    frames = [torch.full((3, 8, 8), i, dtype=torch.uint8) for i in range(25)]
    monkeypatch.setattr(example, "read_video", lambda path: iter(frames))
    got = list(example.inference_inputs(str(video), limit=2, stride=10))
    assert [name for name, _ in got] == ["clip_frame000000", "clip_frame000010"]
    assert int(got[1][1][0, 0, 0]) == 10


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "-1"], "--epochs must be >= 0"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--min-size", "900", "--max-size", "800"], "--min-size (900) must not exceed --max-size (800)"),
        (["--lr", "nan"], "--lr must be a positive number"),
        (["--weights", "/no/such/weights.pt"], "--weights /no/such/weights.pt: no such file"),
        (["--epochs", "x"], "invalid int value: 'x'"),
    ],
)
def test_bad_arguments_name_the_argument(example, capsys, argv, message):
    assert example.main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_dataset_and_bad_infer_source(example, tmp_path, capsys):
    assert example.main(["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("not an image")
    assert (
        example.main(TINY + ["--out", str(tmp_path / "o"), "--epochs", "0", "--infer", str(tmp_path / "notes.txt")])
        == 2
    )
    assert "not an image" in capsys.readouterr().err


def test_video_without_a_decoder_is_a_clear_error(example, tmp_path, capsys):
    if example.video_decoder() is not None:
        pytest.skip("a video decoder is installed here")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 16)
    assert example.main(["--infer", str(video), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cannot decode video" in err and "torchcodec" in err
