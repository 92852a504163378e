"""SSD benchmarks: where a training step's time goes, and evaluation throughput.

1. Training step: the share of the step spent outside the network (matching priors to ground truth, hard
   negative mining, the loss, bookkeeping) with detops' MultiBoxLoss versus the tutorial's loss
   (``detops.reference.matching.tutorial_multibox_loss``: a Python loop over images, a full IoU matrix each).
   The share is (step with the loss - step with a trivial loss on the same outputs) / step with the loss.
2. Evaluation: images/s of forward + detection with ``SSD300.detect_objects`` (softmax, one decode, one
   batched multiclass_nms) versus forward + the tutorial's ``detect_objects`` (a loop over images and classes),
   and the detection step alone.

Run: ``PYTHONPATH=. python benchmarks/bench_ssd.py [--device cuda] [--out DIR]``. Prints a table (Markdown)
and writes it to ``DIR/bench_ssd.md``. On CUDA the training rows use batch 32 with AMP (the issue's setting).
"""

import argparse
import os
import platform
import statistics
import time

import torch

from detops.ssd.loss import MultiBoxLoss
from detops.ssd.model import SSD300


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device, warmup=2, reps=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _targets(batch, n_classes, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    boxes, labels = [], []
    for _ in range(batch):
        n = int(torch.randint(1, 7, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 0.7
        wh = 0.05 + torch.rand(n, 2, generator=g) * 0.5
        boxes.append(torch.cat([xy, (xy + wh).clamp(max=1)], 1).to(device))
        labels.append(torch.randint(1, n_classes, (n,), generator=g).to(device))
    return boxes, labels


def bench_training(backbone, batch, device, amp, reps):
    from detops.reference.matching import tutorial_multibox_loss

    torch.manual_seed(0)
    model = SSD300(21, backbone=backbone).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    size = model.input_size
    images = torch.randn(batch, 3, size, size, device=device)
    boxes, labels = _targets(batch, 21, device)
    priors = model.priors_cxcy
    detops_loss = MultiBoxLoss(priors).to(device)

    def tutorial(locs, scores, b, l):
        return tutorial_multibox_loss(locs, scores, b, l, priors)

    def trivial(locs, scores, b, l):
        return locs.float().square().mean() + scores.float().square().mean()

    def step(criterion):
        def run():
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                locs, scores = model(images)
            loss = criterion(locs.float(), scores.float(), boxes, labels)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return run

    net = _time(step(trivial), device, reps=reps)
    rows = []
    for name, crit in (("detops MultiBoxLoss", detops_loss), ("tutorial loss", tutorial)):
        full = _time(step(crit), device, reps=reps)
        # the loss alone (forward and backward through the loss on detached outputs)
        locs, scores = model(images)
        locs, scores = locs.detach().float().requires_grad_(), scores.detach().float().requires_grad_()

        def loss_only():
            crit(locs, scores, boxes, labels).backward()

        alone = _time(loss_only, device, reps=reps)
        rows.append((name, full, alone, max(0.0, full - net) / full, batch / full))
    return net, rows


def bench_eval(backbone, batch, device, reps):
    from detops.reference.nms import tutorial_detect_objects

    torch.manual_seed(0)
    model = SSD300(21, backbone=backbone).to(device).eval()
    size = model.input_size
    images = torch.randn(batch, 3, size, size, device=device)
    P = model.n_priors
    # Realistic score statistics for a trained model: background dominant, a few confident priors.
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(batch, P, 21, generator=g) * 1.5
    logits[:, :, 0] += 7.0
    hot = torch.rand(batch, P, generator=g) < 0.02
    logits[hot, torch.randint(1, 21, (int(hot.sum()),), generator=g)] += 8.0
    logits = logits.to(device)
    locs = (torch.randn(batch, P, 4, generator=g) * 0.5).to(device)
    args = dict(min_score=0.01, max_overlap=0.45, top_k=200)

    with torch.no_grad():
        fwd = _time(lambda: model(images), device, reps=reps)
        ours = _time(lambda: model.detect_objects(locs, logits, **args), device, reps=reps)
        theirs = _time(lambda: tutorial_detect_objects(model.priors_cxcy, locs, logits, n_classes=21, **args),
                       device, warmup=1, reps=max(1, reps // 2))
    return fwd, ours, theirs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    machine = torch.cuda.get_device_name(device) if cuda else f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), no GPU"
    lines = [f"Device: {machine}; torch {torch.__version__}; {torch.get_num_threads()} CPU threads", ""]

    train_cases = [("vgg16", 32, True), ("resnet50", 32, True), ("tiny", 32, True)] if cuda else [("tiny", 32, False), ("resnet18", 4, False)]
    lines += ["### Training step: time outside the network", "",
              "| backbone | priors | batch | AMP | loss | step (ms) | loss fwd+bwd alone (ms) | share outside the network | images/s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for backbone, batch, amp in train_cases:
        net, rows = bench_training(backbone, batch, device, amp and cuda, a.reps)
        prio = 8732 if backbone != "tiny" else 2390
        lines.append(f"| {backbone} | {prio} | {batch} | {'yes' if amp and cuda else 'no'} | (network + trivial loss) | {net * 1e3:.1f} | - | - | {batch / net:.1f} |")
        for name, full, alone, share, ips in rows:
            lines.append(f"| {backbone} | {prio} | {batch} | {'yes' if amp and cuda else 'no'} | {name} | {full * 1e3:.1f} | {alone * 1e3:.1f} | {share * 100:.1f}% | {ips:.1f} |")
        print("\n".join(lines[-3:]), flush=True)

    eval_cases = [("vgg16", 32), ("tiny", 32)] if cuda else [("tiny", 32), ("resnet18", 8)]
    lines += ["", "### Evaluation: forward + detection (min_score 0.01, max_overlap 0.45, top_k 200, 21 classes)", "",
              "| backbone | batch | forward (ms) | detops detect_objects (ms) | tutorial detect_objects (ms) | detection speed-up | images/s detops | images/s tutorial |",
              "|---|---|---|---|---|---|---|---|"]
    for backbone, batch in eval_cases:
        fwd, ours, theirs = bench_eval(backbone, batch, device, a.reps)
        lines.append(f"| {backbone} | {batch} | {fwd * 1e3:.1f} | {ours * 1e3:.1f} | {theirs * 1e3:.1f} | {theirs / ours:.1f}x | "
                     f"{batch / (fwd + ours):.1f} | {batch / (fwd + theirs):.1f} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    print("\n" + text)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "bench_ssd.md"), "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
