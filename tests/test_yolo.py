"""The yolo_candidates op against its reference, and detops.yolo.non_max_suppression against the usual
per-image torchvision loop (both in detops.reference.yolo)."""

import math

import pytest
import torch

from detops import yolo
from detops.reference import yolo as ref

cuda = pytest.mark.cuda
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


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
    [
        dict(),
        dict(multi_label=True),
        dict(agnostic=True),
        dict(classes=[1, 3]),
        dict(max_det=5),
        dict(max_candidates=100),
    ],
)
@pytest.mark.parametrize("conf", [0.25, 0.01])
@pytest.mark.parametrize("head", ["v5", "v8"])
def test_same_detections_as_per_image_loop(g, kw, conf, head, device):
    pred = v5_head(3, 1500, 12, g)
    if head == "v8":
        pred = v8_of(pred)
    got = yolo.non_max_suppression(pred.to(device), conf, 0.45, **kw)
    expected = ref.yolo_non_max_suppression(pred, conf, 0.45, **kw)
    assert len(got) == 3
    for x, y in zip(got, expected):
        assert x.shape[1] == 6 and x.device.type == device.type
        assert torch.equal(x.cpu(), y)


def _sorted_rows(x):
    """Detections as a set (sorted rows): with tied confidences the order between classes may differ."""
    return sorted(map(tuple, x.tolist()))


@pytest.mark.parametrize("head", ["v5", "v8"])
@pytest.mark.parametrize(
    "kw",
    [
        dict(max_candidates=150),
        dict(max_candidates=0),
        dict(classes=[0, 2, 5, 99]),
        dict(max_candidates=90, classes=[1, 2]),
        dict(classes=[]),
    ],
)
def test_multi_label_cap_and_classes_with_ties(g, head, kw, device):
    # Multi-label goes through multiclass_nms, with YOLO's per-image cap (max_candidates) applied first:
    # tied confidences at the cap keep the first in (prediction, class) order, as YOLO's stable sort does.
    # (max_det is out of reach: which of several tied detections its cut keeps is a matter of tie order.)
    kw = dict(kw, max_det=10_000)
    pred = v5_head(3, 400, 6, g)
    pred[..., 4:] = (pred[..., 4:] * 8).round() / 8  # many ties, also at the cap
    if head == "v8":
        pred = v8_of(pred)
    expected = ref.yolo_non_max_suppression(pred, 0.1, 0.45, multi_label=True, **kw)
    pred = pred.to(device)
    before = pred.clone()
    got = yolo.non_max_suppression(pred, 0.1, 0.45, multi_label=True, **kw)
    for x, y in zip(got, expected):
        assert _sorted_rows(x) == _sorted_rows(y)
        assert bool((x[1:, 4] <= x[:-1, 4]).all())  # by decreasing confidence
    assert torch.equal(pred, before)  # the caller's tensor is never written to


def test_empty_images_and_bad_input(g, device):
    pred = v5_head(2, 100, 4, g)
    pred[0, :, 4] = 0  # no objectness in image 0
    pred = pred.to(device)
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
    for multi_label in (False, True):
        with pytest.raises(ValueError, match="no class channels"):
            yolo.non_max_suppression(pred[..., :5], 0.25, 0.45, multi_label=multi_label, head="v5")


def test_head_auto_detection(g, device):
    pred = v5_head(1, 300, 3, g).to(device)
    a = yolo.non_max_suppression(v8_of(pred), 0.2, 0.5)
    b = yolo.non_max_suppression(v8_of(pred), 0.2, 0.5, head="v8")
    assert torch.equal(a[0], b[0])


# ---- the yolo_candidates op ----


def candidates_of(pred, conf, objectness=True):
    return torch.ops.detops.yolo_candidates(pred, conf, objectness)


def candidates_on(device, pred, conf, objectness=True):
    """The op on `device` (strides kept: .to keeps a channel-major view's layout), the result on the CPU."""
    return [t.cpu() for t in candidates_of(pred.to(device), conf, objectness)]


def assert_same_candidates(got, expected):
    names = ("rows", "boxes", "scores", "labels")
    for name, x, y in zip(names, got, expected):
        assert x.dtype == y.dtype and x.shape == y.shape, name
        torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("classes", [80, 13, 3])  # 13 and 3: a tail after the eight-class vector steps
@pytest.mark.parametrize("conf", [0.0, 0.001, 0.25, 0.6, 1.0])
def test_candidates_match_reference(g, dtype, classes, conf, device):
    pred = v5_head(2, 700, classes, g).to(dtype)
    assert_same_candidates(candidates_on(device, pred, conf), ref.yolo_candidates(pred, conf))
    v8 = v8_of(pred).transpose(1, 2)  # [B, N, 4 + C] view of a channels-first head: class stride N
    assert_same_candidates(candidates_on(device, v8, conf, False), ref.yolo_candidates(v8, conf, False))


@pytest.mark.parametrize("n", [1100, 1])
def test_candidates_across_chunks_and_images(g, n, device):
    # 3 x 1100 rows: the CPU kernel's 2048-row chunks and its 16-row blocks (v8 layout) straddle image ends.
    pred = v5_head(3, n, 80, g)
    for conf in (0.001, 0.3):
        assert_same_candidates(candidates_on(device, pred, conf), ref.yolo_candidates(pred, conf))
        for objectness in (False, True):  # a channel-major head with and without an objectness channel
            cm = pred.transpose(1, 2).contiguous().transpose(1, 2)
            assert_same_candidates(
                candidates_on(device, cm, conf, objectness), ref.yolo_candidates(cm, conf, objectness)
            )


def test_candidates_ties_pick_the_first_class(g, device):
    pred = v5_head(1, 64, 21, g)
    pred[0, :, 5:] = 0.1
    for r in range(64):  # the maximum at two or three places, in the vector part and the tail
        first = r % 21
        pred[0, r, 5 + first] = pred[0, r, 5 + (first + 1 + r % 5) % 21] = 0.9
        pred[0, r, 5 + (first + 9) % 21] = 0.9 if r % 2 else 0.5
    pred[0, :, 4] = 0.8
    rows, _, _, labels = candidates_on(device, pred, 0.25)
    assert rows.tolist() == list(range(64))
    assert_same_candidates(candidates_on(device, pred, 0.25), ref.yolo_candidates(pred, 0.25))
    cm = pred.transpose(1, 2).contiguous().transpose(1, 2)  # channel-major: rows in vector lanes
    assert_same_candidates(candidates_on(device, cm, 0.25), ref.yolo_candidates(pred, 0.25))
    # Products that round to the same float: distinct class scores, equal confidences; the first wins.
    pred[0, 0, 5:] = 0.0
    pred[0, 0, 5 + 3] = 0.7
    pred[0, 0, 5 + 17] = torch.nextafter(torch.tensor(0.7), torch.tensor(1.0))
    pred[0, 0, 4] = 0.3
    assert_same_candidates(candidates_on(device, pred, 0.25), ref.yolo_candidates(pred, 0.25))


def test_candidates_at_the_threshold(g, device):
    thr = 0.25
    t = torch.tensor(thr)
    pred = v5_head(1, 8, 16, g)
    pred[0, :, 5:] = 0.5
    pred[0, :, 5] = 1.0
    # objectness at, just above, just below the threshold; scores then exactly objectness x 1.
    pred[0, :, 4] = torch.stack(
        [
            t,
            torch.nextafter(t, torch.tensor(1.0)),
            torch.nextafter(t, torch.tensor(0.0)),
            t + 1e-5,
            t - 1e-5,
            t + 1e-5,
            t,
            t,
        ]
    )
    rows = candidates_on(device, pred, thr)[0]
    assert rows.tolist() == [1, 3, 5]
    assert_same_candidates(candidates_on(device, pred, thr), ref.yolo_candidates(pred, thr))
    # A best score exactly at the threshold is not a candidate (> as in YOLO), one ulp above is.
    pred[0, :, 4] = 1.0
    pred[0, :, 5:] = 0.1
    pred[0, 0, 7] = thr
    pred[0, 1, 7] = torch.nextafter(t, torch.tensor(1.0))
    assert candidates_on(device, pred, thr)[0].tolist() == [1]


def test_candidates_nan_inf_negative(g, device):
    pred = v5_head(1, 10, 12, g)
    pred[0, :, 4] = 0.9
    pred[0, 0, 4] = float("nan")  # NaN objectness: never above
    pred[0, 1, 9] = float("nan")  # NaN class score: max is NaN, not a candidate
    pred[0, 2, 5] = float("inf")  # inf: the best, a candidate
    pred[0, 3, 4] = float("inf")  # inf objectness: inf x positive scores
    pred[0, 4, 5:] = -1.0  # negative scores: never above a threshold >= 0
    pred[0, 5, 0] = float("nan")  # a NaN box stays a candidate; NMS ranks it
    got = candidates_on(device, pred, 0.25)
    assert 0 not in got[0].tolist() and 1 not in got[0].tolist() and 4 not in got[0].tolist()
    assert 2 in got[0].tolist() and 5 in got[0].tolist()
    assert_same_candidates(got, ref.yolo_candidates(pred, 0.25))


def test_candidates_empty_and_bad_input(g, device):
    for shape in [(0, 10, 9), (2, 0, 9)]:
        got = candidates_of(torch.rand(shape, device=device), 0.25)
        assert [t.shape for t in got] == [(0,), (0, 4), (0,), (0,)]
    pred = v5_head(1, 10, 3, g).to(device)
    with pytest.raises(RuntimeError, match="no class channels"):
        candidates_of(pred[..., :5], 0.25)
    with pytest.raises(RuntimeError, match="no class channels"):
        candidates_of(pred[..., :4], 0.25, False)
    with pytest.raises(RuntimeError, match=r"shape \[B, N"):
        candidates_of(pred[0], 0.25)
    with pytest.raises(RuntimeError, match="floating-point"):
        candidates_of(pred.to(torch.int32), 0.25)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(RuntimeError, match="conf_thres"):
            candidates_of(pred, bad)


def test_candidates_opcheck_and_compile(g, device):
    pred = v5_head(2, 50, 7, g).to(device)
    torch.library.opcheck(torch.ops.detops.yolo_candidates, (pred, 0.25, True))
    torch.library.opcheck(torch.ops.detops.yolo_candidates, (v8_of(pred).transpose(1, 2), 0.1, False))
    import torch._dynamo.config as dynamo_config

    with dynamo_config.patch(capture_dynamic_output_shape_ops=True):
        f = torch.compile(lambda p: candidates_of(p, 0.25)[1] * 2, fullgraph=True, backend="eager")
        assert torch.equal(f(pred), candidates_of(pred, 0.25)[1] * 2)


@cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_candidates_cuda_matches_cpu(g, dtype):
    pred = v5_head(3, 900, 80, g).to(dtype)
    pred[0, 5, 9] = float("nan")
    for conf in (0.001, 0.25):
        assert_same_candidates([t.cpu() for t in candidates_of(pred.cuda(), conf)], candidates_of(pred, conf))
        v8 = v8_of(pred).transpose(1, 2)
        assert_same_candidates([t.cpu() for t in candidates_of(v8.cuda(), conf, False)], candidates_of(v8, conf, False))
    out = yolo.non_max_suppression(pred.float().cuda(), 0.25, 0.45)
    for x, y in zip(out, yolo.non_max_suppression(pred.float(), 0.25, 0.45)):
        assert torch.equal(x.cpu(), y)


# ---- the head argument: tuples, ambiguous layouts ----


def test_tuple_and_list_read_as_their_first_element(g, device):
    pred = v8_of(v5_head(2, 300, 5, g)).to(device)
    want = yolo.non_max_suppression(pred, 0.2, 0.5)
    for wrapped in ((pred, [torch.zeros(1)]), [pred]):  # what an ultralytics model returns in eval mode
        got = yolo.non_max_suppression(wrapped, 0.2, 0.5)
        assert all(torch.equal(x, y) for x, y in zip(got, want))
    with pytest.raises(ValueError, match="empty tuple"):
        yolo.non_max_suppression((), 0.2, 0.5)
    with pytest.raises(TypeError, match="prediction must be a Tensor"):
        yolo.non_max_suppression(("not a head",), 0.2, 0.5)


@pytest.mark.parametrize("shape", [(1, 84, 84), (2, 84, 100), (1, 63, 85), (1, 85, 63)])
def test_ambiguous_layout_needs_head(g, shape, device):
    # [1, 84, 84] is YOLOv8 at image size 64 (84 predictions, 80 classes); read as v5 it gave 26 detections.
    pred = torch.rand(shape, generator=g)
    pred[:, :2] *= 640
    pred[:, 2:4] = pred[:, 2:4] * 100 + 5
    pred = pred.to(device)
    with pytest.raises(ValueError, match=r"ambiguous.*head='v5' or head='v8'"):
        yolo.non_max_suppression(pred, 0.25, 0.45)
    if shape[1] > 4:  # as a v8 head (channels first), with head= it is what the per-image loop gives
        v8 = torch.cat([pred[:, :4], torch.sigmoid(pred[:, 4:] * 4 - 2)], dim=1)
        got = yolo.non_max_suppression(v8, 0.25, 0.45, head="v8")
        want = ref.yolo_non_max_suppression(v8.cpu(), 0.25, 0.45, head="v8")
        assert [x.shape[0] for x in got] == [y.shape[0] for y in want] and got[0].shape[0] > 26
        assert all(torch.equal(x.cpu(), y) for x, y in zip(got, want))


# ---- YOLO-OBB heads (rotated=True) ----


def obb_head(b, n, c, g, ties=True, objects=30, size=300.0):
    """[b, 4 + c + 1, n]: jittered copies of a few rotated objects (so NMS has work), angles in radians."""
    p = torch.rand(b, 4 + c + 1, n, generator=g)
    p[:, :2] *= size
    p[:, 2:4] = p[:, 2:4] * 40 + 4
    src = torch.randint(0, objects, (b, n), generator=g)
    p[:, :4] = torch.gather(p[:, :4, :objects], 2, src[:, None].expand(-1, 4, -1)) + torch.randn(b, 4, n, generator=g)
    p[:, -1] = torch.gather(p[:, -1, :objects] * math.pi - math.pi / 4, 1, src) + torch.randn(b, n, generator=g) * 0.1
    s = torch.sigmoid(torch.randn(b, c, n, generator=g) * 2 - 1)
    p[:, 4 : 4 + c] = (s * 8).round() / 8 if ties else s  # ties: many equal scores, in and across classes
    return p


OBB_KW = [
    dict(),
    dict(multi_label=True),
    dict(agnostic=True),
    dict(classes=[0, 2]),
    dict(max_det=7),
    dict(max_candidates=50),
    dict(multi_label=True, agnostic=True, max_candidates=80),
]


def assert_same(got, want):
    assert len(got) == len(want)
    for x, y in zip(got, want):
        assert x.shape == y.shape and x.dtype == y.dtype
        torch.testing.assert_close(x.cpu(), y.cpu(), rtol=0, atol=0, equal_nan=True)  # bit for bit


@pytest.mark.parametrize("kw", OBB_KW)
@pytest.mark.parametrize("iou", [0.1, 0.6])
def test_obb_exact_matches_reference(g, kw, iou, device):
    pred = obb_head(2, 160, 3, g)
    got = yolo.non_max_suppression(pred.to(device), 0.3, iou, rotated=True, **kw)
    assert_same(got, ref.yolo_obb_non_max_suppression(pred, 0.3, iou, **kw))
    for x in got:  # decreasing confidence, [cx, cy, w, h, conf, class, angle]
        assert x.shape[1] == 7 and bool((x[1:, 4] <= x[:-1, 4]).all())


@pytest.mark.parametrize("kw", OBB_KW)
@pytest.mark.parametrize("iou", [0.0, 0.1, 0.7])
def test_obb_probiou_matches_reference(g, kw, iou, device):
    pred = obb_head(3, 400, 4, g).to(device)
    assert_same(
        yolo.non_max_suppression(pred, 0.3, iou, rotated=True, overlap="probiou", **kw),
        ref.yolo_obb_non_max_suppression(pred, 0.3, iou, overlap="probiou", **kw),
    )


def ultralytics_nms():
    return pytest.importorskip("ultralytics.utils.nms").non_max_suppression


def ultralytics_kw(kw):
    kw = dict(kw)
    if "max_candidates" in kw:
        kw["max_nms"] = kw.pop("max_candidates")
    return kw


@pytest.mark.parametrize("kw", OBB_KW)
@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_obb_probiou_same_detections_as_ultralytics(g, kw, ties, dtype, device):
    nms = ultralytics_nms()
    pred = obb_head(3, 500, 5, g, ties=ties).to(device, dtype)
    for iou in (0.1, 0.7):
        want = nms(pred, 0.3, iou, nc=5, rotated=True, max_time_img=1e3, **ultralytics_kw(kw))
        assert_same(yolo.non_max_suppression(pred, 0.3, iou, rotated=True, overlap="probiou", **kw), want)


def unsafe_images(g):
    """Images where boxes of two classes can overlap even after ultralytics' 7680 px class offset: zero-size
    boxes (probIoU about 1 at any distance), boxes wider than the offset, centres spread past it, NaN."""
    pred = obb_head(5, 120, 3, g)
    pred[0, 2:4, :40] = 0.0
    pred[1, 2, :30] = 9000.0
    pred[2, 0, :30] += 8000.0
    pred[3, 0, 5] = float("nan")
    pred[4, 2:4, :60] = 0.2  # tiny: the eps terms matter
    return pred


def test_obb_probiou_classes_that_still_overlap(g, device):
    pred = unsafe_images(g).to(device)
    for kw in (dict(), dict(multi_label=True)):
        got = yolo.non_max_suppression(pred, 0.3, 0.5, rotated=True, overlap="probiou", **kw)
        assert_same(got, ref.yolo_obb_non_max_suppression(pred, 0.3, 0.5, overlap="probiou", **kw))
    # Two zero-size boxes of different classes far apart: ultralytics' probIoU is about 1 and one goes.
    two = torch.zeros(1, 4 + 2 + 1, 2, device=device)
    two[0, :2, 1] = 500.0
    two[0, 4, 0] = two[0, 5, 1] = 0.9
    (got,) = yolo.non_max_suppression(two, 0.3, 0.5, rotated=True, overlap="probiou")
    assert got.shape[0] == 1
    (exact,) = yolo.non_max_suppression(two, 0.3, 0.5, rotated=True)
    assert exact.shape[0] == 2  # the exact rotated IoU of a zero-size box is 0: both kept


def test_obb_probiou_unsafe_images_as_ultralytics(g, device):
    nms = ultralytics_nms()
    pred = unsafe_images(g).to(device)
    for kw in (dict(), dict(multi_label=True), dict(agnostic=True)):
        want = nms(pred, 0.3, 0.5, nc=3, rotated=True, max_time_img=1e3, **ultralytics_kw(kw))
        assert_same(yolo.non_max_suppression(pred, 0.3, 0.5, rotated=True, overlap="probiou", **kw), want)


def test_obb_empty_and_bad_input(g, device):
    pred = obb_head(2, 50, 3, g).to(device)
    pred[0, 4:7] = 0.0
    for overlap in ("iou", "probiou"):
        out = yolo.non_max_suppression(pred, 0.3, 0.5, rotated=True, overlap=overlap)
        assert out[0].shape == (0, 7) and out[1].shape[0] > 0
        assert [
            o.shape for o in yolo.non_max_suppression(pred, 0.3, 0.5, rotated=True, overlap=overlap, max_det=0)
        ] == [(0, 7), (0, 7)]
        assert [o.shape for o in yolo.non_max_suppression(pred[:, :, :0], 0.3, 0.5, rotated=True, overlap=overlap)] == [
            (0, 7),
            (0, 7),
        ]
    with pytest.raises(ValueError, match="overlap must be one of"):
        yolo.non_max_suppression(pred, 0.3, 0.5, rotated=True, overlap="giou")
    with pytest.raises(ValueError, match="rotated heads only|for rotated heads"):
        yolo.non_max_suppression(v8_of(v5_head(1, 300, 3, g)), 0.3, 0.5, overlap="probiou")
    with pytest.raises(ValueError, match="rotated heads are"):
        yolo.non_max_suppression(pred, 0.3, 0.5, rotated=True, head="v5")
    with pytest.raises(ValueError, match=r"4 \+ C \+ 1"):
        yolo.non_max_suppression(pred[:, :5], 0.3, 0.5, rotated=True)
    with pytest.raises(ValueError, match="prediction must be"):
        yolo.non_max_suppression(pred[0], 0.3, 0.5, rotated=True)


# ---- the bench cases (detops/bench/cases/yolo.py) on one image, untimed ----


def bench_case(name):
    from detops.bench import registry

    return next(c for c in registry.load_cases() if c.name == name)


@pytest.mark.parametrize(
    "name", ["non_max_suppression/yolo_obb/ultralytics", "non_max_suppression/yolo_v8/ultralytics"]
)
def test_bench_cases_against_ultralytics(name):
    pytest.importorskip("ultralytics.utils.nms")
    from detops.bench import registry, runner

    case = bench_case(name)
    pair = case.build((1,), registry.Context("cpu", torch.float32, 0))
    ours, theirs = pair.detops(*pair.inputs), pair.baseline(*pair.inputs)
    assert ours[0].shape[0] > 10
    assert runner.check_outputs(pair, ours, theirs) is None
    if name.endswith("yolo_obb/ultralytics"):  # the check is equality, row for row and in order
        assert ours[0].shape == (ours[0].shape[0], 7)
        assert "differ" in runner.check_outputs(pair, ours, [theirs[0][1:]])
        assert "differ" in runner.check_outputs(pair, ours, [theirs[0].flip(0)])


def test_bench_cases_without_ultralytics_are_a_message(monkeypatch):
    from detops.bench import registry, runner

    real = registry.importlib.util.find_spec
    monkeypatch.setattr(
        registry.importlib.util, "find_spec", lambda name: None if name == "ultralytics" else real(name)
    )
    for name in ("non_max_suppression/yolo_obb/ultralytics", "non_max_suppression/yolo_v8/ultralytics"):
        row = runner.run_row(bench_case(name), "1", "cpu", torch.float32, 0, 0.001, True)
        assert row["status"] == "missing" and "pip install ultralytics" in row["message"]


def test_bench_obb_workload(g):
    from detops.bench.cases.yolo import yolo_obb_head

    pred = yolo_obb_head(2, g)
    assert pred.shape == (2, 4 + 15 + 1, 21504)
    candidates = (pred[:, 4:-1].amax(1) > 0.25).sum(1)
    assert bool(((candidates > 1500) & (candidates < 3000)).all())  # about a tenth of the rows are objects
    assert bool((pred[:, -1].abs() <= 3 * math.pi / 4 + 1).all())  # radians
