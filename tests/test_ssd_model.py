"""SSD model: output shapes and prior counts, L2Norm, VGG16 weight conversion, detect_objects."""

import pytest
import torch
import torchvision

from detops.ssd.model import SSD300, L2Norm, VGGBase, load_vgg16_weights


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("backbone", ["vgg16", "resnet18", "resnet50"])
def test_ssd300_shapes_and_priors(backbone):
    model = SSD300(21, backbone=backbone).eval()
    assert model.n_priors == 8732 and model.priors_cxcy.shape == (8732, 4)
    assert model.input_size == 300
    with torch.no_grad():
        locs, scores = model(torch.randn(1, 3, 300, 300))
    assert locs.shape == (1, 8732, 4) and scores.shape == (1, 8732, 21)
    assert torch.isfinite(locs).all() and torch.isfinite(scores).all()


def test_vgg16_feature_map_sizes():
    base = VGGBase()
    with torch.no_grad():
        conv4_3, conv7 = base(torch.randn(1, 3, 300, 300))
    assert conv4_3.shape == (1, 512, 38, 38)  # pool3 uses ceil_mode: 75 -> 38
    assert conv7.shape == (1, 1024, 19, 19)
    assert base.conv6.dilation == (6, 6) and base.conv6.padding == (6, 6)


def test_tiny_config_shapes():
    model = SSD300(5, backbone="tiny")
    assert model.input_size == 160 and model.n_priors == 20 * 20 * 4 + 10 * 10 * 6 + 5 * 5 * 6 + 9 * 4 + 4
    locs, scores = model(torch.randn(2, 3, 160, 160))
    assert locs.shape == (2, model.n_priors, 4) and scores.shape == (2, model.n_priors, 5)
    (locs.sum() + scores.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


@pytest.mark.parametrize("backbone,size", [("tiny", 160), ("vgg16", 300)])
def test_forward_names_the_input_size(backbone, size):
    # the tiny SSD fed 300x300 images would lay its feature maps over more cells than it has priors for
    model = SSD300(3, backbone=backbone, width=4).eval()
    other = 300 if size == 160 else 160
    for shape in [(1, 3, other, other), (1, 3, size, other), (1, 1, size, size), (3, size, size)]:
        with pytest.raises(ValueError) as info:
            model(torch.zeros(shape))
        message = str(info.value)
        assert f"[B, 3, {size}, {size}]" in message and str(list(shape)) in message and "resize" in message
    with torch.no_grad():
        locs, _ = model(torch.zeros(2, 3, size, size))
    assert locs.shape == (2, model.n_priors, 4)


def test_priors_are_state_free_buffers():
    model = SSD300(3, backbone="tiny")
    assert "priors_cxcy" not in model.state_dict()
    assert torch.equal(model.priors_cxcy, model.create_prior_boxes())


def test_bad_backbone():
    with pytest.raises(ValueError, match="backbone"):
        SSD300(3, backbone="vgg19")


def test_l2norm():
    m = L2Norm(8, init_scale=20.0)
    x = torch.randn(2, 8, 5, 5)
    y = m(x)
    torch.testing.assert_close(y.norm(dim=1), torch.full((2, 5, 5), 20.0))
    assert m.rescale_factors.shape == (1, 8, 1, 1) and m.rescale_factors.requires_grad
    assert torch.isfinite(m(torch.zeros(1, 8, 2, 2))).all()


# ------------------------------------------------------------------------------- VGG16 weight conversion


@pytest.fixture(scope="module")
def vgg_state(tmp_path_factory):
    torch.manual_seed(1)
    state = torchvision.models.vgg16(weights=None).state_dict()  # generated, never downloaded
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(state, path)
    return state, str(path)


def test_load_vgg16_weights_from_file(vgg_state):
    state, path = vgg_state
    model = SSD300(21, backbone="vgg16")
    load_vgg16_weights(model, path)
    base = model.base
    torch.testing.assert_close(base.conv1_1.weight, state["features.0.weight"], rtol=0, atol=0)
    torch.testing.assert_close(base.conv5_3.bias, state["features.28.bias"], rtol=0, atol=0)
    fc6 = state["classifier.0.weight"].view(4096, 512, 7, 7)
    assert base.conv6.weight.shape == (1024, 512, 3, 3)
    torch.testing.assert_close(base.conv6.weight, fc6[::4, :, ::3, ::3], rtol=0, atol=0)
    torch.testing.assert_close(base.conv6.weight[5, 7, 1, 2], fc6[20, 7, 3, 6], rtol=0, atol=0)
    torch.testing.assert_close(base.conv6.bias, state["classifier.0.bias"][::4], rtol=0, atol=0)
    assert base.conv7.weight.shape == (1024, 1024, 1, 1)
    torch.testing.assert_close(base.conv7.weight[:, :, 0, 0], state["classifier.3.weight"][::4, ::4], rtol=0, atol=0)
    torch.testing.assert_close(base.conv7.bias, state["classifier.3.bias"][::4], rtol=0, atol=0)


def test_vgg16_converted_base_computes_torchvision_features(vgg_state):
    # Up to conv5_3 (+ ReLU) the converted base is torchvision's vgg16.features[:30].
    state, _ = vgg_state
    tv = torchvision.models.vgg16(weights=None)
    tv.load_state_dict(state)
    model = SSD300(21, backbone="vgg16")
    load_vgg16_weights(model, state)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = tv.features[:30](x)
        got = x
        for c in VGGBase.CFG:
            if c in ("M", "C"):
                got = torch.nn.functional.max_pool2d(got, 2, 2, ceil_mode=c == "C")
            else:
                got = torch.relu(getattr(model.base, c[0])(got))
    torch.testing.assert_close(got, want)


def test_load_vgg16_weights_rejects_wrong_input(vgg_state):
    state, _ = vgg_state
    with pytest.raises(ValueError, match="vgg16"):
        load_vgg16_weights(SSD300(3, backbone="tiny"), state)
    bad = {k: v for k, v in state.items() if k != "features.28.weight"}
    with pytest.raises(ValueError, match="convolutions"):
        load_vgg16_weights(SSD300(3), bad)


# ------------------------------------------------------------------------------------------ detection


def _tutorial_detect(model, locs, scores, min_score, max_overlap, top_k):
    """The tutorial's per-image, per-class loop (torchvision NMS), as the truth."""
    probs = torch.softmax(scores, dim=2)
    out = []
    for i in range(locs.size(0)):
        p = model.priors_cxcy
        cxcy = torch.cat([locs[i, :, :2] * p[:, 2:] / 10 + p[:, :2], torch.exp(locs[i, :, 2:] / 5) * p[:, 2:]], 1)
        xy = torch.cat([cxcy[:, :2] - cxcy[:, 2:] / 2, cxcy[:, :2] + cxcy[:, 2:] / 2], 1)
        b, l, s = [], [], []
        for c in range(1, scores.size(2)):
            cs = probs[i, :, c]
            m = cs > min_score
            if not m.any():
                continue
            keep = torchvision.ops.nms(xy[m], cs[m], max_overlap)
            b.append(xy[m][keep])
            s.append(cs[m][keep])
            l.append(torch.full((len(keep),), c))
        if not b:
            out.append((torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([0]), torch.tensor([0.0])))
            continue
        b, l, s = torch.cat(b), torch.cat(l), torch.cat(s)
        order = s.argsort(descending=True, stable=True)[:top_k]
        out.append((b[order], l[order], s[order]))
    return out


def test_detect_objects_matches_tutorial_loop():
    model = SSD300(4, backbone="tiny").eval()
    torch.manual_seed(3)
    locs = torch.randn(3, model.n_priors, 4) * 0.5
    scores = torch.randn(3, model.n_priors, 4) * 2
    boxes, labels, sc = model.detect_objects(locs, scores, min_score=0.6, max_overlap=0.45, top_k=50)
    want = _tutorial_detect(model, locs, scores, 0.6, 0.45, 50)
    assert len(boxes) == len(labels) == len(sc) == 3
    for (b, l, s), (wb, wl, ws) in zip(zip(boxes, labels, sc), want):
        assert b.shape == wb.shape and l.dtype == torch.int64
        torch.testing.assert_close(s, ws)
        # equal scores can come in either order: compare as sets of (score, label, box)
        got = sorted(zip(s.tolist(), l.tolist(), [tuple(round(v, 4) for v in r) for r in b.tolist()]))
        exp = sorted(zip(ws.tolist(), wl.tolist(), [tuple(round(v, 4) for v in r) for r in wb.tolist()]))
        assert got == exp


def test_detect_objects_placeholder_when_nothing_found():
    model = SSD300(3, backbone="tiny").eval()
    locs = torch.zeros(2, model.n_priors, 4)
    scores = torch.zeros(2, model.n_priors, 3)  # uniform: every probability 1/3 < min_score
    boxes, labels, sc = model.detect_objects(locs, scores, min_score=0.5, max_overlap=0.45, top_k=10)
    for b, l, s in zip(boxes, labels, sc):
        assert b.tolist() == [[0.0, 0.0, 1.0, 1.0]] and l.tolist() == [0] and s.tolist() == [0.0]


def test_detect_batched_fixed_shape():
    model = SSD300(3, backbone="tiny").eval()
    locs, scores = torch.randn(2, model.n_priors, 4), torch.randn(2, model.n_priors, 3) * 3
    b, s, l, n = model.detect_batched(locs, scores, 0.3, 0.45, 17)
    assert b.shape == (2, 17, 4) and s.shape == (2, 17) and l.shape == (2, 17) and n.shape == (2,)
    for i in range(2):
        assert (l[i, : n[i]] >= 1).all() and (l[i, n[i] :] == -1).all()
        assert (s[i, : n[i]][:-1] >= s[i, : n[i]][1:]).all()


def test_resnet_backbone_weights_from_file(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = SSD300(3, backbone="resnet18", backbone_weights=str(path))
    torch.testing.assert_close(model.base.stem[0].weight, state["conv1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.base.layer4[1].conv2.weight, state["layer4.1.conv2.weight"], rtol=0, atol=0)


def test_detect_objects_matches_reference_tutorial_detect_objects():
    ref = pytest.importorskip("detops.reference.nms")
    model = SSD300(4, backbone="tiny").eval()
    torch.manual_seed(5)
    locs = torch.randn(2, model.n_priors, 4) * 0.5
    scores = torch.randn(2, model.n_priors, 4) * 2
    got = model.detect_objects(locs, scores, min_score=0.6, max_overlap=0.45, top_k=40)
    want = ref.tutorial_detect_objects(
        model.priors_cxcy, locs, scores, min_score=0.6, max_overlap=0.45, top_k=40, n_classes=4
    )
    for i in range(2):
        torch.testing.assert_close(got[2][i], want[2][i])
        g = sorted(zip(got[2][i].tolist(), got[1][i].tolist()))
        w = sorted(zip(want[2][i].tolist(), want[1][i].tolist()))
        assert g == w
