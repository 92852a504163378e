"""The package itself: loading, registration, fake kernels for every op, `detops info`."""

import importlib
import subprocess
import sys

import pytest
import torch

import detops
from detops import _extension


def _detops_ops():
    return sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("detops::"))


def test_ops_are_registered_with_the_dispatcher():
    ops = _detops_ops()
    for name in ("detops::box_iou", "detops::box_iou_aligned", "detops::encode_boxes", "detops::decode_boxes"):
        assert name in ops
    for name in ops:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "CPU"), f"{name} has no CPU kernel"


def test_every_op_has_a_fake_kernel():
    from torch._library.simple_registry import singleton

    missing = [n for n in _detops_ops() if singleton.find(n).fake_impl.kernel is None]
    assert not missing, f"ops without register_fake: {missing}"


def test_cuda_kernels_registered_when_compiled():
    if not _extension.cuda_kernels_compiled():
        pytest.skip("this build has no CUDA kernels (DETOPS_CPU_ONLY or no toolkit)")
    for name in _detops_ops():
        assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "CUDA"), f"{name} has no CUDA kernel"


def test_load_failure_names_the_real_error_and_torch_version(monkeypatch):
    def broken(name, *args):
        raise ImportError("libfoo.so: cannot open shared object file")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ImportError) as info:
        _extension.load_library()
    msg = str(info.value)
    assert "libfoo.so: cannot open shared object file" in msg
    assert "built against torch" in msg and torch.__version__ in msg
    assert "pip install --no-build-isolation -e ." in msg


def test_info_command():
    out = subprocess.run([sys.executable, "-m", "detops", "info"], capture_output=True, text=True, check=True).stdout
    assert f"detops        {detops.__version__}" in out
    assert f"torch         {torch.__version__}" in out
    assert "CUDA kernels" in out and ("GPU           none visible" in out or "GPU 0" in out)
