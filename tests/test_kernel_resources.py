"""Every CUDA kernel fits its block: launch bounds on each __global__ kernel, and ptxas's report for sm_90
(csrc/cuda/ptxas_sm90.log, written by scripts/kernel_resources.py --log) inside the SM's register file and
48 KiB of static shared memory. Runs without a GPU or a compiler: the report is checked in."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("kernel_resources", os.path.join(ROOT, "scripts", "kernel_resources.py"))
kr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kr)
LOG = os.path.join(ROOT, "csrc", "cuda", "ptxas_sm90.log")


def test_every_kernel_has_launch_bounds():
    bounds = kr.launch_bounds()
    assert len(bounds) >= 20
    missing = sorted(name for name, threads in bounds.items() if threads is None)
    assert not missing, f"kernels without __launch_bounds__: {missing}"
    assert bounds["pairwise_kernel"] <= 256 and bounds["hard_negative_kernel"] == 512


def test_checked_in_ptxas_report_fits_every_block():
    with open(LOG) as f:
        entries = kr.parse_report(f.read())
    assert len(entries) >= 50  # every instantiation (dtype, mode) of every kernel
    assert kr.check(entries, kr.launch_bounds()) == []


def test_the_check_catches_a_kernel_over_the_register_file():
    # The float64 CIoU pairwise kernel at 1024 threads per block needed 66 registers: 67584 > 65536, so its
    # launch failed with "too many resources requested" on the GPU only.
    name = "_ZN6detops12_GLOBAL__N_115pairwise_kernelIdLNS_7IouModeE3EEEvPKT_S5_PS3_lllllS3_"
    report = (f"ptxas info    : Compiling entry function '{name}' for 'sm_90'\n"
              f"ptxas info    : Function properties for {name}\n"
              "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
              "ptxas info    : Used 66 registers, used 0 barriers, 400 bytes cmem[0]\n")
    entries = kr.parse_report(report)
    assert entries[0]["name"] == "pairwise_kernel" and entries[0]["registers"] == 66
    problems = kr.check(entries, {"pairwise_kernel": 1024})
    assert any("66 registers x 1024 threads" in p for p in problems)
    assert kr.check(entries, {"pairwise_kernel": 256}) == []
    assert any("no __launch_bounds__" in p for p in kr.check(entries, {"pairwise_kernel": None}))
