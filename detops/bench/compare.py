"""Agreement checks run before anything is timed: a pair whose outputs differ is an error row, never a time."""

from typing import Any, List, Optional

import torch
from torch import Tensor


def close(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-6, where: str = "output") -> Optional[str]:
    """None when a and b agree (integer and bool tensors exactly, floats within rtol/atol, NaN equal to NaN,
    nested tuples, lists and dicts element by element); else a message saying where they differ."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
            return f"{where}: a tensor against {type(b if isinstance(a, Tensor) else a).__name__}"
        if tuple(a.shape) != tuple(b.shape):
            return f"{where}: shapes differ, detops {list(a.shape)} vs baseline {list(b.shape)}"
        a, b = a.detach().cpu(), b.detach().cpu()
        if not a.is_floating_point() and not b.is_floating_point():
            if not torch.equal(a.long() if a.dtype != torch.bool else a, b.long() if b.dtype != torch.bool else b):
                n = int((a.long() != b.long()).sum())
                return f"{where}: {n} of {a.numel()} indices differ"
            return None
        a64, b64 = a.double(), b.double()
        ok = torch.isclose(a64, b64, rtol=rtol, atol=atol, equal_nan=True)
        if not bool(ok.all()):
            bad = ~ok
            err = (a64 - b64).abs()[bad & ~(a64.isnan() | b64.isnan())]
            worst = f", worst |diff| {float(err.max()):.3g}" if err.numel() else ""
            return f"{where}: {int(bad.sum())} of {a.numel()} values differ beyond rtol {rtol:g} / atol {atol:g}{worst}"
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{where}: keys differ ({sorted(a)} vs {sorted(b)})"
        for k in a:
            msg = close(a[k], b[k], rtol, atol, f"{where}[{k!r}]")
            if msg:
                return msg
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where}: {len(a)} items vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            msg = close(x, y, rtol, atol, f"{where}[{i}]")
            if msg:
                return msg
        return None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if abs(a - b) <= atol + rtol * abs(b) or (a != a and b != b):
            return None
        return f"{where}: {a!r} vs {b!r}"
    if a is None and b is None:
        return None
    return f"{where}: {type(a).__name__} against {type(b).__name__}"


def equal(a: Any, b: Any) -> Optional[str]:
    return close(a, b, rtol=0.0, atol=0.0)


def sorted_rows(rows: Tensor) -> Tensor:
    """Rows of a [n, k] detection table in lexicographic order (tied scores may come in either order)."""
    rows = rows.detach().cpu().double()
    if rows.numel() == 0:
        return rows.reshape(0, rows.shape[-1] if rows.dim() == 2 else 0)
    for col in reversed(range(rows.shape[1])):
        rows = rows[torch.sort(rows[:, col], stable=True).indices]
    return rows


def detections(rtol: float = 1e-4, atol: float = 1e-3):
    """A check for lists of per-image detection tables [n, k] compared as sets of rows."""

    def check(a: List[Tensor], b: List[Tensor]) -> Optional[str]:
        if len(a) != len(b):
            return f"{len(a)} images vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            if x.shape != y.shape:
                return f"image {i}: {x.shape[0]} detections vs {y.shape[0]}"
            msg = close(sorted_rows(x), sorted_rows(y), rtol, atol, f"image {i} detections")
            if msg:
                return msg
        return None

    return check


def as_tables(out) -> List[Tensor]:
    """Per-image [n, 6] tables (x1, y1, x2, y2, score, label) of the common detection output formats: a list
    of torchvision-style dicts, a list of tables, or padded multiclass_nms output (boxes, scores, labels,
    counts)."""
    if isinstance(out, list) and out and isinstance(out[0], dict):
        return [
            torch.cat([d["boxes"], d["scores"][:, None], d["labels"][:, None].to(d["boxes"].dtype)], 1) for d in out
        ]
    if isinstance(out, tuple) and len(out) == 4 and isinstance(out[3], Tensor):
        boxes, scores, labels, counts = out
        return [
            torch.cat([boxes[i, :n], scores[i, :n, None], labels[i, :n, None].to(boxes.dtype)], 1)
            for i, n in enumerate(counts.tolist())
        ]
    if isinstance(out, tuple):  # (list of boxes, list of scores, list of labels)
        return [
            torch.cat([t.reshape(t.shape[0], -1).to(per_image[0].dtype) for t in per_image], 1)
            for per_image in zip(*out)
        ]
    return list(out)
