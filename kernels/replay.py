"""Replaying a launch: the repeated call's way past Helion's host code and Triton's binder.

A small norm costs more on the host than on the GPU. Helion's host function (sizes,
strides, grid) and Triton's ``JITFunction.run`` (argument binding, specialization,
cache lookup) compute the same values on every call with the same shapes, so the
first call records them and later calls replay them:

- ``Recorder`` is passed to a Helion host function as its ``_launcher``. It launches
  through Triton as usual (compiling the first time) and keeps the compiled kernel,
  the grid and the argument list.
- ``Replay`` turns one recorded launch into a function of the data pointers alone:
  each tensor argument is traced back, by identity, to its position in the host
  function's arguments; everything else (sizes, strides, eps) is a constant.

A replay is valid only for calls that agree with the recorded one on everything
Triton specializes on and every scalar the host code passes (dtypes, shapes,
strides, 16-byte alignment, eps, offset): the caller keys its replays by all of
them. Pointers go to Triton's C launcher as plain ints, which it accepts and which
spares it a ``data_ptr()`` call and a driver query per tensor.
"""

from __future__ import annotations

import inspect

import torch
import triton


class Recorder:
    """Helion's ``_launcher`` hook: launch through Triton, and remember the launch."""

    __slots__ = ("launches",)

    def __init__(self) -> None:
        self.launches: list[tuple] = []

    def __call__(self, triton_kernel, grid, *args, **options):  # noqa: ANN001, ANN204
        kernel = triton_kernel.run(*args, grid=grid, warmup=False, **options)
        self.launches.append((kernel, grid, args))

    def replay(self, host_args: tuple, device: torch.device) -> Replay | None:
        """The recorded launch as a ``Replay`` of ``host_args``' tensors, or None where
        the launch cannot be replayed (several launches, an asynchronous compile, a
        tensor the host code made itself)."""
        if len(self.launches) != 1:
            return None
        kernel, grid, args = self.launches[0]
        if hasattr(kernel, "result") or not isinstance(grid, tuple):  # a compile future
            return None
        where = {id(t): i for i, t in enumerate(host_args) if isinstance(t, torch.Tensor)}
        if len(where) != sum(isinstance(t, torch.Tensor) for t in host_args):
            return None  # one tensor in two places: identity is ambiguous
        layout, pointers = [], {}  # per argument: (host position, None) or (None, constant)
        for arg in args:
            if isinstance(arg, torch.Tensor):
                if id(arg) not in where:
                    return None
                layout.append((where[id(arg)], None))
                pointers[where[id(arg)]] = arg.data_ptr()
            else:
                layout.append((None, arg))
        return Replay(kernel, grid, pointers, device, tuple(layout))


class Replay:
    """One compiled kernel's launch as a function of data pointers (see the module doc)."""

    __slots__ = ("kernel", "grid", "build", "pointers", "layout", "device", "launch", "head")

    def __init__(self, kernel, grid: tuple, pointers: dict[int, int], device: torch.device, layout: tuple) -> None:  # noqa: ANN001
        self.kernel = kernel
        self.grid = (*grid, 1, 1)[:3]
        self.pointers = pointers  # host-argument position -> data pointer at recording
        # Per kernel argument: (host-argument position, None) for a tensor, (None, value)
        # for anything else; also what ``kernels.native`` turns into a C++ launch record.
        self.layout = layout
        self.build = _builder(layout)
        self.device = device.index if device.index is not None else torch.cuda.current_device()
        self.launch, self.head = _c_launcher(kernel)

    def matches(self, ptrs: tuple) -> bool:
        """Whether ``ptrs`` (one per host argument) name the tensors the recorded launch
        used: the check that a caller's pointer arithmetic mirrors the views it replaces."""
        return all(ptrs[i] == p for i, p in self.pointers.items())

    def __call__(self, ptrs: tuple) -> None:
        args = self.build(ptrs)
        kernel = self.kernel
        stream = torch._C._cuda_getCurrentRawStream(self.device)
        gx, gy, gz = self.grid
        hooks = triton.knobs.runtime
        enter, leave = hooks.launch_enter_hook, hooks.launch_exit_hook
        if not hooked(enter, leave):
            if self.launch is not None:
                self.launch(gx, gy, gz, stream, kernel.function, *self.head, None, None, None, *args)
                return
            enter = leave = metadata = None
        else:  # a profiler listens: give it what Triton's own launch would
            metadata = kernel.launch_metadata(self.grid, stream, *args)
        kernel.run(
            gx, gy, gz, stream, kernel.function, kernel.packed_metadata, metadata, enter, leave, *args
        )


def hooked(*hooks: object) -> bool:
    """Whether any of Triton's launch hooks listens. An unset hook is None or (Triton
    3.6) an empty HookChain, which Triton would still call, with launch metadata built
    for it, on every launch."""
    return any(h is not None and getattr(h, "calls", True) for h in hooks)


def launch_hooked() -> bool:
    runtime = triton.knobs.runtime
    return hooked(runtime.launch_enter_hook, runtime.launch_exit_hook)


def _builder(layout: tuple):  # noqa: ANN202
    """``layout`` as a function of the host arguments' data pointers. Generated: building
    the argument tuple in one expression costs a fraction of a loop over slots, and it
    runs on every call."""
    constants = {f"c{j}": value for j, (i, value) in enumerate(layout) if i is None}
    terms = [f"p[{i}]" if i is not None else f"c{j}" for j, (i, _) in enumerate(layout)]
    return eval(f"lambda p: ({', '.join(terms)},)", constants)  # noqa: S307


_LAUNCHER_CALL = ["self", "gridX", "gridY", "gridZ", "stream", "function", "args"]


def _c_launcher(kernel) -> tuple:  # noqa: ANN001
    """Triton's C launch function and its fixed leading arguments, where calling it
    directly does exactly what ``CudaLauncher.__call__`` would (the Triton 3.6 layout,
    no scratch memory to allocate per launch); (None, None) elsewhere, and replays go
    through ``kernel.run``. Saves a Python frame and a closure per launch."""
    run = kernel.run
    try:
        params = list(inspect.signature(type(run).__call__).parameters)
    except (TypeError, ValueError):
        return None, None
    if params != _LAUNCHER_CALL or not hasattr(run, "launch"):
        return None, None
    if getattr(run, "global_scratch_size", 1) or getattr(run, "profile_scratch_size", 1):
        return None, None
    return run.launch, (run.launch_cooperative_grid, run.launch_pdl, None, None, kernel.packed_metadata)


def ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()
