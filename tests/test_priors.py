"""detops.ssd.prior_boxes / ssd300_prior_boxes against the SSD tutorial's create_prior_boxes."""

import pytest
import torch

from detops.reference import matching as ref
from detops.ssd import prior_boxes, ssd300_prior_boxes
from detops.ssd.priors import SSD300_ASPECT_RATIOS, SSD300_FMAP_DIMS, SSD300_OBJ_SCALES


def test_ssd300_equals_tutorial_exactly():
    got = ssd300_prior_boxes()
    want = ref.tutorial_create_prior_boxes()
    assert got.shape == (8732, 4) and got.dtype == torch.float32
    assert torch.equal(got, want)


def test_unclipped_generator_and_clip_semantics():
    raw = prior_boxes(SSD300_FMAP_DIMS, SSD300_OBJ_SCALES, SSD300_ASPECT_RATIOS)
    assert torch.equal(raw.clamp(0, 1), ref.tutorial_create_prior_boxes())
    changed = (raw != raw.clamp(0, 1)).any(1)
    assert changed.sum() == 20  # conv10_2 ratios 2 and 0.5 (9 cells x 2), conv11_2 ratios 2 and 0.5
    assert raw[:, 2:].max() > 1.27


def test_order_and_non_square_maps():
    p = prior_boxes([(2, 3)], [0.4], [[1.0, 2.0]], extra_scale_last=0.7, dtype=torch.float64)
    assert p.shape == (2 * 3 * 3, 4)
    # row 0, column 1: centre (1.5 / 3, 0.5 / 2); ratio 1, then the extra prior, then ratio 2
    torch.testing.assert_close(p[3], torch.tensor([0.5, 0.25, 0.4, 0.4], dtype=torch.float64))
    torch.testing.assert_close(p[4], torch.tensor([0.5, 0.25, 0.7, 0.7], dtype=torch.float64))
    torch.testing.assert_close(p[5], torch.tensor([0.5, 0.25, 0.4 * 2**0.5, 0.4 / 2**0.5], dtype=torch.float64))
    two = prior_boxes([2, 1], [0.3, 0.6], [[1.0], [0.5, 1.0]])
    assert two.shape == (4 * 2 + 3, 4)
    torch.testing.assert_close(two[1, 2], torch.tensor((0.3 * 0.6) ** 0.5, dtype=torch.float32))
    torch.testing.assert_close(two[-1, 2:], torch.tensor([1.0, 1.0]))


def test_device_and_errors():
    assert ssd300_prior_boxes(device="cpu").device.type == "cpu"
    with pytest.raises(ValueError, match="one entry per feature map"):
        prior_boxes([38, 19], [0.1], [[1.0]])
    with pytest.raises(ValueError, match="positive"):
        prior_boxes([0], [0.1], [[1.0]])
