"""``detops detect IMAGE --checkpoint CKPT --out OUT``: detect objects in one image and draw them."""

from __future__ import annotations

import os

from detops.errors import UserError
from detops.ssd.commands.common import check_output_path, load_model_or_fail, resolve_device


def add_arguments(p) -> None:
    p.add_argument("image", help="an image file (anything Pillow reads)")
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by detops train")
    p.add_argument(
        "--out", default="detections.png", help="the drawn image; its extension picks the format (.png, .jpg, ...)"
    )
    p.add_argument("--min-score", type=float, default=0.2, help="lowest class score shown")
    p.add_argument("--max-overlap", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--top-k", type=int, default=200, help="most detections kept")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cpu)")


def _format_for(path: str) -> str:
    from PIL import Image

    Image.init()
    ext = os.path.splitext(path)[1].lower()
    fmt = Image.EXTENSION.get(ext)
    if fmt is None:
        raise UserError(f"--out {path}: unknown image extension {ext or '(none)'}; use .png or .jpg")
    return fmt


def run(args) -> int:
    from PIL import Image

    from detops.ssd.drawing import draw_detections
    from detops.ssd.inference import detect_image

    device = resolve_device(args.device or "cpu")
    check_output_path(args.out, "--out")
    fmt = _format_for(args.out)
    if not os.path.isfile(args.image):
        raise UserError(f"{args.image}: no such image file")
    try:
        with Image.open(args.image) as im:
            image = im.convert("RGB")
    except OSError as exc:
        raise UserError(f"{args.image}: not a readable image ({exc})") from None
    model, class_names = load_model_or_fail(args.checkpoint, device)
    boxes, labels, scores = detect_image(model, image, args.min_score, args.max_overlap, args.top_k)
    drawn = draw_detections(image, boxes, labels, scores, class_names, fractional=False)
    drawn.save(args.out, format=fmt)
    for b, lab, s in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
        name = class_names[lab - 1] if class_names else str(lab)
        print(f"{name:>12s} {s:.3f}  [{b[0]:.1f}, {b[1]:.1f}, {b[2]:.1f}, {b[3]:.1f}]")
    print(f"{len(labels)} detection(s); drawn on {args.out}")
    return 0
