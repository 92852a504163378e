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
    report = (
        f"ptxas info    : Compiling entry function '{name}' for 'sm_90'\n"
        f"ptxas info    : Function properties for {name}\n"
        "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Used 66 registers, used 0 barriers, 400 bytes cmem[0]\n"
    )
    entries = kr.parse_report(report)
    assert entries[0]["name"] == "pairwise_kernel" and entries[0]["registers"] == 66
    problems = kr.check(entries, {"pairwise_kernel": 1024})
    assert any("66 registers x 1024 threads" in p for p in problems)
    assert kr.check(entries, {"pairwise_kernel": 256}) == []
    assert any("no __launch_bounds__" in p for p in kr.check(entries, {"pairwise_kernel": None}))


def test_every_cuda_guard_follows_the_device_checks():
    # A CUDAGuard built from an argument before prepare_*'s same-device check turns a CPU/CUDA mix into c10's
    # "CUDAGuardImpl initialized with non-CUDA DeviceType"; built after it, from the checked tensor, the user
    # gets detops' "same device" message. Checked in the sources, so it holds without a GPU.
    import glob
    import re

    early = []
    for path in sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu"))):
        with open(path) as f:
            src = f.read()
        # Each host entry point: from a line starting a function returning a tensor (or tuple) to the next one.
        for body in re.split(r"\n(?=(?:at::Tensor|std::tuple|void)\s+\w+_cuda\()", src)[1:]:
            if "Problem&" in body.split("{", 1)[0]:
                continue  # takes a problem prepare_* already checked
            guard = body.find("CUDAGuard")
            prepare = body.find("prepare_")
            if guard != -1 and (prepare == -1 or guard < prepare):
                early.append(f"{os.path.basename(path)}: {body.split('(')[0].split()[-1]}")
    assert not early, f"CUDAGuard before the prepare_* device checks in {early}"
