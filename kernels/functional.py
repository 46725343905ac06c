"""The functional API: argument checks, views, autograd, and the no-grad fast path.

Every public function lands in ``_norm``, which turns the arguments into [M, G, K]
views and either runs the forward kernel directly (no input needs a gradient: the
inference path, one launch and two allocations) or through ``NormFunction`` so that
autograd calls the backward kernel.
"""

from __future__ import annotations

import itertools

import torch

from .launch import Variant, launch_bwd, launch_fwd
from .validate import check_casting, check_norm_args, check_offset


# Every variant built once up front: a plain dict read per call, which torch.compile
# also traces without complaint (it warns about functools caches).
_VARIANTS = {
    (rms, gate, casting, residual, grouped): Variant(rms, gate, casting, residual, grouped)
    for rms, gate, casting, residual, grouped in itertools.product(
        (True, False), ("none", "after", "before"), ("llama", "gemma", "none"),
        (True, False), (True, False),
    )
}  # fmt: skip


def _variant(rms: bool, gate: str, casting: str, residual: bool, grouped: bool) -> Variant:
    return _VARIANTS[rms, gate, casting, residual, grouped]


def _gate(z: torch.Tensor | None, norm_before_gate: bool) -> str:
    if z is None:
        return "none"
    return "after" if norm_before_gate else "before"


def _view3(t: torch.Tensor | None, m: int, g: int, k: int) -> torch.Tensor | None:
    """[..., G*K] -> [M, G, K]: a view when the strides allow, else a copy."""
    if t is None:
        return None
    try:
        return t.view(m, g, k)
    except RuntimeError:
        return t.reshape(m, g, k)


def _view2(t: torch.Tensor | None, g: int, k: int) -> torch.Tensor | None:
    return None if t is None else t.view(g, k) if t.is_contiguous() else t.reshape(g, k)


def _forward(
    variant: Variant,
    x: torch.Tensor,
    residual: torch.Tensor | None,
    z: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    offset: float,
    groups: int,
    save_stats: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(out, h, mean, rstd) with out/h shaped like x; mean/rstd are [M, G] fp32
    (None without ``save_stats``: inference needs no statistics)."""
    n = x.shape[-1]
    k = n // groups
    m = x.numel() // n
    out = torch.empty((m, groups, k), dtype=x.dtype, device=x.device)
    h = torch.empty_like(out) if residual is not None else None
    rstd = mean = None
    if save_stats:
        rstd = torch.empty((m, groups), dtype=torch.float32, device=x.device)
        mean = None if variant.rms else torch.empty_like(rstd)
    launch_fwd(
        variant, _view3(x, m, groups, k), _view3(residual, m, groups, k),
        _view3(z, m, groups, k), _view2(weight, groups, k), _view2(bias, groups, k),
        out, h, mean, rstd, eps, offset,
    )  # fmt: skip
    return out.view(x.shape), None if h is None else h.view(x.shape), mean, rstd


def _backward(
    variant: Variant,
    dout: torch.Tensor | None,
    dh: torch.Tensor | None,
    xs: torch.Tensor,
    z: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    mean: torch.Tensor | None,
    rstd: torch.Tensor,
    groups: int,
    offset: float,
    want_dw: bool,
    want_db: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(dx, dz, dw, db) shaped like xs, z, weight and bias (None where not wanted).

    ``xs`` is what the forward normalized: x, or the residual sum h.
    """
    n = xs.shape[-1]
    k = n // groups
    m = xs.numel() // n
    x3 = _view3(xs, m, groups, k)
    dy3 = torch.zeros_like(x3) if dout is None else _view3(dout, m, groups, k)
    dx = torch.empty((m, groups, k), dtype=xs.dtype, device=xs.device)
    dz = None if z is None else torch.empty((m, groups, k), dtype=z.dtype, device=xs.device)
    dw, db = launch_bwd(
        variant, dy3, x3, _view3(z, m, groups, k), _view2(weight, groups, k),
        _view2(bias, groups, k), mean, rstd, _view3(dh, m, groups, k), dx, dz,
        want_dw, want_db, offset,
    )  # fmt: skip
    return (
        dx.view(xs.shape),
        None if dz is None else dz.view(xs.shape),
        None if dw is None else dw.view(weight.shape),
        None if db is None else db.view(bias.shape),
    )


class NormFunction(torch.autograd.Function):
    """Autograd for every variant: saves the normalized input and fp32 mean/rstd."""

    @staticmethod
    def forward(ctx, x, residual, z, weight, bias, variant, eps, offset, groups):  # noqa: ANN001
        out, h, mean, rstd = _forward(variant, x, residual, z, weight, bias, eps, offset, groups)
        ctx.save_for_backward(x if h is None else h, z, weight, bias, mean, rstd)
        ctx.variant, ctx.offset, ctx.groups = variant, offset, groups
        if h is None:
            ctx.mark_non_differentiable(rstd)  # placeholder second output
            return out, rstd
        return out, h

    @staticmethod
    def backward(ctx, dout, dh):  # noqa: ANN001
        xs, z, weight, bias, mean, rstd = ctx.saved_tensors
        needs = ctx.needs_input_grad
        residual = ctx.variant.residual
        dx, dz, dw, db = _backward(
            ctx.variant, dout, dh if residual else None, xs, z, weight, bias, mean, rstd,
            ctx.groups, ctx.offset, needs[3], needs[4],
        )  # fmt: skip
        dres = dx if residual and needs[1] else None
        return dx, dres, dz, dw, db, None, None, None, None


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    if not torch.is_grad_enabled():
        return False
    return any(t is not None and t.requires_grad for t in tensors)


def _empty_result(x, residual, z, weight, bias):  # noqa: ANN001
    """Zero-element inputs: outputs of the right shape, and graph edges for autograd."""
    out = x * 0
    for t in (z, weight, bias):
        if t is not None:
            out = out + 0 * t.sum()
    h = None if residual is None else x + residual
    return out, h


def _norm(
    variant: Variant,
    x: torch.Tensor,
    residual: torch.Tensor | None,
    z: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    offset: float,
    groups: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if x.numel() == 0:
        return _empty_result(x, residual, z, weight, bias)
    if torch.compiler.is_compiling():
        # Dynamo can't trace a Helion launch: hand it opaque custom ops instead.
        from .ops import norm_via_ops

        return norm_via_ops(variant, x, residual, z, weight, bias, eps, offset, groups)
    if _needs_grad(x, residual, z, weight, bias):
        out, second = NormFunction.apply(x, residual, z, weight, bias, variant, eps, offset, groups)
        return out, (second if residual is not None else None)
    out, h, _, _ = _forward(variant, x, residual, z, weight, bias, eps, offset, groups, False)
    return out, h


# ------------------------------------------------------------------------- public API


def layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    z: torch.Tensor | None = None,
    norm_before_gate: bool = True,
    group_size: int | None = None,
) -> torch.Tensor:
    """LayerNorm over the last dim: ``(x - mean) * rstd * weight + bias``.

    ``z`` gates the output by ``z * sigmoid(z)`` after the norm (``norm_before_gate``)
    or the input before it; ``group_size`` takes the statistics per contiguous group of
    channels (it must divide the hidden size).
    """
    eps, groups = check_norm_args("layer_norm", x, weight, bias, z, None, eps, group_size)
    variant = _variant(False, _gate(z, norm_before_gate), "gemma", False, groups > 1)
    return _norm(variant, x, None, z, weight, bias, eps, 0.0, groups)[0]


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    eps: float = 1e-6,
    *,
    offset: float = 0.0,
    casting: str = "llama",
    z: torch.Tensor | None = None,
    norm_before_gate: bool = True,
    group_size: int | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """RMSNorm over the last dim: ``x * rstd * (weight + offset) (+ bias)``.

    ``offset=1.0`` is Gemma's ``(1 + w)``. ``casting``: "llama" rounds the normalized
    value to the input dtype before scaling, "gemma" stays in fp32 until the single
    final cast, "none" computes in the input dtype after the fp32 statistics. ``z``,
    ``norm_before_gate`` and ``group_size`` as in :func:`layer_norm`.
    """
    eps, groups = check_norm_args("rms_norm", x, weight, bias, z, None, eps, group_size)
    casting = check_casting("rms_norm", casting)
    offset = check_offset("rms_norm", offset)
    variant = _variant(True, _gate(z, norm_before_gate), casting, False, groups > 1)
    return _norm(variant, x, None, z, weight, bias, eps, offset, groups)[0]


def add_layer_norm(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h = x + residual; return layer_norm(h, weight, bias, eps), h`` in one kernel."""
    if residual is None:
        raise TypeError("add_layer_norm: residual must be a torch.Tensor, got None")
    eps, groups = check_norm_args("add_layer_norm", x, weight, bias, None, residual, eps, None)
    variant = _variant(False, "none", "gemma", True, False)
    return _norm(variant, x, residual, None, weight, bias, eps, 0.0, groups)


def add_rms_norm(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor | None,
    eps: float = 1e-6,
    *,
    offset: float = 0.0,
    casting: str = "llama",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h = x + residual; return rms_norm(h, weight, eps, ...), h`` in one kernel."""
    if residual is None:
        raise TypeError("add_rms_norm: residual must be a torch.Tensor, got None")
    eps, groups = check_norm_args("add_rms_norm", x, weight, None, None, residual, eps, None)
    casting = check_casting("add_rms_norm", casting)
    offset = check_offset("add_rms_norm", offset)
    variant = _variant(True, "none", casting, True, False)
    return _norm(variant, x, residual, None, weight, None, eps, offset, groups)
