"""Unsloth-style LayerNorm and RMSNorm Triton kernels, with dW/dB, as a benchmark peer.

Written for tilenorm in the manner of Unsloth's kernels (unsloth/kernels/layernorm.py
and rms_layernorm.py), not copied from them:

- forward: one program per row, the whole row in registers, ``BLOCK_SIZE`` the next
  power of two of the hidden size, ``num_warps`` from the block size
  (:func:`calculate_settings`); fp32 statistics; rstd (and the mean) saved per row;
- RMSNorm "llama" casting (normalize in fp32, cast to the input dtype, then scale by the
  weight) and Gemma's ``(1 + w)`` computed entirely in fp32;
- backward: dx row by row as in Unsloth. Unsloth's own backward returns no dW/dB; this
  one also reduces them so that a fwd+bwd comparison with tilenorm is like-for-like:
  each program owns a contiguous block of rows, accumulates fp32 partial sums of dW (and
  dB) over it, and ``torch.sum(0)`` adds the partials (deterministic, no atomics).

Statistics use ``1.0 / tl.sqrt(...)``: ``tl.math.rsqrt`` has no implementation in
Triton's interpreter (it returns None), and the CPU tests run these kernels there.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

# Unsloth refuses rows wider than this: one row must fit in one program's registers.
MAX_FUSED_SIZE = 65536

# Backward programs per SM. More programs hide memory latency better; each one adds a
# partial dW row (fp32, N wide) that the final sum must read back.
PROGRAMS_PER_SM = 2

# Stand-in SM count off-GPU (Triton's interpreter): any value gives the same results.
CPU_PROGRAMS = 4


def calculate_settings(n: int) -> tuple[int, int]:
    """(BLOCK_SIZE, num_warps) for a row of ``n`` elements, by Unsloth's rule."""
    block_size = triton.next_power_of_2(n)
    if block_size > MAX_FUSED_SIZE:
        raise ValueError(
            f"hidden size {n} needs a block of {block_size} > {MAX_FUSED_SIZE} elements: "
            "too wide for a one-row-per-program kernel"
        )
    if block_size >= 32768:
        num_warps = 32
    elif block_size >= 8192:
        num_warps = 16
    elif block_size >= 2048:
        num_warps = 8
    else:
        num_warps = 4
    return block_size, num_warps


@functools.lru_cache(maxsize=None)
def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return CPU_PROGRAMS


def backward_grid(n_rows: int, device: torch.device) -> tuple[int, int]:
    """(number of programs, rows per program) for the dW-reducing backward."""
    if n_rows == 0:
        return 0, 1  # no partials: dW sums to zeros
    programs = max(1, min(n_rows, PROGRAMS_PER_SM * _sm_count(device)))
    rows_per_program = triton.cdiv(n_rows, programs)
    # Trim programs that would get no rows once rows are handed out in whole blocks.
    programs = triton.cdiv(n_rows, rows_per_program)
    return programs, rows_per_program


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _layer_norm_fwd(
    Y, X, W, B, Mean, Rstd, stride_y, stride_x, n_cols, eps,
    BLOCK_SIZE: tl.constexpr,
):
    # int64 row offsets: M * N can pass 2**31 elements for long sequences.
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < n_cols
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(B + cols, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / n_cols
    # Two-pass variance; padding lanes must not contribute (x - mean) there.
    xc = tl.where(mask, x - mean, 0.0)
    var = tl.sum(xc * xc, axis=0) / n_cols
    rstd = 1.0 / tl.sqrt(var + eps)
    tl.store(Mean + row, mean)
    tl.store(Rstd + row, rstd)
    y = xc * rstd * w + b
    tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _layer_norm_bwd(
    DX, DY, X, W, Mean, Rstd, DW_part, DB_part,
    stride_dx, stride_dy, stride_x, n_rows, n_cols, rows_per_program,
    BLOCK_SIZE: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < n_cols
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw_acc = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    db_acc = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    row_start = pid.to(tl.int64) * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, n_rows)
    for row in range(row_start, row_end):
        x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(Mean + row)
        rstd = tl.load(Rstd + row)
        xhat = tl.where(mask, (x - mean) * rstd, 0.0)
        dxhat = dy * w
        c1 = tl.sum(dxhat, axis=0) / n_cols
        c2 = tl.sum(dxhat * xhat, axis=0) / n_cols
        dx = (dxhat - c1 - xhat * c2) * rstd
        tl.store(DX + row * stride_dx + cols, dx.to(DX.dtype.element_ty), mask=mask)
        dw_acc += dy * xhat
        db_acc += dy
    tl.store(DW_part + pid * n_cols + cols, dw_acc, mask=mask)
    tl.store(DB_part + pid * n_cols + cols, db_acc, mask=mask)


@triton.jit
def _rms_norm_fwd(
    Y, X, W, Rstd, stride_y, stride_x, n_cols, eps,
    GEMMA: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):
    # int64 row offsets: M * N can pass 2**31 elements for long sequences.
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < n_cols
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(W + cols, mask=mask, other=0.0)
    var = tl.sum(x * x, axis=0) / n_cols
    rstd = 1.0 / tl.sqrt(var + eps)
    tl.store(Rstd + row, rstd)
    xhat = x * rstd
    if GEMMA:
        # Gemma: (1 + w) and the product in fp32, one cast at the end.
        y = xhat * (w.to(tl.float32) + 1.0)
    else:
        # Llama: round the normalized row to the input dtype, then scale by w.
        y = xhat.to(X.dtype.element_ty).to(tl.float32) * w.to(tl.float32)
    tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _rms_norm_bwd(
    DX, DY, X, W, Rstd, DW_part,
    stride_dx, stride_dy, stride_x, n_rows, n_cols, rows_per_program,
    GEMMA: tl.constexpr, BLOCK_SIZE: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < n_cols
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    if GEMMA:
        w = w + 1.0
    dw_acc = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    row_start = pid.to(tl.int64) * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, n_rows)
    for row in range(row_start, row_end):
        x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(Rstd + row)
        xhat = x * rstd
        dxhat = dy * w
        c2 = tl.sum(dxhat * xhat, axis=0) / n_cols
        dx = (dxhat - xhat * c2) * rstd
        tl.store(DX + row * stride_dx + cols, dx.to(DX.dtype.element_ty), mask=mask)
        dw_acc += dy * xhat
    tl.store(DW_part + pid * n_cols + cols, dw_acc, mask=mask)


# ---------------------------------------------------------------------- host wrappers


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    """[..., N] -> [M, N] with unit column stride (rows may be strided)."""
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def _check(x: torch.Tensor, *params: torch.Tensor) -> None:
    n = x.shape[-1]
    for p in params:
        if p.shape != (n,):
            raise ValueError(f"expected a parameter of shape ({n},), got {tuple(p.shape)}")
        if p.device != x.device:
            raise ValueError(f"parameter on {p.device}, input on {x.device}")


def _sum_partials(part: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return part.sum(0).to(dtype)


class UnslothLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        _check(x, weight, bias)
        weight, bias = weight.contiguous(), bias.contiguous()  # the kernels index them densely
        x2 = _as_rows(x)
        n_rows, n_cols = x2.shape
        block_size, num_warps = calculate_settings(n_cols)
        y = torch.empty_like(x2)
        mean = torch.empty(n_rows, dtype=torch.float32, device=x.device)
        rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
        if n_rows > 0:
            _layer_norm_fwd[(n_rows,)](
                y, x2, weight, bias, mean, rstd, y.stride(0), x2.stride(0), n_cols, eps,
                BLOCK_SIZE=block_size, num_warps=num_warps,
            )
        ctx.save_for_backward(x2, weight, mean, rstd)
        ctx.settings = (block_size, num_warps)
        ctx.bias_dtype = bias.dtype
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, mean, rstd = ctx.saved_tensors
        block_size, num_warps = ctx.settings
        dy2 = _as_rows(dy)
        n_rows, n_cols = x2.shape
        dx = torch.empty_like(x2)
        programs, rows_per_program = backward_grid(n_rows, x2.device)
        # Every program owns at least one row and writes its whole partial row.
        dw_part = torch.empty(programs, n_cols, dtype=torch.float32, device=x2.device)
        db_part = torch.empty_like(dw_part)
        if n_rows > 0:
            _layer_norm_bwd[(programs,)](
                dx, dy2, x2, weight, mean, rstd, dw_part, db_part,
                dx.stride(0), dy2.stride(0), x2.stride(0), n_rows, n_cols, rows_per_program,
                BLOCK_SIZE=block_size, num_warps=num_warps,
            )
        dw = _sum_partials(dw_part, weight.dtype)
        db = _sum_partials(db_part, ctx.bias_dtype)
        return dx.view(dy.shape), dw, db, None


class UnslothRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps, gemma):
        _check(x, weight)
        weight = weight.contiguous()  # the kernels index it densely
        x2 = _as_rows(x)
        n_rows, n_cols = x2.shape
        block_size, num_warps = calculate_settings(n_cols)
        y = torch.empty_like(x2)
        rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
        if n_rows > 0:
            _rms_norm_fwd[(n_rows,)](
                y, x2, weight, rstd, y.stride(0), x2.stride(0), n_cols, eps,
                GEMMA=gemma, BLOCK_SIZE=block_size, num_warps=num_warps,
            )
        ctx.save_for_backward(x2, weight, rstd)
        ctx.settings = (block_size, num_warps)
        ctx.gemma = gemma
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, rstd = ctx.saved_tensors
        block_size, num_warps = ctx.settings
        dy2 = _as_rows(dy)
        n_rows, n_cols = x2.shape
        dx = torch.empty_like(x2)
        programs, rows_per_program = backward_grid(n_rows, x2.device)
        dw_part = torch.empty(programs, n_cols, dtype=torch.float32, device=x2.device)
        if n_rows > 0:
            _rms_norm_bwd[(programs,)](
                dx, dy2, x2, weight, rstd, dw_part,
                dx.stride(0), dy2.stride(0), x2.stride(0), n_rows, n_cols, rows_per_program,
                GEMMA=ctx.gemma, BLOCK_SIZE=block_size, num_warps=num_warps,
            )
        return dx.view(dy.shape), _sum_partials(dw_part, weight.dtype), None, None


def unsloth_layer_norm(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """LayerNorm over the last dim; grads for x, w and b."""
    return UnslothLayerNorm.apply(x, w, b, eps)


def unsloth_rms_norm(
    x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6, gemma: bool = False
) -> torch.Tensor:
    """RMSNorm over the last dim (Llama casting, or Gemma's fp32 ``(1 + w)``); grads for x, w."""
    return UnslothRMSNorm.apply(x, w, eps, gemma)
