"""nn.Module front ends and the compatibility entry points.

``LayerNorm`` is a ``torch.nn.LayerNorm`` (same constructor, parameters, state dict)
whose forward runs tilenorm; ``RMSNorm`` keeps the Llama/Qwen/Mistral attribute names
(``weight``, ``variance_epsilon``) so that checkpoints and code that reach into the
module keep working; ``GatedRMSNorm`` follows the FLA/Mamba2 gated-norm contract.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .functional import add_layer_norm, add_rms_norm, layer_norm, rms_norm


class LayerNorm(nn.LayerNorm):
    """Drop-in ``torch.nn.LayerNorm``; ``forward(x, residual)`` also fuses the pre-norm add."""

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if len(self.normalized_shape) != 1:
            return self._forward_flat(x, residual)
        if residual is not None:
            return add_layer_norm(x, residual, self.weight, self.bias, self.eps)
        return layer_norm(x, self.weight, self.bias, self.eps)

    def _forward_flat(self, x: torch.Tensor, residual: torch.Tensor | None):  # noqa: ANN202
        """Multi-dim normalized_shape: normalize the flattened trailing dims."""
        dims = len(self.normalized_shape)
        if tuple(x.shape[-dims:]) != tuple(self.normalized_shape):
            raise ValueError(
                f"LayerNorm: x's trailing dims must be {tuple(self.normalized_shape)}, "
                f"got {tuple(x.shape)}"
            )
        flat = (*x.shape[:-dims], math.prod(self.normalized_shape))
        w = None if self.weight is None else self.weight.reshape(-1)
        b = None if self.bias is None else self.bias.reshape(-1)
        if residual is not None:
            out, h = add_layer_norm(x.reshape(flat), residual.reshape(flat), w, b, self.eps)
            return out.view(x.shape), h.view(x.shape)
        return layer_norm(x.reshape(flat), w, b, self.eps).view(x.shape)


class RMSNorm(nn.Module):
    """Drop-in Llama-style RMSNorm; Gemma's ``(1 + w)`` with ``offset=1.0, casting="gemma"``.

    The weight starts at ones, or at zeros when ``offset`` is 1 (so that the layer
    starts as the identity scale either way, as Gemma initializes it).
    """

    def __init__(
        self,
        hidden_size: int,
        eps: float = 1e-6,
        *,
        offset: float = 0.0,
        casting: str = "llama",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        init = torch.zeros if offset == 1.0 else torch.ones
        self.weight = nn.Parameter(init(hidden_size, device=device, dtype=dtype))
        self.variance_epsilon = eps
        self.offset = offset
        self.casting = casting

    @property
    def eps(self) -> float:
        return self.variance_epsilon

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if residual is not None:
            return add_rms_norm(
                x, residual, self.weight, self.variance_epsilon,
                offset=self.offset, casting=self.casting,
            )  # fmt: skip
        return rms_norm(
            x, self.weight, self.variance_epsilon, offset=self.offset, casting=self.casting
        )

    def extra_repr(self) -> str:
        return (
            f"{tuple(self.weight.shape)}, eps={self.variance_epsilon}, "
            f"offset={self.offset}, casting={self.casting!r}"
        )


class GatedRMSNorm(nn.Module):
    """Gated, optionally grouped RMSNorm (FLA ``RMSNormGated`` / Mamba2 contract).

    ``forward(x, z)``: ``rmsnorm(x) * w * silu(z)`` when ``norm_before_gate`` else
    ``rmsnorm(x * silu(z)) * w``; statistics per ``group_size`` channels if given.
    """

    def __init__(
        self,
        hidden_size: int,
        eps: float = 1e-5,
        group_size: int | None = None,
        norm_before_gate: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.register_parameter("bias", None)
        self.eps = eps
        self.group_size = group_size
        self.norm_before_gate = norm_before_gate

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return rms_norm(
            x, self.weight, self.eps, casting="gemma", z=z,
            norm_before_gate=self.norm_before_gate, group_size=self.group_size,
            bias=self.bias,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"{tuple(self.weight.shape)}, eps={self.eps}, group_size={self.group_size}, "
            f"norm_before_gate={self.norm_before_gate}"
        )


def fast_layernorm(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm with ``module``'s weight, bias and eps (Unsloth's entry point)."""
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    eps = getattr(module, "eps", getattr(module, "variance_epsilon", 1e-5))
    return layer_norm(x, weight, bias, eps)


def fast_rms_layernorm(module: nn.Module, x: torch.Tensor, gemma: bool = False) -> torch.Tensor:
    """RMSNorm with ``module``'s weight and eps; ``gemma=True`` for ``(1 + w)`` in fp32."""
    eps = getattr(module, "variance_epsilon", None)
    if eps is None:
        eps = getattr(module, "eps", 1e-6)
    if gemma:
        return rms_norm(x, module.weight, eps, offset=1.0, casting="gemma")
    return rms_norm(x, module.weight, eps)
