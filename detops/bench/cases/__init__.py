"""The built-in benchmark cases, one module per library family.

Adding a case for a family ``x`` is one small module, ``detops/bench/cases/x.py``, imported below::

    import detops
    from detops.bench import workloads as W
    from detops.bench.registry import Pair, case

    @case("x", "my_op", "torchvision", "uniform", sizes=["1000", "20000"], quick=["1000"],
          requires=["torchvision.ops"])
    def my_op_vs_torchvision(dims, ctx):
        \"\"\"One line saying what is compared.\"\"\"
        import torchvision

        boxes = W.uniform_boxes(dims[0], ctx.generator(), ctx.device, ctx.dtype)
        return Pair((boxes,), detops.my_op, torchvision.ops.my_op, rtol=1e-5, atol=1e-6, floor=True)

The runner builds the inputs once per size, checks that both sides' outputs agree (``check``, ``rtol``,
``atol``), then times them in alternation; ``floor=True`` adds the time to write detops' output once. A new
workload gets a name and a sentence in :data:`detops.bench.workloads.WORKLOADS`.
"""

import importlib

# The kernel families, then the application-level cases (the SSD pieces, evaluation, torchvision training steps).
FAMILIES = (
    "boxes",
    "coding",
    "nms",
    "matching",
    "hard_negatives",
    "yolo",
    "rotated",
    "focal_loss",
    "ssd",
    "metrics",
    "training",
)

for _family in FAMILIES:
    importlib.import_module(f"detops.bench.cases.{_family}")
