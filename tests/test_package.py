"""The package itself: loading, registration, fake kernels for every op, the file layout of every family,
`detops info`."""

import importlib
import pathlib
import re
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
    for name in ("detops::box_overlap", "detops::box_iou_aligned", "detops::encode_boxes", "detops::decode_boxes"):
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


# ---- the file layout: one name per family in every layer ----

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAMILIES = sorted(p.stem for p in (ROOT / "csrc" / "ops").glob("*.cpp"))


def _ops_in(path, pattern):
    return set(re.findall(pattern, path.read_text()))


def test_families_are_found():
    # Derived from csrc/ops/*.cpp, so a new family is held to the layout as soon as its schema file exists.
    assert {"boxes", "coding", "hard_negatives", "matching", "nms", "yolo"} <= set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_has_a_file_in_every_layer(family):
    wanted = [
        f"csrc/ops/{family}.h",
        f"csrc/ops/{family}.cpp",
        f"csrc/cpu/{family}.cpp",
        f"csrc/cuda/{family}.cu",
        f"detops/reference/{family}.py",
        f"tests/test_{family}.py",
    ]
    missing = [f for f in wanted if not (ROOT / f).is_file()]
    # The Python API is a module detops/<family>.py or a package detops/<family>/.
    if not ((ROOT / "detops" / f"{family}.py").is_file() or (ROOT / "detops" / family / "__init__.py").is_file()):
        missing.append(f"detops/{family}.py")
    assert not missing, f"family {family!r} lacks {missing} (see CONTRIBUTING.md, 'How to add an op')"


@pytest.mark.parametrize("family", FAMILIES)
def test_every_op_of_a_family_has_its_kernels_in_that_familys_files(family):
    # The schema in csrc/ops/<family>.cpp, the CPU kernel in csrc/cpu/<family>.cpp, the CUDA kernel in
    # csrc/cuda/<family>.cu, the fake in detops/_fakes.py.
    ops = _ops_in(ROOT / "csrc" / "ops" / f"{family}.cpp", r'm\.def\(\s*"(\w+)\(')
    assert ops, f"csrc/ops/{family}.cpp defines no op"
    for layer in (f"csrc/cpu/{family}.cpp", f"csrc/cuda/{family}.cu"):
        impls = _ops_in(ROOT / layer, r'm\.impl\(\s*"(\w+)"')
        assert ops <= impls, f"{layer} registers no kernel for {sorted(ops - impls)}"
    fakes = _ops_in(ROOT / "detops" / "_fakes.py", r'register_fake\(\s*"detops::(\w+)"')
    assert ops <= fakes, f"detops/_fakes.py has no fake for {sorted(ops - fakes)}"


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_has_a_benchmark(family):
    # Benchmark cases live in detops/bench/ (the `detops bench` command); until that package exists this
    # check has nothing to hold.
    bench = ROOT / "detops" / "bench"
    if not bench.is_dir():
        pytest.skip("no detops/bench/ in this tree yet")
    sources = "\n".join(p.read_text() for p in bench.rglob("*.py"))
    assert (bench / f"{family}.py").is_file() or family in sources, f"no benchmark case for family {family!r}"


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


def test_one_openmp_runtime_and_kernels_use_it():
    # The CPU kernels' at::parallel_for is compiled into detops' own library: built without -fopenmp, its
    # `omp parallel` region is silently dropped and every kernel runs on one thread.
    # The library must call into OpenMP, and the process must still hold a single runtime, torch's.
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("ATen does not use OpenMP here")
    with open(detops._C.__file__, "rb") as lib:
        assert b"GOMP_parallel" in lib.read(), "detops/_C was built without -fopenmp: its kernels run serially"
    runtimes = {line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line}
    assert len(runtimes) == 1, runtimes


def test_results_do_not_depend_on_the_thread_count():
    # Inputs large enough that every kernel splits its work (grain sizes are a few thousand rows).
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(6000, 2, generator=g) * 500
    boxes = torch.cat([xy, xy + torch.rand(6000, 2, generator=g) * 60 + 1], 1)
    scores = torch.rand(6000, generator=g)
    classes = torch.randint(0, 7, (6000,), generator=g)
    priors = torch.rand(8732, 4, generator=g) * 0.3 + 0.2
    gt = torch.cat([torch.rand(8, 12, 2, generator=g) * 0.5, torch.rand(8, 12, 2, generator=g) * 0.4 + 0.55], -1)
    labels = torch.randint(1, 21, (8, 12), generator=g)
    conf = torch.rand(8, 8732, generator=g)
    logits = torch.randn(4, 2000, 21, generator=g)

    def run():
        return [
            detops.box_iou(boxes, boxes[:3000]),
            detops.encode_boxes(boxes, boxes.flip(0), (10, 10, 5, 5)),
            detops.decode_boxes(torch.randn(6000, 4, generator=torch.Generator().manual_seed(1)), boxes),
            detops.nms(boxes, scores, 0.5),
            detops.batched_nms(boxes, scores, classes, 0.5),
            *detops.match_priors(gt, labels, priors),
            detops.hard_negative_mining(conf, conf > 0.97, 3),
            *detops.multiclass_nms(boxes[:2000].expand(4, 2000, 4), logits.softmax(-1), 0.05, 0.45),
        ]

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(max(threads, 2))
        many = run()
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, many):
        assert torch.equal(a, b)
