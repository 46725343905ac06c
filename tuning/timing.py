"""Timing a kernel call: kernel time over rotating inputs on a GPU, wall time on CPU.

On a GPU, the calls are captured in a CUDA graph that cycles through several input sets
(together more than twice the L2, so no call reads its inputs from the cache) and the
graph is replayed: the median replay time over the calls in it is the kernel time,
host overhead excluded. Timing through Python launches (``do_bench``) measured the host
on small shapes: a 28 us backward read 90-130 us whenever the host was busy (two sweep
workers, 2026-11-21), so configs were ranked by noise there. Calls that cannot be
captured fall back to ``triton.testing.do_bench`` (L2 cleared before every call).

The final measurement of a study adds a second clock, the one a user meets
(:func:`interleaved_clocks`): each call right after the L2 was filled with other data (a
zeroed scratch buffer, as ``do_bench`` flushes; in a model, the matmul before the norm),
timed by events around the call alone. The graph clock rotates the inputs but its input
sets share their outputs, so part of what a call writes is still in the L2 when the next
set's call runs: there evict-first loads won 2-4% that they lost 2-6% right after a flush
(H200, narrow 16-bit forwards, bench/NOTES.md attempt 80). A final ranks its configs by
the geometric mean of the two clocks (:attr:`Clocks.score`).

On CPU (Triton's interpreter, tiny shapes, tests) the figure is the median wall time of
a few calls: it only has to rank configs and prove the pipeline works. There is no L2 to
flush there, so the second clock is absent and the graph clock's stand-in ranks alone.

Processes that share a device (``--workers`` above the GPU count) time one at a time
under :func:`device_lock`, so concurrent compiles never skew a measurement.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from . import cache


@dataclass(frozen=True)
class Timing:
    """How long to measure: GPU warmup/rep in ms (do_bench), CPU seconds and call counts."""

    warmup_ms: float = 10.0
    rep_ms: float = 40.0
    cpu_budget_s: float = 0.1
    cpu_min_calls: int = 2
    cpu_max_calls: int = 20


# How GPU times are taken; part of a cache entry's versions, so entries timed another
# way are not compared with these by ms.
METHOD = "cuda-graph-rotating-inputs"  # outputs shared by the input sets (workload._make_outputs)
GRAPH_MIN_CALLS = 8  # calls per captured graph (whole cycles over the input sets)

# How a final ranks its configs; part of a cache entry's versions, so entries ranked
# another way are not compared with these (tuning.cache.entry_score).
RANK = "geomean(graph, flushed)"
FLUSHED_CALLS = 100  # flushed calls a round, each config
FLUSH_MIN_BYTES = 256 << 20  # do_bench's flush: what the benchmark's eager clock clears

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
    GPU path always warms up, on a side stream before the capture).
    """
    if device.type == "cuda":
        with torch.cuda.device(device):
            try:
                return _graph_ms(run, n_sets, timing)
            except RuntimeError:  # not capturable (a sync inside, say): time it eagerly
                torch.cuda.synchronize()
                return _do_bench_ms(run, n_sets, timing)
    sets = itertools.cycle(range(n_sets))
    return _cpu_time_ms(lambda: run(next(sets)), timing, warm)


def _graph_ms(run: Callable[[int], object], n_sets: int, timing: Timing) -> float:
    """Median ms per call of replays of a CUDA graph of calls cycling over the sets."""
    replayer = _Replayer(run, n_sets, timing)
    try:
        return replayer.ms(timing.rep_ms)
    finally:
        del replayer


class _Replayer:
    """A call's CUDA graph over the input sets, captured and warmed up once, then timed
    in as many batches of replays as asked for."""

    def __init__(self, run: Callable[[int], object], n_sets: int, timing: Timing) -> None:
        self.calls = n_sets * -(-GRAPH_MIN_CALLS // n_sets)
        self.graph = capture_graph(lambda i: run(i % n_sets), n_sets, self.calls)
        self.first = replays_ms(self.graph, 2)[-1]  # the first replay uploads the graph
        replays_ms(self.graph, max(1, min(1000, int(timing.warmup_ms / max(self.first, 1e-3)))))

    def ms(self, rep_ms: float) -> float:
        """Median ms per call over about ``rep_ms`` of back-to-back replays."""
        replays = max(5, min(2000, int(rep_ms / max(self.first, 1e-3))))
        return statistics.median(replays_ms(self.graph, replays)) / self.calls


class _Eager:
    """The fallback for a call that cannot be captured: do_bench in each batch."""

    def __init__(self, run: Callable[[int], object], n_sets: int, timing: Timing) -> None:
        self.run, self.n_sets, self.warmup_ms = run, n_sets, timing.warmup_ms

    def ms(self, rep_ms: float) -> float:
        return _do_bench_ms(self.run, self.n_sets, Timing(warmup_ms=self.warmup_ms, rep_ms=rep_ms))


# Rounds of an interleaved timing: each round times every call once.
ROUNDS = 5


def interleaved_ms(
    runs: Sequence[Callable[[int], object]],
    n_sets: int,
    device: torch.device,
    timing: Timing = TRIAL_TIMING,
    rounds: int = ROUNDS,
) -> list[float]:
    """Time of each of ``runs`` (as :func:`time_ms` would give it), taken in turns
    (:func:`interleaved_clocks` with the graph clock alone)."""
    return [c.graph_ms for c in interleaved_clocks(runs, n_sets, device, timing, rounds, flushed=False)]


@dataclass(frozen=True)
class Clocks:
    """One config's final times: graph (kernel time over rotating inputs) and flushed
    (the median call right after an L2 flush; None off CUDA)."""

    graph_ms: float
    flushed_ms: float | None = None

    @property
    def valid(self) -> bool:
        return all(ms > 0 and math.isfinite(ms) for ms in (self.graph_ms, self.flushed_ms) if ms is not None)

    @property
    def score(self) -> float:
        """What a final minimises (:func:`tuning.cache.score`)."""
        return cache.score(self.graph_ms, self.flushed_ms)


def interleaved_clocks(
    runs: Sequence[Callable[[int], object]],
    n_sets: int,
    device: torch.device,
    timing: Timing = TRIAL_TIMING,
    rounds: int = ROUNDS,
    flushed: bool = True,
) -> list[Clocks]:
    """Each of ``runs`` timed in turns: the graph clock (as :func:`time_ms` would give
    it) and, on CUDA with ``flushed``, the flushed clock (``FLUSHED_CALLS`` calls a round).

    The calls are timed in ``rounds`` rounds, each one batch of every call and clock (the
    first of a round moves along), and each figure is the median of its rounds'. Timed
    one after the other, each with its whole budget at once, two configs a few % apart
    were ranked by whatever the clock or the host did in between: on an 8 MB input, trial
    times of near-identical configs spread 10%, and a final pick ran 5% slower in the
    benchmark than the incumbent it had beaten (bench/NOTES.md attempt 38).
    """
    if not runs:
        return []
    rep_ms = timing.rep_ms / rounds
    if device.type != "cuda":
        share = Timing(cpu_budget_s=timing.cpu_budget_s / rounds, cpu_min_calls=timing.cpu_min_calls,
                       cpu_max_calls=max(timing.cpu_min_calls, timing.cpu_max_calls // rounds))  # fmt: skip
        for run in runs:  # first-call costs are not the kernel's speed
            run(0)
        times = _in_turns([lambda run=run: time_ms(run, n_sets, device, share, warm=False) for run in runs], rounds)
        return [Clocks(ms) for ms in times]
    with torch.cuda.device(device):
        timers = _graph_timers(runs, n_sets, timing)
        scratch = flush_scratch(device) if flushed else None
        try:
            measures = [lambda t=t: t.ms(rep_ms) for t in timers]
            if scratch is not None:
                after_flush = [_Flushed(run, n_sets, scratch) for run in runs]
                for f in after_flush:  # the first flushed calls pay for the scratch's first touch
                    f.ms(2)
                measures += [f.ms for f in after_flush]
            times = _in_turns(measures, rounds)
            return [Clocks(g, f) for g, f in itertools.zip_longest(times[: len(runs)], times[len(runs) :])]
        finally:
            del timers, scratch


def _graph_timers(runs: Sequence[Callable[[int], object]], n_sets: int, timing: Timing) -> list:
    """Each run's graph timer: a captured :class:`_Replayer`, or do_bench in each round
    (:class:`_Eager`) for a call that cannot be captured."""
    timers: list = []
    for run in runs:
        try:
            timers.append(_Replayer(run, n_sets, timing))
        except RuntimeError:
            torch.cuda.synchronize()
            timers.append(_Eager(run, n_sets, timing))
    return timers


class _Flushed:
    """The clock a user meets: each call right after ``scratch`` is zeroed (the L2 then
    holds none of the call's data), events around the call alone, inputs rotated."""

    def __init__(self, run: Callable[[int], object], n_sets: int, scratch: torch.Tensor) -> None:
        self.run, self.n_sets, self.scratch, self.calls = run, n_sets, scratch, 0

    def ms(self, calls: int = FLUSHED_CALLS) -> float:
        times = flushed_calls_ms(self.run, self.n_sets, calls, self.scratch, first=self.calls)
        self.calls += calls
        return statistics.median(times)


def flushed_calls_ms(
    run: Callable[[int], object], n_sets: int, calls: int, scratch: torch.Tensor | None, first: int = 0
) -> list[float]:
    """ms of each of ``calls`` calls ``run(i)``, i cycling over the sets from ``first``,
    each right after ``scratch`` is zeroed (``do_bench``'s loop; None: back to back, no
    flush), timed by events around the call alone."""
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(calls)]
    for i, (start, end) in enumerate(events, first):
        if scratch is not None:
            scratch.zero_()
        start.record()
        run(i % n_sets)
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in events]


def flush_scratch(device: torch.device) -> torch.Tensor:
    """A buffer whose zeroing evicts everything from the L2: twice its size, and no less
    than the benchmark's flush."""
    return torch.empty(max(2 * l2_bytes(device), FLUSH_MIN_BYTES) // 4, dtype=torch.int32, device=device)


def _in_turns(measure: list[Callable[[], float]], rounds: int) -> list[float]:
    """Median over ``rounds`` of each measurement, taken in turns, round r starting at r."""
    samples: list[list[float]] = [[] for _ in measure]
    for r in range(rounds):
        for j in range(len(measure)):
            i = (r + j) % len(measure)
            samples[i].append(measure[i]())
    return [statistics.median(s) for s in samples]


def capture_graph(call: Callable[[int], object], warm: int, calls: int) -> torch.cuda.CUDAGraph:
    """A CUDA graph of ``call(0) .. call(calls - 1)``, after ``call(0) .. call(warm - 1)``
    once on a side stream (capture needs compiled code and warm allocator pools, made
    off the default stream)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(warm):
            call(i)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    generator = torch.cuda.default_generators[torch.cuda.current_device()]
    before = generator.clone_state()
    try:
        with torch.cuda.graph(graph):
            for i in range(calls):
                call(i)
    except BaseException:
        # A capture that fails leaves the default generator marked as capturing, and it
        # then refuses every draw outside a graph ("Offset increment outside graph
        # capture"): give it back its state from before the capture.
        generator.graphsafe_set_state(before)
        raise
    return graph


def replays_ms(graph: torch.cuda.CUDAGraph, replays: int) -> list[float]:
    """ms of each of ``replays`` back-to-back replays of ``graph``."""
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(replays)]
    for start, end in events:
        start.record()
        graph.replay()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in events]


def _do_bench_ms(run: Callable[[int], object], n_sets: int, timing: Timing) -> float:
    from triton.testing import do_bench

    sets = itertools.cycle(range(n_sets))
    return float(do_bench(lambda: run(next(sets)), warmup=timing.warmup_ms, rep=timing.rep_ms, return_mode="median"))


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


def rotation_count(read_bytes: int, rotate_bytes: int, max_sets: int = 64) -> int:
    """Input sets to rotate through so that one cycle reads at least ``rotate_bytes``
    (the benchmark's rule, and the tuner's through :func:`rotating_sets`)."""
    return max(1, min(max_sets, -(-rotate_bytes // max(read_bytes, 1))))


def rotating_sets(read_bytes: int, device: torch.device) -> int:
    """The tuner's rotation: at least twice the L2 of reads per cycle. Counting reads, not
    outputs: with 8 MB inputs the old count (inputs and outputs, at most 8 sets) cycled
    64 MB of reads through a 60 MB L2, where the benchmark cycles 128 MB, and the two
    ranked configs apart by a few % (bench/NOTES.md attempt 38)."""
    l2 = l2_bytes(device)
    if l2 == 0 or read_bytes <= 0:
        return 1
    return rotation_count(read_bytes, 2 * l2)


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
