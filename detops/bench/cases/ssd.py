"""The SSD300 pieces (detops/ssd/) against torchvision's SSD and the tutorial's code."""

import types

import torch

import detops
from detops.bench import compare
from detops.bench import workloads as W
from detops.bench.registry import Pair, case

WEIGHTS = (10.0, 10.0, 5.0, 5.0)


@case(
    "ssd",
    "postprocess_detections",
    "torchvision SSD",
    "ssd300_random",
    sizes=("8",),
    quick=("1",),
    requires=("torchvision.ops",),
    size_label="images",
)
def postprocess(dims, ctx):
    """SSD post-processing at torchvision's settings (score 0.01, NMS 0.45, 200 per image, 400 candidates per
    class, boxes clipped to the image) with softmax + decode_boxes + multiclass_nms, against torchvision
    ssd300_vgg16.postprocess_detections."""
    from detops.bench.cases.nms import _model

    model = _model("ssd").to(ctx.device)
    n = dims[0]
    priors, locs, logits = W.ssd300_head(n, ctx.generator(), ctx.device, torch.float32, realistic=False)
    anchors = detops.box_convert(priors, "cxcywh", "xyxy") * 300

    def ours(locs, logits, anchors):
        boxes = detops.decode_boxes(locs, anchors, WEIGHTS).clamp_(0, 300)
        out = detops.multiclass_nms(
            boxes,
            torch.softmax(logits, -1),
            0.01,
            0.45,
            200,
            background_class=0,
            max_candidates_per_class=model.topk_candidates,
        )
        return compare.as_tables(out)

    def theirs(locs, logits, anchors):
        with torch.no_grad():
            head = {"bbox_regression": locs, "cls_logits": logits}
            return compare.as_tables(
                model.postprocess_detections(head, [anchors] * locs.shape[0], [(300, 300)] * locs.shape[0])
            )

    return Pair((locs, logits, anchors), ours, theirs, check=compare.detections(1e-4, 1e-3), dtype=torch.float32)


def _fwd_bwd(loss_fn):
    def run(locs0, scores0, boxes, labels):
        locs = locs0.clone().requires_grad_()
        scores = scores0.clone().requires_grad_()
        loss = loss_fn(locs, scores, boxes, labels)
        loss.backward()
        return loss.detach(), locs.grad, scores.grad

    return run


@case("ssd", "MultiBoxLoss", "tutorial MultiBoxLoss", "ssd300_batch", sizes=("32",), quick=("4",), size_label="images")
def loss_vs_tutorial(dims, ctx):
    """MultiBoxLoss(loc_loss="l1") forward + backward against the tutorial's MultiBoxLoss (its nn.L1Loss, its
    per-image matching and sort-based hard negatives); the loss and both gradients are compared."""
    from detops.reference.matching import tutorial_multibox_loss
    from detops.ssd import MultiBoxLoss

    b = W.ssd300_batch(dims[0], ctx.generator(), ctx.device, torch.float32)
    priors = b["priors_cxcy"]
    ours = MultiBoxLoss(priors, loc_loss="l1")
    return Pair(
        (b["locs"], b["scores"], b["boxes"], b["labels"]),
        _fwd_bwd(ours),
        _fwd_bwd(lambda l, s, bx, lb: tutorial_multibox_loss(l, s, bx, lb, priors)),
        rtol=1e-4,
        atol=1e-7,
        dtype=torch.float32,
        note="forward + backward",
    )


@case(
    "ssd",
    "MultiBoxLoss",
    "torchvision SSD compute_loss",
    "ssd300_batch",
    sizes=("32",),
    quick=("4",),
    requires=("torchvision.ops",),
    size_label="images",
)
def loss_vs_torchvision(dims, ctx):
    """MultiBoxLoss (smooth L1; alpha 4 because torchvision divides the summed box loss by the positives, not
    by their 4 coordinates) forward + backward against torchvision SSD's matching (box_iou + SSDMatcher) and
    SSD.compute_loss."""
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.ssd import SSD
    from torchvision.ops import box_iou

    from detops.ssd import MultiBoxLoss

    b = W.ssd300_batch(dims[0], ctx.generator(), ctx.device, torch.float32)
    priors = b["priors_cxcy"]
    anchors_xy = detops.box_convert(priors, "cxcywh", "xyxy")
    matcher = det_utils.SSDMatcher(0.5)
    fake_ssd = types.SimpleNamespace(box_coder=det_utils.BoxCoder(WEIGHTS), neg_to_pos_ratio=3)

    def torchvision_loss(locs, scores, boxes, labels):
        targets = [{"boxes": x, "labels": y} for x, y in zip(boxes, labels)]
        matched = [matcher(box_iou(x, anchors_xy)) for x in boxes]
        losses = SSD.compute_loss(
            fake_ssd, targets, {"bbox_regression": locs, "cls_logits": scores}, [anchors_xy] * len(boxes), matched
        )
        return losses["bbox_regression"] + losses["classification"]

    ours = MultiBoxLoss(priors, alpha=4.0)
    return Pair(
        (b["locs"], b["scores"], b["boxes"], b["labels"]),
        _fwd_bwd(ours),
        _fwd_bwd(torchvision_loss),
        rtol=1e-3,
        atol=1e-6,
        dtype=torch.float32,
        note="forward + backward",
    )


W.WORKLOADS.setdefault(
    "synthetic_voc",
    "images of the project's synthetic VOC-format dataset (300x300 JPEGs of shapes, 1-6 objects each), as uint8",
)


def _tv_iou_crop_pipeline(size=300):
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from detops.ssd.transforms import IMAGENET_MEAN, IMAGENET_STD

    pipeline = v2.Compose(
        [
            v2.RandomZoomOut(fill={tv_tensors.Image: IMAGENET_MEAN, "others": 0}, side_range=(1.0, 4.0), p=0.5),
            v2.RandomIoUCrop(sampler_options=[0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0], trials=50),
            v2.SanitizeBoundingBoxes(labels_getter=lambda sample: sample[2]),
            v2.RandomHorizontalFlip(0.5),
            v2.Resize((size, size), antialias=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )

    def run(image, boxes, labels, difficulties):
        img = tv_tensors.Image(image.float() / 255)
        return pipeline(img, tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=image.shape[-2:]), labels)

    return run


@case(
    "ssd",
    "ssd_transforms",
    "torchvision v2.RandomIoUCrop",
    "synthetic_voc",
    sizes=("100",),
    quick=("10",),
    devices=("cpu",),
    size_label="images",
)
def iou_crop_pipeline(dims, ctx):
    """The SSD training geometry (zoom out, IoU crop, flip, resize, normalise) with detops' vectorised crop
    sampler against the same pipeline with torchvision's trial-by-trial v2.RandomIoUCrop; one pass over N images.
    The crops are random on both sides, so the check is that every output is a 300x300 image."""
    import tempfile

    from detops.ssd.synthetic import generate_voc_dataset
    from detops.ssd.transforms import ssd_transforms
    from detops.ssd.voc import VOCDataset

    with tempfile.TemporaryDirectory() as root:
        generate_voc_dataset(root, n_train=dims[0], n_test=0, image_size=300, seed=ctx.seed)
        raw = VOCDataset(root, "train")
        items = [(raw[i][0].mul(255).byte(), *raw.annotation(i)) for i in range(dims[0])]
    ours, theirs = ssd_transforms(True, photometric=False), _tv_iou_crop_pipeline()

    def over(tf):
        def run(items):
            return [tf(*item)[0].shape for item in items]

        return run

    def all_300(a, b):
        bad = [s for s in a + b if tuple(s) != (3, 300, 300)]
        return None if not bad else f"outputs not 3x300x300: {bad[:3]}"

    return Pair((items,), over(ours), over(theirs), check=all_300, dtype=torch.float32)
