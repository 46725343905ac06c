"""How many bytes a norm moves: TritonBench's model, and the exact minimum.

TritonBench counts multiples of the input ``x`` (fwd 2x, bwd 3x, fwd+bwd 5x) whatever
the op; that is the figure every peer reports, so ``gbps`` uses it. ``exact_bytes`` is
what a kernel must read and write at least: every activation tensor once, the
parameter vectors, and the fp32 per-row statistics the backward needs. Forward-only
runs are the inference path (no statistics saved).
"""

from __future__ import annotations

COPY_ROOF_GBPS = 4248.0  # device-to-device copy on the reference H200 (GPU_HOST.md)

TRITONBENCH_FACTOR = {"fwd": 2, "bwd": 3, "fwd_bwd": 5}

STAT_BYTES = 4  # mean / rstd are fp32

# (op, mode) -> ([M, N] activation tensors moved, [N] parameter vectors moved,
#                fp32 statistics moved per row)
TRAFFIC = {
    # read x; write y | params: w, b
    ("layer_norm", "fwd"): (2, 2, 0),
    # + fwd writes mean, rstd; bwd reads dy, x, mean, rstd, w; writes dx, dw, db
    ("layer_norm", "fwd_bwd"): (5, 5, 4),
    ("rms_norm", "fwd"): (2, 1, 0),
    # fwd: x -> y, rstd; bwd: dy, x, rstd, w -> dx, dw
    ("rms_norm", "fwd_bwd"): (5, 3, 2),
    # read x, z; write y
    ("gated_rms_norm", "fwd"): (3, 1, 0),
    # fwd: x, z -> y, rstd; bwd: dy, x, z, rstd, w -> dx, dz, dw
    ("gated_rms_norm", "fwd_bwd"): (8, 3, 2),
    # read x, residual; write y, h = x + residual
    ("add_rms_norm", "fwd"): (4, 1, 0),
    # fwd: x, r -> y, h, rstd; bwd: dy, dh, h, rstd, w -> dx (= d residual, written once), dw
    ("add_rms_norm", "fwd_bwd"): (8, 3, 2),
}

HOST_SUFFIX = "_host"


def base_op(op: str) -> str:
    """The norm an op name times: ``rms_norm_host`` -> ``rms_norm``."""
    return op.removesuffix(HOST_SUFFIX)


def tritonbench_bytes(mode: str, m: int, n: int, elem_size: int) -> int:
    """TritonBench's byte count: a multiple of the bytes of ``x``."""
    return TRITONBENCH_FACTOR[mode] * m * n * elem_size


def exact_bytes(
    op: str, mode: str, m: int, n: int, elem_size: int, param_size: int | None = None
) -> int:
    """The bytes a kernel (or kernel pair) for ``op``/``mode`` must move at least."""
    activations, params, stats = TRAFFIC[(base_op(op), mode)]
    param_size = elem_size if param_size is None else param_size
    return activations * m * n * elem_size + params * n * param_size + stats * m * STAT_BYTES


def gbps(nbytes: float, us: float | None) -> float | None:
    """GB/s (1e9 bytes per second) for ``nbytes`` moved in ``us`` microseconds."""
    if not us or us <= 0:
        return None
    return nbytes / (us * 1e-6) / 1e9
