"""VOC mAP (detops.metrics.voc) against the plain reference and hand-computed values, and the metric objects'
shared interface (detops.metrics.build_metric). COCO-style evaluation: tests/test_metrics_coco.py."""

import inspect
import math

import pytest
import torch

from detops.metrics import (
    VOCMeanAveragePrecision,
    build_metric,
    format_ap_table,
    voc_map,
)
from detops.reference.metrics import voc_map as reference_voc_map

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_case(seed, n_images=12, n_classes=5, quantise_scores=False):
    g = torch.Generator().manual_seed(seed)

    def boxes(n):
        xy = torch.rand(n, 2, generator=g)
        wh = torch.rand(n, 2, generator=g) * 0.4 + 0.02
        return torch.cat([xy, xy + wh], 1)

    true_boxes, true_labels, true_diff, det_boxes, det_labels, det_scores = [], [], [], [], [], []
    for _ in range(n_images):
        n = int(torch.randint(0, 7, (), generator=g))
        tb = boxes(n)
        tl = torch.randint(1, n_classes, (n,), generator=g)
        td = (torch.rand(n, generator=g) < 0.2).to(torch.uint8)
        # Detections: jittered copies of some true boxes (some duplicated), random boxes, background ones.
        pick = torch.randint(0, max(n, 1), (int(torch.randint(0, 2 * n + 1, (), generator=g)),), generator=g)
        near = tb[pick] + 0.04 * torch.randn(len(pick), 4, generator=g) if n else torch.zeros(0, 4)
        near_labels = tl[pick] if n else torch.zeros(0, dtype=torch.int64)
        flip = torch.rand(len(near_labels), generator=g) < 0.15  # some wrong-class detections
        near_labels = torch.where(flip, torch.randint(1, n_classes, near_labels.shape, generator=g), near_labels)
        k = int(torch.randint(0, 5, (), generator=g))
        db = torch.cat([near, boxes(k)])
        dl = torch.cat([near_labels, torch.randint(0, n_classes, (k,), generator=g)])
        ds = torch.rand(len(db), generator=g)
        if quantise_scores:
            ds = (ds * 4).floor() / 4  # many ties
        true_boxes.append(tb)
        true_labels.append(tl)
        true_diff.append(td)
        det_boxes.append(db)
        det_labels.append(dl)
        det_scores.append(ds)
    return det_boxes, det_labels, det_scores, true_boxes, true_labels, true_diff, n_classes


def _assert_same(got, want):
    (m1, aps1), (m2, aps2) = got, want
    assert set(aps1) == set(aps2)
    for c in aps1:
        if math.isnan(aps2[c]):
            assert math.isnan(aps1[c])
        else:
            assert aps1[c] == pytest.approx(aps2[c], abs=1e-12), c
    assert (math.isnan(m1) and math.isnan(m2)) or m1 == pytest.approx(m2, abs=1e-12)


def test_reference_has_the_signature_and_defaults_of_voc_map():
    # Restated in the reference rather than imported; this keeps the two from drifting apart.
    assert inspect.signature(reference_voc_map) == inspect.signature(voc_map)


@pytest.mark.parametrize("empty_classes", ["zero", "nan"])
@pytest.mark.parametrize("method", ["voc07", "area"])
@pytest.mark.parametrize("seed", range(40))
def test_matches_reference_on_random_detections(seed, method, empty_classes):
    case = _random_case(seed, quantise_scores=seed % 3 == 0)
    _assert_same(
        voc_map(*case, method=method, empty_classes=empty_classes),
        reference_voc_map(*case, method=method, empty_classes=empty_classes),
    )


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.75])
def test_matches_reference_at_other_thresholds(threshold):
    for seed in range(5):
        case = _random_case(100 + seed, n_images=20)
        for method in ("voc07", "area"):
            _assert_same(
                voc_map(*case, method=method, iou_threshold=threshold),
                reference_voc_map(*case, method=method, iou_threshold=threshold),
            )


def _one_class(det, scores, gt, difficult=None, n_classes=2):
    """One image, class 1 only."""
    det = torch.tensor(det, dtype=torch.float32).reshape(-1, 4)
    gt = torch.tensor(gt, dtype=torch.float32).reshape(-1, 4)
    difficult = torch.tensor(difficult or [0] * len(gt), dtype=torch.uint8)
    return (
        [det],
        [torch.ones(len(det), dtype=torch.int64)],
        [torch.tensor(scores, dtype=torch.float32)],
        [gt],
        [torch.ones(len(gt), dtype=torch.int64)],
        [difficult],
        n_classes,
    )


def test_known_values():
    a, b = [0, 0, 10, 10], [20, 20, 30, 30]
    miss = [50, 50, 60, 60]
    # TP (0.9), FP (0.8), TP (0.7): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    case = _one_class([a, miss, b], [0.9, 0.8, 0.7], [a, b])
    m07, aps07 = voc_map(*case)
    assert m07 == pytest.approx((6 * 1.0 + 5 * 2 / 3) / 11) and aps07 == {1: pytest.approx(m07)}
    assert voc_map(*case, method="area")[0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # Perfect detections: AP 1 with both methods.
    perfect = _one_class([a, b], [0.2, 0.1], [a, b])
    assert voc_map(*perfect)[0] == pytest.approx(1.0) and voc_map(*perfect, method="area")[0] == pytest.approx(1.0)
    # Duplicates of a found box are false positives.
    dup = _one_class([a, a, b], [0.9, 0.8, 0.7], [a, b])
    assert voc_map(*dup, method="area")[0] == pytest.approx(0.5 + 0.5 * 2 / 3)
    # No detection at all: AP 0.
    assert voc_map(*_one_class([], [], [a]))[0] == 0.0


def test_exact_recall_thresholds():
    # 10 boxes, 3 found with precision 1: recall exactly 0.3 counts for the 0.3 threshold (k/10 exactly).
    gts = [[20 * i, 0, 20 * i + 10, 10] for i in range(10)]
    case = _one_class(gts[:3], [0.9, 0.8, 0.7], gts)
    assert voc_map(*case)[0] == pytest.approx(4 / 11)
    assert voc_map(*case, method="area")[0] == pytest.approx(0.3)


def test_iou_threshold_is_strict():
    gt = [0.0, 0.0, 2.0, 1.0]
    half = [0.0, 0.0, 1.0, 1.0]  # IoU exactly 0.5
    assert voc_map(*_one_class([half], [1.0], [gt]))[0] == 0.0
    assert voc_map(*_one_class([half], [1.0], [gt]), iou_threshold=0.49)[0] == pytest.approx(1.0)
    _assert_same(voc_map(*_one_class([half], [1.0], [gt])), reference_voc_map(*_one_class([half], [1.0], [gt])))


def test_difficult_objects_are_ignored():
    a, b, hard = [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]
    plain = voc_map(*_one_class([a, b], [0.9, 0.7], [a, b]))
    # A detection of a difficult box (even the top-scored one) is neither TP nor FP; missing it costs nothing.
    with_hard = _one_class([hard, a, b], [0.95, 0.9, 0.7], [a, b, hard], difficult=[0, 0, 1])
    assert voc_map(*with_hard)[0] == pytest.approx(plain[0]) == pytest.approx(1.0)
    missed_hard = _one_class([a, b], [0.9, 0.7], [a, b, hard], difficult=[0, 0, 1])
    assert voc_map(*missed_hard)[0] == pytest.approx(1.0)
    # The same box not flagged difficult: the top detection is a TP, missing it lowers recall.
    assert voc_map(*_one_class([a, b], [0.9, 0.7], [a, b, hard]), method="area")[0] == pytest.approx(2 / 3)


def _three_classes():
    a = [0, 0, 10, 10]
    # Class 1 found perfectly; class 2 only has a difficult box; class 3 has nothing but a false detection.
    return (
        [torch.tensor([a, a, a], dtype=torch.float32)],
        [torch.tensor([1, 2, 3])],
        [torch.tensor([0.9, 0.8, 0.7])],
        [torch.tensor([a, a], dtype=torch.float32)],
        [torch.tensor([1, 2])],
        [torch.tensor([0, 1], dtype=torch.uint8)],
        4,
    )


def test_classes_without_ground_truth_count_as_zero_as_the_devkit_counts_them():
    case = _three_classes()
    m, aps = voc_map(*case)
    assert aps == {1: pytest.approx(1.0), 2: 0.0, 3: 0.0} and m == pytest.approx(1 / 3)
    _assert_same((m, aps), reference_voc_map(*case))
    m, aps = voc_map([], [], [], [], [], [], n_classes=3)
    assert m == 0.0 and aps == {1: 0.0, 2: 0.0}


def test_classes_without_ground_truth_can_be_left_out():
    case = _three_classes()
    m, aps = voc_map(*case, empty_classes="nan")
    assert m == pytest.approx(1.0) and aps[1] == pytest.approx(1.0) and math.isnan(aps[2]) and math.isnan(aps[3])
    _assert_same((m, aps), reference_voc_map(*case, empty_classes="nan"))
    m, aps = voc_map([], [], [], [], [], [], n_classes=3, empty_classes="nan")
    assert math.isnan(m) and all(math.isnan(v) for v in aps.values()) and set(aps) == {1, 2}
    with pytest.raises(ValueError, match="empty_classes"):
        voc_map(*case, empty_classes="skip")


def test_detections_but_no_ground_truth_anywhere():
    # Detections on images none of which has a box: every class is empty (this used to raise IndexError).
    dets = [torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.zeros(0, 4)]
    case = (
        dets,
        [torch.tensor([1]), torch.zeros(0, dtype=torch.int64)],
        [torch.tensor([0.5]), torch.zeros(0)],
        [torch.zeros(0, 4)] * 2,
        [torch.zeros(0, dtype=torch.int64)] * 2,
        [torch.zeros(0, dtype=torch.uint8)] * 2,
        3,
    )
    for method in ("voc07", "area"):
        m, aps = voc_map(*case, method=method, empty_classes="nan")
        assert math.isnan(m) and set(aps) == {1, 2} and all(math.isnan(v) for v in aps.values())
        _assert_same((m, aps), reference_voc_map(*case, method=method, empty_classes="nan"))
        assert voc_map(*case, method=method) == (0.0, {1: 0.0, 2: 0.0}) == reference_voc_map(*case, method=method)


def test_background_detections_are_ignored_and_labels_checked():
    a = [0, 0, 10, 10]
    case = _one_class([a], [0.5], [a])
    dets = [torch.tensor([a, [5, 5, 9, 9]], dtype=torch.float32)]
    got = voc_map(dets, [torch.tensor([0, 1])], [torch.tensor([0.9, 0.1])], *case[3:])
    assert got[0] == pytest.approx(0.0)  # the only class-1 detection misses; label 0 is skipped
    with pytest.raises(ValueError, match="true_labels"):
        voc_map(*case[:4], [torch.tensor([2])], case[5], 2)
    with pytest.raises(ValueError, match="det_labels"):
        voc_map(case[0], [torch.tensor([5])], *case[2:])
    with pytest.raises(ValueError, match="one entry per image"):
        voc_map(case[0] * 2, *case[1:])
    with pytest.raises(ValueError, match="labels"):
        voc_map(case[0], [torch.tensor([1, 1])], *case[2:])
    with pytest.raises(ValueError, match="method"):
        voc_map(*case, method="coco")


def _dicts(case, start, stop):
    det_boxes, det_labels, det_scores, true_boxes, true_labels, true_diff, _ = case
    preds = [dict(boxes=det_boxes[i], scores=det_scores[i], labels=det_labels[i]) for i in range(start, stop)]
    target = [dict(boxes=true_boxes[i], labels=true_labels[i], difficult=true_diff[i]) for i in range(start, stop)]
    return preds, target


@pytest.mark.parametrize("name,method", [("voc07", "voc07"), ("voc", "area")])
def test_metric_object_equals_one_call(name, method):
    case = _random_case(5, n_images=17)
    metric = build_metric(name, num_classes=case[-1])
    assert isinstance(metric, VOCMeanAveragePrecision)
    for start in range(0, 17, 4):
        metric.update(*_dicts(case, start, min(start + 4, 17)))
    assert len(metric) == 17
    got = metric.compute()
    m, aps = voc_map(*case, method=method)
    assert float(got["map"]) == m
    assert got["classes"].tolist() == list(range(1, case[-1]))
    assert got["map_per_class"].tolist() == [aps[c] for c in range(1, case[-1])]
    metric.reset()
    assert len(metric) == 0 and float(metric.compute()["map"]) == 0.0


def test_metric_object_rejects_bad_input_naming_the_image():
    case = _random_case(6, n_images=4)
    metric = VOCMeanAveragePrecision(num_classes=case[-1])
    preds, target = _dicts(case, 0, 4)
    metric.update(preds[:2], target[:2])
    bad = [dict(p) for p in preds[2:]]
    bad[1] = dict(boxes=torch.tensor([[0.0, 0.0, 1.0, 1.0]]), scores=torch.tensor([math.nan]), labels=torch.tensor([1]))
    with pytest.raises(ValueError, match="image 3: preds\\['scores'\\] must be finite"):
        metric.update(bad, target[2:])
    with pytest.raises(ValueError, match="one entry per image"):
        metric.update(preds, target[:1])
    wrong = [dict(t) for t in target[2:]]
    wrong[0]["boxes"] = torch.zeros(len(wrong[0]["labels"]), 5)
    with pytest.raises(ValueError, match="image 2 .*target\\['boxes'\\] must have shape"):
        metric.update(preds[2:], wrong)
    out = [dict(t) for t in target[2:]]
    out[0] = dict(boxes=torch.tensor([[0.0, 0.0, 1.0, 1.0]]), labels=torch.tensor([case[-1]]))
    with pytest.raises(ValueError, match="image 2: target\\['labels'\\] must be in 1 .."):
        metric.update(preds[2:], out)
    assert len(metric) == 2
    with pytest.raises(ValueError, match="metric must be one of"):
        build_metric("voc12", num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        build_metric("voc07")


def test_ap_table():
    aps = {"AP 11-pt": {1: 0.5, 2: math.nan}, "AP area": {1: 0.25, 2: math.nan}}
    table = format_ap_table(["circle", "square"], aps)
    lines = table.splitlines()
    assert len(lines) == 4 and "circle" in lines[1] and "0.5000" in lines[1] and "-" in lines[2]
    assert lines[3].startswith("mAP") and "0.2500" in lines[3]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_inputs_give_the_cpu_result():
    case = _random_case(11)
    cuda_case = tuple([t.cuda() for t in x] for x in case[:-1]) + (case[-1],)
    _assert_same(voc_map(*cuda_case), voc_map(*case))
