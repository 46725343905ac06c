"""Per-shape tuning of tilenorm's kernels and the JSON config cache they read.

Only ``tuning.cache`` is on the runtime path; it imports nothing from Optuna.
"""
