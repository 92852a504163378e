"""detops.match_priors (SSD rule) and detops.match_boxes (torchvision's Matcher rule) against plain-PyTorch
references that mirror the SSD tutorial step by step (detops/reference/matching.py) and torchvision."""

import pytest
import torch

import detops
from detops.reference import matching as ref
from detops.ssd import prior_boxes, ssd300_prior_boxes

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PRIORS = ssd300_prior_boxes()
SMALL_PRIORS = prior_boxes([4, 2, 1], [0.2, 0.5, 0.9], [[1.0, 2.0, 0.5], [1.0, 2.0, 0.5], [1.0, 2.0]])


def random_gt(n, gen, dtype=torch.float32, n_classes=21):
    """n xyxy fractional boxes: mostly ordinary, some tiny, some image-sized, some duplicated (ties)."""
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 0.9
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * (1 - xy) + 1e-3
    boxes = torch.cat([xy, xy + wh], 1)
    kind = torch.randint(0, 10, (n,), generator=gen)
    boxes[kind == 0] = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)  # image-sized
    tiny = kind == 1
    boxes[tiny, 2:] = boxes[tiny, :2] + 1e-4
    if n > 1:
        dup = torch.nonzero(kind == 2).flatten()
        boxes[dup] = boxes[(dup + 1) % n] if n > 0 else boxes[dup]  # an object identical to another
    labels = torch.randint(1, n_classes, (n,), generator=gen)
    return boxes.to(dtype), labels


def random_batch(gen, B=6, max_objects=50, dtype=torch.float32):
    counts = torch.randint(0, max_objects + 1, (B,), generator=gen).tolist()
    counts[0] = 0  # always one image without objects
    boxes, labels = zip(*(random_gt(n, gen, dtype) for n in counts))
    return list(boxes), list(labels)


def to(device, tensors):
    return [t.to(device) for t in tensors]


def match_on(device, boxes, labels, priors, *args, **kwargs):
    """detops.match_priors with the boxes, labels (lists or padded tensors) and priors on `device`; the result
    on the CPU."""
    if isinstance(boxes, torch.Tensor):
        boxes, labels = boxes.to(device), labels.to(device)
    else:
        boxes, labels = to(device, boxes), to(device, labels)
    if kwargs.get("counts") is not None:
        kwargs["counts"] = kwargs["counts"].to(device)
    return [t.cpu() for t in detops.match_priors(boxes, labels, priors.to(device), *args, **kwargs)]


def assert_match_equal(got, want, rtol=1e-5, atol=1e-5):
    labels, matched, targets = got
    r_labels, r_matched, r_targets = want
    torch.testing.assert_close(matched, r_matched, rtol=0, atol=0)
    torch.testing.assert_close(labels, r_labels, rtol=0, atol=0)
    torch.testing.assert_close(targets, r_targets, rtol=rtol, atol=atol)


@pytest.mark.parametrize("seed", range(3))
def test_matches_tutorial_on_random_batches(seed, device):
    gen = torch.Generator().manual_seed(seed)
    boxes, labels = random_batch(gen)
    got = match_on(device, boxes, labels, PRIORS)
    assert got[0].dtype == torch.long and got[1].dtype == torch.long and got[2].dtype == torch.float32
    assert got[0].shape == (6, 8732) and got[2].shape == (6, 8732, 4)
    assert_match_equal(got, ref.tutorial_match(boxes, labels, PRIORS))
    assert (got[0][0] == 0).all() and (got[1][0] == -1).all() and (got[2][0] == 0).all()


def test_float64_and_small_priors(device):
    gen = torch.Generator().manual_seed(5)
    boxes, labels = random_batch(gen, B=5, max_objects=20, dtype=torch.float64)
    priors = SMALL_PRIORS.double()
    got = match_on(device, boxes, labels, priors, threshold=0.3)
    assert got[2].dtype == torch.float64
    assert_match_equal(got, ref.tutorial_match(boxes, labels, priors, 0.3), rtol=1e-12, atol=1e-12)


def test_shared_best_prior_later_object_wins(device):
    # Two identical objects: every prior's best object is the first (first on ties), but both objects' best
    # prior is the same one, forced to the later object.
    box = torch.tensor([[0.3, 0.3, 0.5, 0.6]])
    boxes = [torch.cat([box, box, box])]
    labels = [torch.tensor([4, 7, 9])]
    lab, mat, _ = match_on(device, boxes, labels, PRIORS)
    r_lab, r_mat, _ = ref.tutorial_match(boxes, labels, PRIORS)
    assert torch.equal(mat, r_mat) and torch.equal(lab, r_lab)
    best = ref.tutorial_find_jaccard_overlap(box, ref.tutorial_cxcy_to_xy(PRIORS))[0].argmax()
    assert mat[0, best] == 2 and lab[0, best] == 9
    others = (mat[0] >= 0) & (torch.arange(8732) != best)
    assert others.any() and (mat[0][others] == 0).all()


def test_objects_overlapping_no_prior_take_prior_zero(device):
    boxes = [torch.tensor([[2.0, 2.0, 2.1, 2.1], [3.0, 3.0, 3.5, 3.2]])]
    labels = [torch.tensor([3, 5])]
    lab, mat, tgt = match_on(device, boxes, labels, PRIORS)
    # Both objects' best prior is prior 0 (all IoUs 0, first index); the later one wins it.
    assert mat[0, 0] == 1 and lab[0, 0] == 5 and (mat[0, 1:] == -1).all()
    assert_match_equal((lab, mat, tgt), ref.tutorial_match(boxes, labels, PRIORS))


def test_threshold_boundary(device):
    priors = torch.tensor([[0.5, 0.5, 1.0, 1.0], [0.25, 0.5, 0.5, 1.0], [0.9, 0.9, 0.1, 0.1]])
    # IoU with prior 0 exactly 0.5; the object's best prior is prior 1 (IoU 1).
    boxes = [torch.tensor([[0.0, 0.0, 0.5, 1.0]])]
    labels = [torch.tensor([2])]
    lab, mat, _ = match_on(device, boxes, labels, priors, threshold=0.5)
    assert lab[0].tolist() == [2, 2, 0]
    lab, mat, _ = match_on(device, boxes, labels, priors, threshold=0.5 + 1e-6)
    assert lab[0].tolist() == [0, 2, 0]
    for thr in (0.5, 0.5 - 1e-6, 0.5 + 1e-6):
        assert_match_equal(match_on(device, boxes, labels, priors, thr), ref.tutorial_match(boxes, labels, priors, thr))


def test_padded_input_equals_list_input(device):
    gen = torch.Generator().manual_seed(1)
    boxes, labels = random_batch(gen, B=4, max_objects=12)
    G = max(b.size(0) for b in boxes)
    pb = torch.full((4, G, 4), 7.0)  # garbage in the padding must be ignored
    pl = torch.full((4, G), 99, dtype=torch.long)
    for i, (b, l) in enumerate(zip(boxes, labels)):
        pb[i, : b.size(0)] = b
        pl[i, : l.size(0)] = l
    counts = torch.tensor([b.size(0) for b in boxes])
    got = match_on(device, pb, pl, PRIORS, counts=counts)
    want = match_on(device, boxes, labels, PRIORS)
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_empty_inputs(device):
    lab, mat, tgt = match_on(device, [torch.zeros(0, 4)] * 3, [torch.zeros(0, dtype=torch.long)] * 3, PRIORS)
    assert lab.shape == (3, 8732) and (lab == 0).all() and (mat == -1).all() and (tgt == 0).all()
    lab, mat, tgt = match_on(device, [], [], PRIORS)
    assert lab.shape == (0, 8732) and tgt.shape == (0, 8732, 4)
    lab, mat, tgt = match_on(device, [torch.rand(2, 4).sort(1).values], [torch.ones(2, dtype=torch.long)], PRIORS[:0])
    assert lab.shape == (1, 0) and tgt.shape == (1, 0, 4)


def test_counts_made_on_the_device_without_a_copy(device):
    for sizes in ([0, 0], [3, 0, 2], [1], [50, 7]):
        counts = detops.matching._counts_on_device(sizes, device)
        assert counts.device.type == device.type and counts.tolist() == sizes


def test_deterministic(device):
    gen = torch.Generator().manual_seed(2)
    boxes, labels = random_batch(gen, B=4, max_objects=50)
    a = match_on(device, boxes, labels, PRIORS)
    b = match_on(device, boxes, labels, PRIORS)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_faster_rcnn_weights_go_through_the_same_coding(device):
    gen = torch.Generator().manual_seed(3)
    boxes, labels = random_batch(gen, B=3, max_objects=8)
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        lab, mat, tgt = match_on(device, boxes, labels, PRIORS, weights=weights)
        priors_xy = ref.tutorial_cxcy_to_xy(PRIORS)
        for i, b in enumerate(boxes):
            pos = mat[i] >= 0
            if pos.any():
                want = detops.encode_boxes(b[mat[i][pos]], priors_xy[pos], weights)
                torch.testing.assert_close(tgt[i][pos], want, rtol=1e-5, atol=1e-5)


# The checks that read values (the kernels' CPU twin runs them; csrc/ops/matching.cpp, check_match_values_cpu).
CPU_VALUE_CHECKS = {"x2 >= x1", "finite", ">= 0", "counts", "positive width"}


@pytest.mark.parametrize(
    "boxes, labels, priors, counts, message",
    [
        ([torch.tensor([[0.5, 0.1, 0.2, 0.4]])], [torch.tensor([1])], PRIORS, None, "x2 >= x1"),
        ([torch.tensor([[0.1, float("nan"), 0.2, 0.4]])], [torch.tensor([1])], PRIORS, None, "finite"),
        ([torch.tensor([[0.1, 0.1, float("inf"), 0.4]])], [torch.tensor([1])], PRIORS, None, "finite"),
        ([torch.tensor([[0.1, 0.1, 0.2, 0.4]])], [torch.tensor([-1])], PRIORS, None, ">= 0"),
        ([torch.tensor([[0.1, 0.1, 0.2, 0.4]])], [torch.tensor([1]), torch.tensor([2])], PRIORS, None, "images"),
        ([torch.tensor([[0.1, 0.1, 0.2, 0.4]])], [torch.tensor([1, 2])], PRIORS, None, "shape"),
        ([torch.tensor([[0.1, 0.1, 0.2]])], [torch.tensor([1])], PRIORS, None, r"\[G, 4\]"),
        ([torch.tensor([[0.1, 0.1, 0.2, 0.4]])], [torch.tensor([1])], PRIORS[:, :3], None, r"\[P, 4\]"),
        ([torch.tensor([[0.1, 0.1, 0.2, 0.4]])], [torch.tensor([1])], PRIORS[None], None, r"\[P, 4\]"),
        (torch.rand(1, 1, 4).sort(-1).values, torch.ones(1, 1, dtype=torch.long), PRIORS, torch.tensor([2]), "counts"),
        ([torch.tensor([[0.1, 0.1, 0.2, 0.4]])], [torch.tensor([1])], torch.zeros(3, 4), None, "positive width"),
    ],
)
def test_bad_input_raises(boxes, labels, priors, counts, message, device):
    if device.type == "cuda" and message in CPU_VALUE_CHECKS:
        pytest.skip("checked on the CPU only: on CUDA reading the values would need a host synchronisation")
    with pytest.raises((RuntimeError, ValueError, TypeError), match=message):
        match_on(device, boxes, labels, priors, counts=counts)


def test_counts_past_int32_are_refused_before_reading_data():
    # Stride-0 views: sizes of 2^31 without the memory. The kernels index these dimensions in int32.
    huge = 2**31
    with pytest.raises(RuntimeError, match=f"match_quality_matrix has {huge} predictions; at most 2"):
        torch.ops.detops.match_boxes(torch.zeros(1, 1).expand(1, huge), 0.5, 0.4, False)
    boxes = torch.tensor([[[0.1, 0.1, 0.2, 0.4]]])
    with pytest.raises(RuntimeError, match=f"priors_cxcy has {huge} priors; at most 2"):
        torch.ops.detops.match_priors(
            boxes,
            torch.ones(1, 1, dtype=torch.long),
            torch.ones(1, dtype=torch.long),
            torch.full((1, 4), 0.5).expand(huge, 4),
            0.5,
            [10.0, 10.0, 5.0, 5.0],
        )


def test_opcheck_and_compile(device):
    gen = torch.Generator().manual_seed(4)
    boxes, labels = random_batch(gen, B=3, max_objects=6)
    pb, pl, counts = to(device, detops.matching.pack_targets(boxes, labels))
    priors = SMALL_PRIORS.to(device)
    for args in [
        (pb, pl, counts, priors, 0.5, [10.0, 10.0, 5.0, 5.0]),
        (pb.double(), pl, counts, priors.double(), 0.4, [1.0, 1.0, 1.0, 1.0]),
    ]:
        torch.library.opcheck(torch.ops.detops.match_priors.default, args)

    @torch.compile(fullgraph=True)
    def f(b, l, c, p):
        labels, matched, targets = detops.match_priors(b, l, p, counts=c)
        return (labels > 0).sum(), targets * 2

    got = f(pb, pl, counts, priors)
    lab, _, tgt = detops.match_priors(pb, pl, priors, counts=counts)
    assert got[0] == (lab > 0).sum() and torch.equal(got[1], tgt * 2)


# ------------------------------------------------------------------------------------- Matcher rule


def tv_matcher(q, high, low, allow):
    from torchvision.models.detection._utils import Matcher

    return Matcher(high, low, allow)(q)


@pytest.mark.parametrize("allow", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_match_boxes_equals_torchvision(allow, seed, device):
    gen = torch.Generator().manual_seed(seed)
    for G, P in [(1, 1), (3, 50), (17, 300), (40, 7)]:
        q = (torch.rand(G, P, generator=gen) * 10).floor() / 10  # quantised: many ties, values at thresholds
        q[:, torch.rand(P, generator=gen) < 0.2] = 0
        for high, low in [(0.7, 0.3), (0.5, 0.5), (0.5, 0.4)]:
            got = detops.match_boxes(q.to(device), high, low, allow).cpu()
            assert torch.equal(got, tv_matcher(q, high, low, allow))
            assert torch.equal(got, ref.match_boxes(q, high, low, allow))


@pytest.mark.parametrize("allow", [False, True])
def test_match_boxes_nan_quality_equals_torchvision(allow, device):
    # torch.max picks a NaN as the maximum, and a NaN is neither below low nor between the thresholds: the
    # prior keeps that object, as torchvision's Matcher does.
    q = torch.tensor([[0.1, float("nan"), 0.2, 0.9, 0.35], [0.8, 0.1, float("nan"), 0.2, 0.1]])
    got = detops.match_boxes(q.to(device), 0.7, 0.3, allow).cpu()
    assert torch.equal(got, tv_matcher(q, 0.7, 0.3, allow))
    assert got[1].item() == 0 and got[2].item() == 1


def test_match_boxes_batched_and_empty(device):
    gen = torch.Generator().manual_seed(7)
    q = torch.rand(2, 3, 5, 40, generator=gen).round(decimals=1)
    got = detops.match_boxes(q.to(device), 0.7, 0.3, True).cpu()
    assert got.shape == (2, 3, 40)
    for i in range(2):
        for j in range(3):
            assert torch.equal(got[i, j], tv_matcher(q[i, j], 0.7, 0.3, True))
    no_gt = detops.match_boxes(torch.zeros(0, 9, device=device), 0.7, 0.3, True)
    assert no_gt.shape == (9,) and (no_gt == -1).all()
    assert detops.match_boxes(torch.zeros(4, 0, device=device), 0.7, 0.3, True).shape == (0,)
    q = q.to(device)
    with pytest.raises(RuntimeError, match="low_threshold"):
        detops.match_boxes(q, 0.3, 0.7)
    torch.library.opcheck(torch.ops.detops.match_boxes.default, (q[0], 0.7, 0.3, True))


# --------------------------------------------------------------------------------------- CPU vs CUDA


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_equals_cpu(dtype):
    gen = torch.Generator().manual_seed(11)
    boxes, labels = random_batch(gen, B=8, max_objects=50, dtype=dtype)
    boxes.append(torch.tensor([[2.0, 2.0, 2.1, 2.1], [0.0, 0.0, 1.0, 1.0]], dtype=dtype))
    labels.append(torch.tensor([1, 2]))
    cpu = detops.match_priors(boxes, labels, PRIORS.to(dtype))
    gpu = detops.match_priors([b.cuda() for b in boxes], [l.cuda() for l in labels], PRIORS.to(dtype).cuda())
    assert torch.equal(cpu[0], gpu[0].cpu()) and torch.equal(cpu[1], gpu[1].cpu())
    torch.testing.assert_close(cpu[2], gpu[2].cpu(), rtol=1e-5, atol=1e-5)
    again = detops.match_priors([b.cuda() for b in boxes], [l.cuda() for l in labels], PRIORS.to(dtype).cuda())
    for x, y in zip(gpu, again):
        assert torch.equal(x, y)
    q = (torch.rand(5, 20, 3000, generator=gen) * 10).floor() / 10
    for allow in (False, True):
        assert torch.equal(detops.match_boxes(q, 0.7, 0.3, allow), detops.match_boxes(q.cuda(), 0.7, 0.3, allow).cpu())
