"""The functional API: argument checks, views, autograd, and the fast path.

Every public function checks its arguments and lands in ``_norm``, which either runs
the forward directly (no input needs a gradient: the inference path, no statistics
saved) or through ``NormFunction`` so that autograd calls the backward. A repeated
call skips the checks: keyed by its arguments' signature, it goes straight to the
``launch.Call`` its first call filed (``launch.fast_plans``), which on CUDA holds the
forward's replay plan and, for training calls, the backward's.
``kernels.launch`` does the rest (views, configs, compiled and replayed launches).
"""

from __future__ import annotations

import itertools

import torch

from . import launch, native
from .launch import Variant
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


class NormFunction(torch.autograd.Function):
    """Autograd for every variant: saves the normalized input and the fp32 statistics.

    ``call`` (a ``launch.Call``) carries the variant, the scalars and the replay plans.
    Returns ``out``, or ``(out, h)`` with a residual. Gradients are not materialized:
    an output that got none arrives as None and costs no zero-filled tensor.
    """

    @staticmethod
    def forward(ctx, x, residual, z, weight, bias, call):  # noqa: ANN001
        ctx.set_materialize_grads(False)
        out, h, stats = call.forward(x, residual, z, weight, bias)
        ctx.save_for_backward(x if h is None else h, z, weight, bias, stats)
        ctx.call = call
        return out if h is None else (out, h)

    @staticmethod
    def backward(ctx, dout, dh=None):  # noqa: ANN001
        if dout is None and dh is None:
            return None, None, None, None, None, None
        xs, z, weight, bias, stats = ctx.saved_tensors
        needs = ctx.needs_input_grad
        call = ctx.call
        dx, dz, dw, db = call.backward(dout, dh, xs, z, weight, bias, stats, needs[3], needs[4])
        dres = dx if call.variant.residual and needs[1] else None
        return dx, dres, dz, dw, db, None


# ``Function.apply`` minus its Python wrapper (which maps functorch's dead-wrapper
# unwrapping over the arguments): for fast-path calls, whose plain tensors it cannot
# change. Saves ~2.5 us per training call.
_apply_plain = torch._C._FunctionBase.__dict__["apply"].__get__(None, NormFunction)


def _fast_call(scalars: tuple, x, residual, z, weight, bias) -> tuple[tuple | None, tuple | None]:  # noqa: ANN001
    """(key, result): this call's fast-path key and, when a ``launch.Call`` is filed
    under it in ``launch.fast_plans``, the call's (out, h) from that entry.

    The key holds the public function's name and scalar arguments (``scalars``, with
    their types, so that ``eps=True`` never passes for ``eps=1.0``), the grad mode and
    each tensor's ``launch.call_signature`` (requires_grad included: whether autograd
    records the call is decided by the key too). A key with an entry has passed the
    argument checks once before, and nothing the checks look at can differ. The key
    is None under torch.compile or for an argument that is not a plain tensor (the
    checked route then reports it, and functorch's wrapped tensors never get here).

    Calls with a native handle are filed in C++ as well (``native.fast``), which
    builds the same key and launches without coming back here: that table is the one
    way into the native path. Its misses (the first call, CPU tensors, tensors that
    are not plain, a training call under a functorch transform, where a C++ autograd
    Function refuses to run) fall through to the Python key and the Python route.
    """
    if torch.compiler.is_compiling():
        return None, None
    hit = native.fast(scalars, x, residual, z, weight, bias)
    if hit is not None:
        return None, hit
    sig = launch.call_signature
    try:
        key = (scalars, torch.is_grad_enabled(), sig(x), sig(residual), sig(z), sig(weight), sig(bias))
    except (AttributeError, RuntimeError, TypeError):
        return None, None
    call = launch.fast_plans.get(key)
    if call is None:
        return key, None
    if call.training:
        result = _apply_plain(x, residual, z, weight, bias, call)
        return key, ((result, None) if residual is None else result)
    return key, call.forward(x, residual, z, weight, bias)


def _needs_grad(x, residual, z, weight, bias) -> bool:  # noqa: ANN001
    if not torch.is_grad_enabled():
        return False
    for t in (x, residual, z, weight, bias):
        if t is not None and t.requires_grad:
            return True
    return False


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
    call_key: tuple | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if x.numel() == 0:
        return _empty_result(x, residual, z, weight, bias)
    if torch.compiler.is_compiling():
        # Dynamo can't trace a Helion launch: hand it opaque custom ops instead.
        from .ops import norm_via_ops

        return norm_via_ops(variant, x, residual, z, weight, bias, eps, offset, groups)
    call = launch.Call(variant, eps, offset, groups, _needs_grad(x, residual, z, weight, bias))
    if call.training:
        result = NormFunction.apply(x, residual, z, weight, bias, call)
        out, h = (result, None) if residual is None else result
    else:
        out, h, _ = call.forward(x, residual, z, weight, bias)
    if call_key is not None:
        entry = launch.fast_plans[call_key] = call.keyed(x, residual, z, weight, bias)
        if entry.native is not None:
            native.file(call_key, x, residual, z, weight, bias, entry.native)
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
    scalars = ("layer_norm", eps, eps.__class__, norm_before_gate, group_size, group_size.__class__)
    key, fast = _fast_call(scalars, x, None, z, weight, bias)
    if fast is not None:
        return fast[0]
    eps, groups = check_norm_args("layer_norm", x, weight, bias, z, None, eps, group_size)
    variant = _variant(False, _gate(z, norm_before_gate), "gemma", False, groups > 1)
    return _norm(variant, x, None, z, weight, bias, eps, 0.0, groups, key)[0]


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
    scalars = (
        "rms_norm", eps, eps.__class__, offset, offset.__class__, casting, norm_before_gate,
        group_size, group_size.__class__,
    )  # fmt: skip
    key, fast = _fast_call(scalars, x, None, z, weight, bias)
    if fast is not None:
        return fast[0]
    eps, groups = check_norm_args("rms_norm", x, weight, bias, z, None, eps, group_size)
    casting = check_casting("rms_norm", casting)
    offset = check_offset("rms_norm", offset)
    variant = _variant(True, _gate(z, norm_before_gate), casting, False, groups > 1)
    return _norm(variant, x, None, z, weight, bias, eps, offset, groups, key)[0]


def add_layer_norm(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h = x + residual; return layer_norm(h, weight, bias, eps), h`` in one kernel."""
    key, fast = _fast_call(("add_layer_norm", eps, eps.__class__), x, residual, None, weight, bias)
    if fast is not None:
        return fast[:2]
    if residual is None:
        raise TypeError("add_layer_norm: residual must be a torch.Tensor, got None")
    eps, groups = check_norm_args("add_layer_norm", x, weight, bias, None, residual, eps, None)
    variant = _variant(False, "none", "gemma", True, False)
    return _norm(variant, x, residual, None, weight, bias, eps, 0.0, groups, key)


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
    scalars = ("add_rms_norm", eps, eps.__class__, offset, offset.__class__, casting)
    key, fast = _fast_call(scalars, x, residual, None, weight, None)
    if fast is not None:
        return fast[:2]
    if residual is None:
        raise TypeError("add_rms_norm: residual must be a torch.Tensor, got None")
    eps, groups = check_norm_args("add_rms_norm", x, weight, None, None, residual, eps, None)
    casting = check_casting("add_rms_norm", casting)
    offset = check_offset("add_rms_norm", offset)
    variant = _variant(True, "none", casting, True, False)
    return _norm(variant, x, residual, None, weight, None, eps, offset, groups, key)
