"""Rotated boxes (detops/rotated.py) against torchvision's rotated box_iou and a per-box NMS loop."""

import detops
from detops.bench import workloads as W
from detops.bench.registry import Pair, case

TV = ("torchvision.ops",)

# The rotated workloads live with their cases (the family is optional in a checkout).
W.WORKLOADS.setdefault(
    "rotated_uniform",
    "cxcywhr boxes, centres uniform in a 1000 px square, sides 10-310 px, angles uniform in [-180, 180)",
)
W.WORKLOADS.setdefault(
    "rotated_clustered", "jittered copies (3 px, 5% size, 5 degrees) of 40 rotated objects of 20-120 px, uniform scores"
)


def uniform_rotated(n, g, device, dtype):
    import torch

    u = torch.rand(n, 5, generator=g, dtype=torch.float64)
    boxes = torch.stack(
        (u[:, 0] * 1000, u[:, 1] * 1000, 10 + u[:, 2] * 300, 10 + u[:, 3] * 300, u[:, 4] * 360 - 180), dim=1
    )
    return boxes.to(device=device, dtype=dtype)


def clustered_rotated(n, g, device, dtype):
    import torch

    objects = uniform_rotated(40, g, "cpu", torch.float64)
    objects[:, 2:4] = 20 + torch.rand(40, 2, generator=g, dtype=torch.float64) * 100
    pick = torch.randint(0, 40, (n,), generator=g)
    boxes = objects[pick].clone()
    boxes[:, :2] += torch.randn(n, 2, generator=g, dtype=torch.float64) * 3
    boxes[:, 2:4] *= 1 + torch.randn(n, 2, generator=g, dtype=torch.float64) * 0.05
    boxes[:, 4] += torch.randn(n, generator=g, dtype=torch.float64) * 5
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    return boxes.to(device=device, dtype=dtype), scores.to(device=device, dtype=dtype)


@case(
    "rotated",
    "box_iou_rotated",
    "torchvision",
    "rotated_uniform",
    sizes=("2000x2000", "4096x4096"),
    quick=("300x300",),
    requires=TV,
    devices=("cpu", "cuda"),
    size_label="N x M",
)
def box_iou_rotated_vs_torchvision(dims, ctx):
    """Rotated IoU [N, 5] x [M, 5] -> [N, M] against torchvision.ops.box_iou(fmt="cxcywhr") (float32 output,
    so both sides are compared in float32)."""
    import torch
    import torchvision

    n, m = dims if len(dims) == 2 else (dims[0], dims[0])
    g = ctx.generator()
    dtype = torch.float32 if ctx.dtype not in (torch.float32, torch.float64) else ctx.dtype
    a, b = uniform_rotated(n, g, ctx.device, dtype), uniform_rotated(m, g, ctx.device, dtype)

    def ours(x, y):
        return detops.box_iou(x, y, fmt="cxcywhr").float()

    def theirs(x, y):
        return torchvision.ops.box_iou(x, y, fmt="cxcywhr")

    def check(ours, theirs):
        # torchvision's kernel is wrong on rare near-degenerate pairs (one in a few million here: an IoU of
        # 0.057 where the exact value is 0.115); every other entry must agree.
        bad = int(((ours - theirs).abs() > 1e-4).sum())
        return None if bad <= max(1, ours.numel() // 100000) else f"{bad} IoUs differ by more than 1e-4"

    return Pair((a, b), ours, theirs, check=check, floor=True, dtype=dtype)


@case(
    "rotated",
    "nms_rotated",
    "per-box loop",
    "rotated_clustered",
    sizes=("5000",),
    quick=("1000",),
    requires=TV,
    devices=("cpu", "cuda"),
)
def nms_rotated_vs_loop(dims, ctx):
    """Rotated NMS against the greedy loop a user writes without a kernel: one torchvision rotated box_iou
    row per kept box, suppressing the rest above the threshold."""
    import torch
    import torchvision

    dtype = torch.float32 if ctx.dtype not in (torch.float32, torch.float64) else ctx.dtype
    boxes, scores = clustered_rotated(dims[0], ctx.generator(), ctx.device, dtype)

    def loop(boxes, scores, thr=0.5):
        order = torch.sort(scores, descending=True, stable=True).indices
        b = boxes[order].float()
        alive = torch.ones(b.shape[0], dtype=torch.bool, device=b.device)
        keep = []
        for i in range(b.shape[0]):
            if not alive[i]:
                continue
            keep.append(i)
            iou = torchvision.ops.box_iou(b[i : i + 1], b[i + 1 :], fmt="cxcywhr")[0]
            alive[i + 1 :] &= iou <= thr
        return order[torch.tensor(keep, dtype=torch.long, device=b.device)]

    def check(ours, theirs):
        # Near-threshold IoUs may round apart between the two kernels; the kept sets must nearly agree.
        a, b = set(ours.tolist()), set(theirs.tolist())
        return None if len(a ^ b) <= max(1, len(a) // 100) else f"kept sets differ in {len(a ^ b)} boxes"

    return Pair((boxes, scores), lambda b, s: detops.nms_rotated(b, s, 0.5), loop, check=check, dtype=dtype)


@case(
    "rotated",
    "multiclass_nms_rotated",
    "per-image loop",
    "rotated_clustered",
    sizes=("8",),
    quick=("1",),
    size_label="images",
)
def multiclass_nms_rotated_vs_loop(dims, ctx):
    """multiclass_nms_rotated (2000 boxes x 15 classes per image, score above 0.1, top 100) against the loop a
    user writes without it: per image, the candidates above the threshold, batched_nms_rotated over their
    classes, the 100 best. Detections compared by count and scores."""
    import torch

    dtype = torch.float32 if ctx.dtype not in (torch.float32, torch.float64) else ctx.dtype
    g = ctx.generator()
    images, priors, classes, k = dims[0], 2000, 15, 100
    boxes, _ = clustered_rotated(images * priors, g, ctx.device, dtype)
    boxes = boxes.view(images, priors, 5)
    scores = (torch.rand(images, priors, classes, generator=g, dtype=torch.float64) ** 4).to(ctx.device, dtype)

    def ours(b, s):
        return detops.multiclass_nms_rotated(b, s, 0.1, 0.5, k)

    def loop(b, s):
        out = []
        for i in range(b.shape[0]):
            prior, cls = (s[i] > 0.1).nonzero(as_tuple=True)
            sc = s[i, prior, cls]
            keep = detops.batched_nms_rotated(b[i, prior], sc, cls, 0.5)[:k]
            out.append(sc[keep])
        return out

    def check(ours, theirs):
        _, s, _, n = ours
        for i, want in enumerate(theirs):
            got = s[i, : int(n[i])]
            if got.numel() != want.numel() or not torch.equal(got.sort().values, want.sort().values):
                return f"image {i}: {got.numel()} detections against the loop's {want.numel()}, or other scores"
        return None

    return Pair((boxes, scores), ours, loop, check=check, dtype=dtype)


@case("rotated", "soft_nms_rotated", "reference", "rotated_clustered", sizes=("300",), quick=("50",))
def soft_nms_rotated_vs_reference(dims, ctx):
    """Gaussian soft-NMS of rotated boxes against the plain per-box reference loop (no torchvision
    counterpart)."""
    import torch

    from detops.reference import rotated as ref

    dtype = torch.float32 if ctx.dtype not in (torch.float32, torch.float64) else ctx.dtype
    boxes, scores = clustered_rotated(dims[0], ctx.generator(), ctx.device, dtype)
    return Pair((boxes, scores), detops.soft_nms_rotated, ref.soft_nms_rotated, rtol=1e-4, atol=1e-5, dtype=dtype)
