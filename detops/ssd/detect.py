"""Detection on single images: ``detops detect IMAGE --checkpoint CKPT --out OUT.png``.

The image is resized to the model's input size and normalised like the training data; the boxes come back
as fractions and are scaled to the original image, drawn with their class name and score, and saved.
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
            (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
            (0, 0, 128), (128, 128, 128)]


def to_input(image: Image.Image, size: int, mean=MEAN, std=STD) -> Tensor:
    """PIL image -> Tensor[3, size, size], resized and normalised."""
    image = image.convert("RGB").resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def denormalize(x: Tensor, mean=MEAN, std=STD) -> Image.Image:
    """Tensor[3, H, W] normalised image -> PIL image."""
    x = x.float() * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr)


def draw_detections(image: Image.Image, boxes: Tensor, labels: Tensor, scores: Optional[Tensor] = None,
                    class_names: Optional[Sequence[str]] = None, fractional: bool = True) -> Image.Image:
    """Draws boxes (xyxy; fractions of the image when ``fractional``) with "name score" captions on a copy of
    ``image``. Label 0 (background, the tutorial's placeholder for "nothing found") is not drawn.
    ``class_names[i]`` names label ``i + 1``."""
    image = image.convert("RGB").copy()
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    w, h = image.size
    scale = torch.tensor([w, h, w, h], dtype=torch.float32) if fractional else torch.ones(4)
    for k in range(len(labels)):
        label = int(labels[k])
        if label <= 0:
            continue
        x1, y1, x2, y2 = (boxes[k].float().cpu() * scale).tolist()
        color = _PALETTE[(label - 1) % len(_PALETTE)]
        draw.rectangle([x1, y1, x2, y2], outline=color, width=2)
        name = class_names[label - 1] if class_names is not None and label - 1 < len(class_names) else str(label)
        text = name if scores is None else f"{name} {float(scores[k]):.2f}"
        tx1, ty1, tx2, ty2 = draw.textbbox((x1, y1), text, font=font)
        ty = max(0.0, y1 - (ty2 - ty1) - 2)
        draw.rectangle([x1, ty, x1 + (tx2 - tx1) + 4, ty + (ty2 - ty1) + 2], fill=color)
        draw.text((x1 + 2, ty), text, fill=(0, 0, 0) if sum(color) > 380 else (255, 255, 255), font=font)
    return image


@torch.no_grad()
def detect_image(model, image: Image.Image, min_score: float = 0.2, max_overlap: float = 0.45, top_k: int = 200,
                 mean=MEAN, std=STD) -> Tuple[Tensor, Tensor, Tensor]:
    """Runs the model on one PIL image; returns boxes (Tensor[n, 4] xyxy in the image's pixels), labels and
    scores, with the tutorial's placeholder removed (n may be 0)."""
    device = model.priors_cxcy.device
    x = to_input(image, model.input_size, mean, std).unsqueeze(0).to(device)
    locs, scores = model(x)
    boxes, labels, scores = model.detect_objects(locs, scores, min_score, max_overlap, top_k)
    boxes, labels, scores = boxes[0].cpu(), labels[0].cpu(), scores[0].cpu()
    keep = labels > 0
    w, h = image.size
    return boxes[keep] * torch.tensor([w, h, w, h], dtype=torch.float32), labels[keep], scores[keep]


def run(args) -> List[Tuple[str, float]]:
    """``detops detect``: prints one line per detection and writes the drawn PNG."""
    from detops.ssd.train import load_model

    model, class_names = load_model(args.checkpoint, args.device or "cpu")
    image = Image.open(args.image).convert("RGB")
    boxes, labels, scores = detect_image(model, image, args.min_score, args.max_overlap, args.top_k)
    drawn = draw_detections(image, boxes, labels, scores, class_names, fractional=False)
    drawn.save(args.out, format="PNG")
    found = []
    for b, l, s in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
        name = class_names[l - 1] if class_names else str(l)
        found.append((name, s))
        print(f"{name:>12s} {s:.3f}  [{b[0]:.1f}, {b[1]:.1f}, {b[2]:.1f}, {b[3]:.1f}]")
    print(f"{len(found)} detection(s); drawn on {args.out}")
    return found


def add_arguments(p) -> None:
    p.add_argument("image")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", default="detections.png")
    p.add_argument("--min-score", type=float, default=0.2)
    p.add_argument("--max-overlap", type=float, default=0.45)
    p.add_argument("--top-k", type=int, default=200)
    p.add_argument("--device", default=None)
