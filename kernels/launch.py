"""From a call to a launch: pick the config, compile once, then call the compiled code.

The call path is the cost a model pays on every norm, so everything that can be done
once is done once and memoized: per (variant, shape, dtypes, device) the config
lookup (tuned cache entry, else the built-in heuristic) and Helion's binding and
code generation; per call signature (adding strides, alignment, eps) the recorded
launches (``replay.py``). A repeated CUDA call costs a key, one dict lookup, its
output allocations and one C launch per kernel.

CPU tensors run the same kernels in Helion's eager reference mode; with
``set_cpu_backend("triton")`` (and ``TRITON_INTERPRET=1`` in the environment before
Triton is imported) they run the generated Triton code under Triton's interpreter,
which is how the CPU test suite checks the GPU code path.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

import helion

from . import heuristics, native
from .norm_kernels import make_kernels
from .replay import Recorder, Replay, ptr
from tuning import cache as config_cache

@dataclass(frozen=True)
class Variant:
    """The compile-time shape of one norm: which flags the kernels are built with."""

    rms: bool
    gate: str = "none"  # "none" | "after" | "before"
    casting: str = "gemma"  # "llama" | "gemma" | "none"; LayerNorm always computes in fp32
    residual: bool = False
    grouped: bool = False

    @property
    def tuning_name(self) -> str:
        """The kernel name the config cache files this variant under."""
        name = "rms_norm" if self.rms else "layer_norm"
        if self.gate != "none":
            name = "gated_" + name
        if self.residual:
            name = "add_" + name
        if self.grouped:
            name += "_grouped"
        return name


# --------------------------------------------------------------------------- backends

_cpu_backend = os.environ.get("TILENORM_CPU_BACKEND", "ref")


def set_cpu_backend(name: str) -> None:
    """Run CPU tensors in Helion's eager reference mode ("ref") or Triton's interpreter ("triton")."""
    global _cpu_backend
    if name not in ("ref", "triton"):
        raise ValueError(f"cpu backend must be 'ref' or 'triton', got {name!r}")
    if name == "triton" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            "the 'triton' CPU backend runs Triton's interpreter: set TRITON_INTERPRET=1 "
            "in the environment before importing triton"
        )
    _cpu_backend = name


def get_cpu_backend() -> str:
    return _cpu_backend


@functools.cache
def _kernels(ref: bool) -> dict[str, helion.Kernel]:
    return make_kernels(ref)


def _uses_ref(device: torch.device) -> bool:
    return device.type == "cpu" and _cpu_backend == "ref"


@functools.cache
def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


# ---------------------------------------------------------------------------- configs


def choose_config(
    kernel: str, mode: str, m: int, k: int, g: int, dtype: torch.dtype, device: torch.device
) -> dict:
    """Tuned cache entry for this shape if there is one, else the built-in heuristic."""
    tuned = config_cache.lookup(kernel, mode, m, k * g, dtype, device)
    if tuned is not None and _fits_kernel(mode, tuned):
        return _fits_grid(mode, tuned, k, g)
    if mode != config_cache.BWD:
        return heuristics.fwd_config(m, k, g, _num_sms(device), rms="rms_norm" in kernel)
    return heuristics.bwd_config(m, k, g, _num_sms(device))


def _fits_kernel(mode: str, config: dict) -> bool:
    """A cached config written for another layout of the kernel's tiles is ignored."""
    sizes = len(config.get("block_sizes", ()))
    return sizes == 4 if mode == config_cache.BWD else sizes in (2, 3)


# Programs a CUDA grid allows along y and z, where an "xyz" config (one grid axis per
# tiled dim) puts the group tiles and the backward's channel tiles.
MAX_GRID_YZ = 65535


def _fits_grid(mode: str, config: dict, k: int, g: int) -> dict:
    """``config``, or with the flat grid if its "xyz" grid would exceed MAX_GRID_YZ (a
    nearest-shape entry applied to a call with far more groups than it was tuned for)."""
    if config.get("pid_type") != "xyz":
        return config
    channel_tiles = -(-k // config["block_sizes"][2]) if mode == config_cache.BWD else 1
    if max(g, channel_tiles) <= MAX_GRID_YZ:
        return config
    return {name: v for name, v in config.items() if name != "pid_type"}


# Values the two-pass forward of a 16-bit input averages for its pilot.
PILOT_VALUES = 16


def params_first(config: dict, args: tuple) -> bool:
    """Whether ``norm_fwd`` loads the weight and bias before the row's statistics: where
    the config says so (``PARAMS_FIRST``, a key of ours the tuner offers), else for a
    16-bit RMSNorm weight not gated after the norm, as Unsloth-style's program does.
    Held across the reductions of a wide row, an fp32 weight, the bias or z cost 3-27%
    and spilled at the widest (H200, NOTES attempt 38); at decode sizes, where a row's
    latency is the kernel's time, loading them after the statistics is what the
    LayerNorm forward trailed Liger's by (attempt 48)."""
    if config.get(config_cache.PARAMS_FIRST):
        return True
    weight, rms, gate = args[3], args[11], args[12]
    return rms and gate != "after" and weight is not None and weight.dtype != torch.float32


def recast(config: dict, args: tuple) -> bool:
    """Whether ``norm_fwd`` holds the row in its 16-bit form between the statistics'
    passes and converts it again for each (``norm_kernels._recast``): where the config
    says so (``RECAST``, a key of ours the tuner offers) and the kernel can, a 16-bit row
    on CUDA (the move that keeps Triton from merging the conversions is PTX) whose u is
    the row itself or its residual sum (not a gate before the norm)."""
    x, gate = args[0], args[12]
    return bool(config.get(config_cache.RECAST)) and can_recast(x, gate)


def can_recast(x: torch.Tensor, gate: str) -> bool:
    """Whether ``norm_fwd`` can hold this row in 16 bits: a 16-bit input on CUDA whose u
    is the row or its residual sum (a gate before the norm makes u a product)."""
    return x.device.type == "cuda" and x.dtype != torch.float32 and gate != "before"


def read_only(config: dict, args: tuple) -> bool:
    """Whether ``norm_fwd_chunked``'s second pass reads by read-only loads
    (``norm_kernels._read_only``): where the config says so (``READ_ONLY``, a key of ours
    the tuner offers), is compiled for the exact shape (``STATIC``) and the call can
    (``can_read_only``). Each load reads 8 (16-bit) or 4 (fp32) values of one thread's
    run, which Triton lays out 16 bytes wide only where it can prove the rows 16-byte
    aligned: with the shape's strides as constants. A dynamic program at K = 1000 (bf16,
    runtime strides) got narrower runs and faulted on a misaligned address (H200, NOTES
    attempt 73)."""
    if not (config.get(config_cache.READ_ONLY) and config.get(config_cache.STATIC)):
        return False
    return can_read_only(read_again(args), config["block_sizes"][0], config.get("num_warps", 4))


def read_again(args: tuple) -> list[torch.Tensor | None]:
    """What the two-pass forward's second pass reads, from the forward's arguments: the
    residual sum the first pass stored (else x), the weight and the bias (None if absent)."""
    x, residual, weight, bias, h_out = args[0], args[1], args[3], args[4], args[6]
    return [h_out if residual is not None else x, weight, bias]


def can_read_only(tensors: list[torch.Tensor | None], chunk: int, warps: int) -> bool:
    """Whether the 16-byte read-only loads of ``norm_kernels._read_only`` fit these CUDA
    tensors (``read_again``'s) walked in chunks of ``chunk`` columns on ``warps`` warps:
    each thread's run of a chunk at least 16 bytes (Triton lays a chunk out in runs of up
    to 16 bytes a thread, and one load reads one run) and the tensors ``aligned16``."""
    x = tensors[0]
    return x.device.type == "cuda" and chunk * x.element_size() >= 16 * 32 * warps and aligned16(tensors)


def aligned16(tensors: list[torch.Tensor | None]) -> bool:
    """Whether these tensors are contiguous (``norm_kernels._read_only`` addresses them
    by the strides of a contiguous tensor) and on 16-byte boundaries, their last dim's
    extent included (part of the forward's compile key: a compiled read-only program
    must not meet a call that is not)."""
    return all(
        t is None or (t.is_contiguous() and t.data_ptr() % 16 == 0 and (t.size(-1) * t.element_size()) % 16 == 0)
        for t in tensors
    )


WIDEN_MIN_K = 4096  # the narrowest LayerNorm row that converts bf16 by bit moves


def fwd_kernel_args(config: dict, args: tuple) -> tuple:
    """The forward kernel's arguments: the call's, then ``widen`` (bf16 values converted
    to fp32 by PTX bit moves, ``norm_kernels._f32``): on CUDA, for LayerNorm rows of
    ``WIDEN_MIN_K`` values or more. On the H200 (NOTES attempt 75) it measured +1..+6% on
    LayerNorm's bf16 forwards of 4096-15872 values (none slower by more than 0.3%),
    -2..-13% at 1536-3072 (configs of 2 warps holding 128 values a thread, a two-pass row
    of 1024-value chunks), -0.1..-6% on RMSNorm's; then for ``norm_fwd``
    ``params_first`` and ``recast``;
    for ``norm_fwd_chunked`` the call's, the row width, whether the chunk leaves a ragged
    last step, the pilot's width (compile-time constants of that kernel: PILOT_VALUES for
    a 16-bit input, else one chunk) and ``read_only``. Both end with
    ``fast_rsqrt``: True for plain RMSNorm only (no gate, no residual), where it measured
    faster (H200, NOTES attempt 51: forwards +0.4..+16% at decode sizes, +4.7% at bf16
    4096x1024, the rest within 1%); the same instruction slowed LayerNorm's decode
    forwards by 0.1-2.6%, the gated forward by 5-17% and add+RMSNorm's at 4096x1024 by 6%,
    for reasons not found. The eager reference mode, which runs no inline Triton, passes
    False.
    """
    fast_rsqrt = args[11] and args[1] is None and args[2] is None  # rms, no residual, no z
    x = args[0]
    widen = x.device.type == "cuda" and not args[11] and x.shape[-1] >= WIDEN_MIN_K  # LayerNorm's rows
    if len(config["block_sizes"]) != 3:  # norm_fwd's
        return (*args, widen, params_first(config, args), recast(config, args), fast_rsqrt)
    k, chunk = x.shape[-1], config["block_sizes"][0]
    pilot = PILOT_VALUES if x.dtype != torch.float32 else chunk
    return (*args, widen, k, k % chunk != 0, pilot, read_only(config, args), fast_rsqrt)


def fwd_kernel_name(config: dict) -> str:
    """The forward kernel a config is written for: ``norm_fwd_chunked``'s block sizes are
    [chunk, rows, group tile], ``norm_fwd``'s [rows, group tile]; with "static" (a key
    of ours, not Helion's) the same kernel compiled for the exact shape of the call.

    A static program has M, the strides and the grid as constants (H200 bf16, shipped
    forward configs: -2..+3.6%, LayerNorm 4096x8192 +1.9%, NOTES attempt 42), and one
    is compiled per shape: so a cached "static" survives only an exact lookup of the
    shape it was tuned for (``tuning.cache.fit_config`` drops it for any other).
    """
    name = "fwd_chunked" if len(config["block_sizes"]) == 3 else "fwd"
    return name + "_static" if config.get(config_cache.STATIC) else name


_compiled: dict[tuple, tuple[Callable, dict]] = {}


def _fit(config: dict, bound: helion.runtime.kernel.BoundKernel) -> helion.Config:
    """Cut the per-loop knobs to the loops this binding has: no reduction loop where a
    row is 1 element, say, and no pipelining where Helion does not offer it, so one
    config dict serves every hidden size."""
    fitted = config_cache.helion_fields(config)  # ours chose the kernel and its constants
    for knob in ("reduction_loops", "range_num_stages"):
        if fitted.get(knob) is not None:
            fitted[knob] = fitted[knob][: len(getattr(bound.config_spec, knob))]
    return helion.Config(**fitted)


def _compile(key: tuple, name: str, args: tuple, config: dict) -> tuple[Callable, dict]:
    """Bind kernel ``name`` to ``args``, compile it with ``config`` and memoize under ``key``.

    Callers look ``key`` up in ``_compiled`` first, so a repeated call pays one dict
    lookup and never builds the config.
    """
    bound = _kernels(False)[name].bind(args)
    hit = _compiled[key] = (bound.compile_config(_fit(config, bound)), config)
    return hit


def clear_compiled() -> None:
    """Forget every memoized config, compiled kernel and replay plan (after changing the cache)."""
    _compiled.clear()
    _plans.clear()
    fast_plans.clear()


# ------------------------------------------------------------------------ entry points
#
# ``forward`` and ``backward`` take user-shaped tensors ([..., N], weight [N]). The
# first call of a signature takes the general route: [M, G, K] views, Helion's host
# code, Triton's binder; on CUDA it records its launches. When the recorded launches
# can be replayed from the user tensors' own data pointers (the views did not copy),
# the signature gets a plan and every later call is allocations plus replays.

_MISSING = object()
_plans: dict[tuple, object] = {}  # signature -> _FwdPlan | _BwdPlan, or None: never replayable

# The fast path: ``functional`` keys a call by everything its result and its argument
# checks depend on (see ``call_signature``) and files the checked call's ``Call`` under
# that key; from the second call on it goes straight to that ``Call``, skipping the
# checks, the variant and (on CUDA, through the recorded plans) this module's own keys.
class _FastPlans(dict):
    """``fast_plans``: clearing it also clears the native table that mirrors it."""

    def clear(self) -> None:
        super().clear()
        native.clear_fast()


fast_plans: dict[tuple, Call] = _FastPlans()


def call_signature(t: torch.Tensor | None) -> tuple | None:
    """One tensor argument's part of a fast-path key: what a replay is specialized on
    (``_meta``, which holds everything the checks look at too) and whether the tensor
    asks for a gradient."""
    return None if t is None else (_meta(t), t.requires_grad)


class Call:
    """One checked call: its variant and scalars, whether it saves statistics for a
    backward, and, once filed under a full call signature (``keyed``), the replay
    plans its repeats take without building this module's keys."""

    __slots__ = ("variant", "eps", "offset", "groups", "training", "fwd_plan", "bwd_plans", "native")

    def __init__(self, variant: Variant, eps: float, offset: float, groups: int, training: bool) -> None:
        self.variant, self.eps, self.offset, self.groups = variant, eps, offset, groups
        self.training = training
        self.fwd_plan: _FwdPlan | None = None
        self.bwd_plans: dict[tuple, _BwdPlan | None] | None = None
        self.native: int | None = None  # the C++ call (``kernels.native``) once keyed

    def forward(self, x, residual, z, weight, bias):  # noqa: ANN001, ANN201
        """(out, h, stats), as ``forward``; stats only when ``training``."""
        plan = self.fwd_plan
        if plan is not None:
            return plan(None, x, residual, z, weight, bias)
        v = self.variant
        return forward(v, x, residual, z, weight, bias, self.eps, self.offset, self.groups, self.training)

    def backward(self, dout, dh, xs, z, weight, bias, stats, want_dw: bool, want_db: bool):  # noqa: ANN001, ANN201
        """(dx, dz, dw, db), as ``backward``. A keyed CUDA call finds its plan by the
        gradients' signature alone: everything else in the backward's key is fixed by
        the call's."""
        if dout is None:
            dout = torch.zeros_like(xs)
        args = (self.variant, dout, dh, xs, z, weight, bias, stats, self.groups, self.offset, want_dw, want_db)
        plans = self.bwd_plans
        if plans is None:
            return backward(*args)
        key = _grads_key(dout, dh, want_dw, want_db)
        plan = plans.get(key)
        if plan is not None:
            return plan(*args)
        result = backward(*args)
        plans[key] = _plans.get(_bwd_key(*args))
        return result

    def bwd_plan(self, dout, dh, want_dw: bool, want_db: bool) -> _BwdPlan | None:  # noqa: ANN001
        """The backward plan this keyed call recorded for these gradients, if any."""
        plans = self.bwd_plans or {}
        return plans.get(_grads_key(dout, dh, want_dw, want_db))

    def keyed(self, x, residual, z, weight, bias) -> Call:  # noqa: ANN001
        """This call, after it ran once, as the fast-path entry of its signature: on
        CUDA it takes the forward plan it recorded, a table for the backward's, and
        the native call built from them (None where that path is off)."""
        if x.is_cuda:
            self.fwd_plan = _plans.get(
                _fwd_key(self.variant, x, residual, z, weight, bias, self.eps, self.offset, self.groups, self.training)
            )  # fmt: skip
            self.bwd_plans = {} if self.training else None
            self.native = native.attach(self, residual, z, weight, bias)
        return self


def _grads_key(dout, dh, want_dw: bool, want_db: bool) -> tuple:  # noqa: ANN001
    """A keyed call's backward plans are told apart by the gradients alone."""
    return (_meta(dout), _meta(dh), want_dw, want_db)


def _meta(t: torch.Tensor | None) -> tuple | None:
    """Everything about one tensor that a replay is specialized on (the device as its
    index: the keys only ever hold CUDA tensors, and an int is cheaper to get and hash)."""
    return None if t is None else (t.shape, t.stride(), t.dtype, t.get_device(), t.data_ptr() & 15)


def _like(t: torch.Tensor) -> torch.Tensor:
    """A contiguous output shaped like ``t``: always viewable as [M, G, K]."""
    return torch.empty_like(t, memory_format=torch.contiguous_format)


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


def _split_stats(stats: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(mean, rstd) views of the [2, M, G] (LayerNorm) or [1, M, G] (RMSNorm) fp32 statistics."""
    if stats is None:
        return None, None
    return (None, stats[0]) if stats.shape[0] == 1 else (stats[0], stats[1])


def _stats_ptrs(stats: torch.Tensor | None) -> tuple[int, int]:
    """The data pointers of ``_split_stats``' views."""
    if stats is None:
        return 0, 0
    base = stats.data_ptr()
    return (0, base) if stats.shape[0] == 1 else (base, base + 4 * stats.stride(0))


def forward(
    variant: Variant,
    x: torch.Tensor,
    residual: torch.Tensor | None,
    z: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    offset: float,
    groups: int,
    save_stats: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(out, h, stats): out and h shaped like x, stats the fp32 [1 or 2, M, G] statistics
    the backward needs (rstd, preceded by mean for LayerNorm); None unless ``save_stats``."""
    args = (variant, x, residual, z, weight, bias, eps, offset, groups, save_stats)
    if not x.is_cuda:
        return _forward_views(*args, False)[0]
    return _planned(_fwd_key(*args), _forward_views, _FwdPlan.check, args)


def _fwd_key(variant, x, residual, z, weight, bias, eps, offset, groups, save_stats) -> tuple:  # noqa: ANN001
    return (
        "fwd", variant, groups, eps, offset, save_stats,
        _meta(x), _meta(residual), _meta(z), _meta(weight), _meta(bias),
    )  # fmt: skip


def _planned(key: tuple, general: Callable, check: Callable, args: tuple) -> tuple:
    """Run ``args`` through the plan of ``key``: replayed when there is one, else the
    ``general`` route, recording on the signature's first call for ``check`` to turn
    into a plan (or None: this signature never replays)."""
    plan = _plans.get(key, _MISSING)
    if plan is None:
        return general(*args, False)[0]
    if plan is not _MISSING:
        return plan(*args)
    result, recorded = general(*args, True)
    _plans[key] = check(recorded, *args, result)
    return result


class _FwdPlan:
    """A forward signature's repeated call: allocate the outputs, replay the launch."""

    __slots__ = ("replay", "stats_shape")

    def __init__(self, replay: Replay, stats: torch.Tensor | None) -> None:
        self.replay = replay
        self.stats_shape = None if stats is None else stats.shape

    @classmethod
    def check(cls, replay, variant, x, residual, z, weight, bias, *rest) -> _FwdPlan | None:  # noqa: ANN001
        """A plan from the general route's recorded launch, if it replays (``rest``
        ends with the route's outputs)."""
        outputs = rest[-1]
        ptrs = _fwd_ptrs(x, residual, z, weight, bias, *outputs)
        if replay is None or not replay.matches(ptrs):
            return None
        return cls(replay, outputs[2])

    def __call__(self, variant, x, residual, z, weight, bias, *_):  # noqa: ANN001, ANN204
        out = _like(x)
        h = None if residual is None else _like(x)
        stats = None
        if self.stats_shape is not None:
            stats = x.new_empty(self.stats_shape, dtype=torch.float32)
        self.replay(_fwd_ptrs(x, residual, z, weight, bias, out, h, stats))
        return out, h, stats


def _fwd_ptrs(x, residual, z, weight, bias, out, h, stats) -> tuple:  # noqa: ANN001
    """Data pointers in ``norm_fwd``'s argument order."""
    mean, rstd = _stats_ptrs(stats)
    return (
        x.data_ptr(), ptr(residual), ptr(z), ptr(weight), ptr(bias), out.data_ptr(), ptr(h),
        mean, rstd,
    )  # fmt: skip


def _forward_views(variant, x, residual, z, weight, bias, eps, offset, groups, save_stats, record):  # noqa: ANN001, ANN202
    """The general forward route; returns ((out, h, stats), the recorded replay or None)."""
    n = x.shape[-1]
    k = n // groups
    m = x.numel() // n
    out = _like(x)
    h = None if residual is None else _like(x)
    stats = None
    if save_stats:
        stats = x.new_empty((1 if variant.rms else 2, m, groups), dtype=torch.float32)
    mean, rstd = _split_stats(stats)
    replay = launch_fwd(
        variant, _view3(x, m, groups, k), _view3(residual, m, groups, k), _view3(z, m, groups, k),
        _view2(weight, groups, k), _view2(bias, groups, k), out.view(m, groups, k),
        None if h is None else h.view(m, groups, k), mean, rstd, eps, offset, record,
    )  # fmt: skip
    return (out, h, stats), replay


def backward(
    variant: Variant,
    dout: torch.Tensor | None,
    dh: torch.Tensor | None,
    xs: torch.Tensor,
    z: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    stats: torch.Tensor,
    groups: int,
    offset: float,
    want_dw: bool,
    want_db: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(dx, dz, dw, db) shaped like xs, z, weight and bias (None where not wanted).

    ``xs`` is what the forward normalized (x, or the residual sum h); ``dout`` None
    means the output got no gradient, ``dh`` None that h got none (or has no residual).
    """
    if dout is None:
        dout = torch.zeros_like(xs)
    args = (variant, dout, dh, xs, z, weight, bias, stats, groups, offset, want_dw, want_db)
    if not xs.is_cuda:
        return _backward_views(*args, False)[0]
    return _planned(_bwd_key(*args), _backward_views, _BwdPlan.check, args)


def _bwd_key(variant, dout, dh, xs, z, weight, bias, stats, groups, offset, want_dw, want_db) -> tuple:  # noqa: ANN001
    return (
        "bwd", variant, groups, offset, want_dw, want_db,
        _meta(dout), _meta(dh), _meta(xs), _meta(z), _meta(weight), _meta(bias),
    )  # fmt: skip


class _BwdBuffers(NamedTuple):
    dx: torch.Tensor
    dz: torch.Tensor | None
    part: torch.Tensor | None  # [P, n_params, G, K] fp32 dW/dB partials; None at P = 1
    coef: torch.Tensor | None  # [2, M, G] fp32 row coefficients (split), [M, 2, G, T, 2] zeros (exchange)
    dw: torch.Tensor | None
    db: torch.Tensor | None


def _bwd_buffers(xs, z, weight, bias, groups, rows, split, want_dw, want_db, exchange=0) -> _BwdBuffers:  # noqa: ANN001
    n = xs.shape[-1]
    m = xs.numel() // n
    n_params = int(want_dw) + int(want_db)
    return _BwdBuffers(
        _like(xs),
        None if z is None else _like(z),
        None if _direct(rows) else _partials(rows, n_params, groups, n // groups, xs.device),
        _coef(split, m, groups, xs.device, exchange),
        _like(weight) if want_dw else None,
        _like(bias) if want_db else None,
    )


def _direct(rows: int) -> bool:
    """Whether the backward writes dW and dB itself: with one partial row (one program's
    rows cover M) the reduce launch would only cast that row to the parameters' dtype.
    At decode sizes that launch was a third of a fwd+bwd step (H200 bf16 1x4096:
    NOTES attempts 47-48)."""
    return rows == 1


def _bwd_ptrs(dout, dh, xs, z, weight, bias, stats, b: _BwdBuffers) -> tuple[tuple, tuple, tuple]:  # noqa: ANN001
    """Data pointers in the argument order of ``norm_bwd_coef``, ``norm_bwd`` and
    ``reduce_partials`` (the views ``_bwd_args`` and ``_reduce_into`` take)."""
    mean, rstd = _stats_ptrs(stats)
    shared = (
        dout.data_ptr(), xs.data_ptr(), ptr(z), ptr(weight), ptr(bias), mean, rstd, ptr(b.coef),
    )  # fmt: skip
    part = ptr(b.part)
    if b.part is None:  # direct: the main kernel writes dW and dB
        dw_part, db_part = ptr(b.dw), ptr(b.db)
    else:
        dw_part = part if b.dw is not None else 0
        db_part = 0
        if b.db is not None:
            db_part = part if b.dw is None else part + 4 * b.part.stride(1)
    main = (*shared, ptr(dh), b.dx.data_ptr(), ptr(b.dz), dw_part, db_part)
    first, second = (b.dw, b.db) if b.dw is not None else (b.db, None)
    return shared, main, (part, ptr(first), ptr(second))


class _BwdPlan:
    """A backward signature's repeated call: allocate, replay coef (split), main, reduce."""

    __slots__ = ("coef", "main", "reduce", "rows", "split", "exchange")

    def __init__(self, coef, main, reduce, rows: int, split: bool, exchange: int) -> None:  # noqa: ANN001
        self.coef, self.main, self.reduce, self.rows, self.split = coef, main, reduce, rows, split
        self.exchange = exchange

    @classmethod
    def check(cls, recorded: tuple, variant, dout, dh, xs, z, weight, bias, stats, *_) -> _BwdPlan | None:  # noqa: ANN001
        """A plan from the general route's recorded launches, if they all replay."""
        (coef, main, reduce), rows, split, exchange, buffers = recorded
        ptrs = _bwd_ptrs(dout, dh, xs, z, weight, bias, stats, buffers)
        for replay, p, needed in zip((coef, main, reduce), ptrs, (split, True, buffers.part is not None)):
            if needed and (replay is None or not replay.matches(p)):
                return None
        return cls(coef, main, reduce, rows, split, exchange)

    def __call__(self, variant, dout, dh, xs, z, weight, bias, stats, groups, offset, want_dw, want_db):  # noqa: ANN001, ANN204
        b = _bwd_buffers(xs, z, weight, bias, groups, self.rows, self.split, want_dw, want_db, self.exchange)
        coef, main, reduce = _bwd_ptrs(dout, dh, xs, z, weight, bias, stats, b)
        if self.coef is not None:
            self.coef(coef)
        self.main(main)
        if self.reduce is not None:
            self.reduce(reduce)
        return b.dx, b.dz, b.dw, b.db


def _backward_views(variant, dout, dh, xs, z, weight, bias, stats, groups, offset, want_dw, want_db, record):  # noqa: ANN001, ANN202
    """The general backward route; returns (grads, (replays, partial rows, split, exchange
    tiles, buffers))."""
    n = xs.shape[-1]
    k = n // groups
    m = xs.numel() // n
    x3, dy3 = _view3(xs, m, groups, k), _view3(dout, m, groups, k)
    z3, dh3 = _view3(z, m, groups, k), _view3(dh, m, groups, k)
    w2, b2 = _view2(weight, groups, k), _view2(bias, groups, k)
    mean, rstd = _split_stats(stats)
    fn, rows, split, exchange, choices = _bwd_kernel(variant, dy3, x3, z3, w2, b2, mean, rstd, dh3, want_dw, want_db, offset)
    b = _bwd_buffers(xs, z, weight, bias, groups, rows, split, want_dw, want_db, exchange)
    coef = None
    if split:
        coef = _launch_coef(variant, dy3, x3, z3, w2, b2, mean, rstd, b.coef, offset, record)
    args = _bwd_args(
        variant, dy3, x3, z3, w2, b2, mean, rstd, b.coef, dh3, b.dx.view(m, groups, k),
        _view3(b.dz, m, groups, k), *_grad_targets(b.part, b.dw, b.db, groups, k), offset, exchange, choices,
    )  # fmt: skip
    main = _call(fn, args, xs.device, record)
    reduce = _reduce_into(b.part, b.dw, b.db, record)
    return (b.dx, b.dz, b.dw, b.db), ((coef, main, reduce), rows, split, exchange, b)


# ----------------------------------------------------------------------------- launch


def _dtype(t: torch.Tensor | None) -> torch.dtype | None:
    return None if t is None else t.dtype


def _call(fn: Callable, args: tuple, device: torch.device, record: bool) -> Replay | None:
    """Run a compiled host function; with ``record`` (CUDA), return its launch as a Replay."""
    if not record or device.type != "cuda":
        fn(*args)
        return None
    recorder = Recorder()
    fn(*args, _launcher=recorder)
    return recorder.replay(args, device)


def launch_fwd(
    variant: Variant,
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
    offset: float,
    record: bool = False,
) -> Replay | None:
    """Run the forward kernel on [M, G, K] views; outputs are written in place."""
    args = (
        x, residual, z, weight, bias, out, h_out, mean_out, rstd_out,
        eps, offset, variant.rms, variant.gate, variant.casting,
    )  # fmt: skip
    if _uses_ref(x.device):
        _kernels(True)["fwd"](*args, False, params_first({}, args), False, False)
        return None
    # offset is a compile-time constant of the forward kernels: one compiled call per value.
    key = (
        "fwd", variant, x.shape, x.dtype, _dtype(weight), _dtype(bias), rstd_out is None, x.device, offset,
        aligned16(read_again(args)),
    )  # fmt: skip
    hit = _compiled.get(key)
    if hit is None:
        config = _fwd_config(variant, x, training=rstd_out is not None)
        hit = _compile(key, fwd_kernel_name(config), fwd_kernel_args(config, args), config)
    fn, config = hit
    return _call(fn, fwd_kernel_args(config, args), x.device, record)


def _fwd_config(variant: Variant, x: torch.Tensor, training: bool) -> dict:
    """The training forward (statistics saved) and the inference forward have their own
    cache entries: the same config can run them at different speeds."""
    m, g, k = x.shape
    mode = config_cache.FWD if training else config_cache.INFER
    return choose_config(variant.tuning_name, mode, m, k, g, x.dtype, x.device)


def _bwd_kernel(variant, dy, x, z, weight, bias, mean, rstd, dh, want_dw, want_db, offset):  # noqa: ANN001, ANN202
    """The backward host function for these [M, G, K] views, the number of partial rows
    it writes (one per program), whether it runs the split schedule, the exchange
    schedule's channel tiles per row (0: not that schedule) and its ``bwd_choices``."""
    m, g, k = x.shape
    if _uses_ref(x.device):
        return _kernels(True)["bwd"], 1, False, 0, bwd_choices(None, x)  # eager: one tile spans all rows, no choices
    key = (
        "bwd", variant, x.shape, x.dtype, dy.dtype, _dtype(weight), _dtype(bias),
        dh is not None, want_dw, want_db, x.device,
    )  # fmt: skip
    hit = _compiled.get(key)
    if hit is None:
        # The buffers the kernel binds with depend on the config: choose it first,
        # then bind with its dW/dB targets (fp32 partial rows, or dW and dB themselves:
        # another dtype, so another program) and row coefficients if it splits rows.
        config = choose_config(variant.tuning_name, "bwd", m, k, g, x.dtype, x.device)
        rows = -(-m // config["block_sizes"][0])
        dw = torch.empty_like(weight) if want_dw else None
        db = torch.empty_like(bias) if want_db else None
        part = None if _direct(rows) else _partials(rows, int(want_dw) + int(want_db), g, k, x.device)
        split, tiles = _bwd_schedule(config, k, x.device)
        args = _bwd_args(
            variant, dy, x, z, weight, bias, mean, rstd, _coef(split, m, g, x.device, tiles),
            dh, torch.empty_like(x), None if z is None else torch.empty_like(z),
            *_grad_targets(part, dw, db, g, k), offset, tiles, bwd_choices(config, x),
        )  # fmt: skip
        hit = _compile(key, "bwd", args, config)
    fn, config = hit
    return fn, -(-m // config["block_sizes"][0]), *_bwd_schedule(config, k, x.device), bwd_choices(config, x)


def _bwd_schedule(config: dict, k: int, device: torch.device) -> tuple[bool, int]:
    """(split, exchange tiles) of a backward config: a channel tile narrower than the row
    runs the split schedule (row coefficients first) unless its tiles exchange their
    partial sums (``_exchange_tiles`` > 0)."""
    tiles = _exchange_tiles(config, k, device)
    return config["block_sizes"][2] < k and not tiles, tiles


def _exchange_tiles(config: dict, k: int, device: torch.device) -> int:
    """The channel tiles per row of an exchange config (``norm_bwd``'s exchange schedule:
    the row sums formed from the tiles' partials), or 0. Triton's interpreter does not
    take it beyond one tile (it runs programs one after another, so a program waiting
    for its row's other tiles would wait forever): there the config's channel tiles run
    the split schedule."""
    if not config.get(config_cache.EXCHANGE):
        return 0
    tiles = -(-k // config["block_sizes"][2])
    return 0 if device.type == "cpu" and tiles > 1 else tiles


def _coef(split: bool, m: int, g: int, device: torch.device, exchange: int = 0) -> torch.Tensor | None:
    """[2, M, G] fp32 row coefficients for the split backward, or for the exchange
    schedule its zeroed [M, 2, G, T, 2] scratch (each tile's two partial row sums, each
    with its ready flag)."""
    if exchange:
        return torch.zeros((m, 2, g, exchange, 2), dtype=torch.float32, device=device)
    return torch.empty((2, m, g), dtype=torch.float32, device=device) if split else None


def _launch_coef(variant, dy, x, z, weight, bias, mean, rstd, coef, offset, record=False):  # noqa: ANN001, ANN202
    args = (dy, x, z, weight, bias, mean, rstd, coef, offset, variant.rms, variant.gate)
    if _uses_ref(x.device):
        _kernels(True)["bwd_coef"](*args)
        return None
    key = ("bwd_coef", variant, x.shape, x.dtype, dy.dtype, _dtype(weight), _dtype(bias), x.device)
    m, g, k = x.shape
    fn, _ = _compiled.get(key) or _compile(
        key, "bwd_coef", args, heuristics.coef_config(m, k, g, _num_sms(x.device))
    )
    return _call(fn, args, x.device, record)


def _partials(p: int, n_params: int, g: int, k: int, device: torch.device) -> torch.Tensor | None:
    """One fp32 buffer [P, n_params, G, K] for the dw and db partials (one reduce for both)."""
    if n_params == 0:
        return None
    return torch.empty((p, n_params, g, k), dtype=torch.float32, device=device)


def _grad_targets(part, dw, db, g: int, k: int) -> tuple:  # noqa: ANN001
    """``norm_bwd``'s (dw_part, db_part) for the wanted dW and dB (None: not wanted): the
    [P, G, K] rows of the fp32 partials ``part`` ([P, n_params, G, K], dW's first), or
    with no partials (``_direct``) dW and dB themselves viewed [1, G, K]."""
    if part is None:
        return tuple(None if t is None else t.view(1, g, k) for t in (dw, db))
    return (None if dw is None else part[:, 0], None if db is None else part[:, -1])


def bwd_widen(config: dict | None, x: torch.Tensor) -> bool:
    """Whether the backward converts its bf16 loads (x, dy, the weight, the bias, z, dh) to
    fp32 by bit moves (``norm_kernels._f32``): where the config says so (``WIDEN``, a key
    of ours the tuner offers for bf16 backwards), on CUDA only (the moves are PTX). A
    choice, not a rule: on the H200 (NOTES attempt 76) the shipped bf16 backwards ran
    0.57-1.04x with it, the fused LayerNorm programs of 8704-11264 values losing most
    (their 255 registers spill), 10752, 11776, 14336, 15360 and 2048x32768 gaining 1-4%."""
    return bool(config and config.get(config_cache.WIDEN)) and x.device.type == "cuda"


def bwd_trim(config: dict | None) -> bool:
    """Whether the fused backward pins the dead lanes of its padded channel tile to
    constant zeros, so that the compiler drops their arithmetic (``norm_kernels.norm_bwd``;
    ``TRIM``, a key of ours the tuner offers where the row is not a power of two). A
    choice, not a rule: on the H200 (NOTES attempt 77) 22 shipped backwards ran 1.01-1.19x
    with it (LayerNorm 4096 x 8704-15872: their 16384-wide programs drop the dead lanes'
    arithmetic, and 12800's stops spilling), but rows whose dead lanes share registers with
    live ones pay a select a value (4096x1536-7168: 0.83-0.96x)."""
    return bool(config and config.get(config_cache.TRIM))


def bwd_recast(config: dict | None, x: torch.Tensor) -> bool:
    """Whether the fused backward holds x, dy and the weight in their 16-bit registers
    across the row sums and converts them again for dx (``norm_kernels.norm_bwd``):
    where the config says so (``RECAST``) and the row is 16-bit on CUDA (the move that
    keeps Triton from merging the conversions is PTX). Gated variants ignore it."""
    return bool(config and config.get(config_cache.RECAST)) and can_recast(x, "none")


def bwd_choices(config: dict | None, x: torch.Tensor) -> tuple[bool, bool, bool]:
    """The compile-time choices a backward config makes: (``bwd_widen``, ``bwd_trim``,
    ``bwd_recast``)."""
    return bwd_widen(config, x), bwd_trim(config), bwd_recast(config, x)


def _bwd_args(variant, dy, x, z, weight, bias, mean, rstd, coef, dh, dx, dz, dw_part, db_part, offset, exchange=0, choices=None):  # noqa: ANN001, ANN202
    """The backward kernel's arguments; ``choices`` are ``bwd_choices`` (None: a config's
    without any)."""
    choices = bwd_choices(None, x) if choices is None else choices
    return (
        dy, x, z, weight, bias, mean, rstd, coef, dh, dx, dz, dw_part, db_part,
        offset, variant.rms, variant.gate, heuristics.bwd_sums_first(x.size(-1)), exchange, *choices,
    )  # fmt: skip


def _reduce_into(
    part: torch.Tensor | None, dw: torch.Tensor | None, db: torch.Tensor | None, record: bool = False
) -> Replay | None:
    """Sum the [P, n_params, G, K] partials over P into dw and db (any float dtypes)."""
    if part is None:
        return None
    p, n_params, g, k = part.shape
    first, second = (dw, db) if dw is not None else (db, None)
    args = (part.view(p, n_params, g * k), first.view(-1), None if second is None else second.view(-1))
    if _uses_ref(part.device):
        _kernels(True)["reduce"](*args)
        return None
    key = ("reduce", part.shape, first.dtype, _dtype(second), part.device)
    fn, _ = _compiled.get(key) or _compile(key, "reduce", args, heuristics.reduce_config(p))
    return _call(fn, args, part.device, record)


def _reduce_params(
    part: torch.Tensor | None, weight: torch.Tensor | None, bias: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """dw and db (shaped and typed like weight and bias) from the partials."""
    if part is None:
        return None, None
    dw = None if weight is None else torch.empty_like(weight)
    db = None if bias is None else torch.empty_like(bias)
    _reduce_into(part, dw, db)
    return dw, db
