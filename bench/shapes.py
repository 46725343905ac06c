"""Which (M, N) shapes each op is timed on: the reference set, TritonBench's, or a list."""

from __future__ import annotations

OPS = ("layer_norm", "rms_norm", "gated_rms_norm", "add_rms_norm")
MODES = ("fwd", "fwd_bwd")

from tuning.shapes import DECODE as DECODE_SHAPES
from tuning.shapes import GPU_HOST as DEFAULT_SHAPES
from tuning.shapes import TRITONBENCH_LAYER_NORM, TRITONBENCH_RMS_NORM, parse_shapes  # noqa: F401

QUICK_SHAPES = ((4096, 1024), (4096, 8192), (32768, 4096))

# The "decode" preset: issue 6's M = 1..128, timed like every other shape so that the table
# has their CUDA-graph (kernel) time beside the Triton peers', not only the host table's eager.
PRESETS = ("default", "quick", "tritonbench", "decode")

HOST_M = (1, 8, 128)
HOST_N = 4096


def preset_shapes(preset: str, op: str) -> tuple[tuple[int, int], ...]:
    """The shapes ``op`` runs on under ``preset``."""
    if preset == "default":
        return DEFAULT_SHAPES
    if preset == "quick":
        return QUICK_SHAPES
    if preset == "decode":
        return DECODE_SHAPES
    if preset == "tritonbench":
        return TRITONBENCH_LAYER_NORM if op == "layer_norm" else TRITONBENCH_RMS_NORM
    raise ValueError(f"unknown preset {preset!r}; choose from {PRESETS}")
