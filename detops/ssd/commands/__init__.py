"""The SSD's ``detops`` subcommands, one module each with ``add_arguments(parser)`` and ``run(args) -> int``:
``train``, ``eval`` (:mod:`.evaluate`), ``detect``, ``export``, ``demo`` and ``data``. They parse, check and
report; the work is done by the library modules of :mod:`detops.ssd`."""
