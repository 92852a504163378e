"""The NMS family (detops/nms.py, detops/patch.py) against torchvision and the tutorial's loop."""

import functools

import torch

import detops
from detops.bench import compare
from detops.bench import workloads as W
from detops.bench.registry import Pair, case

TV = ("torchvision.ops",)
IOU = 0.5


def _nms(kind):
    def build(dims, ctx):
        import torchvision

        boxes, scores = W.nms_boxes(kind, dims[0], ctx.generator(), ctx.device, ctx.dtype)
        return Pair((boxes, scores, IOU), detops.nms, torchvision.ops.nms, check="equal")

    build.__doc__ = f"nms at IoU {IOU} on {kind} boxes against torchvision.ops.nms (kept indices equal)"
    return build


case("nms", "nms", "torchvision", "sparse", sizes=("1000", "5000", "20000"), quick=("1000", "5000"), requires=TV)(
    _nms("sparse")
)
case(
    "nms",
    "nms",
    "torchvision",
    "clustered",
    sizes=("1000", "5000", "20000", "100000"),
    quick=("1000", "5000"),
    requires=TV,
)(_nms("clustered"))


def _batched(kind, classes=80):
    def build(dims, ctx):
        import torchvision

        g = ctx.generator()
        boxes, _ = W.nms_boxes(kind, dims[0], g, ctx.device, ctx.dtype)
        scores = W.distinct_scores(dims[0], g, ctx.device, ctx.dtype)
        idxs = torch.randint(0, classes, (dims[0],), generator=g).to(ctx.device)
        return Pair(
            (boxes, scores, idxs, IOU),
            detops.batched_nms,
            torchvision.ops.batched_nms,
            check="equal",
            note=f"{classes} classes, distinct scores",
        )

    build.__doc__ = f"batched_nms over {classes} classes on {kind} boxes against torchvision.ops.batched_nms"
    return build


case("nms", "batched_nms", "torchvision", "sparse", sizes=("5000", "20000"), quick=("5000",), requires=TV)(
    _batched("sparse")
)
case("nms", "batched_nms", "torchvision", "clustered", sizes=("5000", "20000"), quick=("5000",), requires=TV)(
    _batched("clustered")
)


def _ssd_detect(priors_xyxy, locs, logits, cap=None):
    probs = torch.softmax(logits, dim=2)
    boxes = detops.decode_boxes(locs, priors_xyxy, weights=(10.0, 10.0, 5.0, 5.0))
    return detops.multiclass_nms(boxes, probs, 0.01, 0.45, 200, background_class=0, max_candidates_per_class=cap)


@case(
    "nms", "multiclass_nms", "tutorial detect_objects", "ssd300_eval", sizes=("8",), quick=("1",), size_label="images"
)
def multiclass_vs_tutorial(dims, ctx):
    """SSD evaluation (softmax, decode, per-class NMS, top 200) with multiclass_nms against the tutorial's
    per-image, per-class detect_objects loop; detections compared as sets."""
    from detops.reference.nms import tutorial_detect_objects

    priors, locs, logits = W.ssd300_head(dims[0], ctx.generator(), ctx.device, torch.float32)
    priors_xyxy = detops.box_convert(priors, "cxcywh", "xyxy")

    def ours(priors, priors_xyxy, locs, logits):
        b, s, lab, n = _ssd_detect(priors_xyxy, locs, logits)
        return compare.as_tables((b, s, lab, n))

    def tutorial(priors, priors_xyxy, locs, logits):
        boxes, labels, scores = tutorial_detect_objects(priors, locs, logits, 0.01, 0.45, 200, 21)
        return compare.as_tables((boxes, scores, labels))

    return Pair(
        (priors, priors_xyxy, locs, logits), ours, tutorial, check=compare.detections(1e-4, 1e-4), dtype=torch.float32
    )


@case("nms", "soft_nms", "reference", "clustered", sizes=("1000",), quick=("200",))
def soft_nms(dims, ctx):
    """Gaussian soft-NMS against the plain-PyTorch reference (no torchvision counterpart)."""
    from detops.reference import nms as ref

    boxes, scores = W.clustered_boxes(dims[0], ctx.generator(), ctx.device, ctx.dtype)
    return Pair((boxes, scores), detops.soft_nms, ref.soft_nms, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------- torchvision detectors, with and without the patch


@functools.lru_cache(maxsize=None)
def _model(name):
    import torchvision

    tvd = torchvision.models.detection
    if name == "ssd":
        m = tvd.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21)
        m.score_thresh, m.nms_thresh, m.detections_per_img = 0.01, 0.45, 200
    elif name == "frcnn":
        m = tvd.fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None)
    else:
        m = tvd.retinanet_resnet50_fpn_v2(weights=None, weights_backbone=None)
    return m.eval()


def patched(fn):
    """fn run under detops.patch_torchvision (the detops side of a with / without patch pair)."""

    def run(*args):
        with torch.no_grad(), detops.patch_torchvision():
            return fn(*args)

    return run


def unpatched(fn):
    def run(*args):
        with torch.no_grad():
            return fn(*args)

    return run


def _patch_pair(inputs, post, note):
    """``post(*inputs)`` (a torchvision model's post-processing) with detops.patch_torchvision against without."""
    return Pair(
        inputs, patched(post), unpatched(post), check=compare.detections(1e-4, 1e-3), dtype=torch.float32, note=note
    )


@case(
    "nms",
    "patch_torchvision",
    "torchvision",
    "ssd300_random",
    sizes=("8",),
    quick=("1",),
    requires=TV,
    size_label="images",
)
def patch_ssd(dims, ctx):
    """torchvision ssd300_vgg16.postprocess_detections with and without detops.patch_torchvision."""
    model = _model("ssd").to(ctx.device)
    n = dims[0]
    priors, locs, logits = W.ssd300_head(n, ctx.generator(), ctx.device, torch.float32, realistic=False)
    anchors = [detops.box_convert(priors, "cxcywh", "xyxy") * 300] * n
    head = {"bbox_regression": locs, "cls_logits": logits}

    def post(head, anchors):
        return compare.as_tables(model.postprocess_detections(head, anchors, [(300, 300)] * len(anchors)))

    return _patch_pair((head, anchors), post, "ssd300_vgg16.postprocess_detections")


@case(
    "nms", "patch_torchvision", "torchvision", "frcnn_rpn", sizes=("4",), quick=("1",), requires=TV, size_label="images"
)
def patch_rpn(dims, ctx):
    """Faster R-CNN v2 rpn.filter_proposals with and without detops.patch_torchvision."""
    model = _model("frcnn").to(ctx.device)
    props, obj, levels = W.frcnn_rpn(dims[0], ctx.generator(), ctx.device, torch.float32)

    def post(props, obj):
        boxes, scores = model.rpn.filter_proposals(props, obj, [(800, 800)] * props.shape[0], levels)
        return [torch.cat([b, s[:, None]], 1) for b, s in zip(boxes, scores)]

    return _patch_pair((props, obj), post, "fasterrcnn_resnet50_fpn_v2 rpn.filter_proposals")


@case(
    "nms", "patch_torchvision", "torchvision", "frcnn_roi", sizes=("4",), quick=("1",), requires=TV, size_label="images"
)
def patch_roi(dims, ctx):
    """Faster R-CNN v2 roi_heads.postprocess_detections with and without detops.patch_torchvision."""
    model = _model("frcnn").to(ctx.device)
    proposals, cls, reg = W.frcnn_roi(dims[0], ctx.generator(), ctx.device, torch.float32)

    def post(cls, reg, proposals):
        boxes, scores, labels = model.roi_heads.postprocess_detections(
            cls, reg, proposals, [(800, 800)] * len(proposals)
        )
        return compare.as_tables((boxes, scores, labels))

    return _patch_pair((cls, reg, proposals), post, "fasterrcnn_resnet50_fpn_v2 roi_heads.postprocess_detections")


@case(
    "nms", "patch_torchvision", "torchvision", "retinanet", sizes=("4",), quick=("1",), requires=TV, size_label="images"
)
def patch_retinanet(dims, ctx):
    """RetinaNet v2 postprocess_detections with and without detops.patch_torchvision."""
    model = _model("retinanet").to(ctx.device)
    cls, reg, anchors, levels = W.retinanet_head(dims[0], ctx.generator(), ctx.device, torch.float32)
    n = cls.shape[0]

    def post(cls, reg, anchors):
        head = {"cls_logits": list(cls.split(levels, 1)), "bbox_regression": list(reg.split(levels, 1))}
        split_anchors = [list(anchors.split(levels))] * n
        return compare.as_tables(model.postprocess_detections(head, split_anchors, [(800, 800)] * n))

    return _patch_pair((cls, reg, anchors), post, "retinanet_resnet50_fpn_v2.postprocess_detections")
