"""Prior matching (detops/matching.py) against the tutorial's loop and torchvision's matchers."""

import torch

import detops
from detops.bench import compare
from detops.bench import workloads as W
from detops.bench.registry import Pair, case

SSD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _batch(dims, ctx):
    g = ctx.generator()
    priors = W.ssd300_priors(ctx.device, torch.float32)
    boxes, labels = W.ssd_targets(dims[0], g, ctx.device, torch.float32)
    return priors, boxes, labels


@case("matching", "match_priors", "tutorial loop", "ssd300_batch", sizes=("32",), quick=("4",), size_label="images")
def vs_tutorial(dims, ctx):
    """match_priors (labels, matched object, encoded targets) against the tutorial's per-image matching."""
    from detops.reference.matching import tutorial_match

    priors, boxes, labels = _batch(dims, ctx)
    return Pair((boxes, labels, priors), detops.match_priors, tutorial_match, rtol=1e-4, atol=1e-4, dtype=torch.float32)


def torchvision_match(boxes, labels, anchors_xy, matcher, coder):
    """torchvision SSD's matcher path per image: box_iou, SSDMatcher, BoxCoder.encode_single of the foreground."""
    from torchvision.ops import box_iou

    out = []
    for b, lab in zip(boxes, labels):
        matched = matcher(box_iou(b, anchors_xy))
        fg = torch.where(matched >= 0)[0]
        cls = torch.zeros(anchors_xy.size(0), dtype=torch.long, device=b.device)
        cls[fg] = lab[matched[fg]]
        out.append((cls, coder.encode_single(b[matched[fg]], anchors_xy[fg])))
    return out


@case(
    "matching",
    "match_priors",
    "torchvision SSDMatcher",
    "ssd300_batch",
    sizes=("32",),
    quick=("4",),
    requires=("torchvision.ops",),
    size_label="images",
)
def vs_torchvision(dims, ctx):
    """match_priors against torchvision SSD's box_iou + SSDMatcher(0.5) + BoxCoder.encode_single per image."""
    from torchvision.models.detection import _utils as det_utils

    priors, boxes, labels = _batch(dims, ctx)
    anchors_xy = detops.box_convert(priors, "cxcywh", "xyxy")
    matcher, coder = det_utils.SSDMatcher(0.5), det_utils.BoxCoder(SSD_WEIGHTS)

    def check(ours, theirs):
        lab, matched, targets = ours
        per_image = [(lab[i], targets[i][matched[i] >= 0]) for i in range(lab.shape[0])]
        return compare.close(per_image, theirs, rtol=1e-3, atol=1e-3)

    return Pair(
        (boxes, labels, priors, anchors_xy),
        lambda b, lab, p, a: detops.match_priors(b, lab, p),
        lambda b, lab, p, a: torchvision_match(b, lab, a, matcher, coder),
        check=check,
        dtype=torch.float32,
    )


@case(
    "matching",
    "match_boxes",
    "torchvision Matcher",
    "matcher",
    sizes=("20x100000", "20x200000"),
    quick=("20x10000",),
    size_label="G x P",
)
def match_boxes(dims, ctx):
    """match_boxes(quality, 0.7, 0.3, allow_low_quality_matches=True) against torchvision's Matcher (RPN)."""
    from torchvision.models.detection._utils import Matcher

    g_, p_ = dims if len(dims) == 2 else (20, dims[0])
    quality = W.quality_matrix(g_, p_, ctx.generator(), ctx.device, ctx.dtype)
    matcher = Matcher(0.7, 0.3, allow_low_quality_matches=True)
    return Pair((quality,), lambda q: detops.match_boxes(q, 0.7, 0.3, True), matcher, check="equal")
