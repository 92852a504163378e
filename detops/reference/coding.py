"""Reference box coding (kernels: csrc/cpu/coding.cpp, csrc/cuda/coding.cu); docs/ops.md, "Box coding"."""

import math

import torch

from detops.reference import in_compute_dtype

DEFAULT_CLAMP = math.log(1000.0 / 16)


def _centers(b):
    w = b[..., 2] - b[..., 0]
    h = b[..., 3] - b[..., 1]
    return b[..., 0] + 0.5 * w, b[..., 1] + 0.5 * h, w, h


def encode_boxes(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """boxes[..., 4] xyxy relative to anchors[..., 4] xyxy -> deltas[..., 4] = (dx, dy, dw, dh)."""
    wx, wy, ww, wh = weights
    gcx, gcy, gw, gh = _centers(in_compute_dtype(boxes))
    acx, acy, aw, ah = _centers(in_compute_dtype(anchors))
    out = torch.stack(
        [wx * (gcx - acx) / aw, wy * (gcy - acy) / ah, ww * torch.log(gw / aw), wh * torch.log(gh / ah)], dim=-1
    )
    return out.to(boxes.dtype)


def decode_boxes(deltas, anchors, weights=(1.0, 1.0, 1.0, 1.0), clamp=DEFAULT_CLAMP):
    """The inverse of encode_boxes; dw, dh clamped from above at `clamp` (None: not clamped)."""
    wx, wy, ww, wh = weights
    d = in_compute_dtype(deltas)
    acx, acy, aw, ah = _centers(in_compute_dtype(anchors))
    dx, dy, dw, dh = d[..., 0] / wx, d[..., 1] / wy, d[..., 2] / ww, d[..., 3] / wh
    if clamp is not None:
        dw, dh = dw.clamp(max=clamp), dh.clamp(max=clamp)
    cx, cy = dx * aw + acx, dy * ah + acy
    pw, ph = torch.exp(dw) * aw, torch.exp(dh) * ah
    out = torch.stack([cx - 0.5 * pw, cy - 0.5 * ph, cx + 0.5 * pw, cy + 0.5 * ph], dim=-1)
    return out.to(deltas.dtype)
