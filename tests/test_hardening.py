"""Edge defects found by fuzzing the public ops, each pinned by a test that failed before its fix
(docs/reliability.md lists them with the behaviour chosen)."""

import pytest
import torch

import detops
from detops.reference import coding as ref_coding


def _boxes(n, g, dtype):
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 100
    return torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 50], 1).to(dtype)


# ---- float64 coding uses the weights as given, not rounded to float32 ----


def test_float64_encode_uses_exact_weights(device):
    g = torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=torch.float64, device=device)
    a = torch.tensor([[-0.5, 0.0, 1.5, 2.0]], dtype=torch.float64, device=device)
    out = detops.encode_boxes(g, a, (0.1, 0.1, 0.1, 0.1))
    # dx = 0.1 * (1 - 0.5) / 2: 0.025 exactly as float64 computes it; float32 weights gave 0.02500000037252903.
    assert out[0, 0].item() == 0.1 * (1.0 - 0.5) / 2.0


@pytest.mark.parametrize("weights", [(0.1, 0.1, 0.2, 0.2), (10.0, 10.0, 5.0, 5.0), (1 / 3, 0.7, 1e-3, 3.3)])
def test_float64_coding_equals_float64_reference(weights, device):
    gen = torch.Generator().manual_seed(0)
    boxes, anchors = _boxes(500, gen, torch.float64).to(device), _boxes(500, gen, torch.float64).to(device)
    enc = detops.encode_boxes(boxes, anchors, weights)
    torch.testing.assert_close(enc, ref_coding.encode_boxes(boxes, anchors, weights), rtol=1e-13, atol=1e-13)
    dec = detops.decode_boxes(enc, anchors, weights)
    torch.testing.assert_close(dec, ref_coding.decode_boxes(enc, anchors, weights), rtol=1e-13, atol=1e-11)


def test_float64_match_priors_targets_use_exact_weights(device):
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]], dtype=torch.float64, device=device)
    gt = [torch.tensor([[0.35, 0.35, 0.6, 0.6]], dtype=torch.float64, device=device)]
    weights = (1 / 0.3, 1 / 0.3, 1 / 0.7, 1 / 0.7)
    labels, matched, targets = detops.match_priors(gt, [torch.tensor([1], device=device)], priors, 0.1,
                                                   weights=weights)
    pos = labels[0] > 0
    want = detops.encode_boxes(gt[0][matched[0][pos]], torch.cat([priors[pos, :2] - priors[pos, 2:] / 2,
                                                                  priors[pos, :2] + priors[pos, 2:] / 2], 1), weights)
    torch.testing.assert_close(targets[0][pos], want, rtol=1e-13, atol=1e-13)


# ---- thresholds and ground truth that are not numbers ----


@pytest.mark.parametrize("high, low, name", [(float("nan"), 0.3, "high_threshold"), (0.7, float("nan"), "low_threshold")])
def test_match_boxes_nan_threshold_is_named(high, low, name, device):
    q = torch.rand(3, 5, device=device)
    with pytest.raises(RuntimeError, match=f"{name} is NaN"):
        detops.match_boxes(q, high, low)


@pytest.mark.parametrize("bad", [float("inf"), -float("inf"), float("nan")])
def test_match_priors_rejects_non_finite_ground_truth(bad):
    # CPU only: on CUDA the value check would need a host synchronisation (documented in match_priors).
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    gt = [torch.tensor([[0.1, 0.1, bad, 0.4]])]
    with pytest.raises(RuntimeError, match="gt_boxes must be finite"):
        detops.match_priors(gt, [torch.tensor([1])], priors)


# ---- second derivatives: differentiable, never silently detached ----


def _double_backward_cases():
    yield "box_iou", lambda a, b: detops.box_iou(a, b)
    # (complete_box_iou too has a second derivative, but its trade-off weight alpha is a constant for the
    # gradient by definition, so the gradient is not the derivative of the value and gradgradcheck's numerical
    # side cannot agree with it.)
    yield "distance_box_iou", lambda a, b: detops.distance_box_iou(a, b)
    yield "generalized_box_iou_loss", lambda a, b: detops.generalized_box_iou_loss(a, b, reduction="sum")
    yield "encode_boxes", lambda a, b: detops.encode_boxes(a, b, (10.0, 10.0, 5.0, 5.0))
    yield "decode_boxes", lambda a, b: detops.decode_boxes(a * 0.01, b, (10.0, 10.0, 5.0, 5.0))


@pytest.mark.parametrize("name, fn", list(_double_backward_cases()), ids=[n for n, _ in _double_backward_cases()])
def test_gradgradcheck(name, fn):
    gen = torch.Generator().manual_seed(1)
    a = _boxes(4, gen, torch.float64).requires_grad_()
    b = (a.detach() + torch.randn(4, 4, generator=gen, dtype=torch.float64)).requires_grad_()
    if name.endswith("_loss") or name.startswith(("encode", "decode")):
        b = _boxes(4, gen, torch.float64).requires_grad_() if name == "decode_boxes" else b
    assert torch.autograd.gradgradcheck(fn, (a, b))


def test_gradient_penalty_reaches_the_inputs():
    # A penalty on the gradient's norm must have a gradient itself: before, the backward detached its inputs
    # and the penalty's gradient was silently None / zero.
    gen = torch.Generator().manual_seed(2)
    a = _boxes(6, gen, torch.float64).requires_grad_()
    b = _boxes(6, gen, torch.float64)
    (ga,) = torch.autograd.grad(detops.box_iou(a, b).sum(), a, create_graph=True)
    assert ga.requires_grad
    (gga,) = torch.autograd.grad(ga.pow(2).sum(), a)
    ar = a.detach().requires_grad_()
    from detops.reference import boxes as ref_boxes

    (ra,) = torch.autograd.grad(ref_boxes.box_overlap(ar, b, "iou").sum(), ar, create_graph=True)
    (rra,) = torch.autograd.grad(ra.pow(2).sum(), ar)
    torch.testing.assert_close(gga, rra)


# ---- threads and determinism ----


def _workload(device):
    gen = torch.Generator().manual_seed(3)
    boxes = _boxes(700, gen, torch.float32).to(device)
    scores = torch.rand(700, generator=gen).to(device)
    idxs = torch.randint(0, 5, (700,), generator=gen).to(device)
    priors = torch.cat([torch.rand(400, 2, generator=gen), torch.rand(400, 2, generator=gen) * 0.3 + 0.01], 1)
    gt = [(_boxes(7, gen, torch.float32) / 160).to(device) for _ in range(4)]
    labels = [torch.randint(1, 5, (7,), generator=gen).to(device) for _ in range(4)]
    return [
        lambda: detops.box_iou(boxes, boxes[:300]),
        lambda: detops.complete_box_iou(boxes[:200], boxes[:300]),
        lambda: detops.nms(boxes, scores, 0.5),
        lambda: detops.batched_nms(boxes, scores, idxs, 0.5),
        lambda: detops.encode_boxes(boxes[:300], boxes[300:600], (10.0, 10.0, 5.0, 5.0)),
        lambda: detops.match_priors(gt, labels, priors.to(device)),
    ]


def _same(x, y):
    if isinstance(x, (tuple, list)):
        return all(_same(a, b) for a, b in zip(x, y))
    return torch.equal(x, y)


def test_four_python_threads_equal_one(device):
    from concurrent.futures import ThreadPoolExecutor

    calls = _workload(device)
    want = [f() for f in calls]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = list(pool.map(lambda f: f(), calls * 4))
            assert all(_same(g, want[i % len(calls)]) for i, g in enumerate(got))


def test_bit_identical_run_after_run(device):
    calls = _workload(device)
    first = [f() for f in calls]
    for _ in range(5):
        assert all(_same(f(), w) for f, w in zip(calls, first))
