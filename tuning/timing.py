"""Timing a kernel call: L2 flushed and inputs rotated on a GPU, plain wall time on CPU.

On a GPU, ``triton.testing.do_bench`` clears the L2 before every timed run and the
callable cycles through several input sets (their total exceeds the L2), so a shape
smaller than the L2 is not timed out of the cache. It returns the median.

On CPU (Triton's interpreter, tiny shapes, tests) the figure is the median wall time of
a few calls: it only has to rank configs and prove the pipeline works.

Processes that share a device (``--workers`` above the GPU count) time one at a time
under :func:`device_lock`, so concurrent compiles never skew a measurement.
"""

from __future__ import annotations

import contextlib
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Timing:
    """How long to measure: GPU warmup/rep in ms (do_bench), CPU seconds and call counts."""

    warmup_ms: float = 10.0
    rep_ms: float = 40.0
    cpu_budget_s: float = 0.1
    cpu_min_calls: int = 2
    cpu_max_calls: int = 20


TRIAL_TIMING = Timing()
FINAL_TIMING = Timing(warmup_ms=25.0, rep_ms=200.0, cpu_budget_s=0.3, cpu_min_calls=2, cpu_max_calls=50)


def time_ms(
    run: Callable[[int], object],
    n_sets: int,
    device: torch.device,
    timing: Timing = TRIAL_TIMING,
    *,
    warm: bool = True,
) -> float:
    """Median time in ms of ``run(i)``, i cycling over the ``n_sets`` input sets.

    ``warm=False`` skips the CPU warm-up call when the caller has just run ``run`` (the
    GPU path always warms up: do_bench's own warmup).
    """
    sets = itertools.cycle(range(n_sets))
    if device.type == "cuda":
        from triton.testing import do_bench

        with torch.cuda.device(device):
            return float(
                do_bench(
                    lambda: run(next(sets)), warmup=timing.warmup_ms, rep=timing.rep_ms, return_mode="median"
                )
            )
    return _cpu_time_ms(lambda: run(next(sets)), timing, warm)


def _cpu_time_ms(call: Callable[[], object], timing: Timing, warm: bool) -> float:
    if warm:
        call()  # first-call costs (compiles, caches) are not the kernel's speed
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < timing.cpu_max_calls:
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= timing.cpu_min_calls and time.perf_counter() - start > timing.cpu_budget_s:
            break
    return statistics.median(times)


def l2_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 64 << 20))
    return 0


def rotating_sets(set_bytes: int, device: torch.device, max_sets: int = 8) -> int:
    """How many input sets to rotate through so that together they exceed twice the L2."""
    l2 = l2_bytes(device)
    if l2 == 0 or set_bytes <= 0:
        return 1
    return max(1, min(max_sets, -(-2 * l2 // set_bytes)))


def _device_id(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        uuid = getattr(props, "uuid", None)
        return f"cuda-{uuid}" if uuid is not None else f"cuda-{props.name}-{device.index or 0}"
    return device.type


@contextlib.contextmanager
def device_lock(device: torch.device, lock_dir: str | Path | None = None) -> Iterator[None]:
    """Exclusive use of ``device`` for timing among the processes of this host."""
    from filelock import FileLock

    base = Path(lock_dir or tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in _device_id(device))
    with FileLock(str(base / f"tilenorm-timing-{name}.lock")):
        yield
