"""Box ops (detops/boxes.py) against torchvision.ops."""

import detops
from detops.bench import workloads as W
from detops.bench.registry import Pair, case

TV = ("torchvision.ops",)


def _tol(dtype):
    import torch

    if dtype in (torch.float16, torch.bfloat16):
        return dict(rtol=1e-2, atol=1e-2)
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)


def _pairwise(name):
    def build(dims, ctx):
        import torchvision

        n, m = dims if len(dims) == 2 else (dims[0], dims[0])
        g = ctx.generator()
        a = W.uniform_boxes(n, g, ctx.device, ctx.dtype)
        b = W.uniform_boxes(m, g, ctx.device, ctx.dtype)
        return Pair((a, b), getattr(detops, name), getattr(torchvision.ops, name), floor=True, **_tol(ctx.dtype))

    build.__doc__ = f"{name} [N, 4] x [M, 4] -> [N, M] against torchvision.ops.{name}"
    return build


for _name, _sizes in (
    ("box_iou", ("1000x1000", "4096x4096", "500x20000")),
    ("generalized_box_iou", ("1000x1000", "4096x4096")),
    ("distance_box_iou", ("1000x1000", "4096x4096")),
    ("complete_box_iou", ("1000x1000", "4096x4096")),
):
    case("boxes", _name, "torchvision", "uniform", sizes=_sizes, quick=("300x300",), requires=TV, size_label="N x M")(
        _pairwise(_name)
    )


@case(
    "boxes",
    "box_iou",
    "torchvision per-image loop",
    "ssd300_batch",
    sizes=("32",),
    quick=("4",),
    requires=TV,
    size_label="images",
)
def batched_box_iou(dims, ctx):
    """IoU of a batch's ground truth [B, 20, 4] against the 8732 SSD300 priors in one call, against a loop of
    torchvision.ops.box_iou over the images."""
    import torchvision

    g = ctx.generator()
    gt = W.uniform_boxes(20, g, ctx.device, ctx.dtype, lead=(dims[0],)) / 1300
    priors = detops.box_convert(W.ssd300_priors(ctx.device, ctx.dtype), "cxcywh", "xyxy")

    def loop(gt, priors):
        import torch

        return torch.stack([torchvision.ops.box_iou(x, priors) for x in gt])

    return Pair((gt, priors), detops.box_iou, loop, floor=True, **_tol(ctx.dtype))


@case("boxes", "box_area", "torchvision", "uniform", sizes=("100000", "1000000"), quick=("10000",), requires=TV)
def box_area(dims, ctx):
    """box_area [N, 4] -> [N] against torchvision.ops.box_area."""
    import torchvision

    b = W.uniform_boxes(dims[0], ctx.generator(), ctx.device, ctx.dtype)
    return Pair((b,), detops.box_area, torchvision.ops.box_area, floor=True, **_tol(ctx.dtype))


@case("boxes", "box_convert", "torchvision", "uniform", sizes=("100000", "1000000"), quick=("10000",), requires=TV)
def box_convert(dims, ctx):
    """box_convert xyxy -> cxcywh against torchvision.ops.box_convert."""
    import torchvision

    b = W.uniform_boxes(dims[0], ctx.generator(), ctx.device, ctx.dtype)
    return Pair((b, "xyxy", "cxcywh"), detops.box_convert, torchvision.ops.box_convert, floor=True, **_tol(ctx.dtype))


def _loss(name):
    def build(dims, ctx):
        import torchvision

        a, b = W.aligned_pairs(dims[0], ctx.generator(), ctx.device, ctx.dtype)
        tol = _tol(ctx.dtype)
        return Pair(
            (a, b),
            getattr(detops, name),
            getattr(torchvision.ops, name),
            floor=True,
            rtol=tol["rtol"] * 10,
            atol=tol["atol"] * 10,
        )

    build.__doc__ = f"{name} of aligned pairs [N, 4] x [N, 4] -> [N] against torchvision.ops.{name}"
    return build


for _name in ("generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss"):
    case("boxes", _name, "torchvision", "aligned", sizes=("100000", "279424"), quick=("10000",), requires=TV)(
        _loss(_name)
    )
