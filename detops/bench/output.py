"""Output of ``detops bench``: the console table, the JSON file, the plots and the comparison of two runs."""

import json
import math
import os
import re
import time
from typing import Any, Dict, List, Optional, Sequence

SCHEMA = "detops-bench/1"


def fmt_ms(ms: Optional[float]) -> str:
    if ms is None:
        return "-"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 10:
        return f"{ms:.1f} ms"
    if ms >= 0.1:
        return f"{ms:.3f} ms"
    return f"{ms * 1000:.1f} us"


def fmt_stats(s: Optional[Dict[str, Any]]) -> str:
    if not s:
        return "-"
    return f"{fmt_ms(s['median_ms'])} ±{fmt_ms(s['iqr_ms'] / 2)} (n={s['runs']})"


def fmt_ratio(r: Optional[float]) -> str:
    return "-" if r is None else (f"{r:.1f}x" if r >= 10 else f"{r:.2f}x")


COLUMNS = ("op", "workload", "size", "baseline", "detops", "baseline time", "speed-up", "floor", "detops/floor")


def table_rows(rows: Sequence[Dict[str, Any]]) -> List[List[str]]:
    out = []
    for r in rows:
        if r["status"] != "ok":
            label = "ERROR" if r["status"] == "error" else "baseline missing"
            out.append([r["op"], r["workload"], r["size"], r["baseline"], f"{label}: {r['message']}", "", "", "", ""])
            continue
        out.append(
            [
                r["op"],
                r["workload"],
                r["size"],
                r["baseline"],
                fmt_stats(r["detops"]),
                fmt_stats(r["baseline_time"]),
                fmt_ratio(r["ratio"]),
                fmt_ms(r["floor"]["median_ms"]) if r.get("floor") else "-",
                fmt_ratio(r["vs_floor"]) if r.get("vs_floor") is not None else "-",
            ]
        )
    return out


def console_table(rows: Sequence[Dict[str, Any]]) -> str:
    body = table_rows(rows)
    cells = [list(COLUMNS)] + body
    width = [
        max(len(c[i]) for c in cells if not (c[4].startswith(("ERROR", "baseline missing")) and i == 4))
        for i in range(len(COLUMNS))
    ]
    lines = []
    for k, c in enumerate(cells):
        if k > 0 and c[4].startswith(("ERROR", "baseline missing")):
            lines.append("  ".join(c[i].ljust(width[i]) for i in range(4)) + "  " + c[4])
        else:
            lines.append("  ".join(c[i].ljust(width[i]) if i < 4 else c[i].rjust(width[i]) for i in range(len(c))))
        if k == 0:
            lines.append("  ".join("-" * w for w in width))
    return "\n".join(lines)


def fmt_bytes(n: Optional[float]) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def memory_lines(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """One line per row that measured peak memory (``row["memory"]``)."""
    out = []
    for r in rows:
        m = r.get("memory")
        if not m:
            continue
        head = f"{r['op']} {r['workload']} {r['size']} vs {r['baseline']} on {r['device']}"
        if "error" in m:
            out.append(f"{head}: not measured: {m['error']}")
            continue
        line = f"{head}: detops {fmt_bytes(m.get('detops_bytes'))}, baseline {fmt_bytes(m.get('baseline_bytes'))}"
        if m.get("detops_device_bytes") is not None:
            line += f" (detops on the device: {fmt_bytes(m['detops_device_bytes'])})"
        out.append(line + (f"; {m['method']}" if m.get("method") else ""))
    return out


def describe_workloads(rows: Sequence[Dict[str, Any]]) -> str:
    seen = {}
    for r in rows:
        seen.setdefault(r["workload"], r["workload_description"])
    return "\n".join(f"  {k}: {v}" for k, v in seen.items())


def document(rows, machine, settings) -> Dict[str, Any]:
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "settings": settings,
        "workloads": {r["workload"]: r["workload_description"] for r in rows},
        "rows": list(rows),
    }


def write_json(path: str, doc: Dict[str, Any]) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def read_json(path: str) -> Dict[str, Any]:
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or "rows" not in doc:
        raise ValueError(f"{path} is not a detops bench JSON file (no 'rows')")
    return doc


def _size_value(r) -> float:
    return float(math.prod(r["dims"])) if r["dims"] else 0.0


def plot(rows: Sequence[Dict[str, Any]], out_dir: str) -> List[str]:
    """One PNG per op: median time against size on log-log axes, detops, each baseline and the floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    by_op: Dict[str, List[Dict[str, Any]]] = {}
    for r in rows:
        if r["status"] == "ok":
            by_op.setdefault(r["op"], []).append(r)
    written = []
    for op, rs in by_op.items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        groups: Dict[str, List[Dict[str, Any]]] = {}
        for r in rs:
            groups.setdefault(f"{r['workload']} vs {r['baseline']}", []).append(r)
        for k, (label, g) in enumerate(groups.items()):
            g = sorted(g, key=_size_value)
            x = [_size_value(r) for r in g]
            color = f"C{k}"
            ax.plot(x, [r["detops"]["median_ms"] for r in g], "o-", color=color, label=f"detops ({label})")
            ax.plot(x, [r["baseline_time"]["median_ms"] for r in g], "s--", color=color, label=r_base(label))
            fl = [(xi, r["floor"]["median_ms"]) for xi, r in zip(x, g) if r.get("floor")]
            if fl:
                ax.plot(*zip(*fl), ":", color=color, alpha=0.7, label=f"floor: write the output once ({label})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"size ({rs[0]['size_label']}, product of the dimensions)")
        ax.set_ylabel("median time (ms)")
        ax.set_title(f"{op} on {rs[0]['device']}, {rs[0]['dtype']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(out_dir, re.sub(r"[^A-Za-z0-9_.-]+", "_", op) + ".png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def r_base(label: str) -> str:
    return label.split(" vs ", 1)[1] + f" ({label.split(' vs ', 1)[0]})"


def row_key(r: Dict[str, Any]):
    return (r["case"], r["size"], r["device"], r["dtype"])


def outside_spread(old: Dict[str, Any], new: Dict[str, Any]) -> bool:
    """True when each run's median lies outside the other run's interquartile range."""
    return not (old["q1_ms"] <= new["median_ms"] <= old["q3_ms"]) and not (
        new["q1_ms"] <= old["median_ms"] <= new["q3_ms"]
    )


def compare_runs(old_doc: Dict[str, Any], rows: Sequence[Dict[str, Any]]) -> str:
    """Per row present in both runs: old and new medians of detops and the baseline, the ratio new / old of
    the medians, and whether the change is outside both runs' spread."""
    old = {row_key(r): r for r in old_doc["rows"]}
    head = [
        "op",
        "workload",
        "size",
        "baseline",
        "detops old -> new",
        "change",
        "outside spread",
        "baseline old -> new",
        "change",
        "outside spread",
    ]
    body = []
    for r in rows:
        o = old.get(row_key(r))
        if o is None:
            body.append([r["op"], r["workload"], r["size"], r["baseline"], "new row", "", "", "", "", ""])
            continue
        if r["status"] != "ok" or o["status"] != "ok":
            body.append(
                [
                    r["op"],
                    r["workload"],
                    r["size"],
                    r["baseline"],
                    f"{o['status']} -> {r['status']}",
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
            continue
        cells = [r["op"], r["workload"], r["size"], r["baseline"]]
        for side in ("detops", "baseline_time"):
            a, b = o[side], r[side]
            cells += [
                f"{fmt_ms(a['median_ms'])} -> {fmt_ms(b['median_ms'])}",
                f"{b['median_ms'] / a['median_ms']:.2f}x" if a["median_ms"] > 0 else "-",
                "yes" if outside_spread(a, b) else "no",
            ]
        body.append(cells)
    gone = set(old) - {row_key(r) for r in rows}
    cells = [head] + body
    width = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c[i].ljust(width[i]) for i in range(len(head))) for c in cells]
    lines.insert(1, "  ".join("-" * w for w in width))
    if gone:
        lines.append(f"({len(gone)} rows of the old run were not run now)")
    return "\n".join(lines)
