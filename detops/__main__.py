"""``python -m detops`` and the ``detops`` console script: see detops/cli.py."""

from detops.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
