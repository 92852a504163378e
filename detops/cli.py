"""The ``detops`` command line.

Each subcommand is a module with ``add_arguments(parser)`` and ``run(args) -> int`` (the exit status), listed
once in :data:`COMMANDS`. ``main`` returns the status: 0 on success; a :class:`~detops.errors.UserError`
(a missing path, an option that does not fit, no GPU) prints one line and gives 2, as argparse does for a bad
option.
"""

import argparse
import importlib
import sys

from detops.errors import UserError

COMMANDS = [
    ("info", "detops.info", "versions, what was compiled, visible GPUs (paste this into bug reports)"),
    ("data", "detops.ssd.commands.data", "make a dataset: detops data synthetic OUT (VOC layout)"),
    (
        "train",
        "detops.ssd.commands.train",
        "train an SSD on a VOC-format dataset (torchrun --nproc_per_node N -m detops train ...)",
    ),
    (
        "eval",
        "detops.ssd.commands.evaluate",
        "mAP and per-class AP of a checkpoint: --metric voc07 (11-point), voc (all-point) or coco (AP@[.5:.95])",
    ),
    ("detect", "detops.ssd.commands.detect", "detect objects in one image and save it with the boxes drawn"),
    ("export", "detops.ssd.commands.export", "torch.export a checkpoint's detector (forward + detection) to .pt2"),
    ("bench", "detops.bench.cli", "time detops' ops against torchvision and the tutorial's code (tables, JSON, plots)"),
    ("demo", "detops.ssd.commands.demo", "synthetic data -> train a small SSD on the CPU -> evaluate -> draw"),
]
"""(name, module, help) of every subcommand; the module has ``add_arguments(parser)`` and ``run(args) -> int``."""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, but not for flags and options without one."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detops", description="Fast detection ops and an SSD300 built on them.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name, help_ in COMMANDS:
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=_Formatter)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv=None) -> int:
    """Runs ``detops ARGV`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad option (2, after argparse's message)
        return exc.code if isinstance(exc.code, int) else 2
    args.argv = argv
    try:
        status = args.run(args)
    except UserError as exc:
        print(f"detops {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"detops {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)
