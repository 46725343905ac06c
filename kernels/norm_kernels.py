"""The Helion kernels of the norm family: one forward, one backward, one partial-sum reduce.

Every variant (LayerNorm or RMSNorm, weight/bias or none, gate before or after the
norm, per-group statistics, fused residual add, Gemma ``(1 + w)``, the three casting
conventions) is a compile-time flag of the same two kernels. Inputs arrive as
``[M, G, K]`` views: M rows, G groups of K channels each (G = 1 for a plain norm), so
"grouped" is just a second tile dimension and the statistics are always taken over
the last axis.

Forward, per row r and group g, with u the normalized input:

    h     = x + residual                    (only with a residual; stored, rounded)
    u     = h * silu(z)                     (gate "before"; otherwise u = h)
    mean  = sum(u) / K                      (LayerNorm; 0 for RMSNorm)
    rstd  = 1 / sqrt(sum((u - mean)^2) / K + eps)
    xhat  = (u - mean) * rstd
    n     = xhat * (w + offset) + b
    y     = n * silu(z)                     (gate "after"; otherwise y = n)

The variance is two-pass over the row shifted by a pilot near its mean (its first
value when the row is held in registers; the mean of its first chunk in
``norm_fwd_chunked``, which walks wide rows twice), so |mean| >> std stays accurate.
Statistics and all arithmetic are fp32 except where ``casting`` asks for the input dtype.

Backward, with dn = dy * silu(z) (gate "after") or dy, and dxhat = dn * (w + offset):

    du    = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))   (LayerNorm)
    du    = rstd * (dxhat - xhat * mean(dxhat * xhat))                 (RMSNorm)
    dx    = du * silu(z)  (gate "before")  +  dh  (grad of the residual-sum output)
    dz    = dy * n * silu'(z)  ("after")  |  du * h * silu'(z)  ("before")
    dw    = sum_rows(dn * xhat),  db = sum_rows(dn)

dw/db are reduced in fp32: each program owns ``m_block`` rows and writes one partial
row; ``reduce_partials`` then sums the partials of both in a fixed order (deterministic).
Where one program's rows cover M, its row is the sum: the backward writes dW/dB itself.
"""

from __future__ import annotations

import torch

import helion
import helion.language as hl

# Names used by kernel bodies must not collide with module globals: Helion treats a
# global assigned inside a device loop as a host variable.

GATE_NONE = "none"
GATE_AFTER = "after"
GATE_BEFORE = "before"

CAST_LLAMA = "llama"
CAST_GEMMA = "gemma"
CAST_NONE = "none"

# bf16 -> fp32 of a register holding two bf16 values: the low one shifted into the high
# half, the high one masked in place. Triton's own conversion takes a byte permute and a
# shift for the high one (three instructions a pair where fp16 takes two), which at wide
# rows cost the bf16 forwards 2-8% against fp16 on the same programs (NOTES attempt 75).
# kernels.launch passes ``widen`` for LayerNorm rows of 4096 values or more only: RMSNorm's
# forwards and narrower LayerNorm rows measured slower with it.
_WIDEN_BF16_PTX = "shl.b32 $0, $2, 16; and.b32 $1, $2, -65536;"


def _widened(t: torch.Tensor, pure: bool) -> torch.Tensor:
    """A bf16 ``t`` in fp32 by ``_WIDEN_BF16_PTX``; not ``pure``: opaque to Triton, which
    would otherwise merge it with an equal conversion (``_recast``)."""
    source = f'tl.inline_asm_elementwise("{_WIDEN_BF16_PTX}", "=r,=r,r", [{{0}}], dtype=tl.float32, is_pure={pure}, pack=2)'
    return hl.inline_triton(source, [t], t.to(torch.float32))


def _f32(t: torch.Tensor, widen: bool) -> torch.Tensor:
    """``t`` in fp32: a bf16 ``t`` by two bit moves a pair of values where ``widen`` (a
    compile-time flag of the forward and backward kernels: CUDA only, the moves are PTX),
    else Triton's conversion. Both are exact."""
    if widen and t.dtype == torch.bfloat16:
        return _widened(t, pure=True)
    return t.to(torch.float32)


def _norm_input(xv: torch.Tensor, rv: torch.Tensor | None, zv: torch.Tensor | None, dtype: torch.dtype, widen: bool):
    """(h, u): the residual sum h = x + residual rounded to the input dtype (None without
    a residual) and the fp32 value the norm sees, u = h * silu(z) (gate "before") or h.

    The sum is rounded exactly as the unfused ``norm(x + residual)`` would see it.
    """
    u = _f32(xv, widen)
    h = None
    if rv is not None:
        h = (u + _f32(rv, widen)).to(dtype)
        u = _f32(h, widen)
    if zv is not None:
        zf = _f32(zv, widen)
        u = u * zf * torch.sigmoid(zf)
    return h, u


def _shifted(wv: torch.Tensor, offset: float, widen: bool) -> torch.Tensor:
    """w + offset in fp32. The forward kernels take ``offset`` as a compile-time constant,
    so Llama's 0 costs no add per weight element (Gemma's 1 does). The backwards take it at
    run time: as a constant 0 there, RMSNorm fp32 4096x4096's backward ran 0.88x and
    LayerNorm fp16 4096x16384's 0.95-0.97x on the H200 (NOTES attempt 77)."""
    if offset == 0.0:
        return _f32(wv, widen)
    return _f32(wv, widen) + offset


def _norm_output(
    xc: torch.Tensor,
    rs: torch.Tensor,
    wv: torch.Tensor | None,
    bv: torch.Tensor | None,
    zv: torch.Tensor | None,
    offset: float,
    casting: str,
    dtype: torch.dtype,
    widen: bool,
) -> torch.Tensor:
    """y = (xc * rstd) * (w + offset) + b, gated by silu(z) ("after"), in fp32 under the
    casting convention; xc is the centred input (u - mean, or u for RMSNorm)."""
    # A 16-bit weight times a value rounded to the dtype is a product Triton forms in the
    # dtype itself (HMUL2 for bf16, a pair at a time), which an opaque widened weight would
    # break into conversions (RMSNorm bf16 4096x16384: 296 -> 392 SASS instructions;
    # NOTES attempt 76): where such a product is formed (Llama or no casting, no offset),
    # Triton converts the weight.
    widen_w = widen and (offset != 0.0 or casting == "gemma")
    if casting == "none":
        # Statistics in fp32, everything after them in the input dtype. A product of
        # two fp16/bf16 values is exact in fp32, so rounding each fp32 product to the
        # dtype is bit-identical to multiplying in that dtype (and works in Triton's
        # interpreter, whose bf16 arithmetic is not reliable).
        y = xc.to(dtype).to(torch.float32) * rs.to(dtype).to(torch.float32)
        y = y.to(dtype).to(torch.float32)
        if wv is not None:
            wl = _shifted(wv, offset, widen_w).to(dtype)
            y = (y * wl.to(torch.float32)).to(dtype).to(torch.float32)
    else:
        y = xc * rs
        if casting == "llama":
            # Llama: cast the normalized value to the input dtype, then scale.
            y = y.to(dtype).to(torch.float32)
        if wv is not None:
            y = y * _shifted(wv, offset, widen_w)
    if bv is not None:
        y = y + _f32(bv, widen)
    if zv is not None:
        zf = _f32(zv, widen)
        y = y * zf * torch.sigmoid(zf)
    return y


def _recast(hsum: torch.Tensor | None, xv: torch.Tensor, widen: bool) -> torch.Tensor:
    """The fp32 row u of ``norm_fwd`` converted again from its 16-bit source (the
    residual sum, else x) for one more pass over it: ``norm_fwd``'s ``recast``.

    A whole row held in fp32 across the row's reductions is what bounds the forward's
    programs per SM on some wide rows (bf16 4096x12800, 8 warps on the 16384-wide tile:
    117-128 registers, two programs per SM, against 78-80 and three recast, for ~23% more
    instructions; NOTES attempt 66), so it is a tuner choice. Triton would merge equal
    conversions into the one fp32 value, so the source passes through an opaque register
    move first (PTX inline assembly, two values a move): CUDA only, and never with a gate
    before the norm, whose u is not a conversion.
    """
    src = hsum if hsum is not None else xv
    if widen and src.dtype == torch.bfloat16:  # ``_f32``'s moves, opaque the same way
        return _widened(src, pure=False)
    held = hl.inline_triton(
        'tl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [{0}], dtype={0}.dtype, is_pure=False, pack=2)',
        [src],
        src,
    )
    return held.to(torch.float32)


def _held(t: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """The 16-bit ``t`` again, as a value that depends on ``anchor`` (a row sum): a select
    on ``anchor == anchor`` that ptxas cannot fold, so the conversion of the result cannot
    be hoisted above the sum and merged with the one before it (an opaque move alone is
    seen through by ptxas). A NaN anchor gives zeros, in a row whose dx is NaN anyway."""
    source = (
        'tl.inline_asm_elementwise("{{ .reg .pred p; setp.eq.f32 p, $2, $2; selp.b32 $0, $1, 0, p; }}", '
        '"=r,r,r,r", [{0}, {1}], dtype={0}.dtype, is_pure=True, pack=2)'
    )
    return hl.inline_triton(source, [t, anchor], t + anchor.to(t.dtype))


def _read_only_source(evict: str, rows: bool) -> str:
    """Inline Triton for ``_read_only``: ``{p}``'s chunk at ``{cols}`` of rows ``{rows}``
    and groups ``{groups}`` (of groups only for a [G, K] parameter, ``rows`` False), 16
    bytes a load, L1 eviction priority ``evict``. Lanes past the end read the last 16
    bytes of their row, and rows or groups past the end the last one (their output is
    masked at the store), so no address leaves the tensor."""
    if rows:
        offset = "tl.minimum({rows}, {m} - 1)[:, None, None] * {stride_m} + ro_groups[None, :, None] * {stride_g} + ro_cols[None, None, :]"
    else:
        offset = "ro_groups[:, None] * {stride_g} + ro_cols[None, :]"
    return f"""ro_cols = tl.minimum({{cols}}, {{k}} - {{pack}})
ro_groups = tl.minimum({{groups}}, {{g}} - 1)
ro_ptr = {{p}} + {offset}
tl.inline_asm_elementwise(
    "ld.global.nc.L1::{evict}.v4.b32 {{{{$0, $1, $2, $3}}}}, [$4];",
    "=r,=r,=r,=r" + ",l" * {{pack}}, [ro_ptr], dtype={{p}}.dtype.element_ty, is_pure=True, pack={{pack}},
)"""


_READ_ONLY_ROW = _read_only_source("evict_first", rows=True)  # x again, then not at all
_READ_ONLY_PARAM = _read_only_source("evict_last", rows=False)  # w, b: read by every row


def _read_only(t: torch.Tensor, tile_m: hl.Tile | None, tile_g: hl.Tile, tile_k: hl.Tile, m: int, g: int, k: int) -> torch.Tensor:
    """``t[tile_m, tile_g, tile_k]`` of a contiguous [m, g, k] ``t`` (``t[tile_g, tile_k]``
    of a [g, k] parameter, ``tile_m`` None) by read-only loads (PTX ``ld.global.nc``):
    ``norm_fwd_chunked``'s ``read_only``.

    Triton writes each load as its own inline PTX, and ptxas cannot move a plain load
    above an earlier store it cannot prove apart: in the two-pass forward's output pass
    every step's loads then wait for the step before to be stored. Read-only loads may
    move, and with the loop unrolled (Triton unrolls a static row's few steps) ptxas
    issues the next steps' loads early (H200 bf16, 4096 x 10752-15872: +1..+6%; NOTES
    attempt 73). Each load is 16 bytes of one thread's run of the chunk, and ``t`` is
    addressed as contiguous from the kernel's own sizes (g and k compile-time constants),
    so ``kernels.launch.can_read_only`` asks for runs of at least 16 bytes a thread and
    contiguous tensors on 16-byte boundaries, K included. CUDA only.
    """
    args = {"p": t, "cols": tile_k.index, "groups": tile_g.index, "k": k, "g": g, "pack": 16 // t.element_size(), "stride_g": k}
    if tile_m is None:
        return hl.inline_triton(_READ_ONLY_PARAM, args=args, output_like=hl.zeros([tile_g, tile_k], dtype=t.dtype))
    args.update(rows=tile_m.index, m=m, stride_m=g * k)
    return hl.inline_triton(_READ_ONLY_ROW, args=args, output_like=hl.zeros([tile_m, tile_g, tile_k], dtype=t.dtype))


def _row_chunk(t: torch.Tensor, tile_m: hl.Tile, tile_g: hl.Tile, tile_k: hl.Tile, read_only: bool, m: int, g: int, k: int) -> torch.Tensor:
    """``t[tile_m, tile_g, tile_k]`` of an [M, G, K] row read for the last time (evict
    first), by read-only loads where ``read_only``."""
    if read_only:
        return _read_only(t, tile_m, tile_g, tile_k, m, g, k)
    return hl.load(t, [tile_m, tile_g, tile_k], eviction_policy="evict_first")


def _param_chunk(p: torch.Tensor | None, tile_g: hl.Tile, tile_k: hl.Tile, read_only: bool, m: int, g: int, k: int):  # noqa: ANN202
    """``p[tile_g, tile_k]`` of a [G, K] weight or bias as [1, groups, chunk] (None for no
    parameter), by read-only loads where ``read_only``."""
    if p is None:
        return None
    # unsqueeze: Helion 1.4 lowers ``t[None, ...]`` only in a kernel's own body.
    if read_only:
        return _read_only(p, None, tile_g, tile_k, m, g, k).unsqueeze(0)
    return p[tile_g, tile_k].unsqueeze(0)


def _inv_sqrt(v: torch.Tensor, fast: bool) -> torch.Tensor:
    """1 / sqrt(v). ``fast``: Triton's ``tl.rsqrt``, one approximate reciprocal square
    root (PTX rsqrt.approx, relative error under 2^-22), as torch's own CUDA norms take
    it; else ``1 / torch.sqrt``, whose IEEE-rounded sqrt and division put a longer
    instruction sequence between a row's reduction and its output (H200, bf16 RMSNorm
    inference 8x4096: 1.4% of a 1.5 us kernel, NOTES attempt 50). ``kernels.launch``
    asks for it in plain RMSNorm's programs only (no gate, no residual: attempt 51).

    Inline Triton because ``torch.rsqrt`` lowers to libdevice's, which Triton's
    interpreter does not implement; Helion's eager reference mode runs no inline Triton,
    so it passes ``fast`` = False.
    """
    if fast:
        return hl.inline_triton("tl.rsqrt({0})", [v], v)
    return 1.0 / torch.sqrt(v)


def norm_fwd(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    z: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    out: torch.Tensor,
    h_out: torch.Tensor | None,
    mean_out: torch.Tensor | None,
    rstd_out: torch.Tensor | None,
    eps: float,
    offset: hl.constexpr,
    rms: hl.constexpr,
    gate: hl.constexpr,
    casting: hl.constexpr,
    widen: hl.constexpr,
    params_first: hl.constexpr,
    recast: hl.constexpr,
    fast_rsqrt: hl.constexpr,
) -> torch.Tensor:
    """Normalize ``x`` [M, G, K] over K into ``out``; save mean (LayerNorm) and rstd
    for the backward when given buffers for them (inference passes None).

    The row is held whole (a config's ``reduction_loops`` may have Helion walk it in
    chunks, one loop per reduction); ``norm_fwd_chunked`` is the two-pass schedule
    for wide rows. ``params_first``: load the weight and bias before the statistics
    (``kernels.launch.params_first`` says where). ``fast_rsqrt``: see ``_inv_sqrt``.
    ``recast``: hold the row in its 16-bit form between the passes (see ``_recast``).
    """
    m, g, k = x.size()
    k = hl.specialize(k)
    g = hl.specialize(g)
    # Multiply by 1/K rather than divide by K: Triton's fp32 division is approximate
    # (div.full), and x * (1/1) must stay exactly x.
    inv_k = 1.0 / k
    for tile_m, tile_g in hl.tile([m, g]):
        xv = x[tile_m, tile_g, :]
        if residual is not None:
            rv = residual[tile_m, tile_g, :]
        else:
            rv = None
        if gate == "before":
            zv = z[tile_m, tile_g, :]
        else:
            zv = None
        # With ``params_first`` the weight and bias loads are issued before the
        # statistics, so that their latency hides behind the row's block reductions
        # instead of following them (Helion keeps source order; a looped config moves
        # the loads into the loop that uses them).
        if params_first and weight is not None:
            w_early = weight[tile_g, :][None, :, :]
        else:
            w_early = None
        if params_first and bias is not None:
            b_early = bias[tile_g, :][None, :, :]
        else:
            b_early = None
        hsum, xf = _norm_input(xv, rv, zv, x.dtype, widen)
        if residual is not None:
            h_out[tile_m, tile_g, :] = hsum
        if rms:
            xc = xf
        else:
            # Two-pass variance of the row shifted by its first value (the pilot). A
            # plain two-pass mean carries a rounding error of fp32 of |mean|, which a
            # |mean| >> std row feels in every deviation; shifted, the mean is of the
            # order of the std and so is its error. The pilot is one element away
            # from the row's load (a cache hit) and saves a third round of block
            # reductions that a corrected two-pass would need.
            if residual is not None:
                rp = residual[tile_m, tile_g, 0]
            else:
                rp = None
            if gate == "before":
                zp = z[tile_m, tile_g, 0]
            else:
                zp = None
            _, pilot = _norm_input(x[tile_m, tile_g, 0], rp, zp, x.dtype, False)  # one value a row
            # Helion 1.4 takes the pilot (a load) for zero in the row's padding lanes
            # and would drop the mask before the sum of xf - pilot; the where (a no-op
            # but for NaN) hides that and keeps the mask.
            pilot = torch.where(pilot == pilot, pilot, 0.0)
            xs = xf - pilot[:, :, None]
            shift = torch.sum(xs, dim=-1) * inv_k
            mean = pilot + shift
            # Recast, u - mean: one subtraction a pass instead of two. The mean rounds
            # at fp32's 2^-24 of |mean|, and a recast row is 16-bit, its values 2^-8
            # (bf16) or 2^-11 (fp16) of |mean| apart: the rounding stays 2^13 below the
            # row's spread (a constant row has shift = 0: mean = P exactly). fp32 rows
            # are never recast and keep the shifted form.
            if recast:
                xc = _recast(hsum, xv, widen) - mean[:, :, None]
            else:
                xc = xs - shift[:, :, None]
            if mean_out is not None:
                mean_out[tile_m, tile_g] = mean
        var = torch.sum(xc * xc, dim=-1) * inv_k
        rs = _inv_sqrt(var + eps, fast_rsqrt)
        if rstd_out is not None:
            rstd_out[tile_m, tile_g] = rs
        if weight is not None and not params_first:
            wv = weight[tile_g, :][None, :, :]
        else:
            wv = w_early
        if bias is not None and not params_first:
            bv = bias[tile_g, :][None, :, :]
        else:
            bv = b_early
        if gate == "after":
            za = z[tile_m, tile_g, :]
        else:
            za = None
        xo = xc  # u - mean (u for RMSNorm)
        if recast:
            xo = _recast(hsum, xv, widen)
            if not rms:
                xo = xo - mean[:, :, None]
        y = _norm_output(xo, rs[:, :, None], wv, bv, za, offset, casting, x.dtype, widen)
        out[tile_m, tile_g, :] = y.to(out.dtype)
    return out


def norm_fwd_chunked(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    z: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    out: torch.Tensor,
    h_out: torch.Tensor | None,
    mean_out: torch.Tensor | None,
    rstd_out: torch.Tensor | None,
    eps: float,
    offset: hl.constexpr,
    rms: hl.constexpr,
    gate: hl.constexpr,
    casting: hl.constexpr,
    widen: hl.constexpr,
    width: hl.constexpr,
    ragged: hl.constexpr,
    pilot_width: hl.constexpr,
    read_only: hl.constexpr,
    fast_rsqrt: hl.constexpr,
) -> torch.Tensor:
    """``norm_fwd`` for rows too wide to hold: two passes over the row in chunks of L
    columns (the first block size). The first pass reads the row once for the
    statistics and keeps it in L2 (evict_last); the second re-reads it (from L2,
    evict_first) to write the output. A residual sum is stored by the first pass and
    re-read by the second instead of x and the residual.

    The statistics are sums of the row shifted by a pilot P, the mean of the row's
    first ``pilot_width`` = L values, kept per lane (column j of every chunk) until the
    row ends:

        S_j = sum(u - P),  Q_j = sum((u - P)^2)
        shift = sum_j S_j / K,  mean = P + shift,  var = sum_j Q_j / K - shift^2

    The subtraction cancels (P - mean)^2 / var digits' worth, and for the mean of L of
    the row's K values (P - mean)^2 <= var * (K - L) / L: no input (a large mean, outlier
    first values) loses more than a factor K / L of fp32's precision. 16-bit inputs take
    L = 16: 16 values are one short load and an in-warp sum, where a whole first chunk
    costs a block reduction before the loop can start (H200, bf16 4096x16384: 3695 vs
    3856 GB/s, NOTES attempt 29); even K = 65536 then keeps var to 2^-12, below an fp16
    output's rounding. fp32 inputs take L = one chunk (>= K / 16, the tuner's limit; see
    ``kernels.launch.fwd_kernel_args``). P is kept [rows, groups, 1], in the chunk's own
    layout: as a [rows, groups] value carried out of its one-step loop it took the layout
    of the mean's store, and Triton 3.6 broadcast it to the chunk before converting it
    through shared memory (2052 st.shared a thread), which made the training forward 14x
    slower with any pilot narrower than the chunk (H200, NOTES attempts 29 and 61).
    One block reduction per row, not per chunk, and two accumulators: the loop stays as
    light as a plain sum. RMSNorm keeps var = sum_j Q_j / K with no pilot (u^2 has
    nothing to cancel).

    ``width`` is K as a compile-time constant and ``ragged`` whether L does not divide
    it: with both known, a row that is a whole number of chunks is walked without a
    single mask (Helion masks every chunk of a merely specialized size). ``read_only``:
    the second pass reads x (or the residual sum), the weight and the bias by read-only
    loads, which may be issued before the previous step's store (``_read_only``).
    """
    m, g, k = x.size()
    k = width
    g = hl.specialize(g)
    lanes = hl.register_block_size(k)
    inv_k = 1.0 / k
    inv_pilot = 1.0 / min(pilot_width, k)
    for tile_m, tile_g in hl.tile([m, g]):
        acc_q = hl.zeros([tile_m, tile_g, lanes], dtype=torch.float32)
        if not rms:
            acc_s = hl.zeros([tile_m, tile_g, lanes], dtype=torch.float32)
            pilot = hl.zeros([tile_m, tile_g, 1], dtype=torch.float32)
            for tile_p in hl.tile(pilot_width, block_size=pilot_width):  # one step
                # Only a pilot wider than the row has lanes past K here.
                first = (tile_p.index < k)[None, None, :]
                xp = hl.load(x, [tile_m, tile_g, tile_p], extra_mask=first, eviction_policy="evict_last")
                if residual is not None:
                    rp = hl.load(residual, [tile_m, tile_g, tile_p], extra_mask=first, eviction_policy="evict_last")
                else:
                    rp = None
                if gate == "before":
                    zp = hl.load(z, [tile_m, tile_g, tile_p], extra_mask=first, eviction_policy="evict_last")
                else:
                    zp = None
                _, up = _norm_input(xp, rp, zp, x.dtype, widen)
                pilot = torch.sum(up, dim=-1, keepdim=True) * inv_pilot  # masked lanes hold u = 0
        for tile_k in hl.tile(k, block_size=lanes):
            xv = hl.load(x, [tile_m, tile_g, tile_k], eviction_policy="evict_last")
            if residual is not None:
                rv = hl.load(residual, [tile_m, tile_g, tile_k], eviction_policy="evict_last")
            else:
                rv = None
            if gate == "before":
                zv = hl.load(z, [tile_m, tile_g, tile_k], eviction_policy="evict_last")
            else:
                zv = None
            hsum, u = _norm_input(xv, rv, zv, x.dtype, widen)
            if residual is not None:
                h_out[tile_m, tile_g, tile_k] = hsum
            if rms:
                acc_q = acc_q + u * u
            else:
                d = u - pilot
                if ragged:  # the last chunk's lanes past K hold 0, not a value near P
                    d = torch.where((tile_k.index < k)[None, None, :], d, 0.0)
                acc_s = acc_s + d
                acc_q = acc_q + d * d
        if rms:
            var = torch.sum(acc_q, dim=-1) * inv_k
        else:
            shift = torch.sum(acc_s, dim=-1) * inv_k
            var = torch.sum(acc_q, dim=-1) * inv_k - shift * shift
            var = torch.maximum(var, torch.zeros_like(var))
            if mean_out is not None:
                mean_out[tile_m, tile_g] = torch.sum(pilot, dim=-1) + shift  # the sum drops P's size-1 dim
        rs = _inv_sqrt(var + eps, fast_rsqrt)
        if rstd_out is not None:
            rstd_out[tile_m, tile_g] = rs
        for tile_k in hl.tile(k, block_size=lanes):
            if residual is not None:  # the residual sum stored by the first pass
                xb = _row_chunk(h_out, tile_m, tile_g, tile_k, read_only, m, g, k)
            else:
                xb = _row_chunk(x, tile_m, tile_g, tile_k, read_only, m, g, k)
            if gate == "before":
                zb = hl.load(z, [tile_m, tile_g, tile_k], eviction_policy="evict_first")
            else:
                zb = None
            _, u = _norm_input(xb, None, zb, x.dtype, widen)
            if rms:
                xc = u
            else:
                # (u - P) - shift, not u - mean: P + shift would round at |mean|.
                xc = (u - pilot) - shift[:, :, None]
            wv = _param_chunk(weight, tile_g, tile_k, read_only, m, g, k)
            bv = _param_chunk(bias, tile_g, tile_k, read_only, m, g, k)
            if gate == "after":
                za = z[tile_m, tile_g, tile_k]
            else:
                za = None
            y = _norm_output(xc, rs[:, :, None], wv, bv, za, offset, casting, x.dtype, widen)
            out[tile_m, tile_g, tile_k] = y.to(out.dtype)
    return out


def _silu_and_slope(zf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """silu(z) = z * sigmoid(z) and its derivative sigmoid(z) * (1 + z * (1 - sigmoid(z)))."""
    sig = torch.sigmoid(zf)
    return zf * sig, sig * (1.0 + zf * (1.0 - sig))


# The exchange schedule's two steps (``norm_bwd``). Its scratch is the zeroed fp32
# [M, 2, G, T, 2] of ``kernels.launch._coef``: per row, sum (0: sum(dxhat * xhat), 1:
# sum(dxhat)), group and channel tile t, one 8-byte slot (the tile's partial sum, a
# flag). A slot is written and read as one 64-bit access, so a reader that sees the flag
# sees the sum with it: no counter, no CTA barrier and no acquire/release pair. Those,
# or a spin written in Triton (a nested loop), would stop Triton's pipeliner from
# prefetching the next steps' rows during the wait, and a plain tl.load of the sums could
# be prefetched before it. So the slot is written by an atomic exchange (Triton gives a
# replicated value's atomics one owner thread) and read by inline asm, which the
# pipeliner neither moves nor prefetches. Rows past M and groups past G neither write
# nor wait.
# A waiting thread's pause between polls, so a long wait does not flood the L2 with
# strong loads (0 and 100 ns timed alike on the H200, NOTES attempt 56).
EXCHANGE_BACKOFF_NS = 100

def _exchange_source(sums: int, g: int, t: int) -> str:
    """Inline Triton for ``_exchange``.

    Publish: this step's row sums in one reduction (LayerNorm's two joined: one round of
    CTA barriers, not two), each stored with its flag by an atomic exchange.

    Collect: the lagged row's slots (rows x groups x tiles, from fresh ranges: one slot
    per thread in the pointers' own layout) are read by inline asm with strong loads,
    every sum's load issued before any is used (one round trip a poll, not one a sum),
    and read again after a pause until every flag is set. Masked slots (a null address:
    no register for a mask) read as set, with sum 0. A first read by ``tl.atomic_add``
    (the earlier form) cost its owner thread's round trip, a shared-memory broadcast and
    two CTA barriers per sum, one sum after the other; a first read issued before the
    step's own row sums (to overlap their reductions) found the flags unset more often.
    H200 LayerNorm 2048x32768 backward, bf16: atomics 2642 GB/s, early read 2811, after
    the publication 3061; fp16 with the sums joined +3% (NOTES attempt 79). Triton
    re-lays out a plain load of so few values, and asm fed from the row sums' own layout,
    like the channel tile they were reduced from: every slot in every thread, polled one
    after another (H200 RMSNorm 2048x32768 backward at the same config: 555 GB/s that
    way, 2069 this way; NOTES attempt 56)."""
    if sums == 2:
        reduce = "xs_0, xs_1 = tl.split(tl.sum(tl.join({p0}, {p1}), axis=2))"
    else:
        reduce = "xs_0 = tl.sum({p0}, axis=2)"
    publish = "\n".join(
        f"""xp_slot = (xs_{s}.to(tl.int32, bitcast=True).to(tl.int64) & 0xFFFFFFFF) | (1 << 32)
tl.atomic_xchg(xp_ptr + {s * g * t}, xp_slot, mask=xp_ok, sem="relaxed")"""
        for s in range(sums)
    )
    polls = " ".join(f"ld.relaxed.gpu.global.b64 %d{s}, [${sums}+{s * g * t * 8}];" for s in range(sums)) + " " + " ".join(
        f"mov.b64 {{{{%v{s}, %f{s}}}}}, %d{s};" for s in range(sums)
    )  # fmt: skip
    flags = "mov.b32 %all, %f0; " + " ".join(f"and.b32 %all, %all, %f{s};" for s in range(1, sums))
    zeros = " ".join(f"mov.b32 %v{s}, 0;" for s in range(sums))
    results = " ".join(f"mov.b32 ${s}, %v{s};" for s in range(sums))
    outputs = ",".join(["=r"] * sums) + ",l"
    dtype = "(" + "tl.int32, " * sums + ")" if sums > 1 else "tl.int32"
    bits = [f"xc_bits[{s}]" for s in range(sums)] if sums > 1 else ["xc_bits"]
    # Each row's sum is reduced to a scalar and placed by index, so the tile's dx
    # arithmetic that uses it keeps the tile's own layout. Summed over the slots' axis,
    # Triton carried LayerNorm's dx arithmetic into the slots' [rows, groups, T] layout
    # instead (8 threads a warp over the channel tile: 255 registers and spills, or 32
    # and kilobytes of them; H200 0.001-0.6x of the shipped backward; NOTES attempt 57).
    scalar_rows = "\n".join(
        f"""xc_f{s} = {b}.to(tl.float32, bitcast=True)
xc_sum{s} = tl.zeros([xc_r2.shape[0], xc_g2.shape[1]], tl.float32)
for xc_r in tl.static_range(xc_r2.shape[0]):
    for xc_g in tl.static_range(xc_g2.shape[1]):
        xc_one = tl.sum(tl.where((xc_r3 == xc_r) & (xc_g3 == xc_g), xc_f{s}, 0.0))
        xc_sum{s} = tl.where((xc_r2 == xc_r) & (xc_g2 == xc_g), xc_one, xc_sum{s})"""
        for s, b in enumerate(bits)
    )
    row_sums = [f"xc_sum{s}" for s in range(sums)]
    return f"""
{reduce}
xp_ptr = {{coef}}.to(tl.pointer_type(tl.int64)) + ({{rows}}[:, None] * 2 * {{g}} + {{groups}}[None, :]) * {{t}} + {{tile}}
xp_ok = ({{rows}}[:, None] < {{end}}) & ({{groups}}[None, :] < {{g}})
{publish}
xc_r2 = tl.arange(0, {{rows}}.shape[0])[:, None]
xc_g2 = tl.arange(0, {{groups}}.shape[0])[None, :]
xc_r3 = xc_r2[:, :, None]
xc_g3 = xc_g2[:, :, None]
xc_row = {{row0}} + xc_r3
xc_group = {{group0}} + xc_g3
xc_t = tl.arange(0, {{t_pow2}})[None, None, :]
xc_ptr = {{coef}}.to(tl.pointer_type(tl.int64)) + (xc_row * 2 * {{g}} + xc_group) * {{t}} + xc_t
xc_ok = (xc_row >= {{lo}}) & (xc_row < {{m}}) & (xc_group < {{g}}) & (xc_t < {{t}})
xc_bits = tl.inline_asm_elementwise(
    "{{{{ .reg .pred %p; .reg .b32 %v<{sums}>, %f<{sums}>, %all; .reg .b64 %d<{sums}>; "
    "{zeros} setp.eq.u64 %p, ${sums}, 0; @%p bra DONE; "
    "POLL: {polls} {flags} setp.ne.b32 %p, %all, 0; @%p bra DONE; "
    "nanosleep.u32 {{backoff}}; bra POLL; "
    "DONE: {results} }}}}",
    "{outputs}",
    [tl.where(xc_ok, xc_ptr.to(tl.int64), 0)],
    dtype={dtype}, is_pure=False, pack=1,
)
{scalar_rows}
""" + (f"({', '.join(row_sums)})" if sums > 1 else row_sums[0])


def _exchange(coef, products, tile_m: hl.Tile, tile_mo: hl.Tile, tile_g: hl.Tile, tile_k: hl.Tile, m: int, g: int, t: int):  # noqa: ANN001, ANN202
    """One step of the exchange: publish this tile's partial row sums of ``products``
    (dxhat * xhat, and for LayerNorm dxhat: [rows, groups, channels] each) with their
    flags, for the step's rows inside the block (the lagged last step has none), then
    return the row sums [rows, groups] of the rows one behind (the lag) over the T tiles'
    partials, added in a fixed order once every tile has published them; rows before
    the block read as 0 without a wait. One tensor per product."""
    products = products if isinstance(products, tuple) else (products,)
    like = tuple(hl.zeros([tile_m, tile_g], dtype=torch.float32) for _ in products)
    args = dict(
        coef=coef, rows=tile_m.index, row0=tile_m.begin - 1, lo=tile_mo.begin, end=tile_mo.end,
        groups=tile_g.index, group0=tile_g.begin, tile=tile_k.id, m=m, g=g, t=t,
        t_pow2=1 << (t - 1).bit_length(), backoff=EXCHANGE_BACKOFF_NS, **{f"p{s}": p for s, p in enumerate(products)},
    )  # fmt: skip
    return hl.inline_triton(_exchange_source(len(products), g, t), args=args, output_like=like if len(like) > 1 else like[0])


def norm_bwd(
    dy: torch.Tensor,
    x: torch.Tensor,
    z: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    mean: torch.Tensor | None,
    rstd: torch.Tensor,
    coef: torch.Tensor | None,
    dh: torch.Tensor | None,
    dx: torch.Tensor,
    dz: torch.Tensor | None,
    dw_part: torch.Tensor | None,
    db_part: torch.Tensor | None,
    offset: float,
    rms: hl.constexpr,
    gate: hl.constexpr,
    sums_first: hl.constexpr,
    exchange: hl.constexpr,
    widen: hl.constexpr,
    trim: hl.constexpr,
    recast: hl.constexpr,
) -> torch.Tensor:
    """dx (and dz) for every row; per-program fp32 partial sums of dw and db.

    ``x`` is the tensor that was normalized before gating: the residual sum h when
    the forward fused a residual add. Each program owns ``m_block`` rows (the first
    block size) and one tile of ``tile_k`` channels; ``dw_part``/``db_part`` are
    [P, G, K] with P = ceil(M / m_block): fp32 partial sums, or where P = 1 dW and dB
    themselves in their own dtype (the sums are fp32 either way, cast once at the store).

    Two schedules, one body. Fused (``coef`` None): the channel tile spans the whole
    row and the row coefficients mean(dxhat), mean(dxhat * xhat) are reduced in
    registers, so x and dy are read once. Split (``coef`` [2, M, G] from
    ``norm_bwd_coef``): rows too wide for a register-resident dw accumulator are cut
    into channel tiles, at the price of that second read of x and dy.

    ``recast`` (fused schedule, 16-bit x, no gate; CUDA only): x, dy and a 16-bit weight
    stay in their 16-bit registers across the row sums and are converted again for dx,
    where xhat and dxhat held in fp32 would spill (``_held``).

    Exchange (``exchange`` = T > 0 channel tiles per row; ``coef`` is then a
    zeroed fp32 [M, 2, G, T, 2] scratch): the T programs of a row block hold one channel
    tile each and walk the same rows in step. Per step each publishes its tile's partial
    row sums, each with a ready flag in one 64-bit slot (``_exchange``); then, for the row
    before (published by every tile a step earlier, so the wait rarely waits), it reads
    the T slots once flagged, adds them in a fixed order and reads that
    row's x and dy tile again (L2 hits, so they are not held across the wait) for dx (and
    z: a gate before the norm stores dz with dx, one after stores it in the step that
    loads the row, as it needs no row sums). The loop runs one row past the block for
    the last dx. x and dy come from HBM once, as in the fused schedule, with a 1/T-wide
    dw accumulator, and the row loop can be pipelined like the others (H200 bf16
    2048x32768 backward, RMSNorm: split 2295 GB/s, exchange 2761, pipelined 3211, lagged
    3458; LayerNorm: split 2201, pipelined 2177, lagged 2498; NOTES attempts 55-58). The wait needs the T programs resident together: the config puts
    the channel tile first in the grid (``loop_orders``), so they are adjacent program
    ids, and CUDA starts blocks in id order. Triton's interpreter and the reference mode
    run programs one at a time, so there T must be 1: the tile's own sums are the row's.

    The loop over a program's rows is software-pipelined when a config sets its
    ``range_num_stages`` (Triton prefetches the next rows' x and dy while this one
    reduces; H200 LayerNorm bf16 8192x4096: 2660 -> 3129 GB/s, NOTES attempt 30).
    Helion offers that knob only for a kernel that reads no argument it writes (a
    guard against triton-lang/triton#8259, a pipelined load racing a store to the
    same buffer), and its check counts ``t[...] = v`` as a write but not ``hl.store``:
    the outputs here are written with ``hl.store``, which is safe because no loop
    loads a tensor it stores to.
    """
    m, g, k = x.size()
    k = hl.specialize(k)
    g = hl.specialize(g)
    m_block = hl.register_block_size(m)
    inv_k = 1.0 / k
    for tile_mo, tile_g, tile_k in hl.tile([m, g, k], block_size=[m_block, None, None]):
        # Accumulators shaped like a partial row (not hl.zeros([tile_g, tile_k])):
        # Helion 1.4 mis-sizes the latter against the row's dim when k < 16.
        if dw_part is not None:
            dw_acc = torch.zeros_like(dw_part[tile_mo.id, tile_g, tile_k], dtype=torch.float32)
        if db_part is not None:
            db_acc = torch.zeros_like(db_part[tile_mo.id, tile_g, tile_k], dtype=torch.float32)
        # w and b are re-read per row (cache hits) rather than hoisted out of the loop:
        # hoisted, they stay live in registers and a 16384-wide row spills (H200: 3553 ->
        # 2733 GB/s at 4096x16384). The exchange's narrow tile holds a 16-bit weight in
        # its own registers instead: the pipelined loop would prefetch it again every
        # step (H200 2048x32768 backward, LayerNorm +3.1-3.5%, RMSNorm +0.5-1.1%; an fp32
        # weight's registers cost RMSNorm fp32 13%; NOTES attempt 79).
        hold_weight = False
        if exchange > 1 and weight is not None:  # nested: Helion types both operands of an ``and``
            hold_weight = weight.dtype != torch.float32
        if hold_weight:
            w_held = weight[tile_g, tile_k]
        for tile_m in hl.tile(tile_mo.begin, tile_mo.end + min(exchange, 1)):
            if hold_weight:
                wf = _f32(w_held, widen)[None, :, :] + offset
            elif weight is not None:
                wf = _f32(weight[tile_g, tile_k], widen)[None, :, :] + offset
            if bias is not None:
                bf = _f32(bias[tile_g, tile_k], widen)[None, :, :]
            if exchange > 0:
                # The exchange's last step is only the lagging half: no rows of ours.
                ours = (tile_m.index < tile_mo.end)[:, None]
                xf = _f32(hl.load(x, [tile_m, tile_g, tile_k], extra_mask=ours[:, :, None]), widen)
                dyf = _f32(hl.load(dy, [tile_m, tile_g, tile_k], extra_mask=ours[:, :, None]), widen)
                rs = hl.load(rstd, [tile_m, tile_g], extra_mask=ours)[:, :, None]
                if gate != "none":
                    zf = _f32(hl.load(z, [tile_m, tile_g, tile_k], extra_mask=ours[:, :, None]), widen)
                    silu_z, slope = _silu_and_slope(zf)
            else:
                xv = x[tile_m, tile_g, tile_k]
                dyv = dy[tile_m, tile_g, tile_k]
                xf = _f32(xv, widen)
                dyf = _f32(dyv, widen)
                rs = rstd[tile_m, tile_g][:, :, None]
                if gate != "none":
                    silu_z, slope = _silu_and_slope(_f32(z[tile_m, tile_g, tile_k], widen))
            if gate == "before":
                u = xf * silu_z
            else:
                u = xf
            if rms:
                xhat = u * rs
            elif exchange > 0:
                xhat = (u - hl.load(mean, [tile_m, tile_g], extra_mask=ours)[:, :, None]) * rs
            else:
                xhat = (u - mean[tile_m, tile_g][:, :, None]) * rs
            if gate == "after":
                n = xhat
                if weight is not None:
                    n = n * wf
                if bias is not None:
                    n = n + bf
                # dz needs no row sums: stored in the step that loads the row.
                if exchange > 0:
                    hl.store(dz, [tile_m, tile_g, tile_k], (dyf * n * slope).to(dz.dtype), extra_mask=ours[:, :, None])
                else:
                    hl.store(dz, [tile_m, tile_g, tile_k], (dyf * n * slope).to(dz.dtype))
                dyf = dyf * silu_z
            if coef is None and trim:
                # ``trim``: the fused tile spans the row from 0, padded to a power of two,
                # so its lanes from k on are dead in every program, and ``live`` says so
                # in a form the compiler folds per register (the tile's own offset
                # cancels). Pinned to constant zeros there, their arithmetic and the
                # accumulators' dead lanes fold away; x and dy come through shared memory
                # when the row loop is pipelined, whose zero fill the compiler cannot see.
                # -0.0 for dy and dxhat: ``s + (-0.0)`` folds, ``s + 0.0`` does not, and
                # -0.0 * xhat's +0.0 is -0.0 again. Lanes of a register that is dead in
                # some threads only cost a select each: a config choice (NOTES attempt 77).
                live = (tile_k.index - tile_k.begin < k)[None, None, :]
                xhat = torch.where(live, xhat, 0.0)
                dyf = torch.where(live, dyf, -0.0)
            if db_part is not None:
                db_acc = db_acc + torch.sum(dyf, dim=0)
            if dw_part is not None:
                dw_acc = dw_acc + torch.sum(dyf * xhat, dim=0)
            dxhat = dyf
            if weight is not None:
                dxhat = dyf * wf
                if coef is None and trim:
                    dxhat = torch.where(live, dxhat, -0.0)
            # LayerNorm's two row sums: ``sums_first`` takes both before either is used.
            # Otherwise Triton keeps du's first term live across the second reduction,
            # which spills wide rows (bf16 4096x16384, 16 warps: 86 -> 20 spilled
            # registers, 1414 -> 2548 GB/s) but is the faster order on rows that fit
            # (8192 wide: 0.7-3.4% ahead). ``launch._bwd_args`` picks it by width.
            if coef is None:
                c2 = torch.sum(dxhat * xhat, dim=-1) * inv_k
                if not rms and sums_first:
                    c1 = torch.sum(dxhat, dim=-1) * inv_k
            elif exchange > 0:
                # This step's rows publish their partial sums; dx is formed for the
                # row before, whose sums every tile published a step ago (the loop runs
                # one row past the block for it: ``min(exchange, 1)`` above).
                prev = tile_m.index - 1
                done = (prev >= tile_mo.begin)[:, None]
                if exchange > 1 and rms:
                    c2 = _exchange(coef, dxhat * xhat, tile_m, tile_mo, tile_g, tile_k, m, g, exchange)
                elif exchange > 1:
                    c2, c1 = _exchange(coef, (dxhat * xhat, dxhat), tile_m, tile_mo, tile_g, tile_k, m, g, exchange)
                # The same masked read as this step's own rows above, at the lagged rows.
                # As one helper called twice, Helion 1.4 fails to lower it (an
                # InductorLoweringError on the masks' and statistics' slices).
                xf = _f32(hl.load(x, [prev, tile_g, tile_k], extra_mask=done[:, :, None]), widen)
                dyf = _f32(hl.load(dy, [prev, tile_g, tile_k], extra_mask=done[:, :, None]), widen)
                rs = hl.load(rstd, [prev, tile_g], extra_mask=done)[:, :, None]
                if gate != "none":
                    zf = _f32(hl.load(z, [prev, tile_g, tile_k], extra_mask=done[:, :, None]), widen)
                    silu_z, slope = _silu_and_slope(zf)
                if gate == "before":
                    u = xf * silu_z
                else:
                    u = xf
                if rms:
                    xhat = u * rs
                else:
                    xhat = (u - hl.load(mean, [prev, tile_g], extra_mask=done)[:, :, None]) * rs
                if gate == "after":
                    dyf = dyf * silu_z
                dxhat = dyf
                if weight is not None:
                    dxhat = dyf * wf
                # With one tile (the CPU's only case) its own sums are the row's.
                if exchange == 1:
                    c2 = torch.sum(dxhat * xhat, dim=-1)
                    if not rms:
                        c1 = torch.sum(dxhat, dim=-1)
                c2 = c2 * inv_k
                if not rms:
                    c1 = c1 * inv_k
            else:
                c2 = coef[1, tile_m, tile_g]
                if not rms:
                    c1 = coef[0, tile_m, tile_g]
            if coef is None and recast and gate == "none":
                # ``recast``: x, dy (and a 16-bit weight) held in their 16-bit registers
                # across the row sums and converted again for du, rather than xhat and
                # dxhat held in fp32, which spills the 16384-wide tile (``_held``; H200
                # LayerNorm 4096 x 14336-16384: 1.05-1.17x, NOTES attempt 78).
                anchor = c2[:, :, None]
                xhat = _f32(_held(xv, anchor), widen)
                if not rms:
                    xhat = xhat - mean[tile_m, tile_g][:, :, None]
                xhat = xhat * rs
                dxhat = _f32(_held(dyv, anchor), widen)
                if weight is not None and weight.dtype == torch.float32:
                    dxhat = dxhat * wf
                elif weight is not None:
                    dxhat = dxhat * (_f32(_held(weight[tile_g, tile_k][None, :, :], anchor), widen) + offset)
                if trim:
                    xhat = torch.where(live, xhat, 0.0)
                    dxhat = torch.where(live, dxhat, -0.0)
            du = dxhat - xhat * c2[:, :, None]
            if rms:
                du = du * rs
            else:
                if coef is None and not sums_first:
                    c1 = torch.sum(dxhat, dim=-1) * inv_k
                # rstd times c1 once a row: two FMAs a value, not three ops. (dxhat * rstd
                # formed first would save as many but may be hoisted above the row sums,
                # holding one more row of values across them: the 16384-wide row spills.)
                du = du * rs - c1[:, :, None] * rs
            if gate == "before":
                if exchange > 0:
                    hl.store(dz, [prev, tile_g, tile_k], (du * xf * slope).to(dz.dtype), extra_mask=done[:, :, None])
                else:
                    hl.store(dz, [tile_m, tile_g, tile_k], (du * xf * slope).to(dz.dtype))
                du = du * silu_z
            if exchange > 0:
                if dh is not None:
                    du = du + _f32(hl.load(dh, [prev, tile_g, tile_k], extra_mask=done[:, :, None]), widen)
                hl.store(dx, [prev, tile_g, tile_k], du.to(dx.dtype), extra_mask=done[:, :, None])
            else:
                if dh is not None:
                    du = du + _f32(dh[tile_m, tile_g, tile_k], widen)
                hl.store(dx, [tile_m, tile_g, tile_k], du.to(dx.dtype))
        if dw_part is not None:
            hl.store(dw_part, [tile_mo.id, tile_g, tile_k], dw_acc.to(dw_part.dtype))
        if db_part is not None:
            hl.store(db_part, [tile_mo.id, tile_g, tile_k], db_acc.to(db_part.dtype))
    return dx


def norm_bwd_coef(
    dy: torch.Tensor,
    x: torch.Tensor,
    z: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    mean: torch.Tensor | None,
    rstd: torch.Tensor,
    coef: torch.Tensor,
    offset: float,
    rms: hl.constexpr,
    gate: hl.constexpr,
) -> torch.Tensor:
    """Row coefficients for the split backward: coef[0] = mean(dxhat) (LayerNorm),
    coef[1] = mean(dxhat * xhat), per row and group; wide rows loop over chunks.

    The xhat/dxhat recompute mirrors ``norm_bwd``'s: Helion 1.4 cannot carry the
    optional tensors (z, mean, w) into a shared helper as None placeholders, so the
    few lines stand in both bodies.
    """
    m, g, k = x.size()
    k = hl.specialize(k)
    g = hl.specialize(g)
    inv_k = 1.0 / k
    for tile_m, tile_g in hl.tile([m, g]):
        xf = x[tile_m, tile_g, :].to(torch.float32)
        dyf = dy[tile_m, tile_g, :].to(torch.float32)
        rs = rstd[tile_m, tile_g][:, :, None]
        if gate != "none":
            silu_z, _ = _silu_and_slope(z[tile_m, tile_g, :].to(torch.float32))
        if gate == "before":
            u = xf * silu_z
        else:
            u = xf
        if rms:
            xhat = u * rs
        else:
            xhat = (u - mean[tile_m, tile_g][:, :, None]) * rs
        if weight is not None:
            wf = weight[tile_g, :].to(torch.float32)[None, :, :] + offset
        if gate == "after":
            # Only the gate's factor on dy matters here; dz is left to norm_bwd.
            dyf = dyf * silu_z
        dxhat = dyf
        if weight is not None:
            dxhat = dyf * wf
        coef[1, tile_m, tile_g] = torch.sum(dxhat * xhat, dim=-1) * inv_k
        if not rms:
            coef[0, tile_m, tile_g] = torch.sum(dxhat, dim=-1) * inv_k
    return coef


def reduce_partials(part: torch.Tensor, out0: torch.Tensor, out1: torch.Tensor | None) -> torch.Tensor:
    """out0[j] = sum_p part[p, 0, j] (and out1[j] = sum_p part[p, 1, j]) in fp32, in a fixed
    order, cast once to each output's dtype: dW and dB from one pass over the partials."""
    p, n_params, n = part.size()
    for tile_n in hl.tile(n):
        acc0 = hl.zeros([tile_n], dtype=torch.float32)
        if out1 is not None:
            acc1 = hl.zeros([tile_n], dtype=torch.float32)
        for tile_p in hl.tile(p):
            acc0 = acc0 + torch.sum(part[tile_p, 0, tile_n], dim=0)
            if out1 is not None:
                acc1 = acc1 + torch.sum(part[tile_p, 1, tile_n], dim=0)
        out0[tile_n] = acc0.to(out0.dtype)
        if out1 is not None:
            out1[tile_n] = acc1.to(out1.dtype)
    return out0


_SETTINGS = dict(static_shapes=False, autotune_effort="none")


def make_kernels(ref: bool) -> dict[str, helion.Kernel]:
    """The kernels, compiled to Triton (ref=False) or run eagerly (ref=True)."""
    settings: dict = dict(_SETTINGS)
    if ref:
        from helion.runtime.ref_mode import RefMode

        settings["ref_mode"] = RefMode.EAGER
    # The forwards once more, compiled per exact shape ("static" configs, see
    # kernels.launch.fwd_kernel_name).
    static = {**settings, "static_shapes": True}
    return {
        "fwd": helion.kernel(norm_fwd, **settings),
        "fwd_chunked": helion.kernel(norm_fwd_chunked, **settings),
        "fwd_static": helion.kernel(norm_fwd, **static),
        "fwd_chunked_static": helion.kernel(norm_fwd_chunked, **static),
        "bwd": helion.kernel(norm_bwd, **settings),
        "bwd_coef": helion.kernel(norm_bwd_coef, **settings),
        "reduce": helion.kernel(reduce_partials, **settings),
    }
