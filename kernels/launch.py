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

import helion

from . import heuristics
from .norm_kernels import make_kernels
from tuning import cache as config_cache

_INT32_LIMIT = 2**31 - 1


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
    if tuned is not None:
        return tuned
    heuristic = heuristics.fwd_config if mode == "fwd" else heuristics.bwd_config
    return heuristic(m, k, g, _num_sms(device))


_compiled: dict[tuple, tuple[Callable, int]] = {}


def _fit(config: dict, bound: helion.runtime.kernel.BoundKernel) -> helion.Config:
    """Drop the reduction-loop knob where this specialization has no loop to configure
    (a row of 1 element, say), so one config dict serves every hidden size."""
    fitted = dict(config)
    loops = fitted.get("reduction_loops")
    if loops is not None:
        fitted["reduction_loops"] = loops[: len(bound.config_spec.reduction_loops)]
    return helion.Config(**fitted)


def _compile(name: str, args: tuple, config: dict) -> Callable:
    bound = _kernels(False)[name].bind(args)
    return bound.compile_config(_fit(config, bound))


def compiled_for(
    name: str, variant: Variant, mode: str, args: tuple, x: torch.Tensor, key: tuple
) -> tuple[Callable, int]:
    """(launcher, m_block) for ``key``; compiles on first use."""
    hit = _compiled.get(key)
    if hit is not None:
        return hit
    m, g, k = x.shape
    config = choose_config(variant.tuning_name, mode, m, k, g, x.dtype, x.device)
    hit = (_compile(name, args, config), int(config["block_sizes"][0]))
    _compiled[key] = hit
    return hit


def clear_compiled() -> None:
    """Forget every memoized config and compiled launcher (after changing the cache)."""
    _compiled.clear()


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
    rstd_out: torch.Tensor,
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
    key = ("fwd", variant, x.shape, x.dtype, _dtype(weight), _dtype(bias), x.device)
    fn, _ = compiled_for("fwd", variant, "fwd", args, x, key)
    fn(*args)


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
    """Run the backward kernel; returns the reduced (dw, db) in fp32, flattened to [G*K]."""
    m, g, k = x.shape
    ref = _uses_ref(x.device)
    if ref:
        m_block = max(m, 1)  # the reference mode runs each tile over the whole dimension
        fn = _kernels(True)["bwd"]
    else:
        key = (
            "bwd", variant, x.shape, x.dtype, dy.dtype, _dtype(weight), _dtype(bias),
            dh is not None, want_dw, want_db, x.device,
        )  # fmt: skip
        fn, m_block = None, 0
        hit = _compiled.get(key)
        if hit is not None:
            fn, m_block = hit
    parts = -(-m // m_block) if m_block else 0
    dw_part = db_part = None

    def alloc() -> None:
        nonlocal dw_part, db_part
        if want_dw:
            dw_part = torch.empty((parts, g, k), dtype=torch.float32, device=x.device)
        if want_db:
            db_part = torch.empty((parts, g, k), dtype=torch.float32, device=x.device)

    def bwd_args() -> tuple:
        return (
            dy, x, z, weight, bias, mean, rstd, dh, dx, dz, dw_part, db_part,
            offset, variant.rms, variant.gate,
        )  # fmt: skip

    if fn is None:
        # First call for this key: the partial buffers' size depends on the config,
        # so bind with a placeholder size, then allocate for real.
        parts = 1
        alloc()
        fn, m_block = compiled_for("bwd", variant, "bwd", bwd_args(), x, key)
        parts = -(-m // m_block)
    alloc()
    fn(*bwd_args())
    return reduce_partials(dw_part), reduce_partials(db_part)


def reduce_partials(part: torch.Tensor | None) -> torch.Tensor | None:
    """Sum [P, G, K] fp32 partials over P, deterministically, into an fp32 [G*K]."""
    if part is None:
        return None
    p = part.shape[0]
    flat = part.view(p, -1)
    if p == 1:
        return flat[0]
    out = torch.empty(flat.shape[1], dtype=torch.float32, device=part.device)
    args = (flat, out)
    if _uses_ref(part.device):
        _kernels(True)["reduce"](*args)
        return out
    key = ("reduce", flat.shape, part.device)
    hit = _compiled.get(key)
    if hit is None:
        config = heuristics.reduce_config(p, flat.shape[1])
        hit = (_compile("reduce", args, config), 0)
        _compiled[key] = hit
    hit[0](*args)
    return out
