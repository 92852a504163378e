"""Named, seedable input generators shared by the benchmarks (``detops bench``) and the tests.

Every generator draws on the CPU from a ``torch.Generator`` (so a seed gives the same data on every device)
and then moves the result to the requested device and dtype. :data:`WORKLOADS` names each workload the
benchmark cases use, with the sentence the command prints to describe it.
"""

import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

# name -> what it is (printed by `detops bench` and stored in its JSON)
WORKLOADS: Dict[str, str] = {
    "uniform": "xyxy boxes, corners uniform in a 1000 px square, sides 10-310 px (about a third overlap)",
    "sparse": "boxes up to 30 px in a 1000 px image with uniform scores: most survive NMS",
    "clustered": "jittered copies (3 px, 5% size) of 40 objects of 20-120 px, uniform scores: most suppressed",
    "aligned": "pairs of uniform boxes, the second a jittered copy of the first (IoU losses)",
    "ssd300_batch": "SSD300 training batch: 8732 priors, 1-20 objects per image (fractional xyxy), 21 classes, "
    "random offsets and logits",
    "ssd300_eval": "SSD300 evaluation head: 8732 priors x 21 classes, background-dominant logits with 2% confident "
    "priors (a trained model's statistics), offsets 0.5 randn; min score 0.01, IoU 0.45, top 200",
    "ssd300_random": "SSD300 head with randn logits and 0.5 randn offsets (nearly every prior passes 0.01 in every "
    "class: the worst case)",
    "yolo_v5": "YOLOv5 head [B, 8400, 85]: centres in 640 px, sides 5-105 px, sigmoid(2x - 2) scores; IoU 0.45",
    "yolo_v5_low": "the yolo_v5 head at confidence 0.001 (evaluation setting: far more candidates)",
    "yolo_v8": "YOLOv8 head [B, 84, 8400], the same boxes and scores channel-major; IoU 0.45",
    "frcnn_rpn": "Faster R-CNN RPN proposals of 800x800 images on 5 FPN levels (159882 anchors), randn objectness",
    "frcnn_roi": "Faster R-CNN box head: 1000 proposals per 800x800 image, 91 classes, 3 randn logits",
    "retinanet": "RetinaNet head of 800x800 images: 5 levels x 9 anchors (120087), 91 classes, randn - 4 logits",
    "matcher": "a Faster R-CNN quality matrix: IoU of 20 objects against uniform anchors",
    "mining": "per-prior losses [B, 8732], uniform, with 1% positive priors; 3 negatives per positive",
    "logits": "SSD confidence logits [B, 8732, 21], randn, random targets (a quarter positive)",
}


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


# ------------------------------------------------------------------------------------------- boxes


def random_boxes(n, *, scale=100.0, offset=0.0, dtype=torch.float32, generator=None, lead=()):
    """xyxy boxes with positive width and height, top-left corner in [offset, offset + scale)."""
    xy = torch.rand(*lead, n, 2, generator=generator, dtype=torch.float64) * scale + offset
    wh = torch.rand(*lead, n, 2, generator=generator, dtype=torch.float64) * scale * 0.5 + 1e-3 * scale
    return torch.cat([xy, xy + wh], dim=-1).to(dtype)


def adversarial_boxes(dtype=torch.float32):
    """Boxes that break careless kernels: zero-area, identical, nested, touching, negative, huge, inverted."""
    b = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],  # identical to the first
            [5.0, 5.0, 5.0, 5.0],  # a point
            [2.0, 3.0, 2.0, 9.0],  # zero width
            [10.0, 0.0, 20.0, 10.0],  # touches the first along an edge
            [-30.0, -40.0, -10.0, -5.0],  # negative coordinates
            [-5.0, -5.0, 5.0, 5.0],  # straddles the origin
            [1e6, 1e6, 1e6 + 50.0, 1e6 + 20.0],  # far away
            [1e6 + 10.0, 1e6, 1e6 + 60.0, 1e6 + 20.0],  # overlapping the far one
            [2.0, 2.0, 8.0, 8.0],  # nested in the first
            [8.0, 8.0, 2.0, 2.0],  # inverted (x2 < x1)
            [0.0, 0.0, 1e-6, 1e-6],  # tiny
        ],
        dtype=torch.float64,
    )
    return b.to(dtype)


def uniform_boxes(n, g, device="cpu", dtype=torch.float32, lead=()):
    """The "uniform" workload: [*lead, n, 4] xyxy boxes in a 1000 px square."""
    xy = torch.rand(*lead, n, 2, generator=g) * 1000
    wh = torch.rand(*lead, n, 2, generator=g) * 300 + 10
    return torch.cat([xy, xy + wh], -1).to(device, dtype)


def sparse_boxes(n, g, device="cpu", dtype=torch.float32) -> Tuple[Tensor, Tensor]:
    """The "sparse" workload: (boxes [n, 4], scores [n])."""
    xy = torch.rand(n, 2, generator=g) * 1000
    wh = torch.rand(n, 2, generator=g) * 30 + 1
    return torch.cat([xy, xy + wh], 1).to(device, dtype), torch.rand(n, generator=g).to(device, dtype)


def clustered_boxes(n, g, device="cpu", dtype=torch.float32, objects=40) -> Tuple[Tensor, Tensor]:
    """The "clustered" workload: (boxes [n, 4], scores [n])."""
    centers = torch.rand(objects, 2, generator=g) * 1000
    sizes = torch.rand(objects, 2, generator=g) * 100 + 20
    a = torch.randint(0, objects, (n,), generator=g)
    xy = centers[a] + torch.randn(n, 2, generator=g) * 3
    wh = sizes[a] * (1 + torch.randn(n, 2, generator=g) * 0.05)
    return torch.cat([xy, xy + wh], 1).to(device, dtype), torch.rand(n, generator=g).to(device, dtype)


def nms_boxes(kind, n, g, device="cpu", dtype=torch.float32):
    return (sparse_boxes if kind == "sparse" else clustered_boxes)(n, g, device, dtype)


def distinct_scores(n, g, device="cpu", dtype=torch.float32) -> Tensor:
    """n distinct scores in (0, 1]: torchvision orders tied scores arbitrarily, so comparisons use these."""
    return ((torch.randperm(n, generator=g).double() + 1) / n).to(device, dtype)


def aligned_pairs(n, g, device="cpu", dtype=torch.float32) -> Tuple[Tensor, Tensor]:
    a = uniform_boxes(n, g)
    b = a + torch.randn(n, 4, generator=g) * 20
    b = torch.cat([torch.minimum(b[:, :2], b[:, 2:]), torch.maximum(b[:, :2], b[:, 2:])], 1)
    return a.to(device, dtype), b.to(device, dtype)


# --------------------------------------------------------------------------------------------- SSD


def ssd300_priors(device="cpu", dtype=torch.float32) -> Tensor:
    """The SSD300 priors (8732, fractional center-size)."""
    from detops.ssd import ssd300_prior_boxes

    return ssd300_prior_boxes().to(device, dtype)


def ssd_targets(batch, g, device="cpu", dtype=torch.float32, max_objects=20, classes=21):
    """Per-image ground truth lists: boxes [G_i, 4] fractional xyxy, labels [G_i] in 1..classes-1."""
    boxes, labels = [], []
    for _ in range(batch):
        n = int(torch.randint(1, max_objects + 1, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 0.8
        wh = torch.rand(n, 2, generator=g) * (1 - xy) * 0.9 + 0.02
        boxes.append(torch.cat([xy, xy + wh], 1).to(device, dtype))
        labels.append(torch.randint(1, classes, (n,), generator=g).to(device))
    return boxes, labels


def ssd300_batch(batch, g, device="cpu", dtype=torch.float32, classes=21):
    """The "ssd300_batch" workload: dict of priors_cxcy, boxes, labels, locs [B, P, 4], scores [B, P, C]."""
    priors = ssd300_priors(device, dtype)
    boxes, labels = ssd_targets(batch, g, device, dtype, classes=classes)
    P = priors.shape[0]
    locs = torch.randn(batch, P, 4, generator=g).to(device, dtype)
    scores = torch.randn(batch, P, classes, generator=g).to(device, dtype)
    return dict(priors_cxcy=priors, boxes=boxes, labels=labels, locs=locs, scores=scores)


def ssd300_head(batch, g, device="cpu", dtype=torch.float32, classes=21, realistic=True):
    """The "ssd300_eval" (realistic) or "ssd300_random" workload: (priors_cxcy, locs, logits)."""
    priors = ssd300_priors()
    P = priors.shape[0]
    if realistic:
        logits = torch.randn(batch, P, classes, generator=g) * 1.5
        logits[:, :, 0] += 7.0
        hot = torch.rand(batch, P, generator=g) < 0.02
        logits[hot, torch.randint(1, classes, (int(hot.sum()),), generator=g)] += 8.0
    else:
        logits = torch.randn(batch, P, classes, generator=g)
    locs = torch.randn(batch, P, 4, generator=g) * 0.5
    return priors.to(device, dtype), locs.to(device, dtype), logits.to(device, dtype)


def ce_logits(batch, g, device="cpu", dtype=torch.float32, priors=8732, classes=21):
    """The "logits" workload: (logits [B, P, C], targets [B, P] int64, a quarter of them positive)."""
    logits = torch.randn(batch, priors, classes, generator=g)
    targets = torch.randint(1, classes, (batch, priors), generator=g)
    targets[torch.rand(batch, priors, generator=g) < 0.75] = 0
    return logits.to(device, dtype), targets.to(device)


# -------------------------------------------------------------------------------------------- YOLO


def yolo_head(batch, g, device="cpu", dtype=torch.float32, n=8400, classes=80, layout="v5"):
    """The "yolo_v5" ([B, n, 5 + C]) or "yolo_v8" ([B, 4 + C, n]) workload."""
    pred = torch.randn(batch, n, 5 + classes, generator=g)
    pred[..., :2] = torch.rand(batch, n, 2, generator=g) * 640
    pred[..., 2:4] = torch.rand(batch, n, 2, generator=g) * 100 + 5
    pred[..., 4:] = torch.sigmoid(pred[..., 4:] * 2 - 2)
    if layout == "v8":
        pred = torch.cat([pred[..., :4], pred[..., 5:]], -1).transpose(1, 2).contiguous()
    return pred.to(device, dtype)


# ------------------------------------------------------------------------------ torchvision detectors

FRCNN_LEVELS: List[int] = [120000, 30000, 7500, 1875, 507]


def frcnn_rpn(images, g, device="cpu", dtype=torch.float32, size=800):
    """The "frcnn_rpn" workload: (proposals [B, A, 4], objectness [B, A], level sizes)."""
    a = sum(FRCNN_LEVELS)
    xy = torch.rand(images, a, 2, generator=g) * (size - 40)
    props = torch.cat([xy, xy + torch.rand(images, a, 2, generator=g) * 200 + 4], -1)
    obj = torch.randn(images, a, generator=g)
    return props.to(device, dtype), obj.to(device, dtype), list(FRCNN_LEVELS)


def frcnn_roi(images, g, device="cpu", dtype=torch.float32, size=800, per_image=1000, classes=91):
    """The "frcnn_roi" workload: (proposals list of [R, 4], class logits [B R, C], box regression [B R, 4 C])."""
    xy = torch.rand(images, per_image, 2, generator=g) * (size - 40)
    props = torch.cat([xy, xy + torch.rand(images, per_image, 2, generator=g) * 200 + 4], -1)
    cls = torch.randn(images * per_image, classes, generator=g) * 3
    reg = torch.randn(images * per_image, classes * 4, generator=g) * 0.1
    return [p.to(device, dtype) for p in props], cls.to(device, dtype), reg.to(device, dtype)


RETINANET_LEVELS: List[int] = [90000, 22500, 5625, 1521, 441]


def retinanet_head(images, g, device="cpu", dtype=torch.float32, size=800, classes=91):
    """The "retinanet" workload: (cls_logits [B, A, C], bbox_regression [B, A, 4], anchors [A, 4], levels)."""
    a = sum(RETINANET_LEVELS)
    xy = torch.rand(a, 2, generator=g) * (size - 40)
    anchors = torch.cat([xy, xy + torch.rand(a, 2, generator=g) * 200 + 4], -1)
    cls = torch.randn(images, a, classes, generator=g) - 4
    reg = torch.randn(images, a, 4, generator=g) * 0.1
    return cls.to(device, dtype), reg.to(device, dtype), anchors.to(device, dtype), list(RETINANET_LEVELS)


def quality_matrix(objects, anchors, g, device="cpu", dtype=torch.float32) -> Tensor:
    """The "matcher" workload: IoU [objects, anchors] of uniform boxes (computed with the reference)."""
    from detops.reference.boxes import box_overlap

    gt = uniform_boxes(objects, g, dtype=torch.float64)
    an = uniform_boxes(anchors, g, dtype=torch.float64)
    return box_overlap(gt, an, "iou").to(device, dtype)


def describe(name: Optional[str]) -> str:
    return WORKLOADS.get(name or "", "")


def log_sizes(lo, hi, per_decade=2):
    """Sizes spaced evenly on a log axis, for scaling plots."""
    k = int(round(math.log10(hi / lo) * per_decade))
    return sorted({int(round(lo * (hi / lo) ** (i / max(k, 1)))) for i in range(k + 1)})
