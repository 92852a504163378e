"""detops.hard_negative_mining against the exact-mask reference and the SSD tutorial's sort-based selection."""

import math
import types

import pytest
import torch

import detops
from detops.reference import hard_negatives as ref

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def random_problem(gen, B=8, P=3000, quantise=None, pos_rate=0.02, dtype=torch.float32):
    loss = torch.rand(B, P, generator=gen, dtype=torch.float64) * 5
    if quantise:
        loss = (loss * quantise).floor() / quantise  # many ties at the selection boundary
    positives = torch.rand(B, P, generator=gen) < pos_rate
    positives[0] = False  # a row without positives
    return loss.to(dtype), positives


@pytest.mark.parametrize("quantise", [None, 4, 1])
@pytest.mark.parametrize("ratio", [0, 1, 3, 7])
def test_equals_reference_and_tutorial_sum(quantise, ratio, device):
    gen = torch.Generator().manual_seed(ratio * 10 + (quantise or 0))
    loss, positives = random_problem(gen, quantise=quantise)
    mask = detops.hard_negative_mining(loss.to(device), positives.to(device), ratio)
    assert mask.dtype == torch.bool and mask.shape == loss.shape and mask.device.type == device.type
    mask = mask.cpu()
    assert not (mask & positives).any()
    assert torch.equal(mask, ref.hard_negative_mining(loss, positives, ratio))
    want_k = torch.minimum(ratio * positives.sum(1), (~positives).sum(1))
    assert torch.equal(mask.sum(1), want_k)
    got_sum = torch.where(mask, loss, 0).double().sum(1)
    torch.testing.assert_close(
        got_sum, ref.tutorial_hard_negative_loss(loss.double(), positives, ratio), rtol=1e-12, atol=0
    )


def test_cap_all_positive_no_positive_rows(device):
    loss = torch.tensor([[0.5, 0.1, 0.9, 0.3], [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    positives = torch.tensor(
        [
            [True, False, False, False],
            [True, True, True, True],
            [False, False, False, False],
            [False, True, False, False],
        ]
    )
    loss, positives = loss.to(device), positives.to(device)
    mask = detops.hard_negative_mining(loss, positives, 3)
    assert mask.tolist() == [
        [False, True, True, True],  # 3 negatives wanted, 3 exist
        [False, False, False, False],  # no negatives
        [False, False, False, False],  # no positives
        [True, False, True, True],  # ties: all three needed
    ]
    mask = detops.hard_negative_mining(loss, positives, 1)
    assert mask.tolist()[0] == [False, False, True, False]
    assert mask.tolist()[3] == [True, False, False, False]  # ties: the lowest index


def test_nan_and_signed_zero_and_dtypes(device):
    loss = torch.tensor([[0.0, -0.0, float("nan"), 1.0, 0.0, 2.0]])
    positives = torch.tensor([[True, False, False, False, False, False]])
    for ratio, want in [(1, [2]), (2, [2, 5]), (3, [2, 3, 5]), (4, [1, 2, 3, 5])]:
        mask = detops.hard_negative_mining(loss.to(device), positives.to(device), ratio).cpu()
        assert torch.nonzero(mask[0]).flatten().tolist() == want
        assert torch.equal(mask, ref.hard_negative_mining(loss, positives, ratio))
    gen = torch.Generator().manual_seed(3)
    loss, positives = random_problem(gen, B=3, P=500, quantise=8)
    loss, positives = loss.to(device), positives.to(device)
    want = detops.hard_negative_mining(loss, positives, 3)
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        assert torch.equal(detops.hard_negative_mining(loss.to(dtype), positives, 3), want)  # values exact in all


def test_empty_and_bad_input(device):
    z = lambda *s, **kw: torch.zeros(*s, device=device, **kw)
    assert detops.hard_negative_mining(z(0, 5), z(0, 5, dtype=torch.bool)).shape == (0, 5)
    assert detops.hard_negative_mining(z(2, 0), z(2, 0, dtype=torch.bool)).shape == (2, 0)
    with pytest.raises(RuntimeError, match="shape"):
        detops.hard_negative_mining(z(2, 5), z(2, 4, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="bool"):
        detops.hard_negative_mining(z(2, 5), z(2, 5))
    with pytest.raises(RuntimeError, match=r"\[B, P\]"):
        detops.hard_negative_mining(z(5), z(5, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="neg_pos_ratio"):
        detops.hard_negative_mining(z(2, 5), z(2, 5, dtype=torch.bool), -1)


def test_opcheck_and_compile(device):
    gen = torch.Generator().manual_seed(4)
    loss, positives = random_problem(gen, B=3, P=200, pos_rate=0.1)
    loss, positives = loss.to(device), positives.to(device)
    torch.library.opcheck(torch.ops.detops.hard_negative_mining.default, (loss, positives, 3))

    @torch.compile(fullgraph=True)
    def f(loss, positives):
        return torch.where(detops.hard_negative_mining(loss, positives) | positives, loss, 0).sum()

    want = torch.where(detops.hard_negative_mining(loss, positives) | positives, loss, 0).sum()
    torch.testing.assert_close(f(loss, positives), want)


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("quantise", [None, 2])
def test_cuda_equals_cpu(dtype, quantise):
    gen = torch.Generator().manual_seed(5)
    loss, positives = random_problem(gen, B=33, P=8732, quantise=quantise, dtype=dtype)
    loss[1, :10] = float("nan")
    for ratio in (0, 1, 3):
        cpu = detops.hard_negative_mining(loss, positives, ratio)
        assert torch.equal(cpu, detops.hard_negative_mining(loss.cuda(), positives.cuda(), ratio).cpu())


# ---- softmax_cross_entropy: the per-prior loss the mining ranks ----


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("C", [1, 2, 21, 81, 5000])
def test_cross_entropy_equals_reference(dtype, C, device):
    gen = torch.Generator().manual_seed(C)
    logits = (torch.randn(3, 700, C, generator=gen, dtype=torch.float64) * 6).to(dtype)
    targets = torch.randint(0, C, (3, 700), generator=gen)
    got = detops.softmax_cross_entropy(logits.to(device), targets.to(device))
    assert got.shape == targets.shape and got.dtype == dtype and got.device.type == device.type
    got = got.cpu()
    tol = 1e-5 if dtype == torch.float32 else 1e-12  # sums of C terms in another order than ATen's
    torch.testing.assert_close(got, ref.softmax_cross_entropy(logits, targets), rtol=tol, atol=tol)


def test_cross_entropy_extremes_and_non_finite(device):
    # Large logits (no overflow: the max is subtracted first), -inf logits (probability 0), NaN and +inf
    # logits (NaN loss, as F.cross_entropy), int32 targets, non-contiguous logits, half precision.
    logits = torch.tensor(
        [
            [1e4, -1e4, 0.0],
            [-float("inf"), 0.0, 1.0],
            [0.0, float("nan"), 1.0],
            [float("inf"), 0.0, 1.0],
            [-float("inf"), 0.0, 1.0],
        ]
    )
    targets = torch.tensor([0, 2, 1, 1, 0], dtype=torch.int32)
    got = detops.softmax_cross_entropy(logits.to(device), targets.to(device)).cpu()
    want = ref.softmax_cross_entropy(logits, targets)
    assert got[0] == 0 and got[4] == float("inf")
    torch.testing.assert_close(got, want, equal_nan=True)
    x = torch.randn(50, 21, 3).transpose(1, 2)
    t = torch.randint(0, 21, (50, 3))
    torch.testing.assert_close(
        detops.softmax_cross_entropy(x.to(device), t.to(device)).cpu(), ref.softmax_cross_entropy(x, t)
    )
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float16, torch.bfloat16):
        h = torch.randn(400, 21, generator=g).to(dtype)
        t = torch.randint(0, 21, (400,), generator=g)
        out = detops.softmax_cross_entropy(h.to(device), t.to(device)).cpu()
        assert out.dtype == dtype
        # Both compute in float32 (sums in different orders) and round once to dtype: a float32 result next
        # to a rounding boundary may land one ulp of dtype apart, never more.
        torch.testing.assert_close(out, ref.softmax_cross_entropy(h, t), rtol=torch.finfo(dtype).eps, atol=1e-6)


def test_cross_entropy_bad_input_and_empty(device):
    z = lambda *s, **kw: torch.zeros(*s, device=device, **kw)
    assert detops.softmax_cross_entropy(z(0, 5), z(0, dtype=torch.long)).shape == (0,)
    bad = [torch.tensor([0, 1, 3, 0]), torch.tensor([0, -1, 2, 0])]
    if device.type == "cpu":
        with pytest.raises(RuntimeError, match=r"targets\[2\] is 3; targets must be class indices in \[0, 3\)"):
            detops.softmax_cross_entropy(z(4, 3), bad[0])
        with pytest.raises(RuntimeError, match=r"targets must be class indices in \[0, 3\)"):
            detops.softmax_cross_entropy(z(4, 3), bad[1])
    else:  # raising would need a host synchronisation: the bad rows' losses are NaN, the others exact
        for t in bad:
            out = detops.softmax_cross_entropy(z(4, 3), t.to(device)).cpu()
            assert out.isnan().tolist() == [v not in (0, 1, 2) for v in t.tolist()]
    with pytest.raises(RuntimeError, match="targets must have the shape of logits"):
        detops.softmax_cross_entropy(z(4, 3), z(3, dtype=torch.long))
    with pytest.raises(RuntimeError, match="C >= 1 classes"):
        detops.softmax_cross_entropy(z(4, 0), z(4, dtype=torch.long))
    with pytest.raises(RuntimeError, match="int64 or int32"):
        detops.softmax_cross_entropy(z(4, 3), z(4))
    with pytest.raises(RuntimeError, match="logits"):
        detops.softmax_cross_entropy(z(4, 3, dtype=torch.long), z(4, dtype=torch.long))


def test_cross_entropy_ignore_index(device):
    # F.cross_entropy's ignore_index (default -100): loss 0 and gradient 0 for those rows, whatever their
    # logits; a target equal to ignore_index inside [0, C) is ignored too, as in F.cross_entropy.
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 6, 5, dtype=torch.float64, generator=gen)
    logits[0, 1] = float("nan")  # an ignored row's NaN logits do not leak into its loss
    targets = torch.tensor([[0, -100, 4, -100, 1, 2], [3, 3, -100, 0, 4, 1]])
    x = logits.to(device).requires_grad_()
    t = targets.to(device)
    got = detops.softmax_cross_entropy(x, t)
    want = torch.nn.functional.cross_entropy(logits.view(-1, 5), targets.view(-1), reduction="none").view(2, 6)
    torch.testing.assert_close(got.detach().cpu(), want)
    torch.testing.assert_close(got.detach().cpu(), ref.softmax_cross_entropy(logits, targets))
    ignored = targets == -100
    assert bool((got.detach().cpu()[ignored] == 0).all())
    (g,) = torch.autograd.grad(got.sum(), x)
    assert bool((g.cpu()[ignored] == 0).all()) and bool((g.cpu()[~ignored] != 0).any())
    clean = logits.clone()
    clean[0, 1] = 0.0
    xc = clean.requires_grad_()
    (want_g,) = torch.autograd.grad(
        torch.nn.functional.cross_entropy(xc.view(-1, 5), targets.view(-1), reduction="none").sum(), xc
    )
    torch.testing.assert_close(g.cpu(), want_g)
    t3 = torch.tensor([3, 1, 3], device=device)
    out = detops.softmax_cross_entropy(torch.zeros(3, 5, device=device), t3, ignore_index=3)
    assert out.cpu().tolist() == [0.0, pytest.approx(math.log(5)), 0.0]
    torch.library.opcheck(
        torch.ops.detops.softmax_cross_entropy.default, (logits.to(device).float().nan_to_num(), t, -100)
    )


def test_cross_entropy_bad_target_names_row_and_value():
    # CPU only: the CUDA kernel reports a bad target as a NaN loss (test_cross_entropy_bad_input_and_empty).
    with pytest.raises(
        RuntimeError,
        match=r"targets\[2\] is 3; targets must be class indices in \[0, 3\) or "
        r"ignore_index \(-100\)",
    ):
        detops.softmax_cross_entropy(torch.zeros(4, 3), torch.tensor([0, -100, 3, 0]))
    with pytest.raises(RuntimeError, match=r"targets\[1, 0\] is -1"):
        detops.softmax_cross_entropy(torch.zeros(2, 2, 3), torch.tensor([[0, 1], [-1, 7]]))
    with pytest.raises(RuntimeError, match=r"targets\[0\] is -100; .* ignore_index \(-1\)"):
        detops.softmax_cross_entropy(torch.zeros(1, 3), torch.tensor([-100]), ignore_index=-1)


def test_cross_entropy_gradient_opcheck_and_compile(device):
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(4, 30, 7, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    targets = torch.randint(0, 7, (4, 30), generator=gen).to(device)
    assert torch.autograd.gradcheck(lambda x: detops.softmax_cross_entropy(x, targets), (logits,))
    w = torch.rand(4, 30, dtype=torch.float64, generator=gen).to(device)
    (g,) = torch.autograd.grad((detops.softmax_cross_entropy(logits, targets) * w).sum(), logits)
    (want,) = torch.autograd.grad((ref.softmax_cross_entropy(logits, targets) * w).sum(), logits)
    torch.testing.assert_close(g, want)
    torch.library.opcheck(torch.ops.detops.softmax_cross_entropy.default, (logits.detach().float(), targets))
    f = torch.compile(lambda x, t: detops.softmax_cross_entropy(x, t).sum(), fullgraph=True)
    x = logits.detach()
    torch.testing.assert_close(f(x, targets), detops.softmax_cross_entropy(x, targets).sum())


def test_cross_entropy_backward_never_indexes_out_of_range(device):
    # The CPU forward raises on a target outside [0, C); the CUDA one gives NaN (raising would need a host
    # synchronisation), so the backward sees such targets and must not scatter out of bounds (on CUDA a
    # device-side assert that ends the context): a NaN gradient for those rows, the others exact.
    from detops._autograd import _cross_entropy_backward

    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(5, 3, dtype=torch.float64, generator=gen)
    targets = torch.tensor([0, 3, -1, 2, 1000])
    ctx = types.SimpleNamespace(saved_tensors=(logits.to(device), targets.to(device)), ignore_index=-100)
    grad = torch.rand(5, dtype=torch.float64, generator=gen)
    g, *rest = _cross_entropy_backward(ctx, grad.to(device))
    assert all(r is None for r in rest) and g.shape == logits.shape
    g = g.cpu()
    assert g[[1, 2, 4]].isnan().all()
    ok = torch.tensor([0, 3])
    want = (torch.softmax(logits[ok], -1) - torch.nn.functional.one_hot(targets[ok], 3)) * grad[ok, None]
    torch.testing.assert_close(g[ok], want)


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cross_entropy_cuda_equals_cpu(dtype):
    gen = torch.Generator().manual_seed(7)
    logits = (torch.randn(32, 8732, 21, generator=gen) * 4).to(dtype)
    targets = torch.randint(0, 21, (32, 8732), generator=gen)
    cpu = detops.softmax_cross_entropy(logits, targets)
    gpu = detops.softmax_cross_entropy(logits.cuda(), targets.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-6)
    bad = detops.softmax_cross_entropy(logits[:1, :3].cuda(), torch.tensor([[0, 21, -1]]).cuda()).cpu()
    assert not bad[0, 0].isnan() and bad[0, 1:].isnan().all()
