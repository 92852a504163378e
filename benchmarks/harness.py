"""A tiny benchmark harness: each case times detops and its baseline side by side in one run and reports
the ratio. Used by the bench_*.py programs (which print and save tables) and by test_benchmarks.py
(pytest-benchmark). Tests never time anything; benchmarks never assert speed."""

import argparse
import dataclasses
import json
import platform
import statistics
import time
from typing import Callable, Optional

import torch


@dataclasses.dataclass
class Case:
    name: str
    detops: Callable[[], object]
    baseline: Optional[Callable[[], object]]
    baseline_name: str = "torchvision"
    goal: str = ""  # what the issue asks for, e.g. ">= 10x"


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device):
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def measure(fn, device="cpu", min_time=0.5, max_runs=50, max_warmup=5):
    """Median wall time of fn() in milliseconds, after warm-up; runs until min_time or max_runs (a call slower
    than min_time is timed once: the slow baselines take seconds).

    Warm-up: max_warmup calls, or fewer when they add up to a second. On this VM a process's first touches of
    fresh memory are faulted in by the host as well: the first 2 to 5 calls of an op with a 64 MB output took
    130-160 ms, every later one 17 ms."""
    spent = 0.0
    for _ in range(max_warmup):
        spent += _timed(fn, device)
        if spent > 1000:
            break
    times = []
    start = time.perf_counter()
    while not times or (time.perf_counter() - start < min_time and len(times) < max_runs):
        times.append(_timed(fn, device))
    return statistics.median(times)


def machine():
    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name()
    else:
        dev = f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads, no GPU"
    return f"{dev}; torch {torch.__version__}; python {platform.python_version()}"


def run_cases(cases, device="cpu", min_time=0.5):
    rows = []
    for c in cases:
        t_d = measure(c.detops, device, min_time)
        t_b = measure(c.baseline, device, min_time) if c.baseline else None
        row = {
            "case": c.name,
            "detops_ms": round(t_d, 3),
            "baseline": c.baseline_name if c.baseline else "",
            "baseline_ms": round(t_b, 3) if t_b else None,
            "speedup": round(t_b / t_d, 2) if t_b else None,
            "goal": c.goal,
        }
        rows.append(row)
        print(_fmt_row(row), flush=True)
    return rows


def _fmt_row(r):
    base = f"{r['baseline_ms']:10.3f} ms ({r['baseline']})" if r["baseline_ms"] is not None else ""
    ratio = f"{r['speedup']:7.2f}x" if r["speedup"] is not None else ""
    return f"{r['case']:<48} {r['detops_ms']:10.3f} ms  {base:<36} {ratio:>8}  {r['goal']}"


def markdown(rows, title):
    lines = [f"### {title}", "", f"Machine: {machine()}", "",
             "| case | detops (ms) | baseline | baseline (ms) | speedup | goal |", "|---|---:|---|---:|---:|---|"]
    for r in rows:
        b = f"{r['baseline_ms']:.3f}" if r["baseline_ms"] is not None else ""
        s = f"{r['speedup']:.2f}x" if r["speedup"] is not None else ""
        lines.append(f"| {r['case']} | {r['detops_ms']:.3f} | {r['baseline']} | {b} | {s} | {r['goal']} |")
    return "\n".join(lines) + "\n"


def main(title, make_cases):
    """Entry point of a bench_*.py program: `python benchmarks/bench_x.py [--device cuda] [--out DIR]`."""
    parser = argparse.ArgumentParser(description=title)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="folder for the table (.md) and raw numbers (.json)")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds of timed runs per measurement")
    args = parser.parse_args()
    print(f"{title} — {machine()}")
    rows = run_cases(make_cases(args.device), args.device, args.min_time)
    md = markdown(rows, title)
    if args.out:
        import os

        os.makedirs(args.out, exist_ok=True)
        stem = title.lower().replace(" ", "_").replace("/", "_")
        with open(os.path.join(args.out, f"{stem}.md"), "w") as f:
            f.write(md)
        with open(os.path.join(args.out, f"{stem}.json"), "w") as f:
            json.dump({"machine": machine(), "rows": rows}, f, indent=1)
    return rows
