"""Loads the compiled ops (detops._C) and says exactly why when that fails."""

import importlib

import torch


def _built_against():
    try:
        from detops import _build_info
    except ImportError:
        return None
    return _build_info


def load_library():
    """Imports detops._C, which registers every ``torch.ops.detops`` op with the dispatcher.

    A failure is re-raised with the loader's own message and the torch version the library was built
    against, rather than surfacing later as "operator detops::... does not exist".
    """
    try:
        importlib.import_module("detops._C")
    except ImportError as err:
        info = _built_against()
        built = info.TORCH_VERSION_FULL if info else "unknown (detops/_build_info.py is missing: was it built?)"
        raise ImportError(
            f"detops could not load its compiled ops: {err}\n"
            f"  built against torch {built}; running torch {torch.__version__}.\n"
            "  Rebuild against the installed torch with: pip install --no-build-isolation -e ."
        ) from err


def cuda_kernels_compiled():
    """True when the CUDA kernels were built into this installation (whether or not a GPU is visible)."""
    info = _built_against()
    return bool(info and info.WITH_CUDA)
