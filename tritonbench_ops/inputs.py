"""Benchmark shapes, input tensors and unfused PyTorch references (no TritonBench needed).

Every provider of an operator gets the same tensors: activations and parameters in one
dtype, all leaves requiring grad, so that a fwd+bwd computes dx and dW (and dB, dz) for
everyone alike.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F

from tuning.shapes import TRITONBENCH_LAYER_NORM, TRITONBENCH_RMS_NORM
from tuning.shapes import parse_shape

DEFAULT_SHAPES = {
    "layer_norm": TRITONBENCH_LAYER_NORM,
    "rms_norm": TRITONBENCH_RMS_NORM,
    "gated_rms_norm": TRITONBENCH_RMS_NORM,
    "add_rms_norm": TRITONBENCH_RMS_NORM,
}

LAYER_EPS = 1e-5
RMS_EPS = 1e-6

def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'4096x1024,8192x4096' -> [(4096, 1024), (8192, 4096)]; an empty item is an error."""
    return [parse_shape(item) for item in text.split(",")]


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().requires_grad_()


def _parameter(n: int, dtype, device, generator) -> torch.nn.Parameter:
    # Near 1 like a trained norm weight, but not exactly 1, so a wrong dW or a
    # forgotten weight shows in the accuracy check. A Parameter so that it can also be
    # assigned to the weight of an nn.Module provider and receive its gradient there.
    w = 1.0 + 0.1 * torch.randn(n, generator=generator, device=device, dtype=torch.float32)
    return torch.nn.Parameter(w.to(dtype))


def _randn(shape, dtype, device, generator, scale=1.0, shift=0.0):
    # Drawn in fp32 then cast, so every dtype sees the same values up to rounding.
    x = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    return (shift + scale * x).to(dtype)


def _generator(device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def layer_norm_inputs(m, n, dtype, device, seed=0):
    """(x, w_shape, weight, bias, eps): the argument order of TritonBench's layer_norm."""
    g = _generator(device, seed)
    # A mean far from zero relative to the spread, as in TritonBench: a one-pass
    # variance would lose digits here.
    x = _leaf(_randn((m, n), dtype, device, g, scale=0.5, shift=-2.3))
    weight = _parameter(n, dtype, device, g)
    bias = torch.nn.Parameter(_randn((n,), dtype, device, g, scale=0.1))
    return x, (n,), weight, bias, LAYER_EPS


def rms_norm_inputs(m, n, dtype, device, seed=0):
    """(H, x, weight): TritonBench's (H, input) plus a weight shared by all providers."""
    g = _generator(device, seed)
    return n, _leaf(_randn((m, n), dtype, device, g)), _parameter(n, dtype, device, g)


def gated_rms_norm_inputs(m, n, dtype, device, group_size=None, norm_before_gate=True, seed=0):
    """(x, z, weight, group_size, norm_before_gate, eps)."""
    group_size = n if group_size is None else group_size
    if n % group_size:
        raise ValueError(f"group_size {group_size} does not divide the hidden size {n}")
    g = _generator(device, seed)
    x = _leaf(_randn((m, n), dtype, device, g))
    z = _leaf(_randn((m, n), dtype, device, g))
    return x, z, _parameter(n, dtype, device, g), group_size, norm_before_gate, RMS_EPS


def add_rms_norm_inputs(m, n, dtype, device, seed=0):
    """(x, residual, weight, eps)."""
    g = _generator(device, seed)
    x = _leaf(_randn((m, n), dtype, device, g))
    residual = _leaf(_randn((m, n), dtype, device, g))
    return x, residual, _parameter(n, dtype, device, g), RMS_EPS


INPUT_BUILDERS = {
    "layer_norm": layer_norm_inputs,
    "rms_norm": rms_norm_inputs,
    "gated_rms_norm": gated_rms_norm_inputs,
    "add_rms_norm": add_rms_norm_inputs,
}


# ------------------------------------------------------------ unfused PyTorch references


def llama_rms_norm(x, weight, eps=RMS_EPS):
    """Hugging Face LlamaRMSNorm: normalize in fp32, cast back, then scale."""
    xf = x.float()
    xhat = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xhat.to(x.dtype)


def gemma_rms_norm(x, weight, eps=RMS_EPS):
    """Gemma: ``(1 + w)`` and the product in fp32, one cast at the end."""
    xf = x.float()
    xhat = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xhat * (1.0 + weight.float())).to(x.dtype)


def layer_norm(x, weight, bias, eps=LAYER_EPS):
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def gated_rms_norm(x, z, weight, group_size, norm_before_gate=True, eps=RMS_EPS):
    """Gated (and grouped) RMSNorm as in Mamba2's reference: fp32 throughout.

    Gate ``z * sigmoid(z)`` applied after the norm (``norm_before_gate``) or to the input
    before it; statistics per contiguous group of ``group_size`` channels.
    """
    xf, zf = x.float(), z.float()
    if not norm_before_gate:
        xf = xf * F.silu(zf)
    groups = xf.unflatten(-1, (-1, group_size))
    rstd = torch.rsqrt(groups.pow(2).mean(-1, keepdim=True) + eps)
    y = (groups * rstd).flatten(-2) * weight.float()
    if norm_before_gate:
        y = y * F.silu(zf)
    return y.to(x.dtype)


def add_rms_norm(x, residual, weight, eps=RMS_EPS):
    """Pre-norm residual add, then Llama RMSNorm: (norm(x + residual), x + residual)."""
    h = x + residual
    return llama_rms_norm(h, weight, eps), h
