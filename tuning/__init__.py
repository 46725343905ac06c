"""Per-shape tuning of tilenorm's kernels and the JSON config cache they read.

- ``tuning.cache``: the cache (runtime path: imports nothing from Optuna)
- ``tuning.space``: the search space, from Helion's config spec
- ``tuning.workload``: one problem's inputs, kernel arguments, reference, bytes
- ``tuning.timing``: L2-flushed, rotating-input timing (CPU: wall time)
- ``tuning.tuner``: one Optuna study per (kernel, mode, shape, dtype, GPU model)
- ``tuning.sweep``: ``python -m tuning.sweep`` (table, plots, cache)
- ``tuning.compare_helion``: our tuner against Helion's ``autotune_effort="quick"``
"""
