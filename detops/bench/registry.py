"""Benchmark cases: what is timed against what, registered by the :func:`case` decorator.

A case is a function ``build(dims, ctx) -> Pair`` for one op, one workload and one baseline; ``dims`` is one
size from ``--sizes`` (``"3000"`` -> ``(3000,)``, ``"500x20000"`` -> ``(500, 20000)``) and ``ctx`` gives the
device, dtype and a seeded generator. The :class:`Pair` holds the inputs and the two callables; the runner
checks that their outputs agree before it times them.
"""

import dataclasses
import importlib.util
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from detops.bench import workloads as W


class MissingBaseline(Exception):
    """Raised by a case's build when its baseline cannot run here (a package or an op is not installed)."""


@dataclasses.dataclass
class Context:
    device: str
    dtype: torch.dtype
    seed: int

    def generator(self) -> torch.Generator:
        return W.generator(self.seed)


@dataclasses.dataclass
class Pair:
    """What one row times: ``detops(*inputs)`` against ``baseline(*inputs)``.

    check: ``"close"`` (integer tensors equal, floats within ``rtol``/``atol``; nested tuples, lists and dicts
    element by element), ``"equal"``, or a function ``(detops_out, baseline_out) -> None or a message``.
    floor: time a fill of a fresh tensor the size of detops' output too (the cost of writing it once).
    memory: called once after the timing; what it returns (a dict: each side's peak memory and how it was
    measured) is the row's ``memory``.
    """

    inputs: Tuple[Any, ...]
    detops: Callable[..., Any]
    baseline: Callable[..., Any]
    check: Union[str, Callable[[Any, Any], Optional[str]]] = "close"
    rtol: float = 1e-5
    atol: float = 1e-6
    floor: bool = False
    note: str = ""
    dtype: Optional[torch.dtype] = None  # what the inputs really are, when the case ignores --dtype
    memory: Optional[Callable[[], Dict[str, Any]]] = None


@dataclasses.dataclass
class Case:
    family: str
    op: str
    baseline: str
    workload: str
    build: Callable[[Tuple[int, ...], Context], Pair]
    sizes: Tuple[str, ...]
    quick_sizes: Tuple[str, ...] = ()
    requires: Tuple[str, ...] = ()
    devices: Tuple[str, ...] = ("cpu", "cuda")
    size_label: str = "N"
    doc: str = ""

    @property
    def name(self) -> str:
        return f"{self.op}/{self.workload}/{self.baseline}"


CASES: List[Case] = []


def case(
    family: str,
    op: str,
    baseline: str,
    workload: str,
    sizes: Sequence[str],
    quick: Sequence[str] = (),
    requires: Sequence[str] = (),
    devices: Sequence[str] = ("cpu", "cuda"),
    size_label: str = "N",
):
    """Registers ``build(dims, ctx) -> Pair`` as a benchmark case.

    Args:
        family: the library family (boxes, coding, nms, matching, hard_negatives, yolo, ssd, ...).
        op: the detops op or entry point, as the library names it; ``--ops`` selects by op or family.
        baseline: what detops is timed against, e.g. ``"torchvision"``, ``"tutorial loop"``, ``"reference"``.
        workload: a name from :data:`detops.bench.workloads.WORKLOADS` (or a new one added there).
        sizes: default sizes (``"20000"`` or ``"500x20000"``); quick: those of ``--quick`` (none: the case is
            left out of ``--quick`` runs unless ``--ops`` names it).
        requires: modules the baseline needs (``"ultralytics"``, ``"pycocotools"``, or ``"torchvision.ops"``
            for torchvision's compiled ops); when one is missing the row says so instead of failing.
        devices: where the case runs; size_label: what the size counts, for the table and plots.
    """

    def register(build):
        CASES.append(
            Case(
                family,
                op,
                baseline,
                workload,
                build,
                tuple(sizes),
                tuple(quick),
                tuple(requires),
                tuple(devices),
                size_label,
                (build.__doc__ or "").strip(),
            )
        )
        return build

    return register


def parse_size(text: str) -> Tuple[int, ...]:
    try:
        dims = tuple(int(float(p)) for p in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"a size is a number or NxM (e.g. 3000 or 500x20000), got {text!r}") from None
    if not dims or any(d < 0 for d in dims):
        raise ValueError(f"sizes must be non-negative, got {text!r}")
    return dims


def missing_requirement(requires: Sequence[str]) -> Optional[str]:
    """A message naming the first requirement that is not installed, or None."""
    for req in requires:
        if req == "torchvision.ops":
            try:
                import torchvision  # noqa: F401

                torch.ops.torchvision.nms  # noqa: B018  (the compiled ops are missing in some installs)
            except (ImportError, AttributeError, RuntimeError):
                return "torchvision's compiled ops are not available (install torchvision built for this torch)"
        elif importlib.util.find_spec(req.split(".")[0]) is None:
            return f"baseline needs {req}, which is not installed (pip install {req.split('.')[0]})"
    return None


def load_cases() -> List[Case]:
    """Every registered case (importing detops.bench.cases registers the built-in ones)."""
    import detops.bench.cases  # noqa: F401

    return CASES


def select(cases: Sequence[Case], ops: Optional[Sequence[str]]) -> List[Case]:
    """Cases named by ops (all when ops is empty): an op (``nms``), a case (``nms/sparse/torchvision``), a
    family (``boxes``; ``family:nms`` for a family whose name is also an op's)."""
    if not ops:
        return list(cases)
    op_names = {c.op for c in cases}
    families = {c.family for c in cases}
    chosen: List[Case] = []
    for name in ops:
        if name.startswith("family:"):
            fam = name.split(":", 1)[1]
            match = [c for c in cases if c.family == fam]
        elif name in op_names:
            match = [c for c in cases if c.op == name]
        elif name in families:
            match = [c for c in cases if c.family == name]
        else:
            match = [c for c in cases if c.name == name]
        if not match:
            raise ValueError(
                f"unknown op or family {name!r}; ops: {', '.join(sorted(op_names))}; families: "
                f"{', '.join(sorted(families))}"
            )
        chosen += [c for c in match if c not in chosen]
    return chosen


def by_op(cases: Sequence[Case]) -> Dict[str, List[Case]]:
    out: Dict[str, List[Case]] = {}
    for c in cases:
        out.setdefault(c.op, []).append(c)
    return out
