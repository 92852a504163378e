"""Builds detops._C: the CPU kernels always, the CUDA kernels when they can be built.

The CUDA kernels are built whenever torch is a CUDA build and nvcc is found, whether or not a GPU is visible
(a GPU-less build machine still produces the full package).

Environment:
  DETOPS_CPU_ONLY=1       never build CUDA kernels.
  FORCE_CUDA=1            fail instead of building a CPU-only package when the CUDA kernels cannot be built
                          (torch is a CPU-only build, or nvcc is not found). It is not needed to build them on a
                          machine without a GPU: that happens anyway.
  CUDA_HOME               the CUDA toolkit; defaults to /usr/local/cuda when torch cannot find one.
  TORCH_CUDA_ARCH_LIST    which GPUs to compile for; a default list is used when it is unset and no GPU
                          is visible (torch would otherwise fail with an IndexError).
  MAX_JOBS                parallel compile jobs (ninja).

The library uses only Python's stable ABI (its one Python entry point is PyInit__C; everything else talks to
torch's C++ API), so it is a py_limited_api extension: torch's BuildExtension compiles it with
-DPy_LIMITED_API=<the oldest CPython torch supports>, and the wheel's abi3 tag names that same version
(_limited_api_tag), so one wheel serves every Python from there on.

  DETOPS_CHECK_KERNELS=1  check every CUDA kernel's registers and shared memory (scripts/kernel_resources.py).
"""

import glob
import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCH_LIST = "7.5;8.0;8.6;8.9;9.0+PTX"


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _find_cuda_home():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if not home and os.path.exists("/usr/local/cuda/bin/nvcc"):
        home = "/usr/local/cuda"
    if home:
        # torch.utils.cpp_extension reads CUDA_HOME once, at import: set it before the import below.
        os.environ["CUDA_HOME"] = home
    return home


def _want_cuda(torch, cuda_home):
    if _flag("DETOPS_CPU_ONLY"):
        if _flag("FORCE_CUDA"):
            sys.exit("detops: FORCE_CUDA=1 and DETOPS_CPU_ONLY=1 contradict each other; unset one")
        return False, "DETOPS_CPU_ONLY=1"
    if torch.version.cuda is None:
        if _flag("FORCE_CUDA"):
            sys.exit(f"detops: FORCE_CUDA=1 but torch {torch.__version__} is a CPU-only build")
        return False, f"torch {torch.__version__} is a CPU-only build"
    if cuda_home is None or not os.path.exists(os.path.join(cuda_home, "bin", "nvcc")):
        if _flag("FORCE_CUDA"):
            sys.exit("detops: FORCE_CUDA=1 but nvcc was not found; set CUDA_HOME to the CUDA toolkit")
        return False, "nvcc not found (set CUDA_HOME)"
    # A CUDA torch and a toolkit are present: build the kernels whether or not a GPU is visible, so a
    # GPU-less build machine never silently produces a CPU-only package.
    return True, f"CUDA toolkit at {cuda_home}"


def _aten_uses_openmp(torch):
    return sys.platform.startswith("linux") and "parallel backend: OpenMP" in torch.__config__.parallel_info()


def _extensions():
    cuda_home = _find_cuda_home()
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    with_cuda, why = _want_cuda(torch, cuda_home)
    cpp_sources = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu")) if with_cuda else []
    # --fmad=false: no fused multiply-add contraction in CUDA kernels, so IoUs (and the ties and thresholds that
    # depend on their last bit) are the same float on the GPU as on the CPU, and NMS keeps the same indices on both.
    # No -std flag: torch adds the standard its own headers need (it changes between torch releases).
    # -fno-trapping-math: we never read floating-point exception flags, and without it GCC will not turn the
    # selects in branch-free loops (cpu/vector_math.h's log and exp) into vector blends. -ffp-contract=off:
    # the CPU twin of --fmad=false, no fused multiply-adds where the target has them (values stay the same
    # on every CPU and equal to the CUDA kernels').
    cxx_flags = ["-O3", "-fvisibility=hidden", "-fno-trapping-math", "-ffp-contract=off"]
    link_flags = []
    if _aten_uses_openmp(torch):
        # at::parallel_for is a header template; with ATen's OpenMP backend its body is an `omp parallel`
        # region compiled into *this* library. Without -fopenmp the pragma is ignored and every CPU kernel runs
        # on one thread. Linking libgomp by soname shares the runtime torch already loaded.
        cxx_flags.append("-fopenmp")
        link_flags.append("-fopenmp")
    define_macros = []
    extra_compile_args = {"cxx": cxx_flags}
    arch_list = ""
    if with_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
        arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "(the visible GPUs)")
        define_macros.append(("DETOPS_WITH_CUDA", None))
        extra_compile_args["nvcc"] = ["-O3", "--expt-relaxed-constexpr", "--fmad=false"]
    extension = CUDAExtension if with_cuda else CppExtension
    ext = extension(
        "detops._C",
        cpp_sources + cuda_sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=define_macros,
        extra_compile_args=extra_compile_args,
        extra_link_args=link_flags,
        py_limited_api=True,
    )
    print(f"detops: building CPU kernels ({len(cpp_sources)} files)", flush=True)
    if with_cuda:
        print(f"detops: building CUDA kernels ({len(cuda_sources)} files) for archs {arch_list}: {why}", flush=True)
    else:
        print(f"detops: not building CUDA kernels: {why}", flush=True)
    _write_build_info(torch, with_cuda, arch_list, cuda_home)
    if with_cuda and _flag("DETOPS_CHECK_KERNELS"):
        # Each kernel's registers and shared memory against its launch bounds (compiles each .cu once more).
        import subprocess

        subprocess.check_call([sys.executable, os.path.join(ROOT, "scripts", "kernel_resources.py")])
    return [ext]


def _write_build_info(torch, with_cuda, arch_list, cuda_home):
    """Records what the extension was built against; `python -m detops info` and the loader read it."""
    nvcc_version = None
    if with_cuda:
        import subprocess

        out = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True, text=True)
        nvcc_version = out.stdout.strip().splitlines()[-1] if out.returncode == 0 else None
    with open(os.path.join(ROOT, "detops", "_build_info.py"), "w") as f:
        f.write("# Written by setup.py at build time; not tracked by git.\n")
        f.write(f"TORCH_VERSION = {torch.__version__.split('+')[0]!r}\n")
        f.write(f"TORCH_VERSION_FULL = {torch.__version__!r}\n")
        f.write(f"WITH_CUDA = {with_cuda!r}\n")
        f.write(f"CUDA_ARCH_LIST = {arch_list!r}\n")
        f.write(f"NVCC_VERSION = {nvcc_version!r}\n")


def _limited_api_tag():
    """The wheel's abi3 tag (cp310, ...): the CPython version torch passes as -DPy_LIMITED_API when it compiles
    a py_limited_api extension, so the tag and the macro always agree."""
    from torch.utils import cpp_extension

    version = int(getattr(cpp_extension, "min_supported_cpython", "0x030A0000"), 16)
    return f"cp{version >> 24}{(version >> 16) & 0xFF}"


def _cmdclass():
    from torch.utils.cpp_extension import BuildExtension

    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(
    packages=find_packages(include=["detops", "detops.*"]),
    ext_modules=_extensions(),
    cmdclass=_cmdclass(),
    options={"bdist_wheel": {"py_limited_api": _limited_api_tag()}},
)
