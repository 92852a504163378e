"""``python -m detops`` and the ``detops`` console script: see detops/cli.py."""

import sys

from detops.cli import main

if __name__ == "__main__":
    sys.exit(main())
