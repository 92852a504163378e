"""Every detops op once, on small inputs, on one device: the program compute-sanitizer runs (memcheck,
racecheck, synccheck instrument every kernel, so the whole test suite under them would take far too long).

    PYTHONPATH=. python benchmarks/gpu_smoke.py --device cuda     # each op once; on CUDA compared with the CPU
    compute-sanitizer --tool racecheck --error-exitcode 1 python benchmarks/gpu_smoke.py --device cuda

Every kernel instantiation that differs in block shape, shared memory or dtype is reached: each overlap mode
in float32 and float64 (the float64 CIoU kernel needs the most registers), coding both ways, nms and
batched_nms past one 64-box mask tile, multiclass_nms with shared and per-class boxes, soft_nms both
methods, both matchers, hard negative mining with ties, the cross-entropy forward and backward, the
MultiBoxLoss forward and backward, and YOLO candidates in both head layouts. Each result is compared with the
CPU kernel's (indices, ties and thresholds exactly, values to 1e-5). Prints one line per op; the exit status is
the number of failed ops.
"""

import argparse
import sys
import time
import traceback

import torch

import detops
from detops.ssd import MultiBoxLoss, prior_boxes


def random_boxes(n, g, *, scale=100.0, lead=(), dtype=torch.float32):
    xy = torch.rand(*lead, n, 2, generator=g, dtype=torch.float64) * scale
    wh = torch.rand(*lead, n, 2, generator=g, dtype=torch.float64) * scale * 0.5 + 1e-3 * scale
    return torch.cat([xy, xy + wh], -1).to(dtype)


def cases(g):
    """(name, fn(device) -> tensor or tuple of tensors, exact) for every op."""
    a64, b64 = random_boxes(70, g, dtype=torch.float64), random_boxes(300, g, dtype=torch.float64)
    a32, b32 = a64.float(), b64.float()
    batched = random_boxes(40, g, lead=(2,))
    anchors = random_boxes(40, g)
    nms_boxes = random_boxes(300, g, scale=60)
    nms_scores = (torch.rand(300, generator=g) * 8).round() / 8  # ties
    idxs = torch.randint(0, 4, (300,), generator=g)
    mc_boxes = random_boxes(200, g, lead=(2,))
    mc_scores = torch.rand(2, 200, 5, generator=g)
    mc_class_boxes = random_boxes(200 * 5, g, lead=(2,)).view(2, 200, 5, 4)
    gt = random_boxes(6, g, scale=0.6, lead=(3,)).clamp(0, 1)
    gt_labels = torch.randint(1, 5, (3, 6), generator=g)
    counts = torch.tensor([6, 0, 2])
    priors = prior_boxes([4, 2, 1], [0.2, 0.5, 0.9], [[1.0, 2.0, 0.5], [1.0, 2.0, 0.5], [1.0, 2.0]])
    quality = torch.rand(2, 5, 300, generator=g)
    loss = (torch.rand(3, 1000, generator=g) * 4).round()  # many ties at the selection boundary
    positives = torch.rand(3, 1000, generator=g) < 0.05
    logits = torch.randn(3, 500, 21, generator=g) * 3
    targets = torch.randint(0, 21, (3, 500), generator=g)
    locs = torch.randn(3, priors.size(0), 4, generator=g)
    scores = torch.randn(3, priors.size(0), 5, generator=g)
    v5 = torch.rand(2, 300, 5 + 4, generator=g)
    v8 = torch.rand(2, 4 + 4, 300, generator=g)

    def grad_of_cross_entropy(d):
        x = logits.to(d).requires_grad_()
        out = detops.softmax_cross_entropy(x, targets.to(d))
        (gx,) = torch.autograd.grad(out.sum(), x)
        return out, gx

    def multibox(d):
        crit = MultiBoxLoss(priors, threshold=0.3).to(d)
        lo, sc = locs.to(d).requires_grad_(), scores.to(d).requires_grad_()
        value = crit(lo, sc, gt.to(d), gt_labels.to(d), counts.to(d))
        return (value, *torch.autograd.grad(value, (lo, sc)))

    out = []
    for mode in ("iou", "giou", "diou", "ciou", "iof"):
        for name, a, b in (("float32", a32, b32), ("float64", a64, b64)):
            out.append(
                (
                    f"box_overlap {mode} {name}",
                    lambda d, a=a, b=b, m=mode: detops.box_overlap(a.to(d), b.to(d), m),
                    False,
                )
            )
        out.append(
            (
                f"box_iou_aligned {mode}",
                lambda d, m=mode: detops.box_iou_aligned(a32[:70].to(d), b32[:70].to(d), m),
                False,
            )
        )
    out += [
        ("box_overlap batched", lambda d: detops.box_overlap(batched.to(d), anchors.to(d), "ciou"), False),
        ("encode_boxes", lambda d: detops.encode_boxes(batched.to(d), anchors.to(d), (10, 10, 5, 5)), False),
        ("decode_boxes", lambda d: detops.decode_boxes(batched.to(d) / 100, anchors.to(d), (10, 10, 5, 5)), False),
        ("nms", lambda d: detops.nms(nms_boxes.to(d), nms_scores.to(d), 0.5), True),
        ("batched_nms", lambda d: detops.batched_nms(nms_boxes.to(d), nms_scores.to(d), idxs.to(d), 0.5), True),
        ("multiclass_nms", lambda d: detops.multiclass_nms(mc_boxes.to(d), mc_scores.to(d), 0.2, 0.5, 50), True),
        (
            "multiclass_nms per-class boxes",
            lambda d: detops.multiclass_nms(
                mc_class_boxes.to(d), mc_scores.to(d), 0.2, 0.5, 50, background_class=0, max_candidates_per_class=40
            ),
            True,
        ),
        ("soft_nms gaussian", lambda d: detops.soft_nms(nms_boxes.to(d), nms_scores.to(d), method="gaussian"), False),
        ("soft_nms linear", lambda d: detops.soft_nms(nms_boxes.to(d), nms_scores.to(d), method="linear"), False),
        (
            "match_priors",
            lambda d: detops.match_priors(gt.to(d), gt_labels.to(d), priors.to(d), 0.3, counts=counts.to(d)),
            False,
        ),
        ("match_boxes", lambda d: detops.match_boxes(quality.to(d), 0.7, 0.3, True), True),
        ("hard_negative_mining", lambda d: detops.hard_negative_mining(loss.to(d), positives.to(d), 3), True),
        ("softmax_cross_entropy fwd+bwd", grad_of_cross_entropy, False),
        ("MultiBoxLoss fwd+bwd", multibox, False),
        ("yolo_candidates v5", lambda d: torch.ops.detops.yolo_candidates(v5.to(d), 0.25, True), True),
        ("yolo_candidates v8", lambda d: torch.ops.detops.yolo_candidates(v8.to(d).transpose(1, 2), 0.25, False), True),
    ]
    return out


def compare(got, want, exact):
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for x, y in zip(got, want):
        x = x.detach().cpu()
        if exact or not y.is_floating_point():
            torch.testing.assert_close(x, y.detach(), rtol=0, atol=0, equal_nan=True)
        else:
            torch.testing.assert_close(x, y.detach(), rtol=1e-5, atol=1e-6, equal_nan=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--no-compare", action="store_true", help="skip the comparison with the CPU kernels")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    failed = 0
    start = time.perf_counter()
    for name, fn, exact in cases(torch.Generator().manual_seed(0)):
        t0 = time.perf_counter()
        try:
            got = fn(device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if not args.no_compare:  # on the CPU itself: the same result twice
                compare(got, fn(torch.device("cpu")), exact)
            print(f"ok    {name} ({time.perf_counter() - t0:.2f} s)", flush=True)
        except Exception:  # noqa: BLE001 - report every op, then fail
            failed += 1
            print(f"FAIL  {name}", flush=True)
            traceback.print_exc()
    print(f"{failed} failed, {time.perf_counter() - start:.1f} s on {device}", flush=True)
    return min(failed, 100)


if __name__ == "__main__":
    sys.exit(main())
