"""Three clocks: eager (L2 flushed, rotating inputs), CUDA graph (kernel only), host overhead.

- ``eager_us``: ``triton.testing.do_bench(return_mode="median")``, which clears the L2
  before every timed call, over a function that moves to the next input set on each
  call. Launch overhead counts where it exceeds the GPU work queued ahead of it (as in
  TritonBench).
- ``graph_us``: ``calls`` steps cycling over the input sets are captured in one
  ``torch.cuda.CUDAGraph``; the median replay time divided by ``calls``. No flush: the
  sets together must exceed the L2 (the caller rotates >= 128 MiB, twice H200's L2).
- ``host_us``: back-to-back calls on one input set, no flush, wall clock per call:
  what a small-M caller pays (host overhead dominates there).

On a CPU device (smoke runs), eager and host use the wall clock and there is no graph.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from tuning.timing import capture_graph, replays_ms

GRAPH_MIN_CALLS = 20  # steps per captured graph: launch cost of a replay shared by these
GRAPH_TARGET_MS = 40.0  # total replay time to measure, split in replays
GRAPH_MAX_REPLAYS = 50
HOST_CALLS = 200  # back-to-back calls per host-overhead sample (one per round, median of the rounds)


def _cycle(step: Callable, sets: Sequence) -> Callable[[], None]:
    rotation = itertools.cycle(sets)
    return lambda: step(next(rotation))


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def eager_us(step: Callable, sets: Sequence, device: str, warmup_ms: float, rep_ms: float) -> float:
    """Median us per call, L2 flushed before each call, inputs rotated."""
    fn = _cycle(step, sets)
    if device.startswith("cuda"):
        import triton.testing

        return 1000.0 * triton.testing.do_bench(
            fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"
        )
    return _wall_clock_median_us(fn, calls=1, repeats=max(3, int(rep_ms / 10)))


def _wall_clock_median_us(
    fn: Callable[[], None], calls: int, repeats: int, device: str = "cpu"
) -> float:
    samples = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        _synchronize(device)
        samples.append((time.perf_counter() - start) / calls)
    return 1e6 * statistics.median(samples)


def host_us(
    step: Callable, s, device: str, calls: int = HOST_CALLS, repeats: int = 5, warmup: int = 20
) -> float:
    """Wall-clock us per call of back-to-back calls on one input set (no flush)."""
    fn = lambda: step(s)
    for _ in range(min(warmup, calls)):
        fn()
    return _wall_clock_median_us(fn, calls, repeats, device)


def graph_calls(n_sets: int, min_calls: int = GRAPH_MIN_CALLS) -> int:
    """Steps per graph: whole cycles over the sets, at least ``min_calls``."""
    return n_sets * math.ceil(min_calls / n_sets)


def graph_us(
    step: Callable, sets: Sequence, device: str, target_ms: float = GRAPH_TARGET_MS
) -> float | None:
    """Median us per step inside a CUDA graph of whole cycles over ``sets``; None off CUDA."""
    if not device.startswith("cuda"):
        return None
    calls = graph_calls(len(sets))
    graph = capture_graph(lambda i: step(sets[i % len(sets)]), min(3, len(sets)), calls)
    try:
        first = replays_ms(graph, 2)[-1]  # the first replay uploads the graph
        replays = max(3, min(GRAPH_MAX_REPLAYS, int(target_ms / max(first, 1e-3))))
        return 1000.0 * statistics.median(replays_ms(graph, replays)) / calls
    finally:
        del graph
