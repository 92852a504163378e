"""``detops bench``: benchmarks of every detops op against its counterpart, as a command and a library.

- :mod:`detops.bench.workloads`: named, seedable input generators (shared with the tests).
- :mod:`detops.bench.registry`: :func:`~detops.bench.registry.case`, the decorator that registers a case;
  the built-in cases are in :mod:`detops.bench.cases`, one module per family (its docstring shows how to add
  one).
- :mod:`detops.bench.timer`: the one timer (alternating sides, medians with IQR, CUDA events).
- :mod:`detops.bench.runner`: agreement check, then timing, per row.
- :mod:`detops.bench.output`: table, JSON, plots, comparison; :mod:`detops.bench.report`: RESULTS.md from
  the JSON.
- :mod:`detops.bench.cli`: the command (``detops bench``, ``python -m detops bench``).
"""
