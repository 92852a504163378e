"""SSD priors (default boxes): center-size fractional boxes, feature map by feature map, row by row, column by
column, then by aspect ratio, with the extra prior of scale sqrt(s_k s_{k+1}) right after aspect ratio 1.

Each model preset has its prior configuration here, once: :data:`SSD300_CONFIG` (the paper's six maps, 8732
priors, for the VGG16 and ResNet bases) and :data:`TINY_CONFIG` (five maps, 2390 priors, for the 160x160 tiny
base). :func:`preset_prior_boxes` builds either."""

import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

# SSD300, in map order conv4_3, conv7, conv8_2, conv9_2, conv10_2, conv11_2. The aspect ratio 0.333 (not 1/3)
# and the clamp to [0, 1] are the well-known tutorial's, so these priors equal its values bit for bit.
SSD300_FMAP_DIMS = (38, 19, 10, 5, 3, 1)
SSD300_OBJ_SCALES = (0.1, 0.2, 0.375, 0.55, 0.725, 0.9)
SSD300_ASPECT_RATIOS = (
    (1.0, 2.0, 0.5),
    (1.0, 2.0, 3.0, 0.5, 0.333),
    (1.0, 2.0, 3.0, 0.5, 0.333),
    (1.0, 2.0, 3.0, 0.5, 0.333),
    (1.0, 2.0, 0.5),
    (1.0, 2.0, 0.5),
)
SSD300_CONFIG = dict(
    fmap_dims=SSD300_FMAP_DIMS, obj_scales=SSD300_OBJ_SCALES, aspect_ratios=SSD300_ASPECT_RATIOS, clip=True
)
"""The SSD300 preset (300x300 input): keyword arguments of :func:`prior_boxes`."""

TINY_CONFIG = dict(
    fmap_dims=(20, 10, 5, 3, 1),
    obj_scales=(0.1, 0.25, 0.45, 0.65, 0.85),
    aspect_ratios=((1.0, 2.0, 0.5),) + ((1.0, 2.0, 3.0, 0.5, 1 / 3),) * 2 + ((1.0, 2.0, 0.5),) * 2,
    clip=False,
)
"""The tiny preset (160x160 input, maps 20, 10, 5, 3, 1): keyword arguments of :func:`prior_boxes`."""

PRESETS = {"ssd300": SSD300_CONFIG, "tiny": TINY_CONFIG}
"""Prior configuration of each model preset, by name."""


def prior_boxes(
    fmap_dims: Sequence[Union[int, Sequence[int]]],
    obj_scales: Sequence[float],
    aspect_ratios: Sequence[Sequence[float]],
    extra_scale_last: float = 1.0,
    clip: bool = False,
    device: Optional[Union[str, torch.device]] = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Priors for any SSD configuration.

    For map k of size (H, W) and each cell (row i, column j), centre ((j + 0.5) / W, (i + 0.5) / H), and for
    each aspect ratio r in order a prior (s_k sqrt(r), s_k / sqrt(r)); right after r == 1, an extra square
    prior of side sqrt(s_k s_{k+1}) (``extra_scale_last`` for the last map). Values are computed in float64
    and rounded once, so float32 output equals the tutorial's (Python floats put in a FloatTensor).

    Args:
        fmap_dims: per map, an int (square map) or (H, W).
        obj_scales: per map, the scale s_k (fraction of the image side).
        aspect_ratios: per map, the aspect ratios (w / h) in order.
        extra_scale_last (float): the extra prior's side on the last map (the tutorial uses 1).
        clip (bool): clamp the center-size values to [0, 1], as the tutorial's ``prior_boxes.clamp_(0, 1)``
            does (it caps widths and heights above 1; it does not clip boxes to the image). Default False;
            the SSD300 preset clips, to equal the tutorial.
        device, dtype: of the result.

    Returns:
        Tensor[P, 4]: (cx, cy, w, h) fractional; P = sum over maps of H W (len(ratios) + (1 in ratios)).
    """
    if not (len(fmap_dims) == len(obj_scales) == len(aspect_ratios)):
        raise ValueError(
            f"fmap_dims, obj_scales and aspect_ratios must have one entry per feature map, got "
            f"{len(fmap_dims)}, {len(obj_scales)} and {len(aspect_ratios)}"
        )
    parts = []
    n_maps = len(fmap_dims)
    for k in range(n_maps):
        dims = fmap_dims[k]
        h, w = (int(dims), int(dims)) if isinstance(dims, (int, float)) else (int(dims[0]), int(dims[1]))
        if h <= 0 or w <= 0:
            raise ValueError(f"fmap_dims[{k}] must be positive, got {dims}")
        s = float(obj_scales[k])
        ratios = [float(r) for r in aspect_ratios[k]]
        if not ratios or any(r <= 0 for r in ratios) or s <= 0:
            raise ValueError(f"feature map {k}: scales and aspect ratios must be positive and non-empty")
        shapes = []
        for r in ratios:
            sr = torch.tensor(math.sqrt(r), dtype=torch.float64)
            shapes.append(torch.stack([s * sr, s / sr]))
            if r == 1.0:
                extra = math.sqrt(s * float(obj_scales[k + 1])) if k + 1 < n_maps else float(extra_scale_last)
                shapes.append(torch.tensor([extra, extra], dtype=torch.float64))
        wh = torch.stack(shapes)  # [A, 2]
        cy = (torch.arange(h, dtype=torch.float64) + 0.5) / h
        cx = (torch.arange(w, dtype=torch.float64) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(cy, cx, indexing="ij")  # [H, W]
        centers = torch.stack([grid_x, grid_y], dim=-1).reshape(h * w, 1, 2).expand(h * w, wh.size(0), 2)
        parts.append(torch.cat([centers, wh.unsqueeze(0).expand(h * w, -1, -1)], dim=-1).reshape(-1, 4))
    priors = torch.cat(parts).to(dtype)
    if clip:
        priors.clamp_(0, 1)
    return priors.to(device) if device is not None else priors


def ssd300_prior_boxes(device: Optional[Union[str, torch.device]] = None) -> Tensor:
    """The SSD300 preset: Tensor[8732, 4] center-size, equal in order and value to the tutorial's
    ``SSD300.create_prior_boxes()`` (including its ``clamp_(0, 1)``, which caps 20 widths/heights at 1)."""
    return preset_prior_boxes("ssd300", device=device)


def preset_prior_boxes(preset: str, device: Optional[Union[str, torch.device]] = None) -> Tensor:
    """The priors of a model preset (``"ssd300"`` or ``"tiny"``, see :data:`PRESETS`), Tensor[P, 4] center-size."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    return prior_boxes(**PRESETS[preset], device=device)
