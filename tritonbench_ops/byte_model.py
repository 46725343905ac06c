"""Bytes moved by the norm kernels, and the GB/s they reach.

Two counts, reported side by side (DESIGN.md, "Benchmarking rules"):

- TritonBench's model, the one its ``layer_norm`` operator reports: a forward moves 2x
  the bytes of x (read x, write y), a backward 3x (read dy and x, write dx), a fwd+bwd
  5x, whatever the op. It ignores weights, statistics and any second activation (the
  gate z, the residual), so it undercounts the gated and residual ops.
- The exact minimum: every tensor a kernel must read or write once. For the plain norms
  on LLM shapes this is within a percent of the model; for the gated and residual ops
  it is what the hardware actually has to move, and it is what the copy roof bounds.

The roof is the device-to-device copy bandwidth measured on the reference H200 host.
"""

from __future__ import annotations

from dataclasses import dataclass

# Device-to-device copy of 1 GiB, bytes read + written, on the reference H200
# (/work/shared/GPU_HOST.md, "Ceilings measured there"): the ceiling for a memory-bound norm.
COPY_ROOF_GBPS = 4248.0

MODES = ("fwd", "bwd", "fwd_bwd")

# TritonBench's multiples of bytes(x), as in its layer_norm operator's gbps metric.
TRITONBENCH_MULTIPLIER = {"fwd": 2, "bwd": 3, "fwd_bwd": 5}

STAT_BYTES = 4  # mean and rstd are fp32, one per row and group


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def tritonbench_bytes(mode: str, x_numel: int, x_elem_bytes: int) -> int:
    """Bytes by TritonBench's model: 2x / 3x / 5x the bytes of x."""
    _check_mode(mode)
    return TRITONBENCH_MULTIPLIER[mode] * x_numel * x_elem_bytes


@dataclass(frozen=True)
class NormKind:
    """What one norm variant reads and writes, in tensors of each size class.

    ``layer``: LayerNorm (saves mean and rstd) rather than RMSNorm (rstd only).
    ``bias``: a bias vector besides the weight. ``gated``: a gate z shaped like x.
    ``residual``: a residual added before the norm, its sum h returned as a second output.
    """

    layer: bool
    bias: bool = False
    gated: bool = False
    residual: bool = False

    @property
    def params(self) -> int:
        return 1 + int(self.bias)

    @property
    def stats(self) -> int:
        return 2 if self.layer else 1

    def fwd_counts(self) -> tuple[int, int, int, int]:
        """(activation reads, activation writes, param reads, stat writes)."""
        act_reads = 1 + int(self.gated) + int(self.residual)  # x, z, residual
        act_writes = 1 + int(self.residual)  # y, h = x + residual
        return act_reads, act_writes, self.params, self.stats

    def bwd_counts(self) -> tuple[int, int, int, int, int]:
        """(activation reads, activation writes, param reads, param writes, stat reads).

        Reads dy and the normalized input (x, or h with a residual), plus z when gated
        and dh (the gradient flowing into h) with a residual, and the weight (the bias
        does not enter the backward). Writes dx, plus dz when gated (the residual's
        gradient equals dx: no second write), and dW (and dB).
        """
        act_reads = 2 + int(self.gated) + int(self.residual)
        act_writes = 1 + int(self.gated)
        return act_reads, act_writes, 1, self.params, self.stats


LAYER_NORM = NormKind(layer=True, bias=True)
RMS_NORM = NormKind(layer=False)
GATED_RMS_NORM = NormKind(layer=False, gated=True)
ADD_RMS_NORM = NormKind(layer=False, residual=True)

KINDS = {
    "layer_norm": LAYER_NORM,
    "rms_norm": RMS_NORM,
    "gated_rms_norm": GATED_RMS_NORM,
    "add_rms_norm": ADD_RMS_NORM,
}


def exact_bytes(
    kind: NormKind, mode: str, m: int, n: int, elem_bytes: int, groups: int = 1,
    save_stats: bool = True,
) -> int:
    """Minimum bytes a kernel must move for an [m, n] input (weights in the same dtype).

    ``groups``: statistics per group of n / groups channels (grouped norms), one fp32
    value per row and group. ``save_stats=False``: a forward for inference, which keeps
    no statistics for a backward.
    """
    _check_mode(mode)
    act = m * n * elem_bytes
    param = n * elem_bytes
    stat = m * groups * STAT_BYTES
    total = 0
    if mode in ("fwd", "fwd_bwd"):
        act_r, act_w, param_r, stat_w = kind.fwd_counts()
        total += (act_r + act_w) * act + param_r * param + save_stats * stat_w * stat
    if mode in ("bwd", "fwd_bwd"):
        act_r, act_w, param_r, param_w, stat_r = kind.bwd_counts()
        total += (act_r + act_w) * act + (param_r + param_w) * param + stat_r * stat
    return total


def gbps(num_bytes: int, latency_ms: float) -> float:
    """GB/s (10**9 bytes per second) for ``num_bytes`` moved in ``latency_ms``."""
    if latency_ms <= 0:
        raise ValueError(f"latency must be positive, got {latency_ms} ms")
    return num_bytes / (latency_ms * 1e-3) / 1e9


def pct_of_roof(achieved_gbps: float, roof_gbps: float = COPY_ROOF_GBPS) -> float:
    """Achieved bandwidth as a percentage of the copy roof."""
    return 100.0 * achieved_gbps / roof_gbps
