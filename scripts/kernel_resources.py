"""Registers, shared memory and spills of every CUDA kernel, from ptxas, checked against its block size.

A block of T threads whose kernel needs R registers per thread launches only if R * T fits the SM's register
file (65536 32-bit registers on sm_70 to sm_90); past it the launch fails with "too many resources
requested", on the GPU only and only for the instantiations (dtype, mode) that need the most registers.
Every kernel therefore declares ``__launch_bounds__(T)`` with the block size it is launched with, so ptxas
keeps R within the limit (spilling to local memory rather than failing at run time); this script checks
that every ``__global__`` kernel under csrc/cuda does, and that ptxas's report for each instantiation
stays inside the limits without spilling.

  python scripts/kernel_resources.py                 # compile each .cu for sm_90 with ptxas -v, check
  python scripts/kernel_resources.py --log FILE      # ... and write the report (csrc/cuda/ptxas_sm90.log)
  python scripts/kernel_resources.py --report FILE   # check a report written earlier (no compiler needed)

The compile uses the nvcc command of the in-place build when build/*/build.ninja exists (the flags setup.py
gives), else the same flags assembled here. Exit status 1 when a check fails.
"""

import argparse
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_DIR = os.path.join(ROOT, "csrc", "cuda")
REGISTERS_PER_SM = 65536  # sm_70 .. sm_90: also the most one block may use
MAX_STATIC_SHARED = 48 * 1024  # static __shared__ per block without opting in to more
MAX_REGISTERS_PER_THREAD = 255

_KERNEL_RE = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\(([^)]*)\)\s*)?(\w+)\s*\(")
_CONST_RE = re.compile(r"constexpr\s+int\s+(\w+)\s*=\s*([^;]+);")


def _read(path):
    with open(path) as f:
        return f.read()


def _constants(texts):
    consts = {}
    for text in texts:
        for name, expr in _CONST_RE.findall(text):
            consts[name] = expr.strip()
    return consts


def _evaluate(expr, consts, depth=0):
    expr = expr.replace("cuda::", "")
    if depth > 10:
        raise ValueError(f"cannot evaluate {expr!r}")
    names = set(re.findall(r"[A-Za-z_]\w*", expr))
    for name in names:
        if name not in consts:
            raise ValueError(f"unknown constant {name!r} in {expr!r}")
        expr = re.sub(rf"\b{name}\b", f"({_evaluate(consts[name], consts, depth + 1)})", expr)
    if not re.fullmatch(r"[0-9()+\-*/ ]+", expr):
        raise ValueError(f"not an integer expression: {expr!r}")
    return int(eval(expr))  # digits and arithmetic only, checked above


def launch_bounds(cuda_dir=CUDA_DIR):
    """{kernel name: threads per block from its __launch_bounds__, or None when it has none}."""
    files = sorted(glob.glob(os.path.join(cuda_dir, "*.cu")))
    headers = sorted(glob.glob(os.path.join(cuda_dir, "*.cuh")))
    texts = {f: _read(f) for f in files + headers}
    consts = _constants(texts.values())
    bounds = {}
    for f in files + headers:
        for expr, name in _KERNEL_RE.findall(texts[f]):
            bounds[name] = _evaluate(expr, consts) if expr else None
    return bounds


def parse_report(text):
    """ptxas -v output -> [{"kernel", "name", "registers", "shared", "spill_stores", "spill_loads"}], one per
    compiled entry function (instantiation); names demangled when c++filt is available."""
    entries = []
    current = None
    properties_of = None  # the function whose "Function properties" block is being read
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            current = {"kernel": m.group(1), "registers": 0, "shared": 0, "spill_stores": 0, "spill_loads": 0}
            entries.append(current)
            continue
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            properties_of = m.group(1)
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and properties_of == current["kernel"]:
            current["spill_stores"] = max(current["spill_stores"], int(m.group(1)))
            current["spill_loads"] = max(current["spill_loads"], int(m.group(2)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            current["shared"] = int(s.group(1)) if s else 0
    demangled = _demangle([e["kernel"] for e in entries])
    for e, d in zip(entries, demangled):
        e["demangled"] = d
        e["name"] = _base_name(d)
    return entries


def _demangle(names):
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
        lines = out.stdout.splitlines()
        if len(lines) == len(names):
            return lines
    except (OSError, subprocess.CalledProcessError):
        pass
    return names


def _base_name(demangled):
    # "void detops::(anonymous namespace)::pairwise_kernel<double, (detops::IouMode)3>(...)" -> pairwise_kernel;
    # a mangled name (no c++filt) still contains the identifier with its length prefix.
    m = re.search(r"(\w+_kernel)\b", demangled)
    return m.group(1) if m else demangled


def check(entries, bounds, registers_per_sm=REGISTERS_PER_SM):
    """Problems as sentences: a kernel with no launch bounds, registers x threads over the SM's register file,
    static shared memory over 48 KiB, spills at the register cap its bounds set (a kernel at the edge)."""
    problems = []
    for name, threads in sorted(bounds.items()):
        if threads is None:
            problems.append(f"{name}: no __launch_bounds__ (ptxas may give it more registers than a block has)")
    seen = set()
    for e in entries:
        name = e["name"]
        seen.add(name)
        threads = bounds.get(name)
        if threads is None:
            if name not in bounds:
                problems.append(f"{e['demangled']}: not a __global__ kernel found in csrc/cuda")
            continue
        if e["registers"] * threads > registers_per_sm:
            problems.append(
                f"{e['demangled']}: {e['registers']} registers x {threads} threads = "
                f"{e['registers'] * threads} > {registers_per_sm}: the launch fails"
            )
        if e["shared"] > MAX_STATIC_SHARED:
            problems.append(f"{e['demangled']}: {e['shared']} bytes of static shared memory > {MAX_STATIC_SHARED}")
        cap = min(MAX_REGISTERS_PER_THREAD, registers_per_sm // threads)
        # A few spilled bytes under the cap are registers saved around a call (libdevice's slow paths): harmless.
        # Spilling at the cap means the launch bounds squeeze the kernel: give it a smaller block.
        if (e["spill_stores"] or e["spill_loads"]) and e["registers"] >= cap:
            problems.append(
                f"{e['demangled']}: spills {e['spill_stores']} bytes at the cap of {cap} registers for "
                f"{threads} threads"
            )
    for name in sorted(set(bounds) - seen):
        if entries:
            problems.append(f"{name}: missing from the ptxas report")
    return problems


def table(entries, bounds):
    rows = [f"{'registers':>9} {'threads':>7} {'reg x thr':>9} {'smem B':>7} {'spill B':>7}  kernel"]
    for e in sorted(entries, key=lambda e: e["demangled"]):
        t = bounds.get(e["name"]) or 0
        rows.append(
            f"{e['registers']:>9} {t:>7} {e['registers'] * t:>9} {e['shared']:>7} "
            f"{e['spill_stores']:>7}  {e['demangled'].replace('(anonymous namespace)::', '').split('(')[0]}"
        )
    return "\n".join(rows)


def _ninja_command():
    found = sorted(glob.glob(os.path.join(ROOT, "build", "*", "build.ninja")))
    if not found:
        return None
    text = _read(found[-1])
    nvcc, pre, post = (
        re.search(rf"^{key} = (.*)$", text, re.MULTILINE) for key in ("nvcc", "cuda_cflags", "cuda_post_cflags")
    )
    if not (nvcc and pre and post):
        return None
    pre_flags = [f for f in shlex.split(pre.group(1)) if f != "-c"]
    post_flags = [
        f
        for f in shlex.split(post.group(1))
        if not f.startswith("-gencode") and "-fPIC" not in f and f != "--compiler-options"
    ]
    return [nvcc.group(1)] + pre_flags + post_flags


def _assembled_command():
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, include_paths

    nvcc = os.path.join(os.environ.get("CUDA_HOME") or CUDA_HOME or "/usr/local/cuda", "bin", "nvcc")
    flags = ["-DDETOPS_WITH_CUDA", f"-I{os.path.join(ROOT, 'csrc')}"]
    flags += [f"-I{p}" for p in include_paths(device_type="cuda") if "include" in p]
    flags += [
        "-D__CUDA_NO_HALF_OPERATORS__",
        "-D__CUDA_NO_HALF_CONVERSIONS__",
        "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
        "-D__CUDA_NO_HALF2_OPERATORS__",
        "--expt-relaxed-constexpr",
        "-O3",
        "--fmad=false",
        "-DTORCH_API_INCLUDE_EXTENSION_H",
        "-DTORCH_EXTENSION_NAME=_C",
        "-std=c++20",
    ]
    del torch
    return [nvcc] + flags


def compile_report(arch="90"):
    base = _ninja_command() or _assembled_command()
    chunks = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in sorted(glob.glob(os.path.join(CUDA_DIR, "*.cu"))):
            cmd = base + [
                f"-gencode=arch=compute_{arch},code=sm_{arch}",
                "--cubin",
                "-Xptxas=-v",
                f,
                "-o",
                os.path.join(tmp, "out.cubin"),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                sys.exit(f"nvcc failed on {f}:\n{out.stderr[-4000:]}")
            chunks.append(f"# {os.path.relpath(f, ROOT)}\n" + out.stderr)
    return "".join(chunks)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--report", help="check this ptxas -v report instead of compiling")
    ap.add_argument("--log", help="write the compiled report here")
    ap.add_argument("--arch", default="90", help="the sm_XX to compile for (default 90)")
    args = ap.parse_args(argv)
    text = _read(args.report) if args.report else compile_report(args.arch)
    if args.log:
        with open(args.log, "w") as f:
            f.write(text)
    bounds = launch_bounds()
    entries = parse_report(text)
    print(table(entries, bounds))
    problems = check(entries, bounds)
    for p in problems:
        print("PROBLEM:", p)
    print(f"{len(entries)} kernel instantiations, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
