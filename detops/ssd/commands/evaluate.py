"""``detops eval``: the mAP of a checkpoint on a VOC-format split, with the per-class table."""

from __future__ import annotations

import json

from detops.errors import UserError
from detops.ssd.commands.common import (
    check_output_path,
    load_model_or_fail,
    open_dataset,
    resolve_classes,
    resolve_device,
)


def add_arguments(p) -> None:
    from detops.ssd.evaluation import METRICS

    p.add_argument("--checkpoint", required=True, help="a checkpoint written by detops train (last.pt, best.pt)")
    p.add_argument("--data", required=True, help="VOC-format root")
    p.add_argument("--split", default="test", help="the split to evaluate")
    p.add_argument("--classes", default=None, help="as for train; default: the names stored in the checkpoint")
    p.add_argument(
        "--metric",
        default="voc07",
        choices=sorted(METRICS),
        help="voc07: VOC2007 11-point mAP (all-point beside it); voc: all-point (VOC2010+) first; "
        "coco: AP@[.5:.95], @.5, @.75, AR@100 (pycocotools' counting); difficult objects ignored",
    )
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--min-score", type=float, default=0.01, help="lowest class score a detection may have")
    p.add_argument("--max-overlap", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--top-k", type=int, default=200, help="detections kept per image")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when a GPU is visible)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the result as JSON to FILE")
    p.add_argument("--skip-corrupt", action="store_true", help="leave out unreadable files with a warning")


def run(args) -> int:
    from detops.ssd.evaluation import evaluate, format_result, make_metric, to_json
    from detops.ssd.transforms import ssd_transforms

    device = resolve_device(args.device)
    if args.json:
        check_output_path(args.json, "--json")
    model, class_names = load_model_or_fail(args.checkpoint, device)
    if args.classes is not None:
        class_names = resolve_classes(args.classes)
    if class_names is not None and len(class_names) + 1 != model.n_classes:
        raise UserError(
            f"{args.checkpoint} predicts {model.n_classes - 1} classes, but {len(class_names)} "
            f"class names were given: {class_names}"
        )
    dataset = open_dataset(
        args.data,
        args.split,
        transforms=ssd_transforms(False, size=model.input_size),
        keep_difficult=True,
        classes=class_names,
        skip_corrupt=args.skip_corrupt,
    )
    result = evaluate(
        model,
        dataset,
        make_metric(args.metric, model.n_classes),
        batch_size=args.batch_size,
        min_score=args.min_score,
        max_overlap=args.max_overlap,
        top_k=args.top_k,
        num_workers=args.workers,
        device=device,
    )
    print(format_result(result, dataset.classes))
    print(f"{result['images']} images, {result['images_per_s']:.1f} images/s (forward + detection)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "checkpoint": args.checkpoint,
                    "data": args.data,
                    "split": args.split,
                    "metric": args.metric,
                    **to_json(result, dataset.classes),
                },
                f,
                indent=2,
            )
        print(f"result written to {args.json}")
    return 0
