"""YOLO post-processing (detops/yolo.py, the yolo_candidates op) against the per-image loop and Ultralytics."""

import math

import torch

from detops.bench import compare
from detops.bench import workloads as W
from detops.bench.registry import MissingBaseline, Pair, case

IOU = 0.45

W.WORKLOADS.setdefault(
    "yolo_obb",
    "YOLO-OBB head [B, 4 + 15 + 1, 21504] (DOTA at 1024 px): 60 rotated objects of 10-100 px per image, each "
    "predicted by about 36 jittered rows (best class sigmoid(randn + 1)), the rest background (sigmoid(randn - 6)); "
    "conf 0.25, IoU 0.7",
)


def yolo_obb_head(batch, g, device="cpu", dtype=torch.float32, n=21504, classes=15, objects=60, size=1024.0):
    """The "yolo_obb" workload: [B, 4 + C + 1, n], angle in radians last (ultralytics' OBB layout)."""
    pred = torch.empty(batch, n, 5 + classes)
    for b in range(batch):
        obj = torch.rand(objects, 5, generator=g)
        obj[:, :2] *= size
        obj[:, 2:4] = obj[:, 2:4] * 90 + 10
        obj[:, 4] = obj[:, 4] * math.pi - math.pi / 4  # ultralytics' angle range [-pi/4, 3pi/4)
        label = torch.randint(0, classes, (objects,), generator=g)
        rows = torch.rand(n, 5, generator=g)
        rows[:, :2] *= size
        rows[:, 2:4] = rows[:, 2:4] * 90 + 10
        rows[:, 4] = rows[:, 4] * math.pi - math.pi / 4
        scores = torch.sigmoid(torch.randn(n, classes, generator=g) - 6)
        hits = torch.randperm(n, generator=g)[: n // 10]
        src = torch.randint(0, objects, (hits.numel(),), generator=g)
        jitter = torch.randn(hits.numel(), 5, generator=g)
        rows[hits] = obj[src] + jitter * torch.tensor([3.0, 3.0, 0, 0, 0.05])
        rows[hits, 2:4] = obj[src, 2:4] * (1 + 0.05 * jitter[:, 2:4])
        scores[hits, label[src]] = torch.sigmoid(torch.randn(hits.numel(), generator=g) + 1)
        pred[b] = torch.cat((rows[:, :4], scores, rows[:, 4:]), dim=1)
    return pred.transpose(1, 2).contiguous().to(device, dtype)


def _ultralytics_nms():
    """ultralytics' non_max_suppression (in ultralytics.utils.nms since 8.3, ultralytics.utils.ops before)."""
    try:
        from ultralytics.utils.nms import non_max_suppression
    except ImportError:
        try:
            from ultralytics.utils.ops import non_max_suppression
        except ImportError as e:
            raise MissingBaseline(
                f"ultralytics is installed but its non_max_suppression does not import ({e}; "
                "it needs opencv-python-headless)"
            ) from None
    return non_max_suppression


def _v5(conf):
    def build(dims, ctx):
        from detops import yolo
        from detops.reference.yolo import yolo_non_max_suppression

        pred = W.yolo_head(dims[0], ctx.generator(), ctx.device, ctx.dtype)
        return Pair(
            (pred, conf, IOU),
            yolo.non_max_suppression,
            yolo_non_max_suppression,
            check=compare.detections(1e-5, 1e-4),
            note=f"conf {conf}",
        )

    build.__doc__ = (
        f"detops.yolo.non_max_suppression at conf {conf} against the per-image loop "
        "(filter, sort, torchvision.ops.nms with class offsets) of detops.reference.yolo"
    )
    return build


case(
    "yolo",
    "non_max_suppression",
    "per-image loop",
    "yolo_v5",
    sizes=("16",),
    quick=("2",),
    requires=("torchvision.ops",),
    size_label="images",
)(_v5(0.25))
case(
    "yolo",
    "non_max_suppression",
    "per-image loop",
    "yolo_v5_low",
    sizes=("16",),
    quick=(),
    requires=("torchvision.ops",),
    size_label="images",
)(_v5(0.001))


@case(
    "yolo",
    "non_max_suppression",
    "ultralytics",
    "yolo_v8",
    sizes=("16",),
    quick=("2",),
    requires=("ultralytics",),
    size_label="images",
)
def vs_ultralytics(dims, ctx):
    """detops.yolo.non_max_suppression on a v8 head against ultralytics' own non_max_suppression (its time
    limit lifted so it never stops early)."""
    from detops import yolo

    ultra_nms = _ultralytics_nms()
    pred = W.yolo_head(dims[0], ctx.generator(), ctx.device, ctx.dtype, layout="v8")
    return Pair(
        (pred,),
        lambda p: yolo.non_max_suppression(p, 0.25, IOU, head="v8"),
        lambda p: ultra_nms(p, 0.25, IOU, max_time_img=1e3),
        check=compare.detections(1e-5, 1e-4),
        note="conf 0.25",
    )


def identical_detections(ours, theirs):
    """Every image's detections equal, row for row, in the same order."""
    if len(ours) != len(theirs):
        return f"{len(ours)} images vs {len(theirs)}"
    for i, (x, y) in enumerate(zip(ours, theirs)):
        if x.shape != y.shape or not torch.equal(x, y.to(x.device)):
            return f"image {i}: detections differ ({x.shape[0]} vs {y.shape[0]} rows)"
    return None


@case(
    "yolo",
    "non_max_suppression",
    "ultralytics",
    "yolo_obb",
    sizes=("16",),
    quick=("2",),
    requires=("ultralytics",),
    size_label="images",
)
def obb_vs_ultralytics(dims, ctx):
    """detops.yolo.non_max_suppression(rotated=True, overlap="probiou") on a YOLO-OBB head against ultralytics'
    non_max_suppression(rotated=True) (its time limit lifted): the same detections, row for row."""
    from detops import yolo

    ultra_nms = _ultralytics_nms()
    pred = yolo_obb_head(dims[0], ctx.generator(), ctx.device, ctx.dtype)
    classes = pred.shape[1] - 5
    return Pair(
        (pred,),
        lambda p: yolo.non_max_suppression(p, 0.25, 0.7, rotated=True, overlap="probiou"),
        lambda p: ultra_nms(p, 0.25, 0.7, nc=classes, rotated=True, max_time_img=1e3),
        check=identical_detections,
        note="probIoU mode, conf 0.25, IoU 0.7",
    )


@case("yolo", "yolo_candidates", "reference", "yolo_v5", sizes=("16",), quick=("2",), size_label="images")
def candidates(dims, ctx):
    """The yolo_candidates op (rows above conf 0.25, corner boxes, best score and class) against the reference."""
    from detops.reference.yolo import yolo_candidates

    pred = W.yolo_head(dims[0], ctx.generator(), ctx.device, ctx.dtype)
    return Pair((pred, 0.25, True), torch.ops.detops.yolo_candidates, yolo_candidates, rtol=1e-6, atol=1e-5)
