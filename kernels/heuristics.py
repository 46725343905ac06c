"""Built-in configs: what a kernel runs with when the config cache has no entry.

Each function returns a plain dict of Helion config fields. The tuner
(``tuning.space``) searches around these, and a tuned entry in the cache replaces
them per shape. All three kernels are row reductions over K, so the knobs are the
same: rows per program, warps, and whether the row is held in registers whole or
walked in chunks.
"""

from __future__ import annotations

# Past this many fp32 values per row a program stops holding the whole row in
# registers and loops over chunks (65536 would spill on every current GPU).
MAX_ROW_IN_REGISTERS = 32768
ROW_CHUNK = 8192
# Lanes (columns per step) of the two-pass chunked forward.
CHUNKED_LANES = 4096
MIN_CHUNKED_LANES = 512
# Channel tile of the split backward (rows too wide for register-resident dw/db).
SPLIT_TILE = 4096
# Widest row whose LayerNorm backward uses a row sum before taking the next.
ROW_SUMS_INTERLEAVED_UP_TO = 8192


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


def fwd_config(m: int, k: int, g: int, num_sms: int, rms: bool = True) -> dict:
    """Forward: a few rows per program for narrow rows, one row per program otherwise.

    Rows past MAX_ROW_IN_REGISTERS are walked in chunks: LayerNorm by
    ``norm_fwd_chunked`` (two reads of x, where Helion's reduction loop would take one
    per reduction: three), RMSNorm by Helion's reduction loop (two reads already).
    """
    kp = next_pow2(k)
    if kp > MAX_ROW_IN_REGISTERS and not rms:
        return two_pass_config(k)
    if kp > MAX_ROW_IN_REGISTERS:
        return {
            "block_sizes": [1, 1],
            "reduction_loops": [ROW_CHUNK],
            "num_warps": 16,
            "num_stages": 1,
        }
    rows = _clamp(4096 // kp, 1, 16)
    # Keep at least ~4 programs per SM so that small batches still fill the GPU.
    while rows > 1 and -(-m // rows) * g < 4 * num_sms:
        rows //= 2
    warps = _clamp(next_pow2(rows * kp // 1024), 4, 32 if kp >= 32768 else 16)
    return {
        "block_sizes": [rows, 1],
        "reduction_loops": [None],
        "num_warps": warps,
        "num_stages": 1,
    }


def two_pass_config(k: int) -> dict:
    """``norm_fwd_chunked``: the widest chunk of up to 4096 lanes that leaves the row at
    least two chunks (2048 up to 8192-wide rows) and wastes at most 1/16 of it in a
    masked tail (a 8704-wide row takes 1024 lanes: 9 chunks, 512 lanes idle; 4096 would
    idle 3584), with 256 lanes per warp (H200, 2026-11-22: 4096 lanes and 16 warps were
    the best of lanes 1024-8192 x warps 4-32 at bf16 4096x16384 and 2048x32768)."""
    lanes = CHUNKED_LANES if k > 8192 else CHUNKED_LANES // 2
    while lanes > MIN_CHUNKED_LANES and (2 * lanes > k or (-k % lanes) * 16 > k):
        lanes //= 2
    return {"block_sizes": [lanes, 1, 1], "num_warps": _clamp(lanes // 256, 4, 16), "num_stages": 1}


def bwd_config(m: int, k: int, g: int, num_sms: int) -> dict:
    """Backward: each program walks ``m_block`` rows of one channel tile, keeping the
    dw/db partials of that tile in registers.

    ``m_block`` is chosen so that about one program runs per SM and channel tile:
    the partial-sum buffer (P x N fp32, written once and read once by the reduce)
    stays small next to x; measured on the H200 (2026-11-21), P ~ 64-128 was best
    for M = 2048-4096. The channel tile spans the whole row (the fused schedule)
    unless the row's accumulators spill badly: from 32768 channels (at 16384 LayerNorm's
    dw and db spill a little and still beat the split's second read of x and dy: H200
    bf16 4096x16384, 2548-2755 against 2395 GB/s); then 4096-channel tiles (the split
    schedule).
    """
    kp = next_pow2(k)
    split = kp >= 32768
    tile_k = SPLIT_TILE if split else kp
    inner = _clamp(4096 // tile_k, 1, 4)
    programs = max(1, num_sms // (g * (kp // tile_k)))
    m_block = max(inner, next_pow2(-(-m // programs)))
    m_block = min(m_block, max(inner, next_pow2(m)))
    warps = _clamp(tile_k // 256, 4, 32 if tile_k >= 32768 else 16)
    return {
        "block_sizes": [m_block, 1, tile_k, inner],
        "num_warps": warps,
        "num_stages": 1,
    }


def bwd_sums_first(k: int) -> bool:
    """Whether LayerNorm's fused backward takes both row sums before using either
    (``norm_bwd``'s ``sums_first``): on rows held in registers wider than 8192 channels,
    where the other order spills (H200 bf16, NOTES attempts 31-32)."""
    return next_pow2(k) > ROW_SUMS_INTERLEAVED_UP_TO


def coef_config(m: int, k: int, g: int, num_sms: int) -> dict:
    """Row coefficients of the split backward: a row reduction like the forward's
    (``norm_bwd_coef`` has no two-pass form: Helion's reduction loop walks wide rows)."""
    return fwd_config(m, k, g, num_sms, rms=True)


def reduce_config(p: int) -> dict:
    """Partial-sum reduce: every partial row of a column tile in one step when it fits
    (up to 512 rows, so a program's loads are all in flight at once), 16-column tiles
    (64 where P <= 16, where there are few rows to spread), ~32 values per thread.

    The partials were just written by the backward and sit in the L2; the reduce is a
    latency problem more than a bandwidth one. H200, bf16 outputs, P = 8-1024 partial
    rows of 1-2 x 1024-32768 fp32 columns, against the best of 4 tile widths x 5 row
    steps x 4 warp counts: within 1.065x of the best on geomean (worst 1.55x), where
    the earlier rule (32-512 columns, 32 rows, 4 warps) was 1.76x (up to 5.6x; NOTES
    attempt 49). The row width does not change the pick: wider rows only add programs.
    """
    rows = _clamp(next_pow2(p), 8, 512)
    cols = 64 if p <= 16 else 16
    return {
        "block_sizes": [cols, rows],
        "num_warps": _clamp(rows * cols // (32 * 32), 1, 8),
        "num_stages": 1,
    }
