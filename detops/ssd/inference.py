"""Detection on one image: a PIL image in, boxes in its own pixels out."""

from typing import Tuple

import torch
from PIL import Image
from torch import Tensor

from detops.ssd.drawing import to_input
from detops.ssd.transforms import IMAGENET_MEAN, IMAGENET_STD


@torch.no_grad()
def detect_image(
    model,
    image: Image.Image,
    min_score: float = 0.2,
    max_overlap: float = 0.45,
    top_k: int = 200,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Runs the model on one PIL image (resized to the model's input size and normalised like the training data).

    Returns:
        boxes (Tensor[n, 4] xyxy in the image's pixels, clipped to the image), labels (Tensor[n] int64) and
        scores (Tensor[n]), by decreasing score; the "nothing found" placeholder is removed (n may be 0).
    """
    device = model.priors_cxcy.device
    x = to_input(image, model.input_size, mean, std).unsqueeze(0).to(device)
    locs, scores = model(x)
    boxes, labels, scores = model.detect_objects(locs, scores, min_score, max_overlap, top_k)
    boxes, labels, scores = boxes[0].cpu(), labels[0].cpu(), scores[0].cpu()
    keep = labels > 0
    w, h = image.size
    pixels = boxes[keep].clamp(0, 1) * torch.tensor([w, h, w, h], dtype=torch.float32)
    return pixels, labels[keep], scores[keep]
