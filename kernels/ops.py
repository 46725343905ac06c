"""The norm family as ``torch.library`` custom ops, for ``torch.compile``.

Dynamo cannot trace into a Helion launch, so under ``torch.compile`` the functional
API routes through two opaque ops, ``tilenorm::norm_fwd`` and ``tilenorm::norm_bwd``,
with fake (meta) implementations for shape propagation and an autograd formula that
calls the backward op: the compiled graph keeps the norm as one node per call, with
no graph break. Eager calls skip this layer (the dispatcher costs host time) and use
``functional.NormFunction`` directly; both paths run the same kernels.

Custom ops cannot return None, so absent outputs (h without a residual, dz without a
gate, dw/db without weight/bias) are empty tensors here and become None again at the
boundary.
"""

from __future__ import annotations

import torch

from . import functional, launch
from .launch import Variant

_EMPTY_SHAPE = (0,)


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(_EMPTY_SHAPE)


def _or_empty(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return _empty(like) if t is None else t


@torch.library.custom_op("tilenorm::norm_fwd", mutates_args=())
def norm_fwd(
    x: torch.Tensor,
    residual: torch.Tensor | None,
    z: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    rms: bool,
    gate: str,
    casting: str,
    groups: int,
    eps: float,
    offset: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out, h, stats); h is empty without a residual. x has numel > 0."""
    variant = functional._variant(rms, gate, casting, residual is not None, groups > 1)
    out, h, stats = launch.forward(variant, x, residual, z, weight, bias, eps, offset, groups, True)
    return out, _or_empty(h, x), stats


@norm_fwd.register_fake
def _(x, residual, z, weight, bias, rms, gate, casting, groups, eps, offset):  # noqa: ANN001, ANN202
    m = x.numel() // x.shape[-1]
    stats = x.new_empty((1 if rms else 2, m, groups), dtype=torch.float32)
    h = torch.empty_like(x) if residual is not None else _empty(x)
    return torch.empty_like(x), h, stats


@torch.library.custom_op("tilenorm::norm_bwd", mutates_args=())
def norm_bwd(
    dout: torch.Tensor,
    dh: torch.Tensor | None,
    xs: torch.Tensor,
    z: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    stats: torch.Tensor,
    rms: bool,
    gate: str,
    casting: str,
    groups: int,
    offset: float,
    want_dw: bool,
    want_db: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dz, dw, db) shaped like x, z, weight, bias; empty where not wanted."""
    variant = functional._variant(rms, gate, casting, dh is not None, groups > 1)
    dx, dz, dw, db = launch.backward(
        variant, dout, dh, xs, z, weight, bias, stats, groups, offset, want_dw, want_db
    )
    return dx, _or_empty(dz, xs), _or_empty(dw, xs), _or_empty(db, xs)


@norm_bwd.register_fake
def _(dout, dh, xs, z, weight, bias, stats, rms, gate, casting, groups, offset, want_dw, want_db):  # noqa: ANN001, ANN202
    return (
        torch.empty_like(xs),
        torch.empty_like(xs) if z is not None else _empty(xs),
        torch.empty_like(weight) if want_dw else _empty(xs),
        torch.empty_like(bias) if want_db else _empty(xs),
    )


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    x, residual, z, weight, bias, rms, gate, casting, groups, eps, offset = inputs
    _, h, stats = output
    xs = h if residual is not None else x
    ctx.save_for_backward(xs, z, weight, bias, stats)
    ctx.flags = (rms, gate, casting, groups, offset, residual is not None)


def _backward(ctx, dout, dh, dstats):  # noqa: ANN001, ANN202
    xs, z, weight, bias, stats = ctx.saved_tensors
    rms, gate, casting, groups, offset, has_residual = ctx.flags
    needs = ctx.needs_input_grad
    dx, dz, dw, db = norm_bwd(
        dout, dh if has_residual else None, xs, z, weight, bias, stats,
        rms, gate, casting, groups, offset,
        bool(needs[3]), bool(needs[4]),
    )  # fmt: skip
    return (
        dx,
        dx if has_residual and needs[1] else None,
        dz if z is not None else None,
        dw if needs[3] else None,
        db if needs[4] else None,
        None, None, None, None, None, None,
    )  # fmt: skip


norm_fwd.register_autograd(_backward, setup_context=_setup_context)


def norm_via_ops(
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
    """The functional entry under torch.compile: (out, h or None)."""
    out, h, _ = norm_fwd(
        x, residual, z, weight, bias, variant.rms, variant.gate, variant.casting,
        groups, eps, offset,
    )  # fmt: skip
    return out, (h if residual is not None else None)
