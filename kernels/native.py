"""The native call path: repeated CUDA calls launched, and differentiated, in C++.

A training call that goes through a Python ``autograd.Function`` pays Python twice
more than torch's own norms do: in the forward (the Function's context, the saved
tensors) and in the backward, which the autograd engine runs on its device thread,
where our backward's Python ran about twice as slowly as the same code called
directly (H200, bench/NOTES.md attempt 21). ``csrc/native_call.cpp`` takes both out of
Python once a call signature has been seen:

- its forward replays the launch ``replay.py`` recorded (same CUfunction, grid and
  arguments) through the driver's ``cuLaunchKernel``, allocating the outputs in C++;
- a training call builds its autograd node with ``torch::autograd::Function``, whose
  backward replays the recorded backward launches in C++ as well.

A repeated call reaches all this through the C++ twin of the fast-path table
(``fast``/``file``): a call filed with a native handle is found there by the same key
``functional._fast_call`` builds (the function, its scalars, the grad mode, each
tensor's signature) and launched without building that key in Python. A miss falls
through to Python's key and the Python route.

Only what Python recorded is replayed; a backward whose gradients' signature has no
record yet (its first call, a missing gradient) calls ``backward_fallback`` here, which
runs the Python route (recording it) and hands the record to C++.

The extension is compiled once per machine with ``torch.utils.cpp_extension`` (about
25 s, then cached) the first time a CUDA call is filed for the fast path. Without a
C++ compiler, or with ``TILENORM_NATIVE=0``, calls keep the Python route: same
kernels, same results. The native path does not call Triton's launch hooks
(``triton.knobs.runtime``, e.g. proton): it is not attached while a hook is set, and
``TILENORM_NATIVE=0`` keeps every launch on Triton's own launcher.
"""

from __future__ import annotations

import os
import struct
import threading
import warnings
from pathlib import Path

from .replay import launch_hooked

_SOURCE = Path(__file__).parent / "csrc" / "native_call.cpp"
_lock = threading.Lock()
_ext: object = None  # the loaded extension; False once it is known to be unavailable
_table: object = None  # the extension that holds the C++ fast-path table, once loaded

# Triton scalar types the C++ launch packs, with their sizes in bytes.
_INT_BYTES = {"i1": 1, "u1": 1, "i8": 1, "u8": 1, "i16": 2, "u16": 2, "i32": 4, "u32": 4, "i64": 8, "u64": 8}
_FLOAT_FORMAT = {"fp16": ("<e", "<H"), "fp32": ("<f", "<I"), "fp64": ("<d", "<Q")}


def extension():  # noqa: ANN201
    """The compiled extension, or None where it is switched off or cannot be built."""
    global _ext
    if _ext is None:
        with _lock:
            if _ext is None:
                _ext = _load()
    return _ext or None


def _load():  # noqa: ANN202
    global fast, _table
    fast = _no_fast
    if os.environ.get("TILENORM_NATIVE", "1") == "0":
        return False
    try:
        from torch.utils.cpp_extension import load

        ext = load(name="tilenorm_native", sources=[str(_SOURCE)], extra_cflags=["-O2"], verbose=False)
    except Exception as e:  # noqa: BLE001 - no compiler, no headers: keep the Python route
        warnings.warn(
            f"tilenorm: native call path unavailable ({type(e).__name__}: {str(e)[:300]}); "
            "calls take the Python route (same kernels, more host time per call)",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    ext.set_fallback(backward_fallback)
    fast = ext.fast
    _table = ext
    return ext


def _bits(ty: str, value: object) -> int | None:
    """A scalar kernel argument as the little-endian bits of its C type, or None."""
    if ty in _INT_BYTES and isinstance(value, int):
        return int(value) & ((1 << (8 * _INT_BYTES[ty])) - 1)
    if ty in _FLOAT_FORMAT and isinstance(value, (int, float)):
        pack, unpack = _FLOAT_FORMAT[ty]
        return struct.unpack(unpack, struct.pack(pack, value))[0]
    return None


def launch_record(replay) -> tuple | None:  # noqa: ANN001
    """A ``replay.Replay`` as the C++ launch record ``(function, grid, threads, shared,
    [(pointer slot or -1, constant bits), ...])``, or None where the launch needs more
    than ``cuLaunchKernel`` with the kernel's parameters (clusters, PDL, cooperative
    grids, scratch memory, tensor descriptors) or has a type the record cannot pack."""
    kernel = replay.kernel
    if replay.launch is None:  # not the launcher layout (Triton 3.6, no scratch) mirrored
        return None
    meta = kernel.metadata
    if getattr(meta, "num_ctas", 1) != 1 or meta.launch_pdl or meta.launch_cooperative_grid:
        return None
    signature = getattr(getattr(kernel, "src", None), "signature", None)
    if not isinstance(signature, dict) or len(signature) != len(replay.layout):
        return None
    args = []
    for ty, (slot, value) in zip(signature.values(), replay.layout):
        if ty == "constexpr":
            continue
        if ty.startswith("*"):
            if slot is None:
                return None
            args.append((slot, 0))
            continue
        bits = None if slot is not None else _bits(ty, value)
        if bits is None:
            return None
        args.append((-1, bits))
    num_warps, num_ctas, shared = kernel.packed_metadata
    threads = num_warps * getattr(meta, "warp_size", 32)
    return (kernel.function, tuple(replay.grid), threads, shared, args)


def attach(call, residual, z, weight, bias) -> int | None:  # noqa: ANN001
    """A native handle for a keyed CUDA ``launch.Call`` whose forward replays, or None."""
    plan = call.fwd_plan
    if plan is None or launch_hooked():
        return None
    ext = extension()
    record = None if ext is None else launch_record(plan.replay)
    if record is None:
        return None
    stats_rows = 0 if plan.stats_shape is None else plan.stats_shape[0]
    return ext.make_call(
        call, record, stats_rows, call.groups, call.training,
        residual is not None, z is not None, weight is not None, bias is not None,
    )  # fmt: skip


def _no_fast(scalars: tuple, x, residual, z, weight, bias) -> None:  # noqa: ANN001
    return None


# ``fast(scalars, x, residual, z, weight, bias)``: (out, h) of a call filed under this
# signature (``file``), or None. The fast path's lookup, keyed in C++ as
# ``functional._fast_call`` keys it in Python: the extension's own function once it
# loads, and this stub (always None) while the native path is off.
fast = _no_fast


def file(key: tuple, x, residual, z, weight, bias, handle: int) -> None:  # noqa: ANN001
    """Files native call ``handle`` under the C++ twin of fast-path key ``key``
    (``(scalars, grad mode, tensor signatures...)``), built from the same arguments."""
    _ext.file(key[0], key[1], x, residual, z, weight, bias, handle)


def clear_fast() -> None:
    """Empties the C++ fast-path table (with ``launch.fast_plans``), also when the
    native path has been switched off since it was filled."""
    if _table is not None:
        _table.clear_fast()


def backward_fallback(call, dout, dh, xs, z, weight, bias, stats, want_dw, want_db):  # noqa: ANN001, ANN201
    """Called from C++ (GIL held) for a backward with no native record: the Python
    route, then its record (if it made a replayable one) handed to C++."""
    grads = call.backward(dout, dh, xs, z, weight, bias, stats, want_dw, want_db)
    plan = None if dout is None else call.bwd_plan(dout, dh, want_dw, want_db)
    if plan is not None:
        records = [None if r is None else launch_record(r) for r in (plan.coef, plan.main, plan.reduce)]
        needed = (plan.coef is not None, True, plan.reduce is not None)
        if all(rec is not None or not need for rec, need in zip(records, needed)):
            _ext.add_backward(call.native, dout, dh, want_dw, want_db, *records, plan.rows, plan.split, plan.exchange)
    return grads


def backward_records(handle: int) -> int:
    """How many backward records a native call holds (for tests)."""
    return _ext.backward_records(handle)
