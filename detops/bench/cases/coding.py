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
    return Pair((boxes, anchors), lambda b, a: detops.encode_boxes(b, a, WEIGHTS), coder.encode_single, floor=True,
                **_tol(ctx.dtype))


@case("coding", "decode_boxes", "torchvision BoxCoder", "aligned", sizes=("8732", "279424"), quick=("8732",))
def decode(dims, ctx):
    """decode_boxes(deltas, anchors, weights (10, 10, 5, 5)) against BoxCoder.decode_single(deltas, anchors)."""
    import torch
    from torchvision.models.detection._utils import BoxCoder

    g = ctx.generator()
    anchors = W.uniform_boxes(dims[0], g, ctx.device, ctx.dtype)
    deltas = (torch.randn(dims[0], 4, generator=g) * 0.5).to(ctx.device, ctx.dtype)
    coder = BoxCoder(WEIGHTS)
    return Pair((deltas, anchors), lambda d, a: detops.decode_boxes(d, a, WEIGHTS), coder.decode_single, floor=True,
                **_tol(ctx.dtype))
