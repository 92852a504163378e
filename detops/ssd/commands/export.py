"""``detops export --checkpoint CKPT --out MODEL.pt2``: the detector as a ``torch.export`` program."""

from __future__ import annotations

from detops.ssd.commands.common import check_output_path, load_model_or_fail


def add_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by detops train")
    p.add_argument("--out", default="ssd.pt2", help="the .pt2 file to write")
    p.add_argument("--batch-size", type=int, default=1, help="the batch size the program takes")
    p.add_argument("--min-score", type=float, default=0.2, help="lowest class score kept")
    p.add_argument("--max-overlap", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--top-k", type=int, default=200, help="detections per image (the padded output's K)")


def run(args) -> int:
    import torch

    from detops.ssd.export import export_detector

    check_output_path(args.out, "--out")
    model, class_names = load_model_or_fail(args.checkpoint, "cpu")
    program = export_detector(
        model, args.batch_size, min_score=args.min_score, max_overlap=args.max_overlap, top_k=args.top_k
    )
    torch.export.save(program, args.out)
    s = model.input_size
    print(
        f"exported to {args.out}: images [{args.batch_size}, 3, {s}, {s}] (normalised) -> boxes "
        f"[{args.batch_size}, {args.top_k}, 4] fractional xyxy, scores, labels (-1 pads), counts; classes "
        f"{class_names}\nload it with: import detops, torch; torch.export.load({args.out!r})"
    )
    return 0
