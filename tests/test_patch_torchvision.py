"""detops.patch_torchvision: torchvision's detectors give the same detections with and without it."""

import pytest
import torch
import torchvision
import torchvision.ops.boxes as tv_boxes

import detops


def test_patch_and_undo_restore_exactly(device):
    originals = {n: getattr(tv_boxes, n) for n in ("nms", "batched_nms", "box_iou")}
    reexports = {n: getattr(torchvision.ops, n) for n in ("nms", "batched_nms", "box_iou")}
    with detops.patch_torchvision() as handle:
        assert handle.active
        for n in originals:
            assert getattr(tv_boxes, n) is not originals[n]
            assert getattr(torchvision.ops, n) is getattr(tv_boxes, n)
        b = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], device=device)
        assert tv_boxes.nms(b, torch.tensor([0.9, 0.8, 0.7], device=device), 0.5).tolist() == [0, 2]
        idxs = torch.tensor([0, 1, 0], device=device)
        assert tv_boxes.batched_nms(b, torch.tensor([0.9, 0.8, 0.7], device=device), idxs, 0.5).tolist() == [0, 1, 2]
        torch.testing.assert_close(tv_boxes.box_iou(b, b).cpu(), originals["box_iou"](b.cpu(), b.cpu()))
    for n in originals:
        assert getattr(tv_boxes, n) is originals[n] and getattr(torchvision.ops, n) is reexports[n]
    undo = detops.patch_torchvision(ops=("batched_nms",))
    assert tv_boxes.batched_nms is not originals["batched_nms"] and tv_boxes.nms is originals["nms"]
    undo()
    undo()  # twice is harmless
    assert tv_boxes.batched_nms is originals["batched_nms"]
    with pytest.raises(ValueError, match="unknown ops"):
        detops.patch_torchvision(ops=("roi_align",))


def _same_detections(model, images):
    torch.manual_seed(0)
    with torch.no_grad():
        expected = model(images)
        with detops.patch_torchvision():
            got = model(images)
    total = 0
    for e, d in zip(expected, got):
        assert e.keys() == d.keys()
        for k in e:
            assert torch.equal(e[k], d[k]), k
        total += e["boxes"].shape[0]
    return total


def _images(g, n=1, size=(3, 160, 200), device="cpu"):
    return [torch.rand(*size, generator=g).to(device) for _ in range(n)]


@pytest.mark.parametrize(
    "builder, low_threshold",
    [
        (torchvision.models.detection.fasterrcnn_resnet50_fpn_v2, ("roi_heads", "score_thresh", 0.0)),
        (torchvision.models.detection.ssd300_vgg16, ("", "score_thresh", 0.005)),
        (torchvision.models.detection.retinanet_resnet50_fpn, ("", "score_thresh", 0.0)),
    ],
)
def test_detectors_same_detections(builder, low_threshold, device):
    torch.manual_seed(0)
    kwargs = dict(weights=None, weights_backbone=None, num_classes=21)
    if builder is not torchvision.models.detection.ssd300_vgg16:
        kwargs.update(min_size=160, max_size=200)
    model = builder(**kwargs).eval().to(device)
    # Random weights score almost nothing above the default thresholds: lower them so NMS has work to do.
    owner, attr, value = low_threshold
    setattr(getattr(model, owner) if owner else model, attr, value)
    g = torch.Generator().manual_seed(1)
    assert _same_detections(model, _images(g, device=device)) > 0


def test_patched_batched_nms_keeps_torchvisions_tie_order():
    # Many exactly tied scores, more than 4000 coordinates: torchvision's per-class path orders the ties by its
    # sort; the patched batched_nms must give the same indices in the same order.
    g = torch.Generator().manual_seed(0)
    n = 3000
    xy = torch.rand(n, 2, generator=g) * 1000
    boxes = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 20], 1)
    scores = (torch.rand(n, generator=g) * 8).floor() / 8
    idxs = torch.randint(0, 5, (n,), generator=g)
    for m in (n, 900):
        want = tv_boxes.batched_nms(boxes[:m], scores[:m], idxs[:m], 0.5)
        with detops.patch_torchvision():
            got = tv_boxes.batched_nms(boxes[:m], scores[:m], idxs[:m], 0.5)
        assert torch.equal(got, want)
