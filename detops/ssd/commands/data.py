"""``detops data synthetic OUT``: write the synthetic VOC-format dataset of shapes."""

from __future__ import annotations

from detops.errors import UserError


def add_arguments(p) -> None:
    from detops.ssd.synthetic import DEFAULT_CLASSES, SHAPES

    sub = p.add_subparsers(dest="data_command", required=True, metavar="{synthetic}")
    s = sub.add_parser(
        "synthetic", help="shapes on textured backgrounds, in the Pascal VOC layout", formatter_class=p.formatter_class
    )
    s.add_argument(
        "out", help="directory to write (Annotations/, JPEGImages/, ImageSets/Main/{train,trainval,test}.txt)"
    )
    s.add_argument("--train-images", type=int, default=400, help="images in train.txt and trainval.txt")
    s.add_argument("--test-images", type=int, default=100, help="images in test.txt")
    s.add_argument("--size", type=int, default=300, help="image side in pixels")
    s.add_argument(
        "--classes", default=",".join(DEFAULT_CLASSES), help=f"comma-separated shapes from {','.join(SHAPES)}"
    )
    s.add_argument("--max-objects", type=int, default=6, help="most shapes per image")
    s.add_argument("--seed", type=int, default=0, help="the same seed writes the same files")


def run(args) -> int:
    from detops.ssd.synthetic import generate_voc_dataset

    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    try:
        info = generate_voc_dataset(
            args.out,
            n_train=args.train_images,
            n_test=args.test_images,
            image_size=args.size,
            seed=args.seed,
            classes=classes,
            max_objects=args.max_objects,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(
        f"wrote {info['n_images']} images ({info['n_objects']} objects, {info['n_difficult']} difficult) of "
        f"{', '.join(info['classes'])} to {args.out}: splits train/trainval ({args.train_images}), "
        f"test ({args.test_images})"
    )
    print(f"train on it with: detops train --data {args.out} --backbone tiny")
    return 0
