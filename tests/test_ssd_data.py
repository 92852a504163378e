"""The SSD data half: synthetic VOC generator, VOC reader (incl. corrupt files), SSD transforms, collate."""

import filecmp
import os
import shutil
import warnings

import pytest
import torch
from torch.utils.data import DataLoader

from detops.ssd.synthetic import DEFAULT_CLASSES, SHAPES, generate_voc_dataset
from detops.ssd.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    photometric_distort,
    rotate_hue,
    sample_iou_crop,
    ssd_transforms,
)
from detops.ssd.voc import VOC_CLASSES, VOCDataset, collate_fn, parse_voc_annotation, write_voc_annotation

N_TRAIN, N_TEST, SIZE = 24, 8, 160


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic_voc"))
    info = generate_voc_dataset(root, n_train=N_TRAIN, n_test=N_TEST, image_size=SIZE, seed=7)
    return root, info


def _copy(root, tmp_path):
    dst = str(tmp_path / "copy")
    shutil.copytree(root, dst)
    return dst


# ---------------------------------------------------------------------------------------------- generator


def test_generator_is_deterministic(voc, tmp_path):
    root, info = voc
    again = generate_voc_dataset(str(tmp_path / "again"), n_train=N_TRAIN, n_test=N_TEST, image_size=SIZE, seed=7)
    assert again["splits"] == info["splits"] and again["n_objects"] == info["n_objects"]
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        names = sorted(os.listdir(os.path.join(root, sub)))
        assert names == sorted(os.listdir(tmp_path / "again" / sub))
        match, mismatch, errors = filecmp.cmpfiles(
            os.path.join(root, sub), tmp_path / "again" / sub, names, shallow=False
        )
        assert not mismatch and not errors and len(match) == len(names)
    other = generate_voc_dataset(str(tmp_path / "other"), n_train=4, n_test=0, image_size=SIZE, seed=8)
    assert other["splits"]["train"] == info["splits"]["train"][:4]
    differ = [
        not filecmp.cmp(
            os.path.join(root, "JPEGImages", f"{i}.jpg"), tmp_path / "other" / "JPEGImages" / f"{i}.jpg", shallow=False
        )
        for i in other["splits"]["train"]
    ]
    assert all(differ)


def test_generator_layout_and_annotations(voc):
    root, info = voc
    assert info["classes"] == list(DEFAULT_CLASSES) and info["image_size"] == (SIZE, SIZE)
    assert len(info["splits"]["train"]) == N_TRAIN and len(info["splits"]["test"]) == N_TEST
    assert info["splits"]["trainval"] == info["splits"]["train"]
    assert not set(info["splits"]["train"]) & set(info["splits"]["test"])
    for split, ids in info["splits"].items():
        with open(os.path.join(root, "ImageSets", "Main", f"{split}.txt")) as f:
            assert f.read().split() == ids
    n_objects = n_difficult = 0
    names = set()
    for image_id in info["splits"]["train"] + info["splits"]["test"]:
        ann = parse_voc_annotation(os.path.join(root, "Annotations", f"{image_id}.xml"))
        assert ann.filename == f"{image_id}.jpg" and (ann.width, ann.height) == (SIZE, SIZE)
        assert any(not o.difficult for o in ann.objects), "every image has an object that is not difficult"
        for o in ann.objects:
            x1, y1, x2, y2 = o.box
            assert 0 <= x1 < x2 <= SIZE and 0 <= y1 < y2 <= SIZE
            names.add(o.name)
        n_objects += len(ann.objects)
        n_difficult += sum(o.difficult for o in ann.objects)
    assert (n_objects, n_difficult) == (info["n_objects"], info["n_difficult"])
    assert names == set(DEFAULT_CLASSES)
    assert 0 < n_difficult < n_objects / 2
    assert n_objects > 2 * (N_TRAIN + N_TEST)  # several objects per image on average


def test_generator_sizes_and_overlaps(tmp_path):
    info = generate_voc_dataset(str(tmp_path), n_train=60, n_test=0, image_size=(200, 150), seed=1, classes=SHAPES)
    sides, overlapping = [], 0
    ds = VOCDataset(str(tmp_path), "train", keep_difficult=True)
    assert ds.classes == sorted(SHAPES)
    for i in range(len(ds)):
        boxes, _, _ = ds.annotation(i)
        sides += ((boxes[:, 2:] - boxes[:, :2]).max(dim=1).values / 150).tolist()
        lt = torch.max(boxes[:, None, :2], boxes[None, :, :2])
        rb = torch.min(boxes[:, None, 2:], boxes[None, :, 2:])
        inter = (rb - lt).clamp(min=0).prod(-1)
        overlapping += int((inter > 0).sum() - len(boxes)) > 0
    sides = torch.tensor(sides)
    assert info["image_size"] == (200, 150)
    assert sides.min() < 0.08 and sides.max() > 0.75  # tiny to image-sized
    assert 0.1 < sides.median() < 0.5  # mostly medium
    assert overlapping > 10


def test_generator_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="classes"):
        generate_voc_dataset(str(tmp_path), n_train=1, n_test=0, classes=("circle", "hexagon"))
    with pytest.raises(ValueError, match="image_size"):
        generate_voc_dataset(str(tmp_path), n_train=1, n_test=0, image_size=8)


# ------------------------------------------------------------------------------------------------ reader


def test_reader_returns_tutorial_items(voc):
    root, info = voc
    ds = VOCDataset(root, "train", keep_difficult=True)
    assert len(ds) == N_TRAIN and ds.ids == info["splits"]["train"]
    assert ds.classes == sorted(DEFAULT_CLASSES) and ds.n_classes == len(DEFAULT_CLASSES) + 1
    image, boxes, labels, difficulties = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, SIZE, SIZE)
    assert 0 <= image.min() and image.max() <= 1 and image.max() > 0.5
    assert boxes.dtype == torch.float32 and labels.dtype == torch.int64 and difficulties.dtype == torch.uint8
    ann = parse_voc_annotation(os.path.join(root, "Annotations", f"{ds.ids[0]}.xml"))
    expected = torch.tensor([o.box for o in ann.objects]) / SIZE
    torch.testing.assert_close(boxes, expected)
    assert labels.tolist() == [ds.classes.index(o.name) + 1 for o in ann.objects]
    assert difficulties.tolist() == [int(o.difficult) for o in ann.objects]
    assert ds[-1][1].shape[1] == 4
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_reader_keep_difficult(voc):
    root, info = voc
    test_ids = info["splits"]["test"]
    with_difficult = VOCDataset(root, "test", keep_difficult=True)
    without = VOCDataset(root, "test", keep_difficult=False)
    n_with = sum(len(with_difficult.annotation(i)[1]) for i in range(len(test_ids)))
    n_without = sum(len(without.annotation(i)[1]) for i in range(len(test_ids)))
    n_diff = sum(int(with_difficult.annotation(i)[2].sum()) for i in range(len(test_ids)))
    assert n_without == n_with - n_diff
    assert all(int(without.annotation(i)[2].sum()) == 0 for i in range(len(test_ids)))
    both = VOCDataset(root, "trainval", keep_difficult=True)
    assert sum(int(both.annotation(i)[2].sum()) for i in range(len(both))) + n_diff == info["n_difficult"]


def test_reader_class_choice(voc, tmp_path):
    root, _ = voc
    # Explicit classes: others are ignored and ids follow the given order.
    ds = VOCDataset(root, "train", classes=["triangle", "circle"], keep_difficult=True)
    assert ds.n_classes == 3
    for i in range(len(ds)):
        _, labels, _ = ds.annotation(i)
        assert set(labels.tolist()) <= {1, 2}
    # Names found in all annotations, sorted, even when a split lacks a class.
    os.makedirs(tmp_path / "Annotations")
    os.makedirs(tmp_path / "JPEGImages")
    os.makedirs(tmp_path / "ImageSets" / "Main")
    shutil.copy(os.path.join(root, "JPEGImages", "000001.jpg"), tmp_path / "JPEGImages" / "a.jpg")
    for name, cls in (("a", "zebra"), ("b", "ant")):
        objects = [{"name": cls, "bbox": (1, 1, 10, 10)}]
        write_voc_annotation(str(tmp_path / "Annotations" / f"{name}.xml"), "a.jpg", (SIZE, SIZE), objects)
    (tmp_path / "ImageSets" / "Main" / "one.txt").write_text("a\n")
    assert VOCDataset(str(tmp_path), "one").classes == ["ant", "zebra"]
    # VOC names -> the 20 VOC classes in the devkit order.
    write_voc_annotation(
        str(tmp_path / "Annotations" / "c.xml"),
        "a.jpg",
        (SIZE, SIZE),
        [{"name": "person", "bbox": (11, 21, 40, 80), "difficult": 1}, {"name": "dog", "bbox": (1, 1, SIZE, SIZE)}],
    )
    (tmp_path / "ImageSets" / "Main" / "voc.txt").write_text("c\n")
    ds = VOCDataset(str(tmp_path), "voc", keep_difficult=True)
    assert ds.classes == list(VOC_CLASSES) and ds.n_classes == 21
    _, boxes, labels, difficulties = ds[0]
    assert labels.tolist() == [VOC_CLASSES.index("person") + 1, VOC_CLASSES.index("dog") + 1]
    assert difficulties.tolist() == [1, 0]
    # 1-based inclusive pixels -> continuous [xmin - 1, xmax].
    torch.testing.assert_close(boxes, torch.tensor([[10, 20, 40, 80], [0, 0, SIZE, SIZE]]) / SIZE)
    assert VOCDataset(str(tmp_path), "voc")[0][2].tolist() == [VOC_CLASSES.index("dog") + 1]
    with pytest.raises(FileNotFoundError, match="nosuchsplit"):
        VOCDataset(str(tmp_path), "nosuchsplit")


def test_corrupt_image_names_the_file(voc, tmp_path):
    root = _copy(voc[0], tmp_path)
    bad = os.path.join(root, "JPEGImages", "000002.jpg")
    with open(bad, "rb") as f:
        data = f.read()
    with open(bad, "wb") as f:
        f.write(data[: len(data) // 3])  # truncated
    garbage = os.path.join(root, "JPEGImages", "000003.jpg")
    with open(garbage, "wb") as f:
        f.write(b"this is not an image" * 10)
    ds = VOCDataset(root, "train")
    ds[0]
    for index, path in ((1, bad), (2, garbage)):
        with pytest.raises(ValueError, match=path):
            ds[index]
    skipping = VOCDataset(root, "train", skip_corrupt=True)
    with pytest.warns(UserWarning, match="000002.jpg"):
        image, boxes, _, _ = skipping[1]
    expected = VOCDataset(root, "train")[3]  # the next loadable image
    torch.testing.assert_close(image, expected[0])
    torch.testing.assert_close(boxes, expected[1])


def test_corrupt_image_in_a_worker_names_the_file(voc, tmp_path):
    root = _copy(voc[0], tmp_path)
    bad = os.path.join(root, "JPEGImages", "000001.jpg")
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8\xff garbage")
    loader = DataLoader(
        VOCDataset(root, "train", transforms=ssd_transforms(False, size=64)),
        batch_size=4,
        num_workers=1,
        collate_fn=collate_fn,
    )
    with pytest.raises(ValueError, match="000001.jpg"):
        next(iter(loader))


def _box_xml(xmin, ymin, xmax, ymax):
    """An annotation whose second object's box is the one given (the first is fine)."""
    return (
        b"<annotation><filename>000004.jpg</filename><size><width>160</width><height>160</height></size>"
        b"<object><name>circle</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax>"
        b"</bndbox></object><object><name>square</name><bndbox><xmin>"
        + xmin
        + b"</xmin><ymin>"
        + ymin
        + b"</ymin><xmax>"
        + xmax
        + b"</xmax><ymax>"
        + ymax
        + b"</ymax></bndbox></object></annotation>"
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (b"<annotation><filename>x.jpg</filename><object><name>circle", "not well-formed"),
        (b"<annotation><object><name>circle</name></object></annotation>", "filename"),
        (b"<annotation><filename>000004.jpg</filename><object><name>circle</name></object></annotation>", "bndbox"),
        (
            b"<annotation><filename>000004.jpg</filename><object><name>circle</name><bndbox><xmin>a</xmin>"
            b"<ymin>1</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>",
            "corrupt",
        ),
        (b"<annotation><filename>missing.jpg</filename></annotation>", "does not exist"),
        (_box_xml(b"nan", b"1", b"30", b"40"), r"object 1 \('square'\) has an invalid box.*not a finite number"),
        (_box_xml(b"50", b"1", b"30", b"40"), r"object 1 \('square'\).*xmin=50.*xmin > xmax"),
        (_box_xml(b"200", b"200", b"300", b"300"), r"object 1 \('square'\).*outside the 160x160 image"),
        (b"", "not well-formed"),
    ],
)
def test_corrupt_annotation_names_the_file(voc, tmp_path, content, message):
    root = _copy(voc[0], tmp_path)
    bad = os.path.join(root, "Annotations", "000004.xml")
    with open(bad, "wb") as f:
        f.write(content)
    if b"missing.jpg" in content:
        # The reader falls back to <id>.jpg when the named file is absent; make both absent.
        assert len(VOCDataset(root, "train")) == N_TRAIN
        os.remove(os.path.join(root, "JPEGImages", "000004.jpg"))
    with pytest.raises(ValueError, match=message) as err:
        VOCDataset(root, "train")
    assert bad in str(err.value)
    with pytest.warns(UserWarning, match="000004.xml"):
        ds = VOCDataset(root, "train", skip_corrupt=True)
    assert len(ds) == N_TRAIN - 1 and "000004" not in ds.ids and len(ds.skipped) == 1


def test_missing_annotation_file(voc, tmp_path):
    root = _copy(voc[0], tmp_path)
    os.remove(os.path.join(root, "Annotations", "000005.xml"))
    with pytest.raises(ValueError, match="000005.xml"):
        VOCDataset(root, "train")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(VOCDataset(root, "train", skip_corrupt=True)) == N_TRAIN - 1
    assert len(caught) == 1


# -------------------------------------------------------------------------------------------- transforms


def _channel_masks(n_boxes, size, seed):
    """A black image whose channel k is 1 inside box k; boxes are random integer boxes."""
    g = torch.Generator().manual_seed(seed)
    height, width = size
    x, y = torch.randint(0, width - 8, (n_boxes,), generator=g), torch.randint(0, height - 8, (n_boxes,), generator=g)
    w, h = torch.randint(6, width // 2, (n_boxes,), generator=g), torch.randint(6, height // 2, (n_boxes,), generator=g)
    xy, wh = torch.stack([x, y], 1), torch.stack([w, h], 1)
    boxes = torch.cat([xy, torch.minimum(xy + wh, torch.tensor([width, height]))], 1).float()
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
        image[k, y1:y2, x1:x2] = 255
    return image, boxes


@pytest.mark.parametrize("seed", range(40))
def test_train_transform_keeps_boxes_on_their_pixels(seed):
    image, boxes = _channel_masks(3, (120, 170), seed)
    labels = torch.tensor([1, 2, 3])
    difficulties = torch.tensor([0, 1, 0], dtype=torch.uint8)
    transform = ssd_transforms(True, size=96, photometric=False)
    torch.manual_seed(seed)
    out, frac, out_labels, out_diff = transform(image, boxes, labels, difficulties)
    assert out.shape == (3, 96, 96) and out.dtype == torch.float32
    assert 1 <= len(frac) <= 3 and frac.shape[1] == 4 and len(out_labels) == len(out_diff) == len(frac)
    assert (frac >= 0).all() and (frac <= 1).all() and (frac[:, 2:] > frac[:, :2]).all()
    assert len(set(out_labels.tolist())) == len(out_labels)
    # Each kept box's label tells its channel; its difficulty came along.
    pixels = out * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    for box, label, diff in zip(frac * 96, out_labels.tolist(), out_diff.tolist()):
        assert diff == [0, 1, 0][label - 1]
        mask = pixels[label - 1] > 0.75
        assert mask.any(), "a kept box must still show its object"
        cols = torch.nonzero(mask.any(0)).squeeze(1)
        rows = torch.nonzero(mask.any(1)).squeeze(1)
        found = torch.tensor([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=torch.float32)
        torch.testing.assert_close(box, found, atol=2.5, rtol=0)


def test_train_transform_draws_every_augmentation():
    image, boxes = _channel_masks(2, (100, 100), 0)
    transform = ssd_transforms(True, size=64)
    flips = zooms = drops = 0
    torch.manual_seed(0)
    for _ in range(200):
        out, frac, labels, _ = transform(image, boxes, torch.tensor([1, 2]), torch.zeros(2, dtype=torch.uint8))
        drops += len(frac) < 2
        corner = out[:, 0, 0] * torch.tensor(IMAGENET_STD) + torch.tensor(IMAGENET_MEAN)
        zooms += bool(torch.allclose(out[:, 0, 0], torch.zeros(3), atol=0.05))  # the mean-coloured canvas
        if len(frac) == 2:
            flips += bool(frac[0, 0] > 0.5)  # box 0 starts in the left half of this image
        assert torch.isfinite(out).all() and (corner > -0.05).all() and (corner < 1.05).all()
    assert 10 < drops < 150 and zooms > 20 and flips > 10


def test_eval_transform_is_resize_and_normalise():
    image, boxes = _channel_masks(3, (90, 130), 3)
    transform = ssd_transforms(False, size=50)
    labels, diff = torch.tensor([3, 1, 2]), torch.tensor([1, 0, 0], dtype=torch.uint8)
    out, frac, labels, diff = transform(image, boxes, labels, diff)
    torch.testing.assert_close(frac, boxes / torch.tensor([130, 90, 130, 90]))
    assert labels.tolist() == [3, 1, 2] and diff.tolist() == [1, 0, 0]
    expected = torch.nn.functional.interpolate(
        image[None].float() / 255, size=(50, 50), mode="bilinear", antialias=True
    )[0]
    expected = (expected - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(out, expected, atol=2e-2, rtol=0)
    # Float input is accepted too.
    out_f, _, _, _ = transform(image.float() / 255, boxes, torch.tensor([3, 1, 2]), torch.zeros(3, dtype=torch.uint8))
    torch.testing.assert_close(out_f, out, atol=2e-2, rtol=0)


def test_transforms_accept_images_without_objects():
    image = torch.randint(0, 255, (3, 40, 60), dtype=torch.uint8)
    empty = torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.uint8)
    for train in (True, False):
        out, frac, labels, diff = ssd_transforms(train, size=32)(image, *empty)
        assert out.shape == (3, 32, 32) and frac.shape == (0, 4) and labels.shape == (0,) and diff.shape == (0,)
    with pytest.raises(ValueError, match="boxes"):
        ssd_transforms(False)(image, torch.zeros(2, 5), torch.zeros(2), torch.zeros(2))


def test_photometric_distortion():
    image = torch.rand(3, 20, 30)
    torch.testing.assert_close(photometric_distort(image, p=0.0), image)
    torch.testing.assert_close(rotate_hue(image, 0.0), image, atol=1e-6, rtol=0)
    grey = torch.full((3, 4, 4), 0.4)
    torch.testing.assert_close(rotate_hue(grey, 0.07), grey, atol=1e-6, rtol=0)  # no chroma, nothing to turn
    torch.manual_seed(0)
    changed = 0
    for _ in range(20):
        out = photometric_distort(image)
        assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
        changed += not torch.equal(out, image)
    assert changed >= 15


def test_iou_crop_sampler_respects_the_ssd_constraints():
    boxes = torch.tensor([[10.0, 10.0, 60.0, 50.0], [70.0, 20.0, 95.0, 90.0]])
    torch.manual_seed(0)
    crops = 0
    for _ in range(300):
        crop = sample_iou_crop(boxes, 100, 120)
        if crop is None:
            continue
        crops += 1
        top, left, h, w, inside = crop
        assert 0.3 * 100 - 1 <= h <= 100 and 0.3 * 120 - 1 <= w <= 120 and 0.5 <= h / w <= 2
        assert 0 <= top <= 100 - h and 0 <= left <= 120 - w and inside.any()
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        assert torch.equal(inside, (cx > left) & (cx < left + w) & (cy > top) & (cy < top + h))
    assert 200 < crops < 290  # "no crop" is one option in seven


# ------------------------------------------------------------------------------------------------ collate


def test_collate_and_dataloader(voc):
    root, _ = voc
    ds = VOCDataset(root, "train", transforms=ssd_transforms(True, size=64))
    loader = DataLoader(ds, batch_size=5, shuffle=False, collate_fn=collate_fn)
    images, boxes, labels, difficulties = next(iter(loader))
    assert images.shape == (5, 3, 64, 64)
    assert len(boxes) == len(labels) == len(difficulties) == 5
    for b, l, d in zip(boxes, labels, difficulties):
        assert b.shape == (len(l), 4) and d.shape == l.shape and l.dtype == torch.int64 and (l >= 1).all()
    with pytest.raises(ValueError, match="different shapes"):
        collate_fn([VOCDataset(root, "train")[0], (torch.zeros(3, 5, 5),) + VOCDataset(root, "train")[0][1:]])
