"""detops.yolo.non_max_suppression against the usual per-image torchvision loop (detops.reference.nms)."""

import pytest
import torch

from detops import yolo
from detops.reference import nms as ref


def v5_head(b, n, c, g):
    pred = torch.randn(b, n, 5 + c, generator=g)
    pred[..., :2] = torch.rand(b, n, 2, generator=g) * 640
    pred[..., 2:4] = torch.rand(b, n, 2, generator=g) * 100 + 5
    pred[..., 4:] = torch.sigmoid(pred[..., 4:] * 2 - 2)
    return pred


def v8_of(pred):
    return pred[..., [0, 1, 2, 3, *range(5, pred.shape[-1])]].transpose(1, 2).contiguous()


@pytest.fixture
def g():
    return torch.Generator().manual_seed(0)


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(multi_label=True), dict(agnostic=True), dict(classes=[1, 3]), dict(max_det=5),
     dict(max_candidates=100)],
)
@pytest.mark.parametrize("conf", [0.25, 0.01])
@pytest.mark.parametrize("head", ["v5", "v8"])
def test_same_detections_as_per_image_loop(g, kw, conf, head):
    pred = v5_head(3, 1500, 12, g)
    if head == "v8":
        pred = v8_of(pred)
    got = yolo.non_max_suppression(pred, conf, 0.45, **kw)
    expected = ref.yolo_non_max_suppression(pred, conf, 0.45, **kw)
    assert len(got) == 3
    for x, y in zip(got, expected):
        assert x.shape[1] == 6
        assert torch.equal(x, y)


def test_empty_images_and_bad_input(g):
    pred = v5_head(2, 100, 4, g)
    pred[0, :, 4] = 0  # no objectness in image 0
    out = yolo.non_max_suppression(pred, 0.25, 0.45)
    assert out[0].shape == (0, 6) and out[1].shape[0] > 0
    assert [o.shape for o in yolo.non_max_suppression(pred, 1.0, 0.45)] == [(0, 6), (0, 6)]
    with pytest.raises(ValueError, match="conf_thres"):
        yolo.non_max_suppression(pred, 1.5, 0.45)
    with pytest.raises(ValueError, match="iou_thres"):
        yolo.non_max_suppression(pred, 0.25, -0.1)
    with pytest.raises(ValueError, match="head"):
        yolo.non_max_suppression(pred, 0.25, 0.45, head="v7")
    with pytest.raises(ValueError, match="prediction"):
        yolo.non_max_suppression(pred[0], 0.25, 0.45)


def test_head_auto_detection(g):
    pred = v5_head(1, 300, 3, g)
    a = yolo.non_max_suppression(v8_of(pred), 0.2, 0.5)
    b = yolo.non_max_suppression(v8_of(pred), 0.2, 0.5, head="v8")
    assert torch.equal(a[0], b[0])
