"""Which (M, N) shapes each op is timed on: the reference set, TritonBench's, or a list."""

from __future__ import annotations

OPS = ("layer_norm", "rms_norm", "gated_rms_norm", "add_rms_norm")
MODES = ("fwd", "fwd_bwd")

# GPU_HOST.md's table, in its order.
DEFAULT_SHAPES = (
    (4096, 1024),
    (4096, 4096),
    (4096, 8192),
    (4096, 16384),
    (8192, 4096),
    (32768, 4096),
    (2048, 32768),
)

QUICK_SHAPES = ((4096, 1024), (4096, 8192), (32768, 4096))

# TritonBench's own input sets: layer_norm M=4096, N=1024..15872 step 512;
# rms_norm M=2048, H=1024..32768 (powers of two).
TRITONBENCH_LAYER_NORM = tuple((4096, 512 * i) for i in range(2, 32))
TRITONBENCH_RMS_NORM = tuple((2048, 2**i) for i in range(10, 16))

PRESETS = ("default", "quick", "tritonbench")

HOST_M = (1, 8, 128)
HOST_N = 4096


def parse_shapes(text: str) -> tuple[tuple[int, int], ...]:
    """``"4096x1024,8192x4096"`` -> ``((4096, 1024), (8192, 4096))``."""
    shapes = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            m, n = (int(v) for v in item.split("x"))
        except ValueError:
            raise ValueError(f"shape {item!r} is not MxN (e.g. 4096x1024)") from None
        if m <= 0 or n <= 0:
            raise ValueError(f"shape {item!r}: M and N must be positive")
        shapes.append((m, n))
    if not shapes:
        raise ValueError(f"no shapes in {text!r}")
    return tuple(shapes)


def preset_shapes(preset: str, op: str) -> tuple[tuple[int, int], ...]:
    """The shapes ``op`` runs on under ``preset``."""
    if preset == "default":
        return DEFAULT_SHAPES
    if preset == "quick":
        return QUICK_SHAPES
    if preset == "tritonbench":
        return TRITONBENCH_LAYER_NORM if op == "layer_norm" else TRITONBENCH_RMS_NORM
    raise ValueError(f"unknown preset {preset!r}; choose from {PRESETS}")
