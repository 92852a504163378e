"""Box coding (detops/coding.py) against torchvision's BoxCoder."""

import detops
from detops.bench import workloads as W
from detops.bench.registry import Pair, case

WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _tol(dtype):
    import torch

    return dict(rtol=2e-2, atol=2e-2) if dtype in (torch.float16, torch.bfloat16) else dict(rtol=1e-4, atol=1e-4)


@case("coding", "encode_boxes", "torchvision BoxCoder", "aligned", sizes=("8732", "279424"), quick=("8732",))
def encode(dims, ctx):
    """encode_boxes(boxes, anchors, weights (10, 10, 5, 5)) against BoxCoder.encode_single(boxes, anchors)."""
    from torchvision.models.detection._utils import BoxCoder

    boxes, anchors = W.aligned_pairs(dims[0], ctx.generator(), ctx.device, ctx.dtype)
    coder = BoxCoder(WEIGHTS)
    return Pair(
        (boxes, anchors),
        lambda b, a: detops.encode_boxes(b, a, WEIGHTS),
        coder.encode_single,
        floor=True,
        **_tol(ctx.dtype),
    )


@case("coding", "decode_boxes", "torchvision BoxCoder", "aligned", sizes=("8732", "279424"), quick=("8732",))
def decode(dims, ctx):
    """decode_boxes(deltas, anchors, weights (10, 10, 5, 5)) against BoxCoder.decode_single(deltas, anchors)."""
    import torch
    from torchvision.models.detection._utils import BoxCoder

    g = ctx.generator()
    anchors = W.uniform_boxes(dims[0], g, ctx.device, ctx.dtype)
    deltas = (torch.randn(dims[0], 4, generator=g) * 0.5).to(ctx.device, ctx.dtype)
    coder = BoxCoder(WEIGHTS)
    return Pair(
        (deltas, anchors),
        lambda d, a: detops.decode_boxes(d, a, WEIGHTS),
        coder.decode_single,
        floor=True,
        **_tol(ctx.dtype),
    )


@case("coding", "encode_boxes", "reference", "ssd300_batch", sizes=("32",), quick=("4",), size_label="images")
def encode_vs_reference(dims, ctx):
    """encode_boxes of a batch's matched boxes [B, 8732, 4] against their SSD300 priors, against the
    plain-PyTorch reference (detops.reference.coding)."""
    from detops.reference import coding as ref

    g = ctx.generator()
    priors = detops.box_convert(W.ssd300_priors(ctx.device, ctx.dtype), "cxcywh", "xyxy")
    boxes = (W.uniform_boxes(priors.shape[0], g, lead=(dims[0],)) / 1300).to(ctx.device, ctx.dtype)
    return Pair((boxes, priors, WEIGHTS), detops.encode_boxes, ref.encode_boxes, floor=True, **_tol(ctx.dtype))


@case("coding", "decode_boxes", "reference", "ssd300_batch", sizes=("32",), quick=("4",), size_label="images")
def decode_vs_reference(dims, ctx):
    """decode_boxes of offsets [B, 8732, 4] (0.5 randn) against the SSD300 priors, against the plain-PyTorch
    reference."""
    import torch

    from detops.reference import coding as ref

    g = ctx.generator()
    priors = detops.box_convert(W.ssd300_priors(ctx.device, ctx.dtype), "cxcywh", "xyxy")
    deltas = (torch.randn(dims[0], priors.shape[0], 4, generator=g) * 0.5).to(ctx.device, ctx.dtype)
    return Pair((deltas, priors, WEIGHTS), detops.decode_boxes, ref.decode_boxes, floor=True, **_tol(ctx.dtype))
