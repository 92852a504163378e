"""Training torchvision's detectors with detops patched in (``patch_torchvision(training=True)``) against
torchvision's own code: the target assignment and losses alone, and the whole training step.

``training_losses`` times what a training step does between the head outputs and the loss dict: the model's
own ``forward`` in train mode with its networks (transform, backbone, heads; for Faster R-CNN also the ROI
pooling and box head) replaced by modules that return outputs captured once, then the backward pass to those
outputs. What is left is anchor generation, matching, box encoding, the samplers, proposal filtering (Faster
R-CNN's RPN NMS) and the losses. ``training_step`` times the real step (forward and backward of every
parameter) on the same batch, so the two together give the share of a step spent in that part, with and
without detops. The global random generator is reseeded before every call, so both sides draw the same
samples and their losses and gradients must agree.
"""

from collections import OrderedDict

import torch

import detops
from detops.bench import compare
from detops.bench import workloads as W
from detops.bench.registry import Pair, case

CLASSES = 21  # VOC's 20 and background: the fine-tuning setting
SIZES = {"fasterrcnn_v2": 320, "retinanet": 320, "ssd300": 300}

for _name, _text in (
    ("fasterrcnn_v2", "fasterrcnn_resnet50_fpn_v2 training batch: 320x320 images (25575 anchors each)"),
    ("retinanet", "retinanet_resnet50_fpn training batch: 320x320 images (19206 anchors each)"),
    ("ssd300", "ssd300_vgg16 training batch: 300x300 images (8732 anchors each)"),
):
    W.WORKLOADS.setdefault(f"{_name}_train", f"{_text}, 1-20 objects per image, {CLASSES} classes, random init")


def _model(name, device):
    from torchvision.models import detection as tvd

    size = SIZES[name]
    kw = dict(weights=None, weights_backbone=None, num_classes=CLASSES)
    if name == "fasterrcnn_v2":
        model = tvd.fasterrcnn_resnet50_fpn_v2(min_size=size, max_size=size, **kw)
    elif name == "retinanet":
        model = tvd.retinanet_resnet50_fpn(min_size=size, max_size=size, **kw)
    else:
        model = tvd.ssd300_vgg16(**kw)
    return model.to(device).train()


def _batch(batch, size, g, device):
    images = [torch.rand(3, size, size, generator=g).to(device) for _ in range(batch)]
    boxes, labels = W.ssd_targets(batch, g, max_objects=20, classes=CLASSES)
    targets = [{"boxes": (b * size).to(device), "labels": lb.to(device)} for b, lb in zip(boxes, labels)]
    return images, targets


def _returns(module, out):
    """Makes ``module(...)`` return ``out``; the module keeps its other methods (a transform's postprocess, a
    head's compute_loss), which torchvision's forward still calls."""
    module.forward = lambda *args, **kwargs: out


def _rows_of(proposals):
    # What the ROI pooling passes on, reduced to one empty row per sampled proposal.
    return torch.empty(sum(len(p) for p in proposals), 0, device=proposals[0].device)


def _leaf(t):
    return t.detach().clone().requires_grad_()


def _head_only(name, batch, ctx):
    """The model with its networks replaced by captured outputs, the batch, and those outputs (leaves)."""
    model = _model(name, ctx.device)
    g = ctx.generator()
    images, targets = _batch(batch, SIZES[name], g, ctx.device)
    with torch.no_grad():
        image_list, moved = model.transform(images, targets)
        # Only the shapes of the features matter once the heads are replaced: one image's, broadcast.
        one = model.backbone(image_list.tensors[:1])
    features = OrderedDict((k, v.expand(batch, *v.shape[1:])) for k, v in one.items())
    _returns(model.transform, (image_list, moved))
    _returns(model.backbone, features)

    def randn(*shape, scale=1.0, shift=0.0):
        return _leaf(torch.randn(*shape, generator=g).mul_(scale).add_(shift).to(ctx.device))

    if name == "fasterrcnn_v2":
        a = model.rpn.head.cls_logits.out_channels
        levels = [v.shape[-2:] for v in features.values()]
        objectness = [randn(batch, a, h, w) for h, w in levels]
        deltas = [randn(batch, 4 * a, h, w, scale=0.1) for h, w in levels]
        rows = batch * model.roi_heads.fg_bg_sampler.batch_size_per_image
        logits, regression = randn(rows, CLASSES, scale=3.0), randn(rows, 4 * CLASSES, scale=0.1)
        _returns(model.rpn.head, (objectness, deltas))
        roi = model.roi_heads
        roi.box_roi_pool.forward = lambda features, proposals, image_shapes: _rows_of(proposals)
        roi.box_head.forward = lambda rows: rows
        roi.box_predictor.forward = lambda rows: (logits[: rows.shape[0]], regression[: rows.shape[0]])
        leaves = objectness + deltas + [logits, regression]
    else:
        with torch.no_grad():
            shapes = {k: v.shape[1:] for k, v in model.head([f[:1] for f in features.values()]).items()}
        cls_shift, reg_scale = (-4.0, 0.1) if name == "retinanet" else (0.0, 0.5)
        head = {
            "cls_logits": randn(batch, *shapes["cls_logits"], shift=cls_shift),
            "bbox_regression": randn(batch, *shapes["bbox_regression"], scale=reg_scale),
        }
        _returns(model.head, head)
        leaves = list(head.values())
    return model, images, targets, leaves


def _step(model, leaves, seed, patch):
    params = leaves if leaves is not None else [p for p in model.parameters() if p.requires_grad]

    def run(images, targets):
        for p in params:
            p.grad = None
        torch.manual_seed(seed)
        if patch:
            with detops.patch_torchvision(training=True):
                losses = model(images, targets)
        else:
            losses = model(images, targets)
        sum(losses.values()).backward()
        out = {k: v.detach() for k, v in sorted(losses.items())}
        # The whole step's gradients are too many to compare every time: their norm per parameter stands in.
        grads = (
            [p.grad for p in params]
            if leaves is not None
            else torch.stack([p.grad.norm() if p.grad is not None else p.new_zeros(()) for p in params])
        )
        return out, grads

    return run


def _losses_case(name):
    def build(dims, ctx):
        model, images, targets, leaves = _head_only(name, dims[0], ctx)
        return Pair(
            (images, targets),
            _step(model, leaves, ctx.seed, True),
            _step(model, leaves, ctx.seed, False),
            rtol=1e-4,
            atol=1e-6,
            dtype=torch.float32,
            note="forward + backward to the head outputs",
        )

    build.__doc__ = (
        f"{name}: matching, encoding, sampling and losses of one training step (the model's forward "
        "with its networks replaced by captured head outputs, and the backward to them), patched "
        "against unpatched"
    )
    return build


def _step_case(name):
    def build(dims, ctx):
        model = _model(name, ctx.device)
        images, targets = _batch(dims[0], SIZES[name], ctx.generator(), ctx.device)
        return Pair(
            (images, targets),
            _step(model, None, ctx.seed, True),
            _step(model, None, ctx.seed, False),
            check=compare_step,
            dtype=torch.float32,
            note="forward + backward of every parameter",
        )

    build.__doc__ = f"{name}: one whole training step (forward and backward), patched against unpatched"
    return build


def compare_step(ours, theirs):
    """Loss terms to 1e-4; per-parameter gradient norms to 1e-3 (a long backward sums in other orders)."""
    return compare.close(ours[0], theirs[0], 1e-4, 1e-6) or compare.close(ours[1], theirs[1], 1e-3, 1e-6)


# A whole step takes seconds per image on a small CPU (Faster R-CNN v2's box head alone runs four convolutions
# on 512 proposals per image), so the steps are timed at fewer images than the losses; the losses are also
# timed at the steps' sizes, for the share. The steps have no --quick size.
_PLAN = {
    "fasterrcnn_v2": (("1", "4"), ("1",), ("1",)),
    "retinanet": (("2", "4"), ("2",), ("1",)),
    "ssd300": (("4", "32"), ("4",), ("1",)),
}
for _name, (_losses, _steps, _quick) in _PLAN.items():
    case(
        "training",
        "training_losses",
        "torchvision",
        f"{_name}_train",
        sizes=_losses,
        quick=_quick,
        requires=("torchvision.ops",),
        size_label="images",
    )(_losses_case(_name))
    case(
        "training",
        "training_step",
        "torchvision",
        f"{_name}_train",
        sizes=_steps,
        requires=("torchvision.ops",),
        size_label="images",
    )(_step_case(_name))
