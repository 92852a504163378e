"""The ``detops`` command line through the installed console script (and ``python -m detops``): exit status 0
on success, one clear line and status 2 for a user error, the classes read from the data, the dataset
command, corrupt files named and skipped, Ctrl-C stops with a checkpoint and the command that resumes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from detops import cli
from detops.ssd.synthetic import DEFAULT_CLASSES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
DETOPS = shutil.which("detops")
TINY = [
    "--backbone",
    "tiny",
    "--width",
    "4",
    "--batch-size",
    "8",
    "--workers",
    "0",
    "--augment",
    "flip",
    "--no-progress",
    "--no-tensorboard",
]


def detops(*args, python_m=False, timeout=240):
    cmd = [sys.executable, "-m", "detops", *args] if python_m or DETOPS is None else [DETOPS, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


def assert_user_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cli") / "data")
    r = detops("data", "synthetic", root, "--train-images", "16", "--test-images", "4", "--size", "64")
    assert r.returncode == 0, r.stderr
    assert "wrote 20 images" in r.stdout
    return root


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory):
    """One short training run (classes from the data), shared by the tests that need a checkpoint."""
    out = str(tmp_path_factory.mktemp("cli") / "run")
    r = detops("train", "--data", data, "--split", "train", "--val-split", "test", "--epochs", "2", "--out", out, *TINY)
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def test_data_synthetic_writes_a_voc_layout(data):
    for sub in ("Annotations", "JPEGImages"):
        assert len(os.listdir(os.path.join(data, sub))) == 20
    with open(os.path.join(data, "ImageSets", "Main", "test.txt")) as f:
        assert len(f.read().split()) == 4


def test_train_reads_classes_from_the_data_and_reports_each_epoch(run_dir):
    out, stdout = run_dir
    state = torch.load(os.path.join(out, "last.pt"))  # weights_only=True, torch's default
    assert sorted(state["class_names"]) == sorted(DEFAULT_CLASSES)
    assert state["model_args"] == {"n_classes": 5, "backbone": "tiny", "width": 4}
    losses = [h["loss"] for h in state["history"] if "loss" in h]
    assert losses and all(v > 0 for v in losses)  # it trained on something
    epoch_lines = [line for line in stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and all("loss" in x and "lr" in x and "images/s" in x for x in epoch_lines)
    assert "warm-up" in stdout and "per process" in stdout and stdout.rstrip().splitlines()[-1].startswith("done")
    assert os.path.exists(os.path.join(out, "best.pt"))
    with open(os.path.join(out, "metrics.csv")) as f:
        assert len(f.read().splitlines()) == 3


def test_eval_json_and_detect_formats(run_dir, data, tmp_path):
    out, _ = run_dir
    ckpt = os.path.join(out, "last.pt")
    js = str(tmp_path / "result.json")
    r = detops("eval", "--checkpoint", ckpt, "--data", data, "--split", "test", "--json", js, python_m=True)
    assert r.returncode == 0, r.stderr
    assert "mAP" in r.stdout and "images/s" in r.stdout
    result = json.load(open(js))
    assert set(result["ap_voc07"]) == set(DEFAULT_CLASSES) and "map" in result
    assert result["map"] == result["map_voc07"]
    r = detops("eval", "--checkpoint", ckpt, "--data", data, "--split", "test", "--metric", "voc", "--json", js)
    assert r.returncode == 0, r.stderr
    voc = json.load(open(js))
    assert voc["metric"] == "voc" and voc["map"] == voc["map_area"] == result["map_area"]
    r = detops("eval", "--checkpoint", ckpt, "--data", data, "--split", "test", "--metric", "coco", "--json", js)
    assert r.returncode == 0, r.stderr
    assert "AP (COCO)" in r.stdout and "map_coco_50" in r.stdout
    coco = json.load(open(js))
    assert set(coco["ap_coco"]) == set(DEFAULT_CLASSES) and coco["map"] == coco["map_coco"]
    assert all(0 <= coco[k] <= 1 for k in ("map_coco", "map_coco_50", "map_coco_75", "mar_coco_100"))
    assert coco["map_coco"] <= coco["map_coco_50"]

    image = os.path.join(data, "JPEGImages", "000020.jpg")
    jpg = str(tmp_path / "det.jpg")
    r = detops("detect", image, "--checkpoint", ckpt, "--out", jpg, "--min-score", "0.0", "--top-k", "5")
    assert r.returncode == 0, r.stderr
    with Image.open(jpg) as im:
        assert im.format == "JPEG" and im.size == (64, 64)
    for line in r.stdout.splitlines()[:-1]:  # printed boxes lie in the 64x64 image
        coords = [float(v) for v in line.split("[")[1].rstrip("]").split(",")]
        assert all(0 <= v <= 64 for v in coords), line
    assert_user_error(
        detops("detect", image, "--checkpoint", ckpt, "--out", str(tmp_path / "nope" / "x.png")), "does not exist"
    )


def _main(capsys, *args):
    """cli.main in this process (the console script's code path, without a new interpreter's start-up)."""
    status = cli.main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, captured.out, captured.err)


def test_user_errors_are_one_line(run_dir, data, tmp_path, capsys):
    out, _ = run_dir
    assert_user_error(detops("train", "--data", str(tmp_path / "missing"), *TINY), "no such directory")
    r = _main(capsys, "train", "--data", data, "--optimizer", "lbfgs")
    assert r.returncode == 2 and "invalid choice" in r.stderr and "Traceback" not in r.stderr
    # resuming with other options names them
    assert_user_error(
        _main(
            capsys,
            "train",
            "--data",
            data,
            "--split",
            "train",
            "--resume",
            os.path.join(out, "last.pt"),
            "--out",
            str(tmp_path / "r"),
            *TINY[:2],
            "--width",
            "8",
            *TINY[4:],
        ),
        "--width",
    )
    # a checkpoint that is not one
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert_user_error(_main(capsys, "eval", "--checkpoint", str(bad), "--data", data), "not a readable checkpoint")
    torch.save({"model": torch.nn.Linear(1, 1)}, str(bad))
    assert_user_error(_main(capsys, "eval", "--checkpoint", str(bad), "--data", data), "not a readable checkpoint")
    # classes matching nothing in the data
    assert_user_error(
        _main(capsys, "train", "--data", data, "--split", "train", "--classes", "dog,cat", *TINY),
        "no (non-difficult) object",
    )
    if not torch.cuda.is_available():
        assert_user_error(_main(capsys, "train", "--data", data, "--device", "cuda", *TINY), "no CUDA GPU")


def test_help_shows_defaults(capsys):
    r = _main(capsys, "train", "--help")
    assert r.returncode == 0
    assert "(default: trainval)" in r.stdout and "per process" in r.stdout


def test_bad_annotation_is_named_and_skipped(data, tmp_path):
    root = str(tmp_path / "data")
    shutil.copytree(data, root)
    xml = os.path.join(root, "Annotations", "000003.xml")
    text = open(xml).read()
    start = text.index("<xmin>") + len("<xmin>")
    end = text.index("</xmin>")
    open(xml, "w").write(text[:start] + "1000" + text[end:])  # xmin > xmax
    with open(os.path.join(root, "ImageSets", "Main", "empty.txt"), "w"):
        pass
    assert_user_error(
        detops("train", "--data", root, "--split", "train", *TINY), "000003.xml", "object 0", "--skip-corrupt"
    )
    r = detops(
        "train",
        "--data",
        root,
        "--split",
        "train",
        "--epochs",
        "1",
        "--skip-corrupt",
        "--out",
        str(tmp_path / "run"),
        *TINY,
    )
    assert r.returncode == 0, r.stderr
    assert "000003.xml" in r.stderr and "15 images" in r.stdout
    assert_user_error(detops("train", "--data", root, "--split", "empty", *TINY), "lists no images")


def _interrupt_training(data, out, sig, delay, workers):
    """Starts ``detops train`` in a session of its own and sends ``sig`` to the whole process group (what a
    terminal's Ctrl-C does: the DataLoader workers get it too) ``delay`` seconds after the first epoch line."""
    cmd = [
        DETOPS or sys.executable,
        *([] if DETOPS else ["-m", "detops"]),
        "train",
        "--data",
        data,
        "--split",
        "train",
        "--epochs",
        "1000",
        "--out",
        out,
        *TINY[:6],
        "--workers",
        str(workers),
        *TINY[8:],
    ]
    p = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True
    )
    lines = []
    for line in p.stdout:  # wait until it is training
        lines.append(line)
        if line.startswith("epoch "):
            break
    time.sleep(delay)
    t0 = time.monotonic()
    os.killpg(p.pid, sig)
    try:
        stdout, stderr = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"{sig.name} after {delay} s: still running 60 s later")
    return p.returncode, "".join(lines) + stdout, stderr, time.monotonic() - t0


# Epochs of 2 steps with 2 workers: the workers are forked again every few tenths of a second, so the delays
# put the signal inside steps, between epochs and while workers start (where it used to be lost).
@pytest.mark.slow
@pytest.mark.parametrize(
    "sig,delay,workers",
    [
        (signal.SIGINT, 0.0, 0),
        (signal.SIGINT, 0.0, 2),
        (signal.SIGINT, 0.15, 2),
        (signal.SIGINT, 0.4, 2),
        (signal.SIGINT, 0.9, 2),
        (signal.SIGTERM, 0.3, 2),
    ],
    ids=["int-0s-noworkers", "int-0s", "int-0.15s", "int-0.4s", "int-0.9s", "term-0.3s"],
)
def test_ctrl_c_stops_with_a_checkpoint_and_the_resume_command(data, tmp_path, sig, delay, workers):
    out = str(tmp_path / "run")
    status, stdout, stderr, seconds = _interrupt_training(data, out, sig, delay, workers)
    assert seconds < 30, seconds
    assert status == 128 + sig, (status, stdout, stderr)  # 130 for SIGINT, 143 for SIGTERM, as a shell reports
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert f"stopped ({sig.name})" in stdout and not stdout.rstrip().splitlines()[-1].startswith("done"), stdout
    state = torch.load(os.path.join(out, "last.pt"))  # the checkpoint of the stop, whole
    assert state["step"] >= 2
    assert f"step {state['step']};" in stdout  # the stop's own checkpoint, not an older one
    resume = stdout.split("resume with:")[1].strip().split()
    assert resume[0] == "detops" and resume[-2:] == ["--resume", os.path.join(out, "last.pt")]


def test_export_writes_a_program_that_detects_as_the_model(run_dir, data, tmp_path):
    from detops.ssd.checkpoint import load_model
    from detops.ssd.export import load

    out, _ = run_dir
    ckpt = os.path.join(out, "last.pt")
    pt2 = str(tmp_path / "ssd.pt2")
    r = detops(
        "export", "--checkpoint", ckpt, "--out", pt2, "--batch-size", "2", "--min-score", "0.01", "--top-k", "20"
    )
    assert r.returncode == 0, r.stderr
    assert "[2, 3, 160, 160]" in r.stdout and "torch.export.load" in r.stdout
    program = load(pt2)
    model, _ = load_model(ckpt)
    images = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = program.module()(images)
        want = model.detect_batched(*model(images), 0.01, 0.45, 20)
    assert got[0].shape == (2, 20, 4) and int(got[3].sum()) > 0  # something above the low threshold
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    # the program is not a checkpoint: the commands that take one say what it is and how to run it
    assert_user_error(detops("eval", "--checkpoint", pt2, "--data", data), "exported program", "detops.ssd.export.load")
    assert_user_error(
        detops("export", "--checkpoint", ckpt, "--out", str(tmp_path / "nope" / "x.pt2")), "does not exist"
    )


def test_demo_reports_voc07_and_coco_ap(tmp_path):
    out = str(tmp_path / "demo")
    r = detops(
        "demo",
        "--out",
        out,
        "--train-images",
        "32",
        "--test-images",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--width",
        "4",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    assert "mAP (VOC07 11-point)" in r.stdout and "COCO AP@[.5:.95]" in r.stdout
    summary = json.load(open(os.path.join(out, "results.json")))
    assert 0 <= summary["map_coco"] <= summary["map_coco_50"] <= 1 and 0 <= summary["map_voc07"] <= 1
    assert os.path.exists(os.path.join(out, "last.pt")) and os.path.exists(os.path.join(out, "loss_curve.png"))


def test_python_m_synthetic_is_the_data_command(tmp_path):
    out = str(tmp_path / "shapes")
    r = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::RuntimeWarning",
            "-m",
            "detops.ssd.synthetic",
            out,
            "--train-images",
            "2",
            "--test-images",
            "1",
            "--size",
            "64",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "wrote 3 images" in r.stdout and len(os.listdir(os.path.join(out, "JPEGImages"))) == 3


def test_find_lr_plots_and_suggests(data, tmp_path):
    out = str(tmp_path / "lr")
    r = detops("train", "--data", data, "--split", "train", "--find-lr", "--find-lr-steps", "8", "--out", out, *TINY)
    assert r.returncode == 0, r.stderr
    assert "suggested --lr" in r.stdout and os.path.getsize(os.path.join(out, "lr_find.png")) > 0
    assert not os.path.exists(os.path.join(out, "last.pt"))  # a range test, not a training run
