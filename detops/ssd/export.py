"""``torch.export`` of an SSD detector: images in, fixed-shape padded detections out.

:meth:`SSD300.detect_objects` returns per-image lists whose lengths depend on the data (and a placeholder
for an image with nothing found), which ``torch.export`` cannot trace; :class:`Detector` wraps ``forward`` and
:meth:`SSD300.detect_batched` instead, whose outputs have fixed shapes (``-1`` labels pad), so the whole
detector exports. A saved program calls detops operators (``torch.ops.detops.*``): ``import detops`` before
``torch.export.load``, or use :func:`load`, which does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Detector(nn.Module):
    """``images [B, 3, S, S] -> (boxes [B, K, 4] fractional xyxy, scores [B, K], labels [B, K], counts [B])``,
    K = ``top_k``; rows past ``counts[b]`` are padding (label -1)."""

    def __init__(self, model, min_score: float = 0.2, max_overlap: float = 0.45, top_k: int = 200):
        super().__init__()
        self.model = model.eval()
        self.min_score, self.max_overlap, self.top_k = float(min_score), float(max_overlap), int(top_k)

    def forward(self, images: Tensor):
        locs, scores = self.model(images)
        return self.model.detect_batched(locs, scores, self.min_score, self.max_overlap, self.top_k)


def export_detector(model, batch_size: int = 1, **detector_kwargs) -> torch.export.ExportedProgram:
    """``torch.export.export`` of :class:`Detector` for ``[batch_size, 3, S, S]`` float32 images."""
    s = model.input_size
    example = torch.zeros(batch_size, 3, s, s, device=model.priors_cxcy.device)
    with torch.no_grad():
        return torch.export.export(Detector(model, **detector_kwargs), (example,))


def load(path: str) -> torch.export.ExportedProgram:
    """``torch.export.load(path)`` with the detops operators registered first."""
    import detops  # noqa: F401  (registers torch.ops.detops.*)

    try:
        return torch.export.load(path)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise RuntimeError(f"{path}: cannot load the exported program ({type(exc).__name__}: {exc})") from exc
