"""The one timer of ``detops bench``: sides called in alternation, per-call times, medians with their IQR.

On the CPU each call is timed by the wall clock; on CUDA by a pair of CUDA events around the call (waited for
after it, so no queue builds up). Warm-up calls come first and are never counted. Sides alternate within
every round, and the side that goes first changes from round to round, so a drift in the machine's speed
(another process, frequency scaling) reaches every side alike.
"""

import dataclasses
import statistics
import time
from typing import Callable, List, Optional, Sequence

import torch


@dataclasses.dataclass
class Stats:
    median_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    runs: int

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    def as_dict(self):
        d = dataclasses.asdict(self)
        d["iqr_ms"] = self.iqr_ms
        return d


def summarize(times_ms: Sequence[float]) -> Stats:
    t = sorted(times_ms)
    if len(t) >= 2:
        q1, _, q3 = statistics.quantiles(t, n=4, method="inclusive")
    else:
        q1 = q3 = t[0]
    return Stats(statistics.median(t), q1, q3, t[0], len(t))


def _timed_call(fn: Callable[[int], object], i: int, cuda: bool) -> float:
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(i)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    fn(i)
    return (time.perf_counter() - t0) * 1e3


def time_alternating(
    fns: Sequence[Optional[Callable[[int], object]]],
    cuda: bool = False,
    min_time: float = 0.5,
    warmup: int = 3,
    min_rounds: int = 3,
    max_runs: int = 2000,
    warmup_done: int = 0,
) -> List[Optional[Stats]]:
    """Stats of each ``fn(i)`` (i: the call's number, for rotating through input copies; None: not timed).

    Warm-up: up to ``warmup`` calls per side (``warmup_done`` already made by the caller), fewer once a side
    has spent a second. Then rounds: in each, every side is called until it has spent ``min_time /
    min_rounds`` seconds (at least once, at most ``max_runs / min_rounds`` times); rounds go on until every
    side has spent ``min_time`` (or has ``max_runs`` samples) and ``min_rounds`` rounds are done.
    """
    live = [(k, f) for k, f in enumerate(fns) if f is not None]
    calls = [0] * len(fns)
    if cuda:
        torch.cuda.synchronize()
    for k, f in live:
        spent = 0.0
        for _ in range(max(0, warmup - warmup_done)):
            spent += _timed_call(f, calls[k], cuda)
            calls[k] += 1
            if spent > 1000:
                break
    times: List[List[float]] = [[] for _ in fns]
    slice_ms = min_time * 1e3 / max(1, min_rounds)
    per_slice = max(1, max_runs // max(1, min_rounds))
    rounds = 0
    while live:
        shift = rounds % len(live)
        for k, f in live[shift:] + live[:shift]:
            spent, here = 0.0, 0
            while here == 0 or (spent < slice_ms and here < per_slice and len(times[k]) < max_runs):
                t = _timed_call(f, calls[k], cuda)
                calls[k] += 1
                here += 1
                times[k].append(t)
                spent += t
        rounds += 1
        enough = all(sum(times[k]) >= min_time * 1e3 or len(times[k]) >= max_runs for k, _ in live)
        if (enough and rounds >= min_rounds) or rounds >= 10 * max(1, min_rounds) + 100:
            break
    return [summarize(t) if t else None for t in times]


def copy_bandwidth(device: str, nbytes: int = 1 << 28, runs: int = 10) -> Optional[float]:
    """Measured device-to-device copy rate in GB/s (bytes of the tensor copied, counted once), CUDA only."""
    if not str(device).startswith("cuda"):
        return None
    src = torch.ones(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    stats = summarize([_timed_call(lambda i: dst.copy_(src), i, True) for i in range(runs)])
    return nbytes / (stats.median_ms * 1e-3) / 1e9
