"""YOLO post-processing (detops/yolo.py, the yolo_candidates op) against the per-image loop and Ultralytics."""

import torch

from detops.bench import compare
from detops.bench import workloads as W
from detops.bench.registry import MissingBaseline, Pair, case

IOU = 0.45


def _v5(conf):
    def build(dims, ctx):
        from detops import yolo
        from detops.reference.yolo import yolo_non_max_suppression

        pred = W.yolo_head(dims[0], ctx.generator(), ctx.device, ctx.dtype)
        return Pair((pred, conf, IOU), yolo.non_max_suppression, yolo_non_max_suppression,
                    check=compare.detections(1e-5, 1e-4), note=f"conf {conf}")

    build.__doc__ = (f"detops.yolo.non_max_suppression at conf {conf} against the per-image loop "
                     "(filter, sort, torchvision.ops.nms with class offsets) of detops.reference.yolo")
    return build


case("yolo", "non_max_suppression", "per-image loop", "yolo_v5", sizes=("16",), quick=("2",),
     requires=("torchvision.ops",), size_label="images")(_v5(0.25))
case("yolo", "non_max_suppression", "per-image loop", "yolo_v5_low", sizes=("16",), quick=(),
     requires=("torchvision.ops",), size_label="images")(_v5(0.001))


@case("yolo", "non_max_suppression", "ultralytics", "yolo_v8", sizes=("16",), quick=("2",), requires=("ultralytics",),
      size_label="images")
def vs_ultralytics(dims, ctx):
    """detops.yolo.non_max_suppression on a v8 head against ultralytics' own non_max_suppression (its time
    limit lifted so it never stops early)."""
    from detops import yolo

    try:
        from ultralytics.utils.nms import non_max_suppression as ultra_nms
    except ImportError:
        try:
            from ultralytics.utils.ops import non_max_suppression as ultra_nms
        except ImportError as e:
            raise MissingBaseline(f"ultralytics is installed but its non_max_suppression was not found ({e})")
    pred = W.yolo_head(dims[0], ctx.generator(), ctx.device, ctx.dtype, layout="v8")
    return Pair((pred,), lambda p: yolo.non_max_suppression(p, 0.25, IOU, head="v8"),
                lambda p: ultra_nms(p, 0.25, IOU, max_time_img=1e3), check=compare.detections(1e-5, 1e-4),
                note="conf 0.25")


@case("yolo", "yolo_candidates", "reference", "yolo_v5", sizes=("16",), quick=("2",), size_label="images")
def candidates(dims, ctx):
    """The yolo_candidates op (rows above conf 0.25, corner boxes, best score and class) against the reference."""
    from detops.reference.yolo import yolo_candidates

    pred = W.yolo_head(dims[0], ctx.generator(), ctx.device, ctx.dtype)
    return Pair((pred, 0.25, True), torch.ops.detops.yolo_candidates, yolo_candidates, rtol=1e-6, atol=1e-5)
