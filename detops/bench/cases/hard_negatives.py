"""Hard negative mining and the per-prior cross-entropy (csrc/*/hard_negatives.*, wrapped in detops/matching.py)."""

import torch
import torch.nn.functional as F

import detops
from detops.bench import workloads as W
from detops.bench.registry import Pair, case


@case("hard_negatives", "hard_negative_mining", "reference", "mining", sizes=("32",), quick=("4",), size_label="images")
def mining(dims, ctx):
    """hard_negative_mining (per-row selection) against the reference's per-row stable sort (same mask)."""
    from detops.reference.hard_negatives import hard_negative_mining

    g = ctx.generator()
    loss = torch.rand(dims[0], 8732, generator=g).to(ctx.device, ctx.dtype)
    positives = (torch.rand(dims[0], 8732, generator=g) < 0.01).to(ctx.device)
    return Pair((loss, positives, 3), detops.hard_negative_mining, hard_negative_mining, check="equal")


@case(
    "hard_negatives",
    "softmax_cross_entropy",
    "torch F.cross_entropy",
    "logits",
    sizes=("32",),
    quick=("4",),
    size_label="images",
)
def cross_entropy(dims, ctx):
    """softmax_cross_entropy [B, 8732, 21] against F.cross_entropy(reduction="none")."""
    logits, targets = W.ce_logits(dims[0], ctx.generator(), ctx.device, ctx.dtype)

    def torch_ce(logits, targets):
        C = logits.shape[-1]
        x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        return (
            F.cross_entropy(x.reshape(-1, C), targets.reshape(-1), reduction="none")
            .view(targets.shape)
            .to(logits.dtype)
        )

    low = logits.dtype in (torch.float16, torch.bfloat16)
    return Pair(
        (logits, targets),
        detops.softmax_cross_entropy,
        torch_ce,
        floor=True,
        rtol=1e-2 if low else 1e-5,
        atol=1e-2 if low else 1e-5,
    )
