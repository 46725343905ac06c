"""The Optuna tuner: one study per (kernel, mode, shape, dtype, GPU model).

A trial samples a point of :mod:`tuning.space`, compiles its config on the workload's
real arguments, checks the output against a float64 reference and times the kernels
alone (a CUDA graph over rotating inputs, see :mod:`tuning.timing`). A config that fails
to compile, crashes, runs out of resources, runs past the trial timeout or computes a
wrong result is recorded as FAIL with the reason in
the trial's user attrs; the study goes on. Points that cannot be good are PRUNED before
any compile; a config already measured in the study is not measured again.

Studies live in Optuna storage: an embedded journal file by default (resumable, safe
for several processes on one host), or any Optuna storage URL. ``n_trials`` is the
number of evaluated configs the study should hold in total: a resumed study continues
where it stopped.

When the sampled trials are done, a local search measures the neighbours (one step of
each parameter) of the two fastest configs, then of each new fastest, for a few rounds,
and the cache-hint siblings of the fastest few (eviction policies, streaming stores) are
measured. Then the finalists (the
fastest distinct trial configs, the fastest's cache-hint siblings and the cache's
incumbents), the heuristic config and torch's own norm are measured again, in turns,
with longer timing and by two clocks (the graph's kernel time, and each call right after
an L2 flush: :func:`timing.interleaved_clocks`); the config with the lowest geometric mean
of the two is the result written to the config cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import inspect
import json
import math
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from kernels import heuristics

from . import cache, timing
from .space import DIRECT_SPLIT_MAX_M, SPACE_VERSION, SearchSpace, log2i
from .workload import Task, TrialError, Workload

# Consecutive proposals that are invalid or already measured before the study is
# considered exhausted for this run.
MAX_IDLE_PROPOSALS = 60
# Distinct best trial configs measured again with the final timing.
FINALISTS = 3
# Rounds of local search around the fastest configs after the sampled trials (0: none).
REFINE_ROUNDS = 3
# Configs whose neighbourhood the first round of local search measures.
REFINE_FROM = 2
# Config keys that only tell the caches what to keep: configs that differ in nothing else
# rank differently by the graph clock and the flushed one (bench/NOTES.md attempt 80), so
# the fastest trial's siblings of this kind are finalists too.
CACHE_HINT_KEYS = ("load_eviction_policies", "store_cache_modifiers")
# Seeds that hold what the cache already answers for a key: always finalists.
INCUMBENT_SEEDS = ("cached", "sibling", "training")
FATAL_CUDA_MARKERS = (
    "illegal memory access",
    "unspecified launch failure",
    "device-side assert",
    "CUDA error",
)


class TrialTimeout(TrialError):
    """A compile or a measurement ran past the trial timeout."""


class FatalDeviceError(RuntimeError):
    """The device is unusable in this process (e.g. an illegal memory access)."""


@dataclass
class TuneOptions:
    """How to tune: sampler, trial count and time limits, where studies and results go."""

    n_trials: int = 20
    time_budget_s: float | None = None  # per study, this run
    deadline: float | None = None  # time.time() past which no trial starts
    sampler: str = "tpe"  # "tpe" | "random" | "grid"
    storage: str | None = None  # Optuna URL, or a journal file; default: out_dir/optuna.journal
    out_dir: Path = Path("tuning_out")
    cache_path: Path | None = None  # written with each result; also a warm-start source
    seed: int | None = None
    trial_timeout_s: float = 180.0
    n_sets: int | None = None  # rotating input sets (default: enough to exceed 2x L2)
    cached_seed: bool = True  # warm-start from the nearest cached config
    refine_rounds: int = REFINE_ROUNDS  # local search around the fastest configs once sampling is done


@dataclass
class Measurement:
    ms: float
    gbps: float
    gbps_exact: float


@dataclass
class TuneResult:
    """What one study found, with the heuristic and torch measured in the same run."""

    task: Task
    gpu: str
    study: str
    config: dict | None = None
    source: str = ""  # "tuned" | "heuristic"
    ms: float | None = None  # graph clock
    flushed_ms: float | None = None  # the call right after an L2 flush (CUDA only)
    gbps: float | None = None
    gbps_exact: float | None = None
    heuristic_config: dict | None = None
    heuristic_ms: float | None = None
    heuristic_gbps: float | None = None
    torch_label: str = "torch"
    torch_ms: float | None = None
    torch_gbps: float | None = None
    trials: int = 0  # evaluated configs in the study, all runs
    failed: int = 0
    run_trials: int = 0  # evaluated in this run
    refined: int = 0  # of which by the local search and the hint siblings
    history: list = field(default_factory=list)  # [trial number, ms or None] in order
    model_bytes: int = 0  # TritonBench's bytes for this task: GB/s = model_bytes / ms / 1e6
    wall_s: float = 0.0
    error: str | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- optuna


def study_name(task: Task, gpu: str) -> str:
    return f"tilenorm/v{SPACE_VERSION}/{gpu}/{task.label}"


def make_storage(spec: str | None, out_dir: Path) -> object:
    """An Optuna storage: a URL as given, else a journal file (default out_dir/optuna.journal)."""
    if spec is not None and "://" in spec:
        return spec
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(spec) if spec else out_dir / "optuna.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def make_sampler(
    name: str, space: SearchSpace, n_trials: int, seed: int | None
) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if name != "tpe":
        raise ValueError(f"sampler must be tpe, random or grid, got {name!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            n_startup_trials=max(3, min(10, n_trials // 3)),
            multivariate=True,
            group=True,  # conditional parameters (stages, sm multiplier) get their own groups
            constant_liar=True,  # several processes on one study spread out
            seed=seed,
        )


def open_study(task: Task, gpu: str, space: SearchSpace, options: TuneOptions) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=study_name(task, gpu),
        storage=make_storage(options.storage, options.out_dir),
        sampler=make_sampler(options.sampler, space, options.n_trials, options.seed),
        direction="minimize",
        load_if_exists=True,
    )


def config_key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def _measured(study: optuna.Study) -> dict[str, float | None]:
    """config key -> ms (None: failed) of every config this study has evaluated."""
    known: dict[str, float | None] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        if t.user_attrs.get("evaluated") and "config" in t.user_attrs:
            known[config_key(t.user_attrs["config"])] = t.value if t.state == TrialState.COMPLETE else None
    return known


def _enqueue_seeds(study: optuna.Study, space: SearchSpace, seeds: dict[str, dict | None]) -> None:
    """Queue each seed config that the space can express and the study has not tried."""
    for name, config in seeds.items():
        point = None if config is None else space.from_config(config)
        if point is not None:
            study.enqueue_trial(point, user_attrs={"seed": name}, skip_if_exists=True)


# ------------------------------------------------------------------------- one trial


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TrialTimeout in this (main) thread after ``seconds``; a no-op elsewhere."""
    usable = (
        seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise TrialTimeout(f"timeout: over {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _raise_if_device_broken(wl: Workload, error: Exception) -> None:
    if wl.device.type != "cuda" or not any(s in str(error) for s in FATAL_CUDA_MARKERS):
        return
    try:
        torch.cuda.synchronize(wl.device)
        torch.zeros(1, device=wl.device).item()
    except Exception as e:
        raise FatalDeviceError(f"{wl.task.label}: device unusable after: {error}") from e


# Where a process's tuning time went (seconds, summed over its trials): compiling, waiting
# for the device lock, and checking + timing under it. The sweep reports it per study.
PHASES = {"compile_s": 0.0, "lock_wait_s": 0.0, "locked_s": 0.0}


def measure(wl: Workload, config: dict, options: TuneOptions, timing_spec: timing.Timing) -> Measurement:
    """Compile, check and time one config; TrialError if it is unusable.

    Compiling (Helion's code generation, and on a GPU Triton's JIT at the first launch)
    happens outside the device lock, so processes sharing a GPU compile in parallel;
    the check's kernels and the timing run under it, so nothing else runs on the GPU
    while a config is timed.
    """
    run = _checked_run(wl, config, options)
    with _as_trial_error(), _locked(wl, options.trial_timeout_s):
        ms = timing.time_ms(run, len(wl.sets), wl.device, timing_spec, warm=False)  # check() ran it
    return _measurement(wl, config, ms)


@contextlib.contextmanager
def _as_trial_error() -> Iterator[None]:
    """Any failure inside (out of resources at launch, CUDA errors, ...) as a TrialError."""
    try:
        yield
    except TrialError:
        raise
    except Exception as e:
        raise TrialError(f"run: {type(e).__name__}: {e}") from e


def _checked_run(wl: Workload, config: dict, options: TuneOptions):  # noqa: ANN202
    """run(i) of ``config``: compiled and launched once outside the device lock, then
    checked against the reference under it; TrialError if it is unusable."""
    with _as_trial_error():
        started = time.monotonic()
        with _time_limit(options.trial_timeout_s):
            run = wl.runner(config)
            if wl.device.type == "cuda":
                _first_launch(wl, run)
        PHASES["compile_s"] += time.monotonic() - started
        with _locked(wl, options.trial_timeout_s):
            wl.check(run)
    return run


@contextlib.contextmanager
def _locked(wl: Workload, seconds: float | None) -> Iterator[None]:
    """The device to ourselves (see :func:`timing.device_lock`), for at most ``seconds``."""
    waiting = time.monotonic()
    with timing.device_lock(wl.device), _time_limit(seconds):
        locked = time.monotonic()
        PHASES["lock_wait_s"] += locked - waiting
        try:
            yield
        finally:
            PHASES["locked_s"] += time.monotonic() - locked


def _measurement(wl: Workload, config: dict, ms: float) -> Measurement:
    if not (ms > 0 and math.isfinite(ms)):
        raise TrialError(f"timing: {ms!r} ms")
    return Measurement(ms, wl.model_bytes() / ms / 1e6, wl.exact_bytes(config) / ms / 1e6)


def _first_launch(wl: Workload, run) -> None:
    try:
        run(0)
        torch.cuda.synchronize(wl.device)
    except TrialError:  # a timeout
        raise
    except Exception as e:
        raise TrialError(f"launch: {type(e).__name__}: {e}") from e


def _stop_time(options: TuneOptions) -> float:
    return time.monotonic() + (options.time_budget_s if options.time_budget_s is not None else math.inf)


def _run_trials(
    study: optuna.Study,
    space: SearchSpace,
    wl: Workload,
    options: TuneOptions,
    target: int | None = None,
    stop: float | None = None,
) -> int:
    """Ask/tell until the study holds ``target`` (default n_trials) evaluated configs or
    time is up (``stop``, a monotonic time; default: the time budget from now); returns
    evaluations."""
    known = _measured(study)
    target = options.n_trials if target is None else target
    stop = _stop_time(options) if stop is None else stop
    evaluated = idle = 0
    while idle < MAX_IDLE_PROPOSALS:
        known.update(_measured(study))  # other processes may share this study
        if len(known) >= target:
            break
        if time.monotonic() >= stop or (options.deadline is not None and time.time() >= options.deadline):
            break
        trial = study.ask()
        point = space.suggest(trial)
        reason = None if "seed" in trial.user_attrs else space.invalid_reason(point)
        if reason is not None:
            trial.set_user_attr("invalid", reason)
            study.tell(trial, state=TrialState.PRUNED)
            idle += 1
            continue
        config = space.to_config(point)
        key = config_key(config)
        if key in known:  # re-tell what this config measured, so the sampler learns
            trial.set_user_attr("duplicate", True)
            ms = known[key]
            if ms is None:
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, ms)
            idle += 1
            continue
        idle = 0
        evaluated += 1
        trial.set_user_attr("config", config)
        trial.set_user_attr("evaluated", True)
        try:
            m = measure(wl, config, options, timing.TRIAL_TIMING)
        except TrialError as e:
            known[key] = None
            trial.set_user_attr("error", str(e)[:2000])
            study.tell(trial, state=TrialState.FAIL)
            _raise_if_device_broken(wl, e)
            continue
        known[key] = m.ms
        trial.set_user_attr("gbps", m.gbps)
        trial.set_user_attr("gbps_exact", m.gbps_exact)
        study.tell(trial, m.ms)
    return evaluated


def _fastest_configs(study: optuna.Study, count: int) -> list[dict]:
    """The ``count`` fastest distinct configs of the study's completed trials, fastest first."""
    done = sorted(
        (t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "config" in t.user_attrs),
        key=lambda t: t.value,
    )
    best: dict[str, dict] = {}
    for t in done:
        if len(best) == count:
            break
        best.setdefault(config_key(t.user_attrs["config"]), t.user_attrs["config"])
    return list(best.values())


def _measure_hint_siblings(study: optuna.Study, space: SearchSpace, wl: Workload, options: TuneOptions, stop: float) -> int:
    """Measure the unmeasured cache-hint siblings (neighbours whose configs differ only
    in ``CACHE_HINT_KEYS``) of the ``FINALISTS`` fastest configs, so that the final can rank
    them by both clocks; returns evaluations. The local search reaches them only around
    the configs it starts from: the RMSNorm bf16 4096x1024 inference study of stop 48
    picked a config whose evict-last sibling, never measured, ran 10% faster after a
    flush and 5% slower by the graph (bench/NOTES.md attempt 81)."""
    known = _measured(study)
    fresh: dict[str, dict] = {}
    for config in _fastest_configs(study, FINALISTS):
        point = space.from_config(config)
        if point is None:
            continue
        own = _unhinted(space.to_config(point))
        for p in space.neighbours(point):
            sibling = space.to_config(p)
            if _unhinted(sibling) == own and config_key(sibling) not in known:
                fresh.setdefault(config_key(sibling), p)
    for p in fresh.values():
        study.enqueue_trial(p, user_attrs={"hint_sibling": True})
    return _run_trials(study, space, wl, options, target=len(known) + len(fresh), stop=stop) if fresh else 0


def _refine(study: optuna.Study, space: SearchSpace, wl: Workload, options: TuneOptions, stop: float) -> int:
    """Local search once sampling is done: measure every unmeasured neighbour
    (:meth:`SearchSpace.neighbours`) of the ``REFINE_FROM`` fastest configs, and again
    around the new fastest while a round finds a faster one, up to
    ``options.refine_rounds`` rounds; returns evaluations.

    A dozen sampled trials leave most of a space of thousands of points unseen, and the
    best config is often one step from a good one: LayerNorm inference bf16 4096x8704
    (H200, 2026-11-22) was tuned to 3063 GB/s, while two rows per program instead of
    one, a step from a config within 1% of the best trial, ran 3331. Two starting
    points, not one, because trials that close are ranked by noise.
    """
    evaluated = 0
    explored: set[str] = set()
    for round_number in range(1, options.refine_rounds + 1):
        starts = [c for c in _fastest_configs(study, REFINE_FROM) if config_key(c) not in explored]
        known = _measured(study)
        fresh: dict[str, dict] = {}
        for config in starts:
            explored.add(config_key(config))
            point = space.from_config(config)
            for p in space.neighbours(point) if point is not None else []:
                key = config_key(space.to_config(p))
                if key not in known:
                    fresh.setdefault(key, p)
        if not fresh:
            break
        fastest = _fastest_configs(study, 1)
        for p in fresh.values():
            study.enqueue_trial(p, user_attrs={"refine": round_number})
        evaluated += _run_trials(study, space, wl, options, target=len(known) + len(fresh), stop=stop)
        if _fastest_configs(study, 1) == fastest or time.monotonic() >= stop:
            break
    return evaluated


# ------------------------------------------------------------------------ one study


def versions() -> dict:
    """The software a timing depends on; the kernel source is hashed so edits show."""
    import importlib.metadata

    import triton

    from kernels import norm_kernels

    source = inspect.getsource(norm_kernels).encode()
    return {
        "torch": torch.__version__,
        "triton": triton.__version__,
        "helion": importlib.metadata.version("helion"),
        "kernels": hashlib.sha256(source).hexdigest()[:12],
        "timing": timing.METHOD,
        "rank": timing.RANK,
    }


def _gpu_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def _cached_seeds(task: Task, gpu: str, options: TuneOptions) -> dict[str, dict | None]:
    """From the output and shipped caches: the config the kernels would look up for this
    task ("cached": exact, else the other 16-bit dtype's exact, else nearest) and the
    other 16-bit dtype's exact config ("sibling"), which a study re-tuning a shape that
    already has its own entry would otherwise never try; an inference study also
    starts from the training forward's exact config ("training"), and a training study
    from the inference forward's ("inference": the same program plus two O(M) stores;
    NOTES attempt 60 found training entries 2-7% behind inference ones that no training
    study had tried). A config whose eviction policy training does not offer drops out
    when the space parses it."""
    entries: dict[str, dict] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cache.CacheFileWarning)
        entries.update(cache.load_entries(cache.shipped_path(gpu), gpu))
        if options.cache_path is not None:
            entries.update(cache.load_entries(options.cache_path, gpu))
    index = cache.Index(entries)
    sibling = cache.SAME_WIDTH.get(task.dtype)
    seeds = {
        "cached": index.find(task.kernel, task.mode, task.dtype, task.m, task.n),
        "sibling": sibling and index.exact_config(task.kernel, task.mode, sibling, task.m, task.n),
    }
    if task.mode == cache.INFER:
        seeds["training"] = index.exact_config(task.kernel, cache.FWD, task.dtype, task.m, task.n)
    elif task.mode == cache.FWD:
        seeds["inference"] = index.exact_config(task.kernel, cache.INFER, task.dtype, task.m, task.n)
    return seeds


# The backward's row-loop pipelining that won on most shapes measured (NOTES attempt 30).
PIPELINED_ROW_STAGES = 3


def _with_param(space: SearchSpace, config: dict | None, name: str, value: object, plain: object) -> dict | None:
    """``config`` with parameter ``name`` moved from its ``plain`` value to ``value``, a
    seed of its own where the space offers that value; None otherwise."""
    param = space.by_name.get(name)
    point = space.from_config(config) if config and param is not None and param.contains(value) else None
    if point is None or point.get(name, plain) != plain:
        return None
    return space.to_config({**point, name: value})


def _pipelined(space: SearchSpace, config: dict | None) -> dict | None:
    """``config`` with the backward's row loop pipelined: one stage (2) often loses where
    three win, so the local search, one value at a time, would not walk there from an
    unpipelined incumbent."""
    return _with_param(space, config, "row_stages", PIPELINED_ROW_STAGES, 0)


def _per_axis(space: SearchSpace, config: dict | None) -> dict | None:
    """``config`` on a per-axis grid (pid_type "xyz"): the shipped forward configs ran
    1-10% faster that way on most H200 rows (NOTES attempt 33), and the local search
    would reach it only from the two fastest trials."""
    return _with_param(space, config, "pid_type", "xyz", "flat")


def _static(space: SearchSpace, config: dict | None) -> dict | None:
    """``config`` compiled for the exact shape ("static"): at the shipped forward configs
    it ran -2..+3.6% against the program that takes any M (H200 bf16, NOTES attempt 42),
    so the study measures the incumbent both ways."""
    return _with_param(space, config, "static", True, False)


def _streaming(space: SearchSpace, config: dict | None) -> dict | None:
    """``config`` with its output stores evict-first: worth +0-1.8% at the shipped forward
    configs whose output exceeds the L2 (H200 bf16, NOTES attempt 46), a step the local
    search takes only from the two fastest trials."""
    return _with_param(space, config, "stream", True, False)


def _params_first(space: SearchSpace, config: dict | None) -> dict | None:
    """``config`` with the weight and bias loaded before the statistics: what the LayerNorm
    forward at decode sizes needed (NOTES attempt 48) and what spilled on wide rows
    (attempt 38), so the study measures its incumbent both ways."""
    return _with_param(space, config, "params_first", True, False)


def _recast(space: SearchSpace, config: dict | None) -> dict | None:
    """``config`` with the row held in its 16-bit form between the passes, which cut the
    whole-row LayerNorm's registers from 117-128 to 78-80 at 4096x12800 (three programs an SM)
    for ~23% more instructions (NOTES attempt 66); in a fused backward, x, dy and the weight
    held across the row sums, which ran the shipped LayerNorm configs 1.05-1.17x at 4096 x
    14336-16384 and 0.72-0.99x where nothing spilled (attempt 78): the study measures its
    incumbent both ways."""
    return _with_param(space, config, "recast", True, False)


def _read_only(space: SearchSpace, config: dict | None) -> dict | None:
    """``config`` with the two-pass forward's second pass on read-only loads, which ptxas
    may issue before the previous step's store (H200 bf16 4096 x 10752-15872: +1..+6%,
    NOTES attempt 73): the study measures its incumbent both ways."""
    return _with_param(space, config, "read_only", True, False)


# The whole row on 8 warps, static: with recast the fastest program at 4096x12800-13824
# (H200 bf16, NOTES attempt 66: +11..+14% over the shipped persistent or looped configs,
# which a local search from them reaches only over two or three steps).
WHOLE_ROW_RECAST = {"block_sizes": [1, 1], "num_warps": 8, "num_stages": 1, "reduction_loops": [None], cache.STATIC: True}


def _whole_row_recast(space: SearchSpace) -> dict | None:
    return _with_param(space, WHOLE_ROW_RECAST, "recast", True, False)


# Two-pass, 4096-column chunks on 16 warps, static: with read-only loads the fastest probe
# program at 4096 x 10752-11776 and 14848-15360 (H200 bf16, NOTES attempt 73; 1.02-1.04x the
# shipped whole-row configs), a point the local search from those reaches in several steps.
TWO_PASS_READ_ONLY = {"block_sizes": [4096, 1, 1], "num_warps": 16, "num_stages": 1, cache.STATIC: True}


def _tile_first(space: SearchSpace, config: dict | None) -> dict | None:
    """``config`` (a fused backward) with its channel tile first in the grid, which
    removed the spills of the fused LayerNorm backward on TritonBench's rows 9216-12288
    and added some to other shipped configs (offline, NOTES attempt 63): the study
    measures its incumbent both ways."""
    return _with_param(space, config, "tile_first", True, False)


def _widen(space: SearchSpace, config: dict | None) -> dict | None:
    """``config`` (a bf16 backward) converting bf16 by bit moves, which ran the shipped
    configs 0.57-1.04x on the H200 (NOTES attempt 76): the study measures its incumbent
    both ways."""
    return _with_param(space, config, "widen", True, False)


def _trim(space: SearchSpace, config: dict | None) -> dict | None:
    """``config`` (a backward of a row that is not a power of two) with its padded tile's
    dead lanes trimmed, which ran the shipped configs 0.83-1.19x on the H200 (NOTES
    attempt 77): the study measures its incumbent both ways."""
    return _with_param(space, config, "trim", True, False)


# A backward study of up to DIRECT_SPLIT_MAX_M rows (the decode sizes where the space
# offers the split schedule) also measures one program per channel tile. That seed's rows
# per step, and where the space splits rows its channel tile and warps: the fastest of 4
# tiles x 2 warp counts in bench/prototypes/decode_bwd_probe.py (H200 bf16 LayerNorm
# fwd+bwd 8x4096 and 8x8192, NOTES attempt 49).
ONE_PROGRAM_INNER, ONE_PROGRAM_TILE, ONE_PROGRAM_WARPS = 8, 512, 2


def _one_program(space: SearchSpace, config: dict | None, m: int) -> dict | None:
    """``config`` with every row in one program per channel tile (m_block >= M): a
    backward that writes dW/dB itself, with no reduce launch (``kernels.launch._direct``).
    Where the space splits rows, ONE_PROGRAM_TILE-channel tiles: the row coefficients in
    one launch, then many programs each summing its tile's columns over every row. At
    decode sizes a launch can outweigh the rows run in parallel, and a sampled trial
    rarely puts both block sizes at the top of their ranges."""
    m_block, inner = space.by_name.get("m_block_log2"), space.by_name.get("inner_log2")
    point = space.from_config(config) if config and m_block and inner and m <= DIRECT_SPLIT_MAX_M else None
    if point is None or point["m_block_log2"] == m_block.high:
        return None
    top = min(m_block.high, inner.high, log2i(ONE_PROGRAM_INNER))
    point = {**point, "m_block_log2": m_block.high, "inner_log2": top}
    tile = space.by_name.get("tile_k_log2")
    if tile is not None:
        point["tile_k_log2"] = min(max(log2i(ONE_PROGRAM_TILE), tile.low), tile.high)
        point["warps_log2"] = log2i(ONE_PROGRAM_WARPS)
    return space.to_config(point)


def _history(study: optuna.Study) -> tuple[list, int, int]:
    """([trial number, ms | None] of evaluated trials, evaluated count, failed count)."""
    rows = [
        [t.number, t.value if t.state == TrialState.COMPLETE else None]
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        if t.user_attrs.get("evaluated")
    ]
    return rows, len(rows), sum(ms is None for _, ms in rows)


def _best_configs(study: optuna.Study, count: int = FINALISTS, incumbent: dict | None = None) -> list[dict]:
    """The study's finalists: the ``count`` fastest distinct configs of its completed
    trials, fastest first, then any completed incumbent (a config the cache holds for
    this key: ``INCUMBENT_SEEDS``) that is not among them, then ``incumbent`` (the config
    the kernels look up for this key today) if no trial measured it: a study whose
    budget ran out before its seeds must not replace a tuned entry with the heuristic
    unmeasured against it (stop 36: an fp16 RMSNorm decode entry lost 2.5% that way).
    Each fast config's measured cache-hint siblings (``CACHE_HINT_KEYS``) come right
    after it: the trials' graph clock cannot rank those against each other the way a
    user's call meets them."""
    best: dict[str, dict] = {}
    for config in _fastest_configs(study, count):
        for c in [config, *_hint_siblings(study, [config])]:
            best.setdefault(config_key(c), c)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("seed") in INCUMBENT_SEEDS and "config" in t.user_attrs:
            best.setdefault(config_key(t.user_attrs["config"]), t.user_attrs["config"])
    if incumbent is not None and config_key(incumbent) not in _measured(study):
        best.setdefault(config_key(incumbent), incumbent)
    return list(best.values())


def _unhinted(config: dict) -> str:
    """``config``'s key without its cache hints."""
    return config_key({k: v for k, v in config.items() if k not in CACHE_HINT_KEYS})


def _hint_siblings(study: optuna.Study, configs: list[dict]) -> list[dict]:
    """The study's completed configs that differ from one of ``configs`` only in their
    cache hints, in trial order."""
    targets = {_unhinted(c) for c in configs}
    own = {config_key(c) for c in configs}
    found: dict[str, dict] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        config = t.user_attrs.get("config")
        if config is not None and _unhinted(config) in targets and config_key(config) not in own:
            found.setdefault(config_key(config), config)
    return list(found.values())


def _final(wl: Workload, result: TuneResult, finalists: list[dict], options: TuneOptions) -> None:
    """Measure the study's finalists and the heuristic again, in turns (each timed in
    several rounds by both clocks, :func:`timing.interleaved_clocks`), with the longer
    final timing, and torch after them; keep the config of the lowest score (the
    geometric mean of its graph and flushed times, :attr:`timing.Clocks.score`).

    Both clocks, because each misses what the other sees: trials on the graph clock gave
    the LayerNorm bf16 8192x4096 inference entry evict-first loads (graph 3943 GB/s against
    3949 with evict-last) that then ran 3347 GB/s in the benchmark's flushed calls,
    against 3660 with evict-last (H200, bench/NOTES.md attempt 80); the flushed clock alone
    carries a few us of wait after the flush, the same for every config, that blunts it.

    Several finalists, not only the best trial: a trial's short timing can rank two
    configs within a few percent the wrong way round (H200, 2026-11-22: inference
    LayerNorm bf16 4096x16384 picked a config the benchmark then ran 3.5% slower), and
    the cache's incumbents are among them, so that a new config replaces one only by
    beating it under the final timing (inference LayerNorm 2048x32768 took a two-pass
    config, 3% slower than the training forward's, that never met it in a final).
    """
    heuristic = result.heuristic_config
    candidates = [("heuristic", heuristic)]
    candidates += [("tuned", c) for c in finalists if config_key(c) != config_key(heuristic)]
    ready = []
    for source, config in candidates:
        try:
            ready.append((source, config, _checked_run(wl, config, options)))
        except TrialError as e:
            result.error = f"{source} config failed in the final measurement: {e}"
    clocks: list[timing.Clocks] = []
    limit = options.trial_timeout_s and options.trial_timeout_s * len(ready)
    try:
        with _as_trial_error(), _locked(wl, limit):
            runs = [run for *_, run in ready]
            clocks = timing.interleaved_clocks(runs, len(wl.sets), wl.device, timing.FINAL_TIMING)
    except TrialError as e:
        result.error = f"the final measurement failed: {e}"
    timings = [
        (_measurement(wl, config, c.graph_ms), c, source, config)
        for (source, config, _), c in zip(ready, clocks)
        if c.valid
    ]
    if timings and timings[0][2] == "heuristic":
        result.heuristic_ms, result.heuristic_gbps = timings[0][0].ms, timings[0][0].gbps
    if timings:
        m, c, result.source, result.config = min(timings, key=lambda t: t[1].score)
        result.ms, result.gbps, result.gbps_exact = m.ms, m.gbps, m.gbps_exact
        result.flushed_ms = c.flushed_ms
    try:
        with timing.device_lock(wl.device):
            result.torch_ms = timing.time_ms(wl.torch_runner(), len(wl.sets), wl.device, timing.FINAL_TIMING)
        result.torch_gbps = wl.model_bytes() / result.torch_ms / 1e6
    except Exception as e:  # a missing torch op is not the tuner's failure
        result.torch_label += f" (failed: {type(e).__name__})"


def cache_entry(result: TuneResult, versions: dict) -> dict:
    task = result.task
    return {
        "kernel": task.kernel, "mode": task.mode, "dtype": task.dtype, "m": task.m, "n": task.n,
        "groups": task.groups, "config": result.config, "source": result.source,
        "ms": result.ms, "gbps": result.gbps, "gbps_exact": result.gbps_exact,
        **({"flushed_ms": result.flushed_ms} if result.flushed_ms is not None else {}),
        "trials": result.trials,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": versions,
    }  # fmt: skip


def write_result(result: TuneResult, device: torch.device, path: Path) -> None:
    """Merge one result into the cache file and make new configs take effect in this process."""
    from kernels import launch

    entry = cache_entry(result, versions())
    key = cache.entry_key(
        result.task.kernel, result.task.mode, result.task.dtype, result.task.m, result.task.n
    )
    cache.write_entries(path, result.gpu, _gpu_name(device), {key: entry})
    launch.clear_compiled()


def seed_configs(task: Task, gpu: str, wl: Workload, space: SearchSpace, options: TuneOptions) -> dict:
    """The configs every study measures first, by name (None where there is none); the
    space is built from ``wl.bound()``'s config spec, whose default is one of them."""
    heuristic = wl.heuristic_config()
    seeds = {
        "heuristic": heuristic,
        **(_cached_seeds(task, gpu, options) if options.cached_seed else {}),
        "helion_default": dict(wl.bound().config_spec.default_config().config),
    }
    if wl.offers_chunked:
        seeds["two_pass"] = heuristics.two_pass_config(wl.k)
    # Each of the two likeliest schedules, pipelined: the cached one and the heuristic's
    # (the fused LayerNorm backward at 16384 channels, H200 bf16: rs=3 2607, rs=0 2441 GB/s).
    seeds["pipelined"] = _pipelined(space, seeds.get("cached"))
    seeds["pipelined_heuristic"] = _pipelined(space, heuristic)
    seeds["per_axis"] = _per_axis(space, seeds.get("cached") or heuristic)
    seeds["static"] = _static(space, seeds.get("cached") or seeds["per_axis"] or heuristic)
    seeds["streaming"] = _streaming(space, seeds.get("cached") or seeds["static"] or heuristic)
    seeds["params_first"] = _params_first(space, seeds.get("cached") or seeds["static"] or heuristic)
    seeds["recast"] = _recast(space, seeds.get("cached") or seeds["static"] or heuristic)
    seeds["whole_row_recast"] = _whole_row_recast(space)
    seeds["read_only"] = _read_only(space, seeds.get("cached") or seeds["static"] or heuristic)
    seeds["two_pass_read_only"] = _read_only(space, TWO_PASS_READ_ONLY)
    seeds["one_program"] = _one_program(space, seeds.get("cached") or heuristic, task.m)
    seeds["exchange"] = _exchange(space)
    seeds["tile_first"] = _tile_first(space, seeds.get("cached") or heuristic)
    seeds["widen"] = _widen(space, seeds.get("cached") or heuristic)
    seeds["trim"] = _trim(space, seeds.get("cached") or heuristic)
    return seeds


# The exchange backward's seed: the width probe's best LayerNorm config since the exchange
# lags a row (NOTES attempt 58: 64 rows a program, 2048-channel tiles, one row a step, 4
# warps, the row loop pipelined 3 deep; bf16 2048x32768 2498 GB/s against the split
# schedule's 2201, and RMSNorm's 0.96x of its stop-32 pick, 32 rows 2 deep). One row a
# step holds LayerNorm's dW and dB accumulators without spilling; 4 stages lose (62 KB
# of shared memory a program).
EXCHANGE_SEED = {"block_sizes": [64, 1, 2048, 1], "num_warps": 4, "range_num_stages": [0, 3]}


def _exchange(space: SearchSpace) -> dict | None:
    """The exchange schedule's seed where the space offers it."""
    return _with_param(space, EXCHANGE_SEED, "exchange", True, False)


def tune(task: Task, device: torch.device, options: TuneOptions) -> TuneResult:
    """Run (or resume) the study of ``task`` on ``device``; measure, return and cache the best config."""
    start = time.monotonic()
    gpu = cache.gpu_model(device)
    result = TuneResult(task=task, gpu=gpu, study=study_name(task, gpu))
    wl = Workload(task, device, n_sets=options.n_sets, seed=options.seed or 0)
    result.torch_label = wl.torch_label
    result.model_bytes = wl.model_bytes()
    space = SearchSpace.from_spec(
        task.kernel_mode, task.m, wl.k, wl.bound().config_spec, device.type, wl.other_loads(),
        chunked=wl.offers_chunked, training=task.mode == cache.FWD,
        streaming=device.type == "cuda" and wl.output_bytes() > timing.l2_bytes(device),
        params_first=wl.offers_params_first, recast=wl.offers_recast, read_only=wl.offers_read_only,
        widen=wl.offers_widen, trim=wl.offers_trim,
    )  # fmt: skip
    study = open_study(task, gpu, space, options)
    seeds = seed_configs(task, gpu, wl, space, options)
    result.heuristic_config = seeds["heuristic"]
    _enqueue_seeds(study, space, seeds)
    stop = _stop_time(options)
    result.run_trials = _run_trials(study, space, wl, options, stop=stop)
    result.refined = _refine(study, space, wl, options, stop)
    if options.refine_rounds:  # part of the local search: --refine 0 turns both off
        result.refined += _measure_hint_siblings(study, space, wl, options, stop)
    result.run_trials += result.refined
    result.history, result.trials, result.failed = _history(study)
    _final(wl, result, _best_configs(study, incumbent=seeds.get("cached")), options)
    if result.config is not None and options.cache_path is not None:
        write_result(result, device, options.cache_path)
    result.wall_s = time.monotonic() - start
    return result
