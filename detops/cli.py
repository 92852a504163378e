"""The ``detops`` command line. Each subcommand is a function taking parsed arguments; add new ones to
``_build_parser``. ``detops info`` is the first thing to paste into a bug report."""

import argparse
import platform
import sys


def cmd_info(args):
    import torch

    import detops
    from detops import _extension

    try:
        from detops import _build_info as b
    except ImportError:
        b = None
    print(f"detops        {detops.__version__}")
    print(f"python        {platform.python_version()} ({sys.platform})")
    print(f"torch         {torch.__version__} (CUDA {torch.version.cuda or 'none'})")
    try:
        import torchvision

        print(f"torchvision   {torchvision.__version__}")
    except ImportError:
        print("torchvision   not installed")
    if b is not None:
        print(f"built against torch {b.TORCH_VERSION_FULL}")
        print(f"compiled      CPU kernels; CUDA kernels: {'yes, archs ' + b.CUDA_ARCH_LIST if b.WITH_CUDA else 'no'}")
        if b.NVCC_VERSION:
            print(f"nvcc          {b.NVCC_VERSION}")
    print(f"CUDA kernels  {'compiled' if _extension.cuda_kernels_compiled() else 'not compiled'}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"GPU {i}         {p.name} (sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB)")
    else:
        print("GPU           none visible")
    print(f"CPU threads   {torch.get_num_threads()}")


def _build_parser():
    parser = argparse.ArgumentParser(prog="detops", description="Fast detection ops and an SSD300 built on them.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="versions, what was compiled, visible GPUs (paste this into bug reports)")
    p.set_defaults(func=cmd_info)
    _add_ssd_commands(sub)
    from detops.bench import cli as bench_cli

    p = sub.add_parser("bench", help="time detops' ops against torchvision and the tutorial's code (detops/bench)")
    bench_cli.add_arguments(p)
    p.set_defaults(func=bench_cli.run)
    return parser


def _add_ssd_commands(sub):
    """``detops train | eval | detect | demo``: the SSD (detops/ssd/train.py, evaluate.py, detect.py, demo.py)."""
    from detops.ssd import demo, detect, evaluate, train

    for name, module, help_ in (
        ("train", train, "train an SSD on a VOC-format dataset (torchrun --nproc_per_node N -m detops train ...)"),
        ("eval", evaluate, "VOC mAP (VOC07 11-point and all-point) and per-class AP of a checkpoint"),
        ("detect", detect, "detect objects in one image and save it with the boxes drawn"),
        ("demo", demo, "synthetic data -> train a small SSD on the CPU -> evaluate -> draw (a few minutes)"),
    ):
        p = sub.add_parser(name, help=help_)
        module.add_arguments(p)
        p.set_defaults(func=module.run)


def main(argv=None):
    args = _build_parser().parse_args(argv)
    return args.func(args)
