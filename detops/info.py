"""``detops info``: versions, what was compiled, visible GPUs (the first thing to paste into a bug report)."""

import platform
import sys


def add_arguments(p) -> None:
    pass


def run(args) -> int:
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
    return 0
