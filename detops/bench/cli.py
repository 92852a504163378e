"""``detops bench``: every detops op timed against its counterpart on generated workloads.

    detops bench                                   # every case at its default sizes (several minutes)
    detops bench --ops box_iou,nms --quick         # two ops, small sizes
    detops bench --ops nms --sizes nms:1000,3000,20000 --json nms.json --plot plots/
    detops bench --ops boxes --compare old.json    # what changed since an earlier run

Each row checks first that detops and its baseline give the same output (an error row when they do not,
never timed), then times both in alternation: medians with their interquartile range and the number of runs.
"""

import argparse
import sys

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n")[0]
    p.add_argument(
        "--ops",
        default="",
        help="comma-separated ops or families (boxes, coding, nms, matching, hard_negatives, yolo, rotated, "
        "focal_loss, ssd, metrics, training); default all. --list shows them",
    )
    p.add_argument(
        "--sizes",
        action="append",
        default=[],
        metavar="OP:S1,S2",
        help="sizes for an op, e.g. nms:1000,3000,20000 or box_iou:500x20000 (repeatable, or ';'-separated)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=sorted(DTYPES),
        help="box and score dtype (SSD and detector cases always use float32)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="seed of every workload")
    p.add_argument("--quick", action="store_true", help="small sizes, short timing: a check that takes about a minute")
    p.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="seconds each side is timed per row (default 0.5, 0.05 with --quick)",
    )
    p.add_argument("--json", metavar="FILE", help="write every figure and the machine to FILE")
    p.add_argument("--plot", metavar="DIR", help="one PNG per op in DIR: time against size, log-log")
    p.add_argument("--compare", metavar="OLD.json", help="print the change of every row against an earlier run")
    p.add_argument("--list", action="store_true", help="list the cases and their sizes, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_sizes(items):
    out = {}
    for item in items:
        for part in filter(None, (s.strip() for s in item.split(";"))):
            if ":" not in part:
                raise ValueError(f"--sizes wants OP:S1,S2 (e.g. nms:1000,3000), got {part!r}")
            op, sizes = part.split(":", 1)
            out[op.strip()] = [s.strip() for s in sizes.split(",") if s.strip()]
    return out


def run(args) -> int:
    from detops.bench import output, registry, runner
    from detops.bench.machine import machine_info, one_line
    from detops.bench.timer import copy_bandwidth

    cases = registry.load_cases()
    if args.list:
        for c in cases:
            print(f"{c.family:<15} {c.name:<58} sizes {','.join(c.sizes)}; quick {','.join(c.quick_sizes) or '-'}")
        return 0
    try:
        named = [s.strip() for s in args.ops.split(",") if s.strip()]
        selected = registry.select(cases, named)
        sizes = parse_sizes(args.sizes)
        for v in sizes.values():
            for s in v:
                registry.parse_size(s)
    except ValueError as e:
        print(f"detops bench: {e}", file=sys.stderr)
        return 2
    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        print("detops bench: --device cuda, but no CUDA device is visible", file=sys.stderr)
        return 2
    old = None
    if args.compare:
        try:
            old = output.read_json(args.compare)
        except (OSError, ValueError) as e:
            print(f"detops bench: --compare: {e}", file=sys.stderr)
            return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    min_time = args.min_time if args.min_time is not None else (0.05 if args.quick else 0.5)
    dtype = DTYPES[args.dtype]
    machine = machine_info(args.device)
    copy_gbps = copy_bandwidth(args.device)
    if copy_gbps:
        machine["copy_bandwidth_gbps"] = copy_gbps
    print(f"detops bench on {args.device}: {one_line(machine)}")
    if copy_gbps:
        print(f"measured copy bandwidth {copy_gbps:.0f} GB/s")

    def on_row(row, bar):
        if row["status"] != "ok":
            msg = f"{row['case']} {row['size']}: {'ERROR' if row['status'] == 'error' else 'skipped'}: {row['message']}"
            (bar.write if bar is not None else print)(msg)

    rows = runner.run(
        selected,
        sizes,
        args.device,
        dtype,
        args.seed,
        min_time,
        args.quick,
        progress=not args.no_progress,
        named=named,
        copy_gbps=copy_gbps,
        on_row=on_row,
    )
    if not rows:
        print("no case matched (under --quick, a case without quick sizes runs only when --ops names it)")
        return 0
    print("\nWorkloads (seed %d):\n%s\n" % (args.seed, output.describe_workloads(rows)))
    print(output.console_table(rows))
    print(
        "\nTimes: median ±half the interquartile range (n = timed calls per side, after warm-up); speed-up = "
        "baseline median / detops median; floor = a fill of a fresh tensor as large as detops' output."
    )
    memory = output.memory_lines(rows)
    if memory:
        print("\nPeak memory:\n" + "\n".join(memory))
    settings = {
        "argv": list(getattr(args, "argv", None) or sys.argv[1:]),
        "ops": named,
        "sizes": sizes,
        "device": args.device,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "seed": args.seed,
        "quick": args.quick,
        "min_time": min_time,
    }
    if args.json:
        output.write_json(args.json, output.document(rows, machine, settings))
        print(f"wrote {args.json}")
    if args.plot:
        paths = output.plot(rows, args.plot)
        print(f"wrote {len(paths)} plots to {args.plot}")
    if old is not None:
        print(
            f"\nChange against {args.compare} (ratio of medians new / old; outside spread: each median is "
            "outside the other run's interquartile range):\n"
        )
        print(output.compare_runs(old, rows))
    return 1 if any(r["status"] == "error" for r in rows) else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="detops bench")
    add_arguments(p)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
