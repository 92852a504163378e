"""What a benchmark ran on: CPU, GPU, versions, build and checkout, stored with every JSON result."""

import os
import platform
import subprocess
from typing import Any, Dict, Optional

import torch


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> Optional[Dict[str, Any]]:
    """The checkout detops is imported from, when it is one (None for an installed package)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)} if commit else None


def _gpu(device: str) -> Optional[Dict[str, Any]]:
    if not torch.cuda.is_available():
        return None
    index = torch.device(device).index if str(device).startswith("cuda") else None
    index = torch.cuda.current_device() if index is None else index
    p = torch.cuda.get_device_properties(index)
    info = {
        "name": p.name,
        "capability": f"{p.major}.{p.minor}",
        "memory_gib": round(p.total_memory / 2**30, 1),
        "l2_cache_mib": round(getattr(p, "L2_cache_size", 0) / 2**20, 1),
        "cuda": torch.version.cuda,
        "driver": None,
    }
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", f"-i={index}"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
        info["driver"] = out or None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def machine_info(device: str = "cpu") -> Dict[str, Any]:
    import detops

    try:
        import torchvision

        tv = torchvision.__version__
    except ImportError:
        tv = None
    try:
        from detops import _build_info as b

        build = {k: getattr(b, k) for k in dir(b) if k.isupper()}
    except ImportError:
        build = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "threads": torch.get_num_threads(),
        "load_average": load,
        "gpu": _gpu(device),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": tv,
        "detops": detops.__version__,
        "build": build,
        "git": _git_commit(),
    }


def one_line(m: Dict[str, Any]) -> str:
    gpu = m.get("gpu")
    g = f"{gpu['name']} (driver {gpu.get('driver') or '?'})" if gpu else "no GPU"
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['threads']} threads; {g}; torch {m['torch']}, "
        f"torchvision {m['torchvision']}, detops {m['detops']}"
        + (f" ({m['git']['commit'][:10]}{', modified' if m['git']['dirty'] else ''})" if m.get("git") else "")
    )
