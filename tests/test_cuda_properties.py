"""What only a GPU can show: mixed-device calls get detops' error, multiclass_nms and the MultiBoxLoss make no host
synchronisation and replay in a CUDA graph, an out-of-range label leaves the CUDA context alive, and an SSD
training step runs under autocast. Every test here is cuda-marked (skipped where no GPU is visible)."""

import pytest
import torch
from helpers import random_boxes

import detops
from detops.ssd import MultiBoxLoss, prior_boxes

pytestmark = pytest.mark.cuda

SMALL_PRIORS = prior_boxes([4, 2, 1], [0.2, 0.5, 0.9], [[1.0, 2.0, 0.5], [1.0, 2.0, 0.5], [1.0, 2.0]])


def _ops(dev_a, dev_b):
    """(name, call) for every op with two or more tensor arguments, the first on dev_a and the rest on dev_b."""
    g = torch.Generator().manual_seed(0)
    boxes = random_boxes(6, generator=g)
    scores = torch.rand(6, generator=g)
    a, b = boxes.to(dev_a), boxes.to(dev_b)
    ops = torch.ops.detops
    gt = random_boxes(3, scale=0.5, generator=g)[None]
    priors_cxcy = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.4, 0.4]])
    return [
        ("box_overlap", lambda: ops.box_overlap(a, b, "iou", 1e-7)),
        ("box_iou_aligned", lambda: ops.box_iou_aligned(a, b, "giou", 1e-7)),
        ("encode_boxes", lambda: ops.encode_boxes(a, b, [1.0, 1.0, 1.0, 1.0])),
        ("decode_boxes", lambda: ops.decode_boxes(a, b, [1.0, 1.0, 1.0, 1.0], 4.0)),
        ("nms", lambda: ops.nms(a, scores.to(dev_b), 0.5)),
        ("batched_nms", lambda: ops.batched_nms(a, scores.to(dev_b), torch.zeros(6, dtype=torch.long).to(dev_b), 0.5)),
        (
            "multiclass_nms",
            lambda: ops.multiclass_nms(a[None], torch.rand(1, 6, 3, generator=g).to(dev_b), 0.1, 0.5, 10, -1, -1),
        ),
        ("soft_nms", lambda: ops.soft_nms(a, scores.to(dev_b), 0.3, 0.5, 0.001, "gaussian")),
        (
            "match_priors",
            lambda: ops.match_priors(
                gt.to(dev_a),
                torch.ones(1, 3, dtype=torch.long).to(dev_b),
                torch.tensor([3]).to(dev_b),
                priors_cxcy.to(dev_b),
                0.5,
                [10.0, 10.0, 5.0, 5.0],
            ),
        ),
        (
            "hard_negative_mining",
            lambda: ops.hard_negative_mining(
                torch.rand(2, 5).to(dev_a), torch.zeros(2, 5, dtype=torch.bool).to(dev_b), 3
            ),
        ),
        (
            "softmax_cross_entropy",
            lambda: ops.softmax_cross_entropy(torch.rand(4, 3).to(dev_a), torch.zeros(4, dtype=torch.long).to(dev_b)),
        ),
        (
            "coco_match",
            lambda: ops.coco_match(
                a.double(),
                b.double()[:2],
                torch.zeros(2, dtype=torch.bool).to(dev_b),
                torch.zeros(1, 2, dtype=torch.bool).to(dev_b),
                torch.tensor([0, 6]).to(dev_b),
                torch.tensor([0, 2]).to(dev_b),
                [0.5],
            ),
        ),
        (
            "coco_accumulate",
            lambda: ops.coco_accumulate(
                torch.ones(1, 1, 6, dtype=torch.uint8).to(dev_a),
                scores.double().to(dev_b),
                torch.zeros(6, dtype=torch.long).to(dev_b),
                torch.tensor([0, 6]).to(dev_b),
                torch.tensor([[3]]).to(dev_b),
                torch.linspace(0, 1, 101, dtype=torch.float64).to(dev_b),
                [100],
            ),
        ),
    ]


MIXED_DEVICE_OPS = [name for name, _ in _ops("cpu", "cpu")]


@pytest.mark.parametrize("order", ["cpu_first", "cuda_first"])
@pytest.mark.parametrize("name", MIXED_DEVICE_OPS)
def test_mixed_devices_give_the_same_device_error(order, name):
    # The dispatcher sends a CPU/CUDA mix to the CUDA kernel; its device guard must come after the device
    # checks, or c10 throws "CUDAGuardImpl initialized with non-CUDA DeviceType" instead.
    devs = ("cpu", "cuda") if order == "cpu_first" else ("cuda", "cpu")
    call = dict(_ops(*devs))[name]
    with pytest.raises(RuntimeError, match="must be on the same device"):
        call()
    torch.cuda.synchronize()


def _multiclass_inputs(g):
    boxes = random_boxes(1000, generator=g, lead=(4,)).cuda()
    scores = torch.rand(4, 1000, 8, generator=g).cuda()
    return boxes, scores


def test_multiclass_nms_makes_no_host_sync():
    g = torch.Generator().manual_seed(1)
    boxes, scores = _multiclass_inputs(g)
    want = detops.multiclass_nms(boxes, scores, 0.3, 0.5, 50)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = detops.multiclass_nms(boxes, scores, 0.3, 0.5, 50)
        got_bg = detops.multiclass_nms(boxes, scores, 0.3, 0.5, 50, background_class=0, max_candidates_per_class=100)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for x, y in zip(got, want):
        assert torch.equal(x, y)
    assert got_bg[3].shape == (4,)


def _loss_inputs(g, B=4, C=5):
    P = SMALL_PRIORS.size(0)
    gt = random_boxes(6, scale=0.6, generator=g, lead=(B,)).clamp(0, 1)
    labels = torch.randint(1, C, (B, 6), generator=g)
    counts = torch.tensor([6, 0, 3, 1])[:B]
    locs = torch.randn(B, P, 4, generator=g)
    scores = torch.randn(B, P, C, generator=g) * 3
    return gt.cuda(), labels.cuda(), counts.cuda(), locs.cuda(), scores.cuda()


def test_multibox_loss_graph_capture_and_replay():
    g = torch.Generator().manual_seed(2)
    gt, labels, counts, locs0, scores0 = _loss_inputs(g)
    crit = MultiBoxLoss(SMALL_PRIORS, threshold=0.3).cuda()
    locs = locs0.clone().requires_grad_()
    scores = scores0.clone().requires_grad_()
    want = crit(locs, scores, gt, labels, counts)
    want_g = torch.autograd.grad(want, (locs, scores))
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm-up on a side stream, as capture requires
            locs.grad = scores.grad = None
            crit(locs, scores, gt, labels, counts).backward()
    torch.cuda.current_stream().wait_stream(stream)
    locs.grad = scores.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = crit(locs, scores, gt, labels, counts)
        loss.backward()
    with torch.no_grad():  # new values in the static inputs: the replay must follow them
        locs.copy_(locs0 * 0.5)
        scores.copy_(scores0 * 0.5)
    want_half = crit(locs.detach().requires_grad_(), scores.detach().requires_grad_(), gt, labels, counts)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(loss, want_half, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        locs.copy_(locs0)
        scores.copy_(scores0)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(locs.grad, want_g[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(scores.grad, want_g[1], rtol=1e-5, atol=1e-7)


def test_multiclass_nms_graph_capture_follows_new_inputs():
    g = torch.Generator().manual_seed(3)
    boxes, scores = _multiclass_inputs(g)
    static_scores = scores.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        detops.multiclass_nms(boxes, static_scores, 0.3, 0.5, 50)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = detops.multiclass_nms(boxes, static_scores, 0.3, 0.5, 50)
    new_scores = torch.rand(scores.shape, generator=g).cuda()
    static_scores.copy_(new_scores)
    graph.replay()
    torch.cuda.synchronize()
    for x, y in zip(out, detops.multiclass_nms(boxes, new_scores, 0.3, 0.5, 50)):
        assert torch.equal(x, y)


def test_out_of_range_label_gives_nan_loss_and_a_live_context():
    g = torch.Generator().manual_seed(4)
    gt, labels, counts, locs, scores = _loss_inputs(g, C=5)
    labels[0, 0] = 99  # no such class: NaN on CUDA (raising would need a host synchronisation)
    crit = MultiBoxLoss(SMALL_PRIORS, threshold=0.3).cuda()
    locs.requires_grad_()
    scores.requires_grad_()
    loss = crit(locs, scores, gt, labels, counts)
    loss.backward()
    torch.cuda.synchronize()  # a device-side assert in the backward would surface (and stay) here
    assert loss.isnan().item()
    # softmax_cross_entropy alone: NaN loss and NaN gradient for the bad rows, the others untouched.
    x = torch.randn(4, 3, generator=g).cuda().requires_grad_()
    t = torch.tensor([0, 3, -1, 2]).cuda()
    out = detops.softmax_cross_entropy(x, t)
    out.sum().backward()
    torch.cuda.synchronize()
    assert out.isnan().tolist() == [False, True, True, False]
    assert x.grad[1:3].isnan().all() and x.grad[[0, 3]].isfinite().all()
    assert (torch.ones(3, device="cuda") * 2).sum().item() == 6  # the context still works


def test_ssd_training_step_under_autocast():
    from detops.ssd.checkpoint import build_model
    from detops.ssd.trainer import TrainConfig, Trainer

    torch.manual_seed(0)
    model = build_model(5, "tiny", width=8)
    g = torch.Generator().manual_seed(5)
    images = torch.randn(4, 3, 160, 160, generator=g)  # the tiny backbone's input size
    boxes = [random_boxes(3, scale=0.5, generator=g).clamp(0, 1) for _ in range(4)]
    labels = [torch.randint(1, 5, (3,), generator=g) for _ in range(4)]
    items = [(images[i], boxes[i], labels[i], torch.zeros(3, dtype=torch.bool)) for i in range(4)]
    cfg = TrainConfig(epochs=1, batch_size=4, optimizer="adam", lr=1e-3, warmup_steps=0, checkpoint_every=0, amp=True)
    trainer = Trainer(model, items, cfg, device="cuda")
    assert trainer.use_amp and trainer.scaler.is_enabled()
    before = [p.detach().clone() for p in model.parameters()]
    seen = []
    hook = model.register_forward_hook(lambda m, i, o: seen.append(o[1].dtype))
    try:
        losses = [trainer.train_step(images, boxes, labels) for _ in range(3)]
    finally:
        hook.remove()
    assert seen and all(d == torch.float16 for d in seen)  # the network ran in half precision
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))
