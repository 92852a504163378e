"""detops.patch_torchvision(training=True): torchvision's detectors train on detops' target assignment and
losses, with torchvision's losses, gradients, sampled proposals and errors."""

import warnings

import pytest
import torch
import torchvision
from torchvision.models import detection as D
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection import retinanet as tv_retinanet
from torchvision.models.detection import roi_heads as tv_roi_heads
from torchvision.models.detection import rpn as tv_rpn
from torchvision.models.detection import ssd as tv_ssd
from torchvision.ops import boxes as tv_boxes

import detops

TRAINING_ATTRIBUTES = [
    (det_utils.Matcher, "__call__"),
    (det_utils.BoxCoder, "encode_single"),
    (tv_rpn.RegionProposalNetwork, "assign_targets_to_anchors"),
    (tv_roi_heads.RoIHeads, "assign_targets_to_proposals"),
    (tv_retinanet.RetinaNet, "compute_loss"),
    (tv_retinanet.RetinaNetClassificationHead, "compute_loss"),
    (tv_retinanet.RetinaNetRegressionHead, "compute_loss"),
    (tv_ssd.SSD, "compute_loss"),
    (torchvision.ops.focal_loss, "sigmoid_focal_loss"),
    (torchvision.ops, "sigmoid_focal_loss"),
    (tv_retinanet, "sigmoid_focal_loss"),
]
INFERENCE_ATTRIBUTES = [(m, n) for m in (tv_boxes, torchvision.ops) for n in ("nms", "batched_nms", "box_iou")]


def _snapshot(attributes):
    return [owner.__dict__.get(name) for owner, name in attributes]


def test_training_patch_replaces_and_undo_restores_every_attribute():
    before = _snapshot(TRAINING_ATTRIBUTES + INFERENCE_ATTRIBUTES)
    assert all(v is not None for v in before)
    with detops.patch_torchvision(training=True) as outer:
        assert outer.training and outer.active
        inside = _snapshot(TRAINING_ATTRIBUTES + INFERENCE_ATTRIBUTES)
        assert all(a is not b for a, b in zip(inside, before))
        assert torchvision.ops.sigmoid_focal_loss is detops.sigmoid_focal_loss
        # A nested patch wraps the outer one's functions and gives them back on undo.
        inner = detops.patch_torchvision(training=True)
        assert all(a is not b for a, b in zip(_snapshot(TRAINING_ATTRIBUTES[:8]), inside[:8]))
        inner.undo()
        assert all(a is b for a, b in zip(_snapshot(TRAINING_ATTRIBUTES + INFERENCE_ATTRIBUTES), inside))
    assert all(a is b for a, b in zip(_snapshot(TRAINING_ATTRIBUTES + INFERENCE_ATTRIBUTES), before))
    # SSDMatcher inherits the patched Matcher.__call__ through super(); it is never replaced itself.
    assert "__call__" in det_utils.SSDMatcher.__dict__
    with detops.patch_torchvision(training=False):
        assert all(a is b for a, b in zip(_snapshot(TRAINING_ATTRIBUTES), before))
    with detops.patch_torchvision(ops=(), training=True):
        assert all(a is b for a, b in zip(_snapshot(INFERENCE_ATTRIBUTES), before[len(TRAINING_ATTRIBUTES) :]))


# ---- the pieces: Matcher, BoxCoder, the RPN's and ROI heads' assignment, RetinaNet's and SSD's losses ----


def _boxes(g, n, size=100.0, min_wh=1.0):
    xy = torch.rand(n, 2, generator=g) * size
    return torch.cat([xy, xy + min_wh + torch.rand(n, 2, generator=g) * size / 2], 1)


def _quality_matrices(g):
    """IoU-like matrices with exact ties (rows and columns repeated), values at the thresholds, NaN."""
    m = torch.rand(6, 40, generator=g)
    m[:, 5] = m[:, 3]  # two predictions tied for every object
    m[2] = m[1]  # two identical objects
    m[0, 7], m[3, 9], m[4, 11] = 0.7, 0.3, 0.5  # exactly at thresholds (float32 rounding of the Python floats)
    m[5, 13] = torch.nextafter(torch.tensor(0.7), torch.tensor(0.0))
    zero_row = torch.rand(3, 30, generator=g)
    zero_row[1] = 0  # an object that overlaps nothing: every prediction ties its best (0)
    nan = torch.rand(4, 25, generator=g)
    nan[1, 3] = float("nan")
    nan[:, 8] = float("nan")
    one = torch.rand(1, 17, generator=g)
    return [m, zero_row, nan, one, m.double(), (m * 4).round() / 4]


@pytest.mark.parametrize(
    "high, low, allow", [(0.7, 0.3, True), (0.5, 0.4, False), (0.5, 0.5, False), (0.7, 0.3, False)]
)
def test_matcher_equals_torchvision(high, low, allow, gen):
    matcher = det_utils.Matcher(high, low, allow_low_quality_matches=allow)
    ssd_matcher = det_utils.SSDMatcher(high)
    for m in _quality_matrices(gen):
        want, want_ssd = matcher(m.clone()), ssd_matcher(m.clone())
        with detops.patch_torchvision(training=True):
            got, got_ssd = matcher(m.clone()), ssd_matcher(m.clone())
        assert torch.equal(got, want) and torch.equal(got_ssd, want_ssd)


def test_matcher_errors_are_torchvisions():
    matcher = det_utils.Matcher(0.7, 0.3)
    for empty, message in [(torch.zeros(0, 5), "No ground-truth boxes"), (torch.zeros(3, 0), "No proposal boxes")]:
        for training in (False, True):
            with detops.patch_torchvision(training=training), pytest.raises(ValueError, match=message):
                matcher(empty)


def test_box_coder_encode_equals_torchvision(gen):
    gt, anchors = _boxes(gen, 500), _boxes(gen, 500)
    gt[:3] = torch.tensor([[0.0, 0, 2, 2], [0, 0, 300, 300], [10, 10, 10.5, 40]])
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (0.3, 7.0, 2.5, 1.0)]:
        coder = det_utils.BoxCoder(weights)
        want_single = coder.encode_single(gt, anchors)
        want_list = coder.encode([gt[:200], gt[200:]], [anchors[:200], anchors[200:]])
        with detops.patch_torchvision(training=True):
            got_single = coder.encode_single(gt, anchors)
            got_list = coder.encode([gt[:200], gt[200:]], [anchors[:200], anchors[200:]])
            # Mixed dtypes go to torchvision's code, which promotes.
            mixed = coder.encode_single(gt.double(), anchors)
        torch.testing.assert_close(got_single, want_single, rtol=1e-6, atol=1e-6)
        for a, b in zip(got_list, want_list):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        assert mixed.dtype == torch.float64


def _image_targets(g, size, counts=(0, 50, 3), num_classes=5):
    """Per-image targets: an image without objects, one with many (a tiny 2 px box and an image-sized one
    among them), one with a few."""
    targets = []
    for n in counts:
        xy = torch.rand(n, 2, generator=g) * (size - 8)
        wh = 2 + torch.rand(n, 2, generator=g) * size / 3
        boxes = torch.cat([xy, (xy + wh).clamp(max=size)], 1)
        if n >= 2:
            boxes[0] = torch.tensor([0.0, 0.0, size, size])
            boxes[1] = torch.tensor([5.0, 5.0, 7.0, 7.0])
        targets.append({"boxes": boxes, "labels": torch.randint(1, num_classes, (n,), generator=g)})
    return targets


def _anchors(g, count, size):
    return _boxes(g, count, size * 0.8, min_wh=1.0)


def _rpn(similarity=None):
    rpn = tv_rpn.RegionProposalNetwork(
        None, None, 0.7, 0.3, 256, 0.5, dict(training=1, testing=1), dict(training=1, testing=1), 0.7
    )
    if similarity is not None:
        rpn.box_similarity = similarity
    return rpn


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    else:
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)


def test_rpn_assign_targets_to_anchors_equals_torchvision(gen):
    targets = _image_targets(gen, 96.0)
    anchor = _anchors(gen, 700, 96.0)
    anchor[:3] = targets[1]["boxes"][:3]  # IoU exactly 1, and the tiny box's only good anchor
    anchors = [anchor.clone() for _ in targets]
    # A model built under the inference patch holds detops' box_iou; a custom similarity goes to torchvision.
    for similarity in (None, detops.box_iou, lambda a, b: tv_boxes.box_iou(a, b) ** 0.5):
        rpn = _rpn(similarity)
        want = rpn.assign_targets_to_anchors(anchors, targets)
        with detops.patch_torchvision(training=True):
            got = rpn.assign_targets_to_anchors(anchors, targets)
        _assert_same(got, want)
        assert set(want[0][0].tolist()) == {0.0} and -1.0 in want[0][1].tolist()  # background image; ignored


def _roi_heads(allow_low=False):
    heads = tv_roi_heads.RoIHeads(None, None, None, 0.5, 0.5, 64, 0.25, None, 0.05, 0.5, 100)
    if allow_low:
        heads.proposal_matcher = det_utils.Matcher(0.5, 0.3, allow_low_quality_matches=True)
    return heads


@pytest.mark.parametrize("allow_low", [False, True])
def test_roi_heads_training_samples_equal_torchvision(allow_low, gen):
    targets = _image_targets(gen, 96.0)
    proposals = [_anchors(gen, n, 96.0) for n in (120, 300, 75)]  # unequal counts, as after the RPN's NMS
    heads = _roi_heads(allow_low)
    torch.manual_seed(0)
    want = heads.select_training_samples([p.clone() for p in proposals], targets)
    with detops.patch_torchvision(training=True):
        torch.manual_seed(0)
        got = heads.select_training_samples([p.clone() for p in proposals], targets)
        assigned = heads.assign_targets_to_proposals(
            proposals, [t["boxes"] for t in targets], [t["labels"] for t in targets]
        )
    _assert_same(got[:3], want[:3])  # proposals, matched indices and labels: exactly the same draws
    for a, b in zip(got[3], want[3]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert [len(x) for x in assigned[0]] == [120, 300, 75] and set(assigned[1][0].tolist()) == {0}


def test_roi_heads_short_labels_raise_a_clear_error(gen):
    targets = _image_targets(gen, 96.0, counts=(4,))
    with detops.patch_torchvision(training=True), pytest.raises(ValueError, match=r"targets\[0\]\['labels'\] has 2"):
        _roi_heads().assign_targets_to_proposals(
            [_anchors(gen, 30, 96.0)], [targets[0]["boxes"]], [targets[0]["labels"][:2]]
        )


def _tiny_retinanet(num_classes=5, loss_type="l1"):
    backbone = torch.nn.Conv2d(3, 8, 1)
    backbone.out_channels = 8
    model = D.RetinaNet(backbone, num_classes, head=tv_retinanet.RetinaNetHead(8, 9, num_classes))
    model.head.regression_head._loss_type = loss_type
    return model


def _retinanet_losses(model, targets, anchors, g, patched):
    B, A, C = len(targets), anchors[0].size(0), model.head.classification_head.num_classes
    gen = torch.Generator().manual_seed(int(torch.randint(0, 1000, (1,), generator=g)))
    logits = (torch.randn(B, A, C, generator=gen) * 3).requires_grad_()
    regression = (torch.randn(B, A, 4, generator=gen) * 0.5).requires_grad_()
    with detops.patch_torchvision(training=patched):
        losses = model.compute_loss(targets, {"cls_logits": logits, "bbox_regression": regression}, anchors)
    sum(losses.values()).backward()
    return losses, logits.grad, regression.grad


@pytest.mark.parametrize("loss_type", ["l1", "smooth_l1", "giou", "diou", "ciou"])
def test_retinanet_loss_equals_torchvision(loss_type, gen):
    model = _tiny_retinanet(loss_type=loss_type)
    targets = _image_targets(gen, 96.0)
    targets[2]["labels"][0] = -1  # torchvision's indexing counts a negative label from the end: so does the patch
    anchors = [_anchors(gen, 600, 96.0)] * 3
    want = _retinanet_losses(model, targets, anchors, torch.Generator().manual_seed(1), False)
    got = _retinanet_losses(model, targets, anchors, torch.Generator().manual_seed(1), True)
    for k in want[0]:
        torch.testing.assert_close(got[0][k], want[0][k], rtol=1e-5, atol=0)
    for a, b in zip(got[1:], want[1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


def test_retinanet_label_out_of_range_raises_as_torchvision(gen):
    model = _tiny_retinanet()
    targets = _image_targets(gen, 96.0, counts=(3,))
    targets[0]["labels"][0] = 5  # num_classes is 5
    anchors = [_anchors(gen, 300, 96.0)]
    anchors[0][0] = targets[0]["boxes"][0]
    for patched in (False, True):
        with pytest.raises(IndexError):
            _retinanet_losses(model, targets, anchors, gen, patched)


def _tiny_ssd(num_classes=5, positive_fraction=0.25):
    backbone = torch.nn.Conv2d(3, 8, 1)
    generator = D.anchor_utils.DefaultBoxGenerator([[2], [2, 3]])
    head = tv_ssd.SSDHead([8, 8], generator.num_anchors_per_location(), num_classes)
    return tv_ssd.SSD(backbone, generator, (64, 64), num_classes, head=head, positive_fraction=positive_fraction)


def _ssd_losses(model, targets, anchors, seed, patched, num_classes=5):
    gen = torch.Generator().manual_seed(seed)
    B, A = len(targets), anchors[0].size(0)
    logits = (torch.randn(B, A, num_classes, generator=gen) * 2).requires_grad_()
    regression = torch.randn(B, A, 4, generator=gen).requires_grad_()
    with detops.patch_torchvision(training=patched):
        matched = []
        for a, t in zip(anchors, targets):  # SSD.forward's loop, through the (patched) matcher
            if t["boxes"].numel() == 0:
                matched.append(torch.full((A,), -1, dtype=torch.int64))
            else:
                matched.append(model.proposal_matcher(tv_boxes.box_iou(t["boxes"], a)))
        losses = model.compute_loss(targets, {"cls_logits": logits, "bbox_regression": regression}, anchors, matched)
    sum(losses.values()).backward()
    return losses, logits.grad, regression.grad


@pytest.mark.parametrize("positive_fraction", [0.25, 0.3])  # negatives per positive: 3, and 2.33 (torch's sort)
@pytest.mark.parametrize("crowded", [False, True])  # True: more than a quarter of the anchors positive
def test_ssd_loss_equals_torchvision(positive_fraction, crowded, gen):
    model = _tiny_ssd(positive_fraction=positive_fraction)
    targets = _image_targets(gen, 96.0)
    anchor = _anchors(gen, 400, 96.0)
    if crowded:  # anchors near most of the third image's objects
        anchor = torch.cat([targets[1]["boxes"][:45] + torch.rand(45, 4, generator=gen) * 0.2, anchor[:105]])
    anchors = [anchor] * 3
    targets[2]["labels"][1] = 0  # a background label on an object: a match that is not a positive
    want = _ssd_losses(model, targets, anchors, 3, False)
    got = _ssd_losses(model, targets, anchors, 3, True)
    positives = model.proposal_matcher(tv_boxes.box_iou(targets[1]["boxes"], anchor)) >= 0
    assert (positives.sum() > anchor.size(0) / 4) == crowded
    for k in want[0]:
        torch.testing.assert_close(got[0][k], want[0][k], rtol=1e-5, atol=0)
    for a, b in zip(got[1:], want[1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


# ---- whole models in train mode: the loss dict and every parameter's gradient ----

MODELS = {
    # Small images keep the backbones cheap; a smaller ROI batch keeps Faster R-CNN v2's conv box head cheap.
    "fasterrcnn_resnet50_fpn_v2": (
        dict(min_size=64, max_size=64, box_batch_size_per_image=64, rpn_post_nms_top_n_train=300),
        64,
    ),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (dict(min_size=96, max_size=96), 96),
    "retinanet_resnet50_fpn": (dict(min_size=64, max_size=64), 64),
    "ssd300_vgg16": ({}, 160),  # SSD resizes to its fixed 300 x 300 (ssdlite: 320 x 320)
    "ssdlite320_mobilenet_v3_large": ({}, 160),
}


def _train_step(model, images, targets, patched):
    torch.manual_seed(0)  # the samplers' draws
    torch.backends.cudnn.deterministic = True  # on CUDA, two runs of torchvision itself must agree first
    model.zero_grad()
    with detops.patch_torchvision(training=patched):
        losses = model(images, targets)
    sum(losses.values()).backward()
    return losses, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", list(MODELS))
def test_model_losses_and_gradients_equal_torchvision(name, device):
    kwargs, size = MODELS[name]
    torch.manual_seed(0)
    model = getattr(D, name)(weights=None, weights_backbone=None, num_classes=5, **kwargs).train().to(device)
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, size, size, generator=g).to(device) for _ in range(2)]
    targets = [{k: v.to(device) for k, v in t.items()} for t in _image_targets(g, float(size), counts=(0, 50))]
    deterministic = torch.backends.cudnn.deterministic
    try:
        want_losses, want_grads = _train_step(model, images, targets, False)
        got_losses, got_grads = _train_step(model, images, targets, True)
    finally:
        torch.backends.cudnn.deterministic = deterministic
    assert got_losses.keys() == want_losses.keys()
    for k in want_losses:
        torch.testing.assert_close(got_losses[k], want_losses[k], rtol=1e-5, atol=0, msg=k)
    assert got_grads.keys() == want_grads.keys() and len(want_grads) == sum(1 for p in model.parameters())
    # Each gradient entry is a float32 sum over anchors and pixels that the batched losses add in another
    # order, so its rounding is relative to the terms summed, not to a sum they cancel to: 1e-5 of the
    # tensor's largest entry. Gradients that are zero but for rounding (a bias feeding a batch norm, which
    # subtracts its mean) are noise in both runs: 1e-6 of the model's largest gradient (1e-7 failed by 5% on one CPU).
    largest = max(g.abs().max().item() for g in want_grads.values())
    for n, want in want_grads.items():
        atol = 1e-5 * want.abs().max().item() + 1e-6 * largest
        torch.testing.assert_close(got_grads[n], want, rtol=1e-5, atol=atol, msg=lambda m, n=n: f"{n}: {m}")


# ---- bad input: torchvision's error or a clearer one, never a crash or a different loss ----


def _error(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 (the point is to compare whatever is raised)
        return type(e), str(e)
    return None


@pytest.mark.parametrize(
    "builder, kwargs",
    [
        (D.fasterrcnn_mobilenet_v3_large_320_fpn, dict(min_size=64, max_size=64)),
        (D.retinanet_resnet50_fpn, dict(min_size=64, max_size=64)),
        (D.ssdlite320_mobilenet_v3_large, {}),
    ],
)
def test_bad_targets_give_torchvisions_errors(builder, kwargs):
    torch.manual_seed(0)
    model = builder(weights=None, weights_backbone=None, num_classes=5, **kwargs).train()
    images = [torch.rand(3, 64, 64) for _ in range(2)]
    good = {"boxes": torch.tensor([[1.0, 2, 30, 40]]), "labels": torch.tensor([1])}
    bad = [
        {"boxes": torch.tensor([[1.0, 2, 30, 40, 5]]), "labels": torch.tensor([1])},  # wrong shape
        {"boxes": torch.tensor([1.0, 2, 30, 40]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[30.0, 2, 1, 40]]), "labels": torch.tensor([1])},  # x2 < x1
        {"labels": torch.tensor([1])},  # no boxes
    ]
    for target in bad:
        want = _error(lambda: model(images, [good, target]))
        with detops.patch_torchvision(training=True):
            got = _error(lambda: model(images, [good, target]))
        assert want is not None and got == want
    if builder is not D.fasterrcnn_mobilenet_v3_large_320_fpn:
        return  # the losses' label checks: the RetinaNet and SSD tests above, without a backbone
    # A label out of range fails where Fast R-CNN's cross-entropy reads it.
    target = {"boxes": torch.tensor([[1.0, 2, 60, 60]]), "labels": torch.tensor([9])}
    want = _error(lambda: model(images, [good, target]))
    with detops.patch_torchvision(training=True):
        got = _error(lambda: model(images, [good, target]))
    assert want is not None and got is not None and got[0] is want[0]


def test_nan_boxes_give_torchvisions_losses(gen):
    # NaN passes torchvision's degenerate-box check (comparisons with NaN are false): the losses it gives
    # (NaN or not, term by term) must come out the same.
    targets = _image_targets(gen, 1.0, counts=(0, 6, 3))
    for t in targets:
        t["boxes"] = t["boxes"].clamp(0, 1)
    targets[1]["boxes"][2, 1] = float("nan")
    anchors = [_anchors(gen, 300, 1.0)] * 3
    model = _tiny_ssd()
    want = _ssd_losses(model, targets, anchors, 4, False)[0]
    got = _ssd_losses(model, targets, anchors, 4, True)[0]
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=0, equal_nan=True)
    rpn_targets = [{"boxes": t["boxes"] * 96} for t in targets]
    rpn_anchors = [a * 96 for a in anchors]
    _assert_same(
        _rpn().assign_targets_to_anchors(rpn_anchors, rpn_targets)[0],
        _patched(lambda: _rpn().assign_targets_to_anchors(rpn_anchors, rpn_targets))[0],
    )
    retina = _tiny_retinanet()
    for t in rpn_targets:
        t["labels"] = torch.ones(t["boxes"].size(0), dtype=torch.int64)
    want = _retinanet_losses(retina, rpn_targets, rpn_anchors, torch.Generator().manual_seed(2), False)[0]
    got = _retinanet_losses(retina, rpn_targets, rpn_anchors, torch.Generator().manual_seed(2), True)[0]
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=0, equal_nan=True)


def test_ssd_label_out_of_range_raises_as_torchvision(gen):
    targets = _image_targets(gen, 1.0, counts=(3,))
    targets[0]["boxes"] = targets[0]["boxes"].clamp(0, 1)
    targets[0]["labels"][0] = 7
    anchors = [_anchors(gen, 200, 1.0)]
    anchors[0][0] = targets[0]["boxes"][0]
    model = _tiny_ssd()
    want = _error(lambda: _ssd_losses(model, targets, anchors, 5, False))
    got = _error(lambda: _ssd_losses(model, targets, anchors, 5, True))
    assert want is not None and got[0] is want[0]


def _patched(fn):
    with detops.patch_torchvision(training=True):
        return fn()


# ---- host synchronisations on CUDA ----


def _count_syncs(fn):
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum(1 for w in caught if "synchroniz" in str(w.message))


@pytest.mark.cuda
def test_patched_target_assignment_makes_fewer_host_syncs():
    g = torch.Generator().manual_seed(0)
    targets = [{k: v.cuda() for k, v in t.items()} for t in _image_targets(g, 96.0, counts=(5, 50, 3, 8))]
    anchors = [_anchors(g, 2000, 96.0).cuda()] * 4
    boxes, labels = [t["boxes"] for t in targets], [t["labels"] for t in targets]
    rpn, heads = _rpn(), _roi_heads()
    proposals = [_anchors(g, n, 96.0).cuda() for n in (500, 700, 300, 650)]
    matcher = det_utils.Matcher(0.5, 0.4, allow_low_quality_matches=True)
    cases = {
        "rpn": lambda: rpn.assign_targets_to_anchors(anchors, targets),
        "roi_heads": lambda: heads.assign_targets_to_proposals(proposals, boxes, labels),
        "matcher": lambda: [matcher(tv_boxes.box_iou(b, a)) for b, a in zip(boxes, anchors)],
    }
    for name, fn in cases.items():
        fn()  # warm-up: first calls may initialise CUDA state
        torchvision_syncs = _count_syncs(fn)
        with detops.patch_torchvision(training=True):
            fn()
            detops_syncs = _count_syncs(fn)
        assert torchvision_syncs >= len(targets), (name, torchvision_syncs)
        assert detops_syncs == 0, (name, detops_syncs)
