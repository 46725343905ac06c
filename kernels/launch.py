"""From a call to a launch: pick the config, compile once, then call the compiled code.

The call path is the cost a model pays on every norm, so everything that can be done
once per (variant, shape, dtypes, device) is done once and memoized: the config
lookup (tuned cache entry, else the built-in heuristic), Helion's binding and code
generation, and the choice between compiled Triton and the eager reference. A
repeated call costs one tuple, one dict lookup and the launch itself.

CPU tensors run the same kernels in Helion's eager reference mode; with
``set_cpu_backend("triton")`` (and ``TRITON_INTERPRET=1`` in the environment before
Triton is imported) they run the generated Triton code under Triton's interpreter,
which is how the CPU test suite checks the GPU code path.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable

import torch
import triton

import helion

from . import heuristics
from .norm_kernels import make_kernels
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
        return tuned
    if mode == "fwd":
        return heuristics.fwd_config(m, k, g, _num_sms(device))
    return heuristics.bwd_config(m, k, g, _num_sms(device), rms="rms_norm" in kernel)


def _fits_kernel(mode: str, config: dict) -> bool:
    """A cached config written for another layout of the kernel's tiles is ignored."""
    want = 2 if mode == "fwd" else 4
    return len(config.get("block_sizes", ())) == want


_compiled: dict[tuple, tuple[Callable, dict]] = {}


def _fit(config: dict, bound: helion.runtime.kernel.BoundKernel) -> helion.Config:
    """Drop the reduction-loop knob where this specialization has no loop to configure
    (a row of 1 element, say), so one config dict serves every hidden size."""
    fitted = dict(config)
    loops = fitted.get("reduction_loops")
    if loops is not None:
        fitted["reduction_loops"] = loops[: len(bound.config_spec.reduction_loops)]
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
    """Forget every memoized config and compiled launcher (after changing the cache)."""
    _compiled.clear()


# --------------------------------------------------------------------- fast launches


class _CachedLaunch:
    """Helion's ``_launcher`` hook for one specialization of one compiled kernel.

    The first launch goes through Triton's ``JITFunction.run``, which binds the
    arguments, compiles if needed and returns the compiled kernel. Later launches call
    that kernel's C launcher directly, skipping Triton's per-call argument binding and
    specialization (most of the host time of a small launch). This is only sound
    because the caller keys each ``_CachedLaunch`` by everything Triton specializes
    on: dtypes, shapes, strides and 16-byte alignment of every tensor it did not
    allocate itself (see ``_layout``). Launch hooks (profilers) are still called.
    """

    __slots__ = ("kernel", "device")

    def __init__(self, device: torch.device) -> None:
        self.kernel = None
        self.device = device.index if device.index is not None else torch.cuda.current_device()

    def __call__(self, triton_kernel, grid, *args, num_warps, num_stages, **kwargs):  # noqa: ANN001, ANN204
        kernel = self.kernel
        if kernel is None:
            kernel = triton_kernel.run(
                *args, grid=grid, warmup=False, num_warps=num_warps, num_stages=num_stages, **kwargs
            )
            if not hasattr(kernel, "result"):  # a finished CompiledKernel, not a future
                self.kernel = kernel
            return
        n = len(grid)
        stream = torch._C._cuda_getCurrentRawStream(self.device)
        hooks = triton.knobs.runtime
        enter, leave = hooks.launch_enter_hook, hooks.launch_exit_hook
        # Launch metadata only matters to hooks (profilers); building it costs time.
        metadata = kernel.launch_metadata(grid, stream, *args) if enter is not None else None
        kernel.run(
            grid[0], grid[1] if n > 1 else 1, grid[2] if n > 2 else 1, stream,
            kernel.function, kernel.packed_metadata, metadata, enter, leave, *args,
        )  # fmt: skip


def _layout(t: torch.Tensor | None) -> tuple | None:
    """What Triton specializes a tensor argument on, beyond its dtype and shape."""
    if t is None:
        return None
    return (t.stride(), t.data_ptr() % 16 == 0)


_launchers: dict[tuple, _CachedLaunch] = {}


def _run(fn: Callable, args: tuple, key: tuple, user_tensors: tuple, device: torch.device) -> None:
    """Call a compiled Helion host function through the cached launcher for its layout."""
    if device.type != "cuda":
        fn(*args)  # Triton's interpreter: nothing to shortcut
        return
    full_key = (key, *[_layout(t) for t in user_tensors])
    launcher = _launchers.get(full_key)
    if launcher is None:
        launcher = _launchers[full_key] = _CachedLaunch(device)
    fn(*args, _launcher=launcher)


# ----------------------------------------------------------------------------- launch


def _dtype(t: torch.Tensor | None) -> torch.dtype | None:
    return None if t is None else t.dtype


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
) -> None:
    """Run the forward kernel on [M, G, K] views; outputs are written in place."""
    args = (
        x, residual, z, weight, bias, out, h_out, mean_out, rstd_out,
        eps, offset, variant.rms, variant.gate, variant.casting,
    )  # fmt: skip
    if _uses_ref(x.device):
        _kernels(True)["fwd"](*args)
        return
    key = (
        "fwd", variant, x.shape, x.dtype, _dtype(weight), _dtype(bias), rstd_out is None, x.device,
    )  # fmt: skip
    fn, _ = _compiled.get(key) or _compile(key, "fwd", args, _fwd_config(variant, x))
    _run(fn, args, key, (x, residual, z, weight, bias), x.device)


def _fwd_config(variant: Variant, x: torch.Tensor) -> dict:
    m, g, k = x.shape
    return choose_config(variant.tuning_name, "fwd", m, k, g, x.dtype, x.device)


def launch_bwd(
    variant: Variant,
    dy: torch.Tensor,
    x: torch.Tensor,
    z: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    mean: torch.Tensor | None,
    rstd: torch.Tensor,
    dh: torch.Tensor | None,
    dx: torch.Tensor,
    dz: torch.Tensor | None,
    want_dw: bool,
    want_db: bool,
    offset: float,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Run the backward kernel and the partial-sum reduce.

    Returns (dw, db) flattened to [G*K], already in the dtypes of weight and bias.
    """
    m, g, k = x.shape
    n_params = int(want_dw) + int(want_db)
    key = (
        "bwd", variant, x.shape, x.dtype, dy.dtype, _dtype(weight), _dtype(bias),
        dh is not None, want_dw, want_db, x.device,
    )  # fmt: skip
    ref = _uses_ref(x.device)
    if ref:
        fn, m_block, split = _kernels(True)["bwd"], max(m, 1), False  # one tile spans all rows
    else:
        hit = _compiled.get(key)
        if hit is None:
            # The buffers the kernel binds with depend on the config: choose it first,
            # then bind with one partial row (and row coefficients if it splits rows).
            config = choose_config(variant.tuning_name, "bwd", m, k, g, x.dtype, x.device)
            args = _bwd_args(
                variant, dy, x, z, weight, bias, mean, rstd,
                _coef(_splits(config, k), m, g, x.device), dh, dx, dz,
                _partials(1, n_params, g, k, x.device), want_dw, offset,
            )  # fmt: skip
            hit = _compile(key, "bwd", args, config)
        fn, config = hit
        m_block, split = config["block_sizes"][0], _splits(config, k)
    coef = None
    if split:
        coef = _coef(True, m, g, x.device)
        _launch_coef(variant, dy, x, z, weight, bias, mean, rstd, coef, offset)
    part = _partials(-(-m // m_block), n_params, g, k, x.device)
    args = _bwd_args(variant, dy, x, z, weight, bias, mean, rstd, coef, dh, dx, dz, part, want_dw, offset)
    if ref:
        fn(*args)
    else:
        _run(fn, args, key, (dy, x, z, weight, bias, dh), x.device)
    return _reduce_params(part, weight if want_dw else None, bias if want_db else None)


def _splits(config: dict, k: int) -> bool:
    """A backward config whose channel tile is narrower than the row splits the rows."""
    return config["block_sizes"][2] < k


def _coef(split: bool, m: int, g: int, device: torch.device) -> torch.Tensor | None:
    """[2, M, G] fp32 row coefficients for the split backward."""
    return torch.empty((2, m, g), dtype=torch.float32, device=device) if split else None


def _launch_coef(variant, dy, x, z, weight, bias, mean, rstd, coef, offset) -> None:  # noqa: ANN001
    args = (dy, x, z, weight, bias, mean, rstd, coef, offset, variant.rms, variant.gate)
    key = ("bwd_coef", variant, x.shape, x.dtype, dy.dtype, _dtype(weight), _dtype(bias), x.device)
    m, g, k = x.shape
    fn, _ = _compiled.get(key) or _compile(
        key, "bwd_coef", args, heuristics.coef_config(m, k, g, _num_sms(x.device))
    )
    _run(fn, args, key, (dy, x, z, weight, bias), x.device)


def _partials(p: int, n_params: int, g: int, k: int, device: torch.device) -> torch.Tensor | None:
    """One fp32 buffer [P, n_params, G, K] for the dw and db partials (one reduce for both)."""
    if n_params == 0:
        return None
    return torch.empty((p, n_params, g, k), dtype=torch.float32, device=device)


def _bwd_args(variant, dy, x, z, weight, bias, mean, rstd, coef, dh, dx, dz, part, want_dw, offset):  # noqa: ANN001, ANN202
    dw_part = db_part = None
    if part is not None:
        if want_dw:
            dw_part = part[:, 0]
        if part.shape[1] == 2 or not want_dw:
            db_part = part[:, -1]
    return (
        dy, x, z, weight, bias, mean, rstd, coef, dh, dx, dz, dw_part, db_part,
        offset, variant.rms, variant.gate,
    )  # fmt: skip


def _reduce_params(
    part: torch.Tensor | None, weight: torch.Tensor | None, bias: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Sum the partials over P into dw/db, written straight in the parameters' dtype."""
    if part is None:
        return None, None
    p, n_params, g, k = part.shape
    params = [t for t in (weight, bias) if t is not None]
    same = all(t.dtype == params[0].dtype for t in params)
    summed = reduce_partials(part.view(p, -1), params[0].dtype if same else torch.float32)
    grads = iter(summed.view(n_params, g * k).unbind(0))
    dw = next(grads).to(weight.dtype) if weight is not None else None
    db = next(grads).to(bias.dtype) if bias is not None else None
    return dw, db


def reduce_partials(part: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Sum [P, N] fp32 partials over P in a fixed order (deterministic) into [N] of ``dtype``."""
    p, n = part.shape
    if p == 1:
        return part[0].to(dtype)
    out = torch.empty(n, dtype=dtype, device=part.device)
    args = (part, out)
    if _uses_ref(part.device):
        _kernels(True)["reduce"](*args)
        return out
    key = ("reduce", part.shape, dtype, part.device)
    fn, _ = _compiled.get(key) or _compile(
        key, "reduce", args, heuristics.reduce_config(p, n, _num_sms(part.device))
    )
    _run(fn, args, key, (), part.device)
    return out
