"""Independent float64 references for the norm family (plain PyTorch, no tilenorm code)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def norm64(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    rms: bool,
    offset: float = 0.0,
    z: torch.Tensor | None = None,
    norm_before_gate: bool = True,
    group_size: int | None = None,
    residual: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(out, h) computed in float64 from float64 copies of the inputs; differentiable.

    h = x + residual is rounded to x's dtype first, as an unfused model would store it.
    """
    h = None
    if residual is not None:
        h = (x.double() + residual.double()).to(x.dtype).double()
        u = h
    else:
        u = x.double()
    if z is not None and not norm_before_gate:
        u = u * F.silu(z.double())
    n = u.shape[-1]
    gs = group_size or n
    ug = u.reshape(*u.shape[:-1], n // gs, gs)
    if not rms:
        ug = ug - ug.mean(-1, keepdim=True)
    ug = ug * torch.rsqrt(ug.pow(2).mean(-1, keepdim=True) + eps)
    y = ug.reshape(u.shape)
    if weight is not None:
        y = y * (weight.double() + offset)
    if bias is not None:
        y = y + bias.double()
    if z is not None and norm_before_gate:
        y = y * F.silu(z.double())
    return y, h
