"""The sigmoid focal loss (csrc/*/focal_loss.*, wrapped in detops/focal_loss.py)."""

import torch

import detops
from detops.bench import workloads as W
from detops.bench.registry import Pair, case

W.WORKLOADS.setdefault(
    "retinanet_logits",
    "RetinaNet classification logits [B, 49104, 91] (512x512 images), randn * 3, 0.1% positive targets",
)


def _retinanet_logits(images, ctx):
    # RetinaNet's classification output at 512 x 512: about 49k anchors of 91 classes per image.
    g = ctx.generator()
    x = (torch.randn(images, 49104, 91, generator=g) * 3).to(ctx.device, ctx.dtype)
    t = (torch.rand(images, 49104, 91, generator=g) < 0.001).to(ctx.device, ctx.dtype)
    return x, t


@case(
    "focal_loss",
    "sigmoid_focal_loss",
    "torchvision",
    "retinanet_logits",
    sizes=("4",),
    quick=("1",),
    requires=["torchvision.ops"],
    size_label="images",
)
def focal_sum(dims, ctx):
    """sigmoid_focal_loss(reduction="sum") on RetinaNet-sized logits, forward and backward, against torchvision's."""
    import torchvision

    x, t = _retinanet_logits(dims[0], ctx)

    def step(fn):
        def run(x, t):
            leaf = x.detach().requires_grad_()
            loss = fn(leaf, t, reduction="sum")
            loss.backward()
            return loss.detach(), leaf.grad

        return run

    low = x.dtype in (torch.float16, torch.bfloat16)
    return Pair(
        (x, t),
        step(detops.sigmoid_focal_loss),
        step(torchvision.ops.sigmoid_focal_loss),
        rtol=2e-2 if low else 1e-4,
        atol=1e-2 if low else 1e-6,
    )
