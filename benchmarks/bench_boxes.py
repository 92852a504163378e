"""Box ops against torchvision and the plain-PyTorch reference (issue: foundation, box ops).

    python benchmarks/bench_boxes.py [--device cuda] [--out DIR]
"""

import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
import detops  # noqa: E402
from detops.reference import coding as ref_coding  # noqa: E402
from harness import Case, main  # noqa: E402


def boxes(n, device, lead=(), scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(*lead, n, 2, generator=g) * scale
    wh = torch.rand(*lead, n, 2, generator=g) * scale * 0.3 + 0.01 * scale
    return torch.cat([xy, xy + wh], -1).to(device)


def make_cases(device):
    a, b = boxes(4096, device, seed=1), boxes(4096, device, seed=2)
    gt = boxes(20, device, lead=(32,), seed=3)
    priors = boxes(8732, device, seed=4)
    gt_boxes = boxes(8732, device, lead=(32,), seed=5)
    deltas = torch.randn(32, 8732, 4, device=device) * 0.5
    w = (10.0, 10.0, 5.0, 5.0)
    out = torch.empty(4096, 4096, device=device)
    return [
        Case("box_iou 4096x4096 f32", lambda: detops.box_iou(a, b), lambda: torchvision.ops.box_iou(a, b),
             goal=">= 10x tv (CPU), >= 3x (GPU)"),
        Case("  write 4096x4096 f32 once (alloc + fill)", lambda: torch.empty(4096, 4096, device=device).fill_(1.0),
             None, goal="detops within 2x of this"),
        Case("  write 4096x4096 f32 once (fill only)", lambda: out.fill_(1.0), None),
        Case("generalized_box_iou 4096x4096", lambda: detops.generalized_box_iou(a, b),
             lambda: torchvision.ops.generalized_box_iou(a, b)),
        Case("complete_box_iou 4096x4096", lambda: detops.complete_box_iou(a, b),
             lambda: torchvision.ops.complete_box_iou(a, b)),
        Case("batched IoU 32 x 20 x 8732 (SSD)", lambda: detops.box_iou(gt, priors),
             lambda: [torchvision.ops.box_iou(gt[i], priors) for i in range(32)],
             baseline_name="tv per-image loop", goal=">= 5x"),
        Case("encode_boxes 32 x 8732", lambda: detops.encode_boxes(gt_boxes, priors, w),
             lambda: ref_coding.encode_boxes(gt_boxes, priors, w), baseline_name="reference", goal=">= 3x"),
        Case("decode_boxes 32 x 8732", lambda: detops.decode_boxes(deltas, priors, w),
             lambda: ref_coding.decode_boxes(deltas, priors, w), baseline_name="reference", goal=">= 3x"),
        Case("generalized_box_iou_loss 32*8732 pairs", lambda: detops.generalized_box_iou_loss(gt_boxes, gt_boxes.flip(0)),
             lambda: torchvision.ops.generalized_box_iou_loss(gt_boxes, gt_boxes.flip(0))),
    ]


if __name__ == "__main__":
    main("Box ops", make_cases)
