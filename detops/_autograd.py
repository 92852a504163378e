"""Backward formulas for the differentiable detops ops, registered with torch.library.register_autograd.

The kernels are forward-only. For the overlap and coding ops the gradients are the reference formulas'
gradients (detops.reference), recomputed in the backward pass: the forward stays fused and fast, and the
gradient is exactly the gradient of the documented formula. The cross-entropy's backward is its closed form.
"""

import torch
from torch.library import register_autograd

from detops.reference import boxes as ref_boxes
from detops.reference import compute_dtype
from detops.reference import coding as ref_coding


def _vjp(fn, inputs, grad, needs):
    if torch.is_grad_enabled():
        # backward(create_graph=True) (a gradient penalty, double backward): the gradient must itself be
        # differentiable, so the reference runs on the saved inputs as they are, still attached to the graph.
        wanted = [x for x, n in zip(inputs, needs) if n]
        grads = iter(torch.autograd.grad(fn(*inputs), wanted, grad, allow_unused=True, create_graph=True))
        return [next(grads) if n else None for n in needs]
    with torch.enable_grad():
        leaves = [x.detach().requires_grad_(n) for x, n in zip(inputs, needs)]
        out = fn(*leaves)
        wanted = [x for x, n in zip(leaves, needs) if n]
        grads = iter(torch.autograd.grad(out, wanted, grad, allow_unused=True))
    return [next(grads) if n else None for n in needs]


def _setup_boxes(ctx, inputs, output):
    boxes1, boxes2, mode, eps = inputs[:4]
    ctx.save_for_backward(boxes1, boxes2)
    ctx.mode, ctx.eps = mode, eps
    ctx.fmt = inputs[4] if len(inputs) > 4 else "xyxy"  # box_overlap's box format


def _box_overlap_backward(ctx, grad):
    boxes1, boxes2 = ctx.saved_tensors
    g1, g2 = _vjp(
        lambda a, b: ref_boxes.box_overlap(a, b, ctx.mode, ctx.eps, ctx.fmt),
        (boxes1, boxes2),
        grad,
        ctx.needs_input_grad[:2],
    )
    return g1, g2, None, None, None


def _box_iou_aligned_backward(ctx, grad):
    boxes1, boxes2 = ctx.saved_tensors
    g1, g2 = _vjp(
        lambda a, b: ref_boxes.box_iou_aligned(a, b, ctx.mode, ctx.eps),
        (boxes1, boxes2),
        grad,
        ctx.needs_input_grad[:2],
    )
    return g1, g2, None, None


def _setup_coding(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.extra = inputs[2:]


def _encode_backward(ctx, grad):
    boxes, anchors = ctx.saved_tensors
    g = _vjp(lambda b, a: ref_coding.encode_boxes(b, a, *ctx.extra), (boxes, anchors), grad, ctx.needs_input_grad[:2])
    return g[0], g[1], None


def _decode_backward(ctx, grad):
    deltas, anchors = ctx.saved_tensors
    g = _vjp(lambda d, a: ref_coding.decode_boxes(d, a, *ctx.extra), (deltas, anchors), grad, ctx.needs_input_grad[:2])
    return g[0], g[1], None, None


def _setup_cross_entropy(ctx, inputs, output):
    logits, targets, ignore_index = inputs
    ctx.save_for_backward(logits, targets)
    ctx.ignore_index = ignore_index


def _cross_entropy_backward(ctx, grad):
    # d loss / d logits = softmax(logits) - one_hot(target); scatter, not F.one_hot, which reads the largest
    # target on the host (a CUDA synchronisation).
    # Ignored rows (target == ignore_index) have gradient 0. Any other target outside [0, C) (NaN loss on CUDA,
    # where the forward cannot raise without a synchronisation) must not reach scatter_add: an out-of-bounds
    # index there is a device-side assert that ends the CUDA context. Its row scatters into column 0 and then
    # gets a NaN gradient, the derivative of its NaN loss.
    logits, targets = ctx.saved_tensors
    compute = compute_dtype(logits.dtype)
    g = torch.softmax(logits.to(compute), dim=-1)
    t = targets.long()
    kept = (t != ctx.ignore_index).unsqueeze(-1)
    valid = ((t >= 0) & (t < logits.size(-1))).unsqueeze(-1)
    index = torch.where(valid, t.unsqueeze(-1), 0)
    g = g.scatter_add(-1, index, torch.full_like(index, -1, dtype=compute))
    g = g.masked_fill(kept & ~valid, float("nan"))
    g = torch.where(kept, g * grad.to(compute).unsqueeze(-1), 0)
    return g.to(logits.dtype), None, None


register_autograd("detops::box_overlap", _box_overlap_backward, setup_context=_setup_boxes)
register_autograd("detops::box_iou_aligned", _box_iou_aligned_backward, setup_context=_setup_boxes)
register_autograd("detops::encode_boxes", _encode_backward, setup_context=_setup_coding)
register_autograd("detops::decode_boxes", _decode_backward, setup_context=_setup_coding)
register_autograd("detops::softmax_cross_entropy", _cross_entropy_backward, setup_context=_setup_cross_entropy)


# ---- focal loss: the closed form for the logits (a kernel), the reference's gradient for the targets ----


def _setup_focal(ctx, inputs, output):
    x, t, alpha, gamma, reduction = inputs
    ctx.save_for_backward(x, t)
    ctx.args = (alpha, gamma, reduction)


def _focal_backward(ctx, grad):
    from detops.reference import focal_loss as ref_focal

    x, t = ctx.saved_tensors
    gx = gt = None
    if ctx.needs_input_grad[0]:
        gx = torch.ops.detops.sigmoid_focal_loss_backward(grad, x, t, *ctx.args).to(x.dtype)
    if ctx.needs_input_grad[1]:
        gt = _vjp(lambda a, b: ref_focal.sigmoid_focal_loss(a, b, *ctx.args), (x, t), grad, (False, True))[1]
    return gx, gt, None, None, None


register_autograd("detops::sigmoid_focal_loss", _focal_backward, setup_context=_setup_focal)
