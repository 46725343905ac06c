"""The contenders. Each provider maps an op to ``fn(x, extra, weight, bias) -> tuple``.

- ``tilenorm``: this project (``kernels``).
- ``torch``: eager PyTorch; for gated and add, the unfused sequence a model would run.
- ``inductor``: the torch sequence through ``torch.compile(dynamic=False)``, compiled
  afresh for every shape (``torch._dynamo.reset()`` first, so no shape shares a graph
  or hits the recompile limit).
- ``liger`` (optional): Liger-Kernel's autograd Functions, RMSNorm with llama casting.
  ``LigerRMSNormFunction`` runs with its default ``in_place=True`` (dx written into dy).
- ``unsloth_style`` (optional): ``tritonbench_ops.unsloth_style`` (with dW/dB).

Optional providers whose package does not import are skipped, with the reason kept.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .ops import LAYER_NORM_EPS, RMS_NORM_EPS

PROVIDERS = ("tilenorm", "torch", "inductor", "unsloth_style", "liger")
OPTIONAL = ("liger", "unsloth_style")
PEERS = tuple(p for p in PROVIDERS if p != "tilenorm")


class ProviderMissing(Exception):
    """An optional provider's package is not installed."""


# ---------------------------------------------------------------------------- torch


def _torch_layer_norm(x, extra, w, b):
    return (F.layer_norm(x, x.shape[-1:], w, b, LAYER_NORM_EPS),)


def _torch_rms_norm(x, extra, w, b):
    return (F.rms_norm(x, x.shape[-1:], w, RMS_NORM_EPS),)


def _torch_gated_rms_norm(x, z, w, b):
    return (F.rms_norm(x, x.shape[-1:], w, RMS_NORM_EPS) * F.silu(z),)


def _torch_add_rms_norm(x, residual, w, b):
    h = x + residual
    return F.rms_norm(h, h.shape[-1:], w, RMS_NORM_EPS), h


TORCH_IMPLS = {
    "layer_norm": _torch_layer_norm,
    "rms_norm": _torch_rms_norm,
    "gated_rms_norm": _torch_gated_rms_norm,
    "add_rms_norm": _torch_add_rms_norm,
}


def _inductor(op: str) -> Callable:
    torch._dynamo.reset()
    return torch.compile(TORCH_IMPLS[op], dynamic=False)


# ------------------------------------------------------------------------- tilenorm


def _tilenorm_impls() -> dict[str, Callable]:
    import kernels

    def layer_norm(x, extra, w, b):
        return (kernels.layer_norm(x, w, b, LAYER_NORM_EPS),)

    def rms_norm(x, extra, w, b):
        return (kernels.rms_norm(x, w, RMS_NORM_EPS),)

    def gated_rms_norm(x, z, w, b):
        return (kernels.rms_norm(x, w, RMS_NORM_EPS, z=z, norm_before_gate=True),)

    def add_rms_norm(x, residual, w, b):
        return kernels.add_rms_norm(x, residual, w, RMS_NORM_EPS)

    return {
        "layer_norm": layer_norm,
        "rms_norm": rms_norm,
        "gated_rms_norm": gated_rms_norm,
        "add_rms_norm": add_rms_norm,
    }


# --------------------------------------------------------------------------- peers


def _import_optional(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ProviderMissing(f"{module}: {e}") from None


def _liger_impls() -> dict[str, Callable]:
    ln = _import_optional("liger_kernel.ops.layer_norm").LigerLayerNormFunction
    rms = _import_optional("liger_kernel.ops.rms_norm").LigerRMSNormFunction
    add = _import_optional("liger_kernel.ops.fused_add_rms_norm").LigerFusedAddRMSNormFunction

    def layer_norm(x, extra, w, b):
        return (ln.apply(x, w, b, LAYER_NORM_EPS),)

    def rms_norm(x, extra, w, b):
        # (X, W, eps, offset, casting_mode, in_place): Liger's defaults, llama casting.
        return (rms.apply(x, w, RMS_NORM_EPS, 0.0, "llama", True),)

    def add_rms_norm(x, residual, w, b):
        return add.apply(x, residual, w, RMS_NORM_EPS, 0.0, "llama", False)

    return {"layer_norm": layer_norm, "rms_norm": rms_norm, "add_rms_norm": add_rms_norm}


def _unsloth_style_impls() -> dict[str, Callable]:
    import os

    import torch

    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        # Plain Triton kernels: without a GPU (or the interpreter) every launch would fail.
        raise ProviderMissing("unsloth_style: Triton kernels need a CUDA device (or TRITON_INTERPRET=1)")
    mod = _import_optional("tritonbench_ops.unsloth_style")

    def layer_norm(x, extra, w, b):
        return (mod.unsloth_layer_norm(x, w, b, LAYER_NORM_EPS),)

    def rms_norm(x, extra, w, b):
        return (mod.unsloth_rms_norm(x, w, RMS_NORM_EPS, gemma=False),)

    return {"layer_norm": layer_norm, "rms_norm": rms_norm}


_LOADERS = {
    "tilenorm": _tilenorm_impls,
    "torch": lambda: dict(TORCH_IMPLS),
    "inductor": lambda: {op: (lambda op=op: _inductor(op)) for op in TORCH_IMPLS},
    "liger": _liger_impls,
    "unsloth_style": _unsloth_style_impls,
}
# Providers whose table holds builders (called once per shape) rather than the fns.
_BUILT_PER_SHAPE = {"inductor"}


class Registry:
    """Loads each provider once; ``build`` returns the callable for one (op, shape)."""

    def __init__(self, loaders: dict[str, Callable] | None = None, per_shape=None) -> None:
        self._loaders = dict(_LOADERS if loaders is None else loaders)
        self._per_shape = set(_BUILT_PER_SHAPE if per_shape is None else per_shape)
        self._impls: dict[str, dict[str, Callable] | Exception] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._loaders)

    def load(self, provider: str) -> dict[str, Callable]:
        """The provider's op table; raises ProviderMissing or the import error (cached)."""
        if provider not in self._impls:
            try:
                self._impls[provider] = self._loaders[provider]()
            except Exception as e:  # noqa: BLE001 - a broken provider is a result, not a crash
                self._impls[provider] = e
        impls = self._impls[provider]
        if isinstance(impls, Exception):
            raise impls
        return impls

    def supports(self, provider: str, op: str) -> bool:
        try:
            return op in self.load(provider)
        except ProviderMissing:
            return False
        except Exception:  # noqa: BLE001 - recorded when the unit builds it
            return True

    def build(self, provider: str, op: str) -> Callable:
        fn = self.load(provider)[op]
        return fn() if provider in self._per_shape else fn
