"""Benchmarks of the SSD training targets (issue 4): matching + encoding, and MultiBoxLoss forward + backward,
against the SSD tutorial's per-image code and torchvision SSD's matcher / compute_loss, in one run.

    PYTHONPATH=. python benchmarks/bench_targets.py [--device cpu|cuda] [--batch 32] [--repeats 15]

Prints a markdown table (times are the minimum over interleaved repetitions) with the ratios baseline / detops, and the peak memory of matching.
On CUDA it also counts host synchronisations of detops' MultiBoxLoss forward + backward with
torch.cuda.set_sync_debug_mode("warn").
"""

import argparse
import platform
import time
import types
import warnings

import torch
import torchvision
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.ssd import SSD
from torchvision.ops import box_iou

import detops
from detops.reference import matching as ref
from detops.ssd import MultiBoxLoss, ssd300_prior_boxes


def timeit(fns, repeats, device):
    """Times of several functions, run interleaved (each repetition runs every function once) so they share
    the machine's load; the minimum over repetitions (the least disturbed run) is reported."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for fn in fns:
        fn()
    sync()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for t, fn in zip(times, fns):
            t0 = time.perf_counter()
            fn()
            sync()
            t.append(time.perf_counter() - t0)
    return [min(t) for t in times]


def make_batch(B, max_objects, gen, device):
    boxes, labels = [], []
    for _ in range(B):
        n = int(torch.randint(1, max_objects + 1, (1,), generator=gen))
        xy = torch.rand(n, 2, generator=gen) * 0.8
        wh = torch.rand(n, 2, generator=gen) * (1 - xy) * 0.9 + 0.02
        boxes.append(torch.cat([xy, xy + wh], 1).to(device))
        labels.append(torch.randint(1, 21, (n,), generator=gen).to(device))
    return boxes, labels


def torchvision_match(boxes, labels, anchors_xy, matcher, coder):
    """torchvision SSD's matcher path: box_iou + SSDMatcher + BoxCoder.encode_single of the foreground."""
    out = []
    for b, l in zip(boxes, labels):
        matched = matcher(box_iou(b, anchors_xy))
        fg = torch.where(matched >= 0)[0]
        cls = torch.zeros(anchors_xy.size(0), dtype=torch.long, device=b.device)
        cls[fg] = l[matched[fg]]
        out.append((cls, coder.encode_single(b[matched[fg]], anchors_xy[fg])))
    return out


def torchvision_loss(locs, scores, boxes, labels, anchors_xy, matcher, fake_ssd):
    targets = [{"boxes": b, "labels": l} for b, l in zip(boxes, labels)]
    matched_idxs = [matcher(box_iou(b, anchors_xy)) for b in boxes]
    losses = SSD.compute_loss(
        fake_ssd, targets, {"bbox_regression": locs, "cls_logits": scores}, [anchors_xy] * len(boxes), matched_idxs
    )
    return losses["bbox_regression"] + losses["classification"]


def cpu_peak_bytes(fn):
    """Peak of the bytes allocated by torch on the CPU while fn runs (profiler memory events, running sum)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    # Allocations are counted on the op that made them (its self memory), frees on "[memory]" events.
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    cur = peak = 0
    for e in events:
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-objects", type=int, default=20)
    ap.add_argument("--classes", type=int, default=21)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    priors = ssd300_prior_boxes(device)
    anchors_xy = ref.tutorial_cxcy_to_xy(priors)
    boxes, labels = make_batch(args.batch, args.max_objects, gen, device)
    B, P, C = args.batch, priors.size(0), args.classes
    matcher = det_utils.SSDMatcher(0.5)
    coder = det_utils.BoxCoder((10.0, 10.0, 5.0, 5.0))
    fake_ssd = types.SimpleNamespace(box_coder=coder, neg_to_pos_ratio=3)

    print(f"# detops SSD targets benchmark: {B} images x {P} priors x 1..{args.max_objects} objects, {C} classes")
    print(
        f"device {device}{' (' + torch.cuda.get_device_name() + ')' if device.type == 'cuda' else ''}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{platform.processor() or platform.machine()}\n"
    )
    rows = []

    # ---- matching + encoding
    t_tut, t_tv, t_det = timeit(
        [
            lambda: ref.tutorial_match(boxes, labels, priors),
            lambda: torchvision_match(boxes, labels, anchors_xy, matcher, coder),
            lambda: detops.match_priors(boxes, labels, priors),
        ],
        args.repeats,
        device,
    )
    rows.append(("match + encode", "tutorial per-image loop", t_tut, t_det))
    rows.append(("match + encode", "torchvision box_iou + SSDMatcher + encode", t_tv, t_det))

    # ---- MultiBoxLoss forward + backward
    locs0 = torch.randn(B, P, 4, generator=gen).to(device)
    scores0 = torch.randn(B, P, C, generator=gen).to(device)

    def fwd_bwd(loss_fn):
        def run():
            locs = locs0.clone().requires_grad_()
            scores = scores0.clone().requires_grad_()
            loss_fn(locs, scores).backward()

        return run

    det_l1 = MultiBoxLoss(priors, loc_loss="l1")
    det_sl1 = MultiBoxLoss(priors)
    t_tut_fwd, t_det_fwd = timeit(
        [
            lambda: ref.tutorial_multibox_loss(locs0, scores0, boxes, labels, priors),
            lambda: det_l1(locs0, scores0, boxes, labels),
        ],
        args.repeats,
        device,
    )
    t_tut_l, t_tv_l, t_det_l1, t_det_sl1 = timeit(
        [
            fwd_bwd(lambda l, s: ref.tutorial_multibox_loss(l, s, boxes, labels, priors)),
            fwd_bwd(lambda l, s: torchvision_loss(l, s, boxes, labels, anchors_xy, matcher, fake_ssd)),
            fwd_bwd(lambda l, s: det_l1(l, s, boxes, labels)),
            fwd_bwd(lambda l, s: det_sl1(l, s, boxes, labels)),
        ],
        args.repeats,
        device,
    )
    rows.append(("MultiBoxLoss forward", "tutorial MultiBoxLoss (l1)", t_tut_fwd, t_det_fwd))
    rows.append(("MultiBoxLoss fwd + bwd", "tutorial MultiBoxLoss (l1)", t_tut_l, t_det_l1))
    rows.append(("MultiBoxLoss fwd + bwd", "torchvision SSD matching + compute_loss", t_tv_l, t_det_sl1))

    print("| what | baseline | baseline ms | detops ms | speed-up |")
    print("|---|---|---:|---:|---:|")
    for what, base, tb, td in rows:
        print(f"| {what} | {base} | {tb * 1e3:.2f} | {td * 1e3:.2f} | {tb / td:.1f}x |")
    print("\n(detops MultiBoxLoss uses loc_loss='l1' against the tutorial and the default smooth L1 against "
          "torchvision, which uses smooth L1 too.)")

    # ---- value check in the same run
    want = ref.tutorial_multibox_loss(locs0, scores0, boxes, labels, priors)
    got = det_l1(locs0, scores0, boxes, labels)
    print(f"\nloss: detops {got.item():.6f}, tutorial {want.item():.6f}, rel diff {abs(got - want).item() / want.item():.2e}")

    # ---- peak memory of matching
    out_bytes = sum(t.numel() * t.element_size() for t in detops.match_priors(boxes, labels, priors))
    if device.type == "cpu":
        peak_det, _ = cpu_peak_bytes(lambda: detops.match_priors(boxes, labels, priors))
        peak_tut, _ = cpu_peak_bytes(lambda: ref.tutorial_match(boxes, labels, priors))
    else:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        res = detops.match_priors(boxes, labels, priors)
        torch.cuda.synchronize()
        peak_det = torch.cuda.max_memory_allocated() - base
        del res
        torch.cuda.reset_peak_memory_stats()
        res = ref.tutorial_match(boxes, labels, priors)
        torch.cuda.synchronize()
        peak_tut = torch.cuda.max_memory_allocated() - base
        del res
    print(f"\nmatching peak memory: detops {peak_det / 2**20:.2f} MiB for {out_bytes / 2**20:.2f} MiB of outputs "
          f"({peak_det / out_bytes:.2f}x); tutorial loop {peak_tut / 2**20:.2f} MiB ({peak_tut / out_bytes:.2f}x)")

    # ---- host synchronisations on CUDA
    if device.type == "cuda":
        pb, pl, counts = detops.matching.pack_targets(boxes, labels)
        for name, args_ in [("lists", (boxes, labels)), ("padded", (pb, pl, counts))]:
            locs = locs0.clone().requires_grad_()
            scores = scores0.clone().requires_grad_()
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    det_sl1(locs, scores, *args_).backward()
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            n_sync = sum("synchroniz" in str(w.message) for w in caught)
            print(f"host synchronisations in MultiBoxLoss forward + backward ({name} targets): {n_sync}")


if __name__ == "__main__":
    main()
