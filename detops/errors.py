"""Errors of the command line."""


class UserError(Exception):
    """A mistake in what the user asked for (a missing path, an option that does not fit, no GPU for
    ``--device cuda``): ``detops`` prints its message on one line and exits with status 2, no traceback."""
