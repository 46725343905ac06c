"""The four timed ops: their inputs, their fp32 reference, and the output check.

Every provider implements an op as ``fn(x, extra, weight, bias) -> tuple of outputs``
where ``extra`` is the gate ``z`` (gated_rms_norm), the ``residual`` (add_rms_norm) or
None. In ``fwd_bwd`` mode x, extra, weight and bias require grad (leaves) and one step
is the forward plus ``torch.autograd.grad`` of every output: dx, dz / d residual, dW and
dB together, with no ``.grad`` accumulation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

LAYER_NORM_EPS = 1e-5
RMS_NORM_EPS = 1e-6

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

# Max |provider - fp32 reference| / max |reference|, per output and per gradient.
TOLERANCE = {"bf16": 2e-2, "fp16": 4e-3, "fp32": 1e-3}


@dataclass(frozen=True)
class OpSpec:
    name: str
    extra: str | None  # "z", "residual" or None
    has_bias: bool
    n_outputs: int


OP_SPECS = {
    "layer_norm": OpSpec("layer_norm", None, True, 1),
    "rms_norm": OpSpec("rms_norm", None, False, 1),
    "gated_rms_norm": OpSpec("gated_rms_norm", "z", False, 1),
    "add_rms_norm": OpSpec("add_rms_norm", "residual", False, 2),
}


@dataclass
class InputSet:
    """One call's tensors. ``weight``/``bias`` are shared by all sets of a shape."""

    x: torch.Tensor
    extra: torch.Tensor | None
    weight: torch.Tensor
    bias: torch.Tensor | None
    grad_outputs: tuple[torch.Tensor, ...]  # empty in fwd mode
    targets: list[torch.Tensor] = field(init=False)  # what fwd_bwd differentiates

    def __post_init__(self) -> None:
        self.targets = [t for t in self.args() if t is not None and t.requires_grad]

    def args(self) -> tuple:
        return self.x, self.extra, self.weight, self.bias

    def per_call_bytes(self) -> int:
        """Bytes of the tensors that differ between sets (what rotation must cover)."""
        tensors = [self.x, self.extra, *self.grad_outputs]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


# ------------------------------------------------------------------------- inputs


def make_params(spec: OpSpec, n: int, dtype: torch.dtype, device: str, grad: bool, seed: int = 0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    weight = (0.5 + torch.rand(n, generator=gen)).to(device=device, dtype=dtype)
    bias = (
        (torch.rand(n, generator=gen) - 0.5).to(device=device, dtype=dtype)
        if spec.has_bias
        else None
    )
    for t in (weight, bias):
        if t is not None:
            t.requires_grad_(grad)
    return weight, bias


def make_set(spec, m, n, dtype, device, grad, weight, bias, seed) -> InputSet:
    """Random inputs for one call (generated on the device: fast for large shapes)."""
    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(scale: float = 1.0) -> torch.Tensor:
        t = torch.randn((m, n), generator=gen, device=device, dtype=torch.float32) * scale
        return t.to(dtype)

    x = randn()
    extra = randn() if spec.extra else None
    grad_outputs = tuple(randn(0.1) for _ in range(spec.n_outputs)) if grad else ()
    for t in (x, extra):
        if t is not None:
            t.requires_grad_(grad)
    return InputSet(x, extra, weight, bias, grad_outputs)


def make_step(fn: Callable, mode: str) -> Callable[[InputSet], object]:
    """One timed call: the forward, or the forward plus every gradient (no accumulation)."""
    if mode == "fwd":
        return lambda s: fn(*s.args())

    def fwd_bwd(s: InputSet):
        return torch.autograd.grad(fn(*s.args()), s.targets, s.grad_outputs, allow_unused=True)

    return fwd_bwd


# ---------------------------------------------------------------------- reference


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def reference_fn(op: str) -> Callable:
    """fp32 math of ``op`` on fp32 tensors, same signature as a provider's fn."""

    def layer_norm(x, extra, w, b):
        return (F.layer_norm(x, x.shape[-1:], w, b, LAYER_NORM_EPS),)

    def rms_norm(x, extra, w, b):
        return (_rms(x, RMS_NORM_EPS) * w,)

    def gated_rms_norm(x, z, w, b):
        return (_rms(x, RMS_NORM_EPS) * w * F.silu(z),)

    def add_rms_norm(x, residual, w, b):
        h = x + residual
        return _rms(h, RMS_NORM_EPS) * w, h

    return {
        "layer_norm": layer_norm,
        "rms_norm": rms_norm,
        "gated_rms_norm": gated_rms_norm,
        "add_rms_norm": add_rms_norm,
    }[op]


def _fp32_leaf(t: torch.Tensor | None) -> torch.Tensor | None:
    if t is None:
        return None
    return t.detach().float().requires_grad_(t.requires_grad)


def reference_results(op: str, s: InputSet) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(outputs, grads of every grad target) in fp32; grads empty in fwd mode."""
    leaves = [_fp32_leaf(t) for t in s.args()]
    with torch.enable_grad():
        outs = list(reference_fn(op)(*leaves))
        if not s.grad_outputs:
            return [o.detach() for o in outs], []
        targets = [t for t in leaves if t is not None]
        grads = torch.autograd.grad(outs, targets, [g.float() for g in s.grad_outputs])
    return [o.detach() for o in outs], list(grads)


# -------------------------------------------------------------------------- check


def run_once(fn: Callable, s: InputSet) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """One fwd (and bwd) call on fresh copies of the grad outputs (some providers write dx into dy)."""
    outs = list(fn(*s.args()))
    if not s.grad_outputs:
        return outs, []
    grads = torch.autograd.grad(
        outs, s.targets, [g.clone() for g in s.grad_outputs], allow_unused=True
    )
    return outs, list(grads)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want|; inf for NaN/inf or a shape mismatch."""
    if got.shape != want.shape:
        return math.inf
    diff = (got.detach().float() - want).abs().max().item()
    scale = max(want.abs().max().item(), 1e-6)
    return diff / scale if math.isfinite(diff) else math.inf


@dataclass
class CheckResult:
    max_err: float
    dw: bool | None  # None in fwd mode
    error: str | None  # None when the provider matches the reference


def check_provider(fn: Callable, s: InputSet, ref: tuple, dtype_name: str) -> CheckResult:
    """Compare outputs (and grads) with the fp32 reference; a missing dW/dB sets ``dw=False``."""
    ref_outs, ref_grads = ref
    outs, grads = run_once(fn, s)
    if len(outs) != len(ref_outs):
        return CheckResult(math.inf, None, f"{len(outs)} outputs, expected {len(ref_outs)}")
    errors = [relative_error(o, r) for o, r in zip(outs, ref_outs)]
    dw = None
    if ref_grads:
        n_inputs = len(ref_grads) - (2 if s.bias is not None else 1)
        if any(g is None for g in grads[:n_inputs]):
            return CheckResult(math.inf, None, "no gradient for an input (dx / dz / d residual)")
        dw = all(g is not None for g in grads[n_inputs:])
        errors += [relative_error(g, r) for g, r in zip(grads, ref_grads) if g is not None]
    max_err = max(errors)
    if max_err > TOLERANCE[dtype_name]:
        return CheckResult(
            max_err, dw, f"mismatch: max relative error {max_err:.3g} > {TOLERANCE[dtype_name]}"
        )
    return CheckResult(max_err, dw, None)
