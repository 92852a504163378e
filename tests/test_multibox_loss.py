"""detops.ssd.MultiBoxLoss against the SSD tutorial's MultiBoxLoss (detops.reference.matching.tutorial_multibox_loss)."""

import pytest
import torch

import detops
from detops.reference import matching as ref
from detops.ssd import MultiBoxLoss, prior_boxes, ssd300_prior_boxes

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PRIORS = ssd300_prior_boxes()
SMALL_PRIORS = prior_boxes([4, 2, 1], [0.2, 0.5, 0.9], [[1.0, 2.0, 0.5], [1.0, 2.0, 0.5], [1.0, 2.0]])
TINY_PRIORS = prior_boxes([2, 1], [0.4, 0.8], [[1.0, 2.0], [1.0]])


def random_targets(gen, counts, n_classes, dtype=torch.float32):
    boxes, labels = [], []
    for n in counts:
        xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 0.8
        wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * (1 - xy) + 1e-2
        boxes.append(torch.cat([xy, xy + wh], 1).to(dtype))
        labels.append(torch.randint(1, n_classes, (n,), generator=gen))
    return boxes, labels


def predictions(gen, B, P, C, dtype=torch.float32):
    locs = (torch.randn(B, P, 4, generator=gen, dtype=torch.float64) * 2).to(dtype).requires_grad_()
    scores = (torch.randn(B, P, C, generator=gen, dtype=torch.float64) * 3).to(dtype).requires_grad_()
    return locs, scores


def on(device, locs, scores, boxes, labels):
    """Copies of the predictions on `device` (new leaves that require grad) and of the targets."""
    leaf = lambda t: t.detach().to(device).requires_grad_()
    move = lambda x: x.to(device) if isinstance(x, torch.Tensor) else [t.to(device) for t in x]
    return leaf(locs), leaf(scores), move(boxes), move(labels)


def grad_tol(device):
    # CUDA sums the 8732 priors' terms in another order than the CPU: float32 gradients a few ulps apart.
    return dict(rtol=1e-5, atol=1e-9) if device.type == "cpu" else dict(rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("seed", range(3))
def test_l1_reproduces_the_tutorial_value_and_gradients(seed, device):
    gen = torch.Generator().manual_seed(seed)
    B, C = 4, 21
    boxes, labels = random_targets(gen, torch.randint(1, 30, (B,), generator=gen).tolist(), C)
    locs, scores = predictions(gen, B, 8732, C)
    locs_d, scores_d, boxes_d, labels_d = on(device, locs, scores, boxes, labels)
    loss = MultiBoxLoss(PRIORS, loc_loss="l1")(locs_d, scores_d, boxes_d, labels_d)
    g_locs, g_scores = torch.autograd.grad(loss, (locs_d, scores_d))
    want = ref.tutorial_multibox_loss(locs, scores, boxes, labels, PRIORS)
    w_locs, w_scores = torch.autograd.grad(want, (locs, scores))
    torch.testing.assert_close(loss.cpu(), want, rtol=1e-5, atol=0)
    torch.testing.assert_close(g_locs.cpu(), w_locs, **grad_tol(device))
    torch.testing.assert_close(g_scores.cpu(), w_scores, **grad_tol(device))


def test_smooth_l1_matches_the_reference_and_alpha(device):
    gen = torch.Generator().manual_seed(7)
    B, C = 3, 5
    boxes, labels = random_targets(gen, [3, 0, 12], C)
    locs, scores = predictions(gen, B, 8732, C)
    locs_d, scores_d, boxes_d, labels_d = on(device, locs, scores, boxes, labels)
    for alpha, ratio in [(1.0, 3), (0.5, 1)]:
        loss = MultiBoxLoss(PRIORS, neg_pos_ratio=ratio, alpha=alpha)(locs_d, scores_d, boxes_d, labels_d)
        want = ref.tutorial_multibox_loss(
            locs, scores, boxes, labels, PRIORS, neg_pos_ratio=ratio, alpha=alpha, loc_loss="smooth_l1"
        )
        torch.testing.assert_close(loss.cpu(), want, rtol=1e-5, atol=0)
        got_g = torch.autograd.grad(loss, (locs_d, scores_d))
        want_g = torch.autograd.grad(want, (locs, scores))
        for g, w in zip(got_g, want_g):
            torch.testing.assert_close(g.cpu(), w, **grad_tol(device))


def test_gradcheck_float64(device):
    gen = torch.Generator().manual_seed(3)
    P, C = TINY_PRIORS.size(0), 3
    boxes, labels = random_targets(gen, [2, 0], C, dtype=torch.float64)
    locs, scores, boxes, labels = on(device, *predictions(gen, 2, P, C, dtype=torch.float64), boxes, labels)
    for kind in ("l1", "smooth_l1"):
        crit = MultiBoxLoss(TINY_PRIORS.double(), threshold=0.3, neg_pos_ratio=2, loc_loss=kind)
        assert crit(locs, scores, boxes, labels) > 0
        assert torch.autograd.gradcheck(lambda l, s: crit(l, s, boxes, labels), (locs, scores), fast_mode=True)


def test_no_positives_gives_a_finite_zero(device):
    gen = torch.Generator().manual_seed(4)
    no_boxes, no_labels = [torch.zeros(0, 4)] * 2, [torch.zeros(0, dtype=torch.long)] * 2
    locs, scores, no_boxes, no_labels = on(device, *predictions(gen, 2, 8732, 3), no_boxes, no_labels)
    crit = MultiBoxLoss(PRIORS)
    loss = crit(locs, scores, no_boxes, no_labels)
    assert loss.item() == 0.0
    g_locs, g_scores = torch.autograd.grad(loss, (locs, scores))
    assert torch.isfinite(g_locs).all() and (g_locs == 0).all() and (g_scores == 0).all()
    # background-labelled objects only: no positives either
    loss = crit(
        locs,
        scores,
        [torch.tensor([[0.1, 0.1, 0.5, 0.5]], device=device), no_boxes[1]],
        [torch.tensor([0], device=device), no_labels[1]],
    )
    assert loss.item() == 0.0


def test_padded_targets_equal_lists_and_empty_images(device):
    gen = torch.Generator().manual_seed(5)
    B, C = 3, 6
    boxes, labels = random_targets(gen, [0, 5, 2], C)
    locs, scores = predictions(gen, B, 8732, C)
    crit = MultiBoxLoss(PRIORS, loc_loss="l1")
    locs_d, scores_d, boxes_d, labels_d = on(device, locs, scores, boxes, labels)
    pb, pl, counts = detops.matching.pack_targets(boxes_d, labels_d)
    a = crit(locs_d, scores_d, boxes_d, labels_d)
    b = crit(locs_d, scores_d, pb, pl, counts)
    assert torch.equal(a, b)
    torch.testing.assert_close(
        a.cpu(), ref.tutorial_multibox_loss(locs, scores, boxes, labels, PRIORS), rtol=1e-5, atol=0
    )


def test_bad_input(device):
    gen = torch.Generator().manual_seed(6)
    boxes, labels = random_targets(gen, [2, 1], 4)
    locs, scores, boxes, labels = on(device, *predictions(gen, 2, 8732, 4), boxes, labels)
    crit = MultiBoxLoss(PRIORS)
    if device.type == "cpu":  # on CUDA checking values would need a host synchronisation: a NaN loss instead
        with pytest.raises(ValueError, match="labels must be in"):
            crit(locs, scores, boxes, [labels[0], torch.tensor([4])])
        with pytest.raises(RuntimeError, match="x2 >= x1"):
            crit(locs, scores, [boxes[0].flip(1), boxes[1]], labels)
    with pytest.raises(ValueError, match="images"):
        crit(locs, scores, boxes[:1], labels[:1])
    with pytest.raises(ValueError, match="priors"):
        crit(locs[:, :100], scores[:, :100], boxes, labels)
    with pytest.raises(ValueError, match=r"\[B, P, C\]"):
        crit(locs, scores[:1], boxes, labels)
    with pytest.raises(ValueError, match=r"\[P, 4\]"):
        MultiBoxLoss(PRIORS[None])
    with pytest.raises(ValueError, match="loc_loss"):
        MultiBoxLoss(PRIORS, loc_loss="l2")


def test_compile_with_padded_targets(device):
    gen = torch.Generator().manual_seed(8)
    boxes, labels = random_targets(gen, [3, 1], 3)
    locs, scores, boxes, labels = on(device, *predictions(gen, 2, SMALL_PRIORS.size(0), 3), boxes, labels)
    pb, pl, counts = detops.matching.pack_targets(boxes, labels)
    crit = MultiBoxLoss(SMALL_PRIORS, threshold=0.3)
    compiled = torch.compile(crit, fullgraph=True)
    torch.testing.assert_close(compiled(locs, scores, pb, pl, counts), crit(locs, scores, pb, pl, counts))


@cuda
@pytest.mark.cuda
def test_cuda_equals_cpu_without_host_sync():
    gen = torch.Generator().manual_seed(9)
    B, C = 8, 21
    boxes, labels = random_targets(gen, [0, 3, 20, 7, 1, 0, 12, 50], C)
    locs, scores = predictions(gen, B, 8732, C)
    cpu = MultiBoxLoss(PRIORS)(locs, scores, boxes, labels)
    g_cpu = torch.autograd.grad(cpu, (locs, scores))
    crit = MultiBoxLoss(PRIORS).cuda()
    locs_d = locs.detach().cuda().requires_grad_()
    scores_d = scores.detach().cuda().requires_grad_()
    boxes_d, labels_d = [b.cuda() for b in boxes], [l.cuda() for l in labels]
    crit(locs_d, scores_d, boxes_d, labels_d).backward()  # warm up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = crit(locs_d, scores_d, boxes_d, labels_d)
        g = torch.autograd.grad(loss, (locs_d, scores_d))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(loss.cpu(), cpu, rtol=1e-5, atol=1e-6)
    for a, b in zip(g, g_cpu):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("loc_loss", ["l1", "smooth_l1"])
def test_masked_path_equals_indexed_path(loc_loss):
    # The CPU uses the indexed path; CUDA and torch.compile use the masked one. Same value and gradients.
    # CPU only: on CUDA both would take the masked path (the CUDA tests above compare it with the CPU's).
    gen = torch.Generator().manual_seed(10)
    B, C = 3, 7
    boxes, labels = random_targets(gen, [4, 0, 9], C)
    locs, scores = predictions(gen, B, 8732, C)
    crit = MultiBoxLoss(PRIORS, loc_loss=loc_loss)
    masked = MultiBoxLoss(PRIORS, loc_loss=loc_loss)
    masked._masked = True
    a, b = crit(locs, scores, boxes, labels), masked(locs, scores, boxes, labels)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    for ga, gb in zip(torch.autograd.grad(a, (locs, scores)), torch.autograd.grad(b, (locs, scores))):
        torch.testing.assert_close(ga, gb, rtol=1e-6, atol=1e-9)
    empty = masked(locs, scores, [torch.zeros(0, 4)] * 3, [torch.zeros(0, dtype=torch.long)] * 3)
    assert empty.item() == 0.0
