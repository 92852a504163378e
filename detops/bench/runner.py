"""Runs benchmark cases: builds each row's inputs, checks that both sides agree, then times them."""

import math
import sys
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch

from detops.bench import compare
from detops.bench import workloads as W
from detops.bench.registry import Case, Context, MissingBaseline, Pair, missing_requirement, parse_size
from detops.bench.timer import time_alternating


def _tensors(obj) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def _clone(obj):
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


def nbytes(obj) -> int:
    return sum(t.numel() * t.element_size() for t in _tensors(obj))


def input_copies(inputs, device: str) -> List[Any]:
    """On CUDA, enough copies of the inputs to fill twice the L2 cache (at most 1 GiB, at most 64), so that a
    timed call never finds its inputs left in the cache by the call before; on the CPU, the inputs once."""
    if not str(device).startswith("cuda"):
        return [inputs]
    size = max(1, nbytes(inputs))
    l2 = getattr(torch.cuda.get_device_properties(torch.device(device)), "L2_cache_size", 64 << 20)
    n = min(64, max(2, math.ceil(2 * l2 / size)), max(1, (1 << 30) // size))
    return [inputs] + [_clone(inputs) for _ in range(n - 1)]


def _floor_fn(out, device):
    """A fill of a fresh tensor as large as the output: the cost of writing it once."""
    ts = list(_tensors(out))
    if not ts:
        return None, 0
    total = sum(t.numel() * t.element_size() for t in ts)
    dtype = max(ts, key=lambda t: t.numel() * t.element_size()).dtype
    numel = max(1, total // torch.empty((), dtype=dtype).element_size())
    return (lambda i: torch.empty(numel, dtype=dtype, device=device).fill_(1)), total


def check_outputs(pair: Pair, ours, theirs) -> Optional[str]:
    if callable(pair.check):
        return pair.check(ours, theirs)
    if pair.check == "equal":
        return compare.equal(ours, theirs)
    return compare.close(ours, theirs, pair.rtol, pair.atol)


def sizes_for(case: Case, sizes: Dict[str, List[str]], quick: bool) -> List[str]:
    for key in (case.name, f"{case.op}/{case.workload}", case.op, case.family):
        if key in sizes:
            return sizes[key]
    return list(case.quick_sizes if quick else case.sizes)


def plan(cases: Sequence[Case], sizes: Dict[str, List[str]], quick: bool, device: str, named: Sequence[str] = ()):
    """(case, size) pairs to run: under --quick a case without quick sizes runs only when named in --ops."""
    dev = torch.device(device).type
    out = []
    for c in cases:
        if dev not in c.devices:
            continue
        chosen = sizes_for(c, sizes, quick)
        if quick and not chosen and any(k in named for k in (c.op, c.name)):
            chosen = list(c.sizes[:1])
        out += [(c, s) for s in chosen]
    return out


def run_row(
    case: Case,
    size: str,
    device: str,
    dtype: torch.dtype,
    seed: int,
    min_time: float,
    quick: bool,
    copy_gbps: Optional[float] = None,
) -> Dict[str, Any]:
    dims = parse_size(size)
    row: Dict[str, Any] = {
        "family": case.family,
        "op": case.op,
        "baseline": case.baseline,
        "workload": case.workload,
        "workload_description": W.describe(case.workload),
        "case": case.name,
        "size": str(size),
        "dims": list(dims),
        "size_label": case.size_label,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "status": "ok",
        "message": "",
        "note": "",
        "doc": case.doc,
        "detops": None,
        "baseline_time": None,
        "floor": None,
        "ratio": None,
        "vs_floor": None,
    }
    missing = missing_requirement(case.requires)
    if missing:
        row.update(status="missing", message=missing)
        return row
    cuda = str(device).startswith("cuda")
    try:
        pair = case.build(dims, Context(str(device), dtype, seed))
    except MissingBaseline as e:
        row.update(status="missing", message=str(e))
        return row
    except Exception as e:  # noqa: BLE001 - the row reports it; the run goes on
        row.update(status="error", message=f"building the inputs failed: {type(e).__name__}: {e}")
        return row
    row["note"] = pair.note
    if pair.dtype is not None:
        row["dtype"] = str(pair.dtype).replace("torch.", "")
    outs = []
    for side, fn in (("detops", pair.detops), ("baseline", pair.baseline)):
        try:
            outs.append(fn(*pair.inputs))
        except Exception as e:  # noqa: BLE001
            row.update(status="error", message=f"{side} raised {type(e).__name__}: {e}")
            return row
    if cuda:
        torch.cuda.synchronize()
    try:
        msg = check_outputs(pair, outs[0], outs[1])
    except Exception as e:  # noqa: BLE001
        msg = f"comparing the outputs raised {type(e).__name__}: {e}"
    if msg:
        row.update(status="error", message=f"outputs differ, not timed: {msg}")
        return row
    floor, out_bytes = _floor_fn(outs[0], device) if pair.floor else (None, 0)
    del outs
    copies = input_copies(pair.inputs, device)
    n = len(copies)
    sides = [
        lambda i: pair.detops(*copies[i % n]),
        lambda i: pair.baseline(*copies[i % n]),
        floor,
    ]
    stats = time_alternating(sides, cuda=cuda, min_time=min_time, warmup=1 if quick else 3, warmup_done=1)
    d, b, f = stats
    row["detops"], row["baseline_time"] = d.as_dict(), b.as_dict()
    row["ratio"] = b.median_ms / d.median_ms if d.median_ms > 0 else None
    row["input_copies"] = n
    if f is not None:
        row["floor"] = f.as_dict()
        row["vs_floor"] = d.median_ms / f.median_ms if f.median_ms > 0 else None
        row["output_bytes"] = out_bytes
        row["output_gbps"] = out_bytes / (d.median_ms * 1e-3) / 1e9 if d.median_ms > 0 else None
        if copy_gbps:
            row["of_copy_bandwidth"] = row["output_gbps"] / copy_gbps
    if pair.memory is not None:
        try:
            row["memory"] = pair.memory()
        except Exception as e:  # noqa: BLE001 - the timing stands; the row says why memory is missing
            row["memory"] = {"error": f"{type(e).__name__}: {e}"}
    return row


def run(
    cases: Sequence[Case],
    sizes: Dict[str, List[str]],
    device: str = "cpu",
    dtype=torch.float32,
    seed: int = 0,
    min_time: float = 0.5,
    quick: bool = False,
    progress: bool = True,
    named: Sequence[str] = (),
    copy_gbps: Optional[float] = None,
    on_row=None,
) -> List[Dict[str, Any]]:
    todo = plan(cases, sizes, quick, device, named)
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), unit="row", file=sys.stderr, leave=False, dynamic_ncols=True)
        except ImportError:
            bar = None
    rows = []
    try:
        for c, s in todo:
            if bar is not None:
                bar.set_description(f"{c.op} {c.workload} {s}")
            row = run_row(c, s, device, dtype, seed, min_time, quick, copy_gbps)
            rows.append(row)
            if on_row is not None:
                on_row(row, bar)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return rows
