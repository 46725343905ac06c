"""Time tilenorm against its peers on one GPU and write one results JSON.

    python -m bench.run [--quick] [--time-budget S] [--out DIR] [--ops ...] [--shapes MxN,...]

For each (op, mode, dtype, shape, provider): check the provider once against an fp32
reference (a mismatch is recorded, never timed), then time it eagerly (L2 flushed,
inputs rotated) and inside a CUDA graph (kernel only, inputs rotated past the L2).
Then the host-overhead section: back-to-back calls at M in {1, 8, 128}, N=4096.

The JSON is rewritten after every (op, mode, dtype, shape), so a run stopped by
``--time-budget`` (gracefully) or killed (abruptly) keeps what it measured. The last
lines printed are the README table (``bench.table``) and the failures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable instead of bench/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

if __name__ == "__main__":
    # Compile caches inside the repo (git-ignored): a second run on a machine that kept
    # the working tree skips most Triton / inductor compilation. Set before torch loads.
    _CACHE = Path(__file__).resolve().parent / ".cache"
    os.environ.setdefault("TRITON_CACHE_DIR", str(_CACHE / "triton"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_CACHE / "inductor"))

import torch

from bench import results, table, timing
from bench.byte_model import HOST_SUFFIX, base_op
from bench.ops import (
    DTYPES,
    OP_SPECS,
    InputSet,
    check_provider,
    make_params,
    make_set,
    make_step,
    reference_results,
)
from bench.providers import OPTIONAL, PROVIDERS, ProviderMissing, Registry
from bench.shapes import HOST_M, HOST_N, MODES, OPS, PRESETS, parse_shapes, preset_shapes
from tuning.timing import rotation_count

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench" / "results"

EAGER_ROUNDS = 5  # interleaved eager samples per provider (``interleave_eager``)
ROTATE_MB = 128  # input bytes per rotation cycle: > 2x the H200's 60 MB L2
MAX_SETS = 64
HOST_OPS = ("layer_norm", "rms_norm")
HOST_PROVIDERS = ("tilenorm", "torch", "liger")
HOST_DTYPE = "bf16"
HOST_RESERVE_S = 30.0  # kept for the host section when a time budget is set
FATAL_CUDA = (
    "illegal memory access",
    "device-side assert",
    "unspecified launch failure",
    "misaligned address",
)


@dataclass(frozen=True)
class Unit:
    """One (op, mode, dtype, shape): inputs and reference are built once for all providers."""

    op: str
    mode: str
    dtype: str
    m: int
    n: int

    def label(self) -> str:
        return f"{self.op} {self.mode} {self.dtype} {self.m}x{self.n}"


@dataclass(frozen=True)
class Settings:
    device: str
    warmup_ms: float
    rep_ms: float
    rotate_bytes: int
    max_sets: int = MAX_SETS


class Budget:
    """Wall-clock budget: a unit starts only if one like it would still finish in time."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.start = time.monotonic()
        self.last_unit_s: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def allows(self, kind: str, reserve_s: float = 0.0) -> bool:
        if self.seconds is None:
            return True
        expected = self.last_unit_s.get(kind, 0.0)
        return self.elapsed() + expected <= self.seconds - reserve_s

    def record(self, kind: str, seconds: float) -> None:
        self.last_unit_s[kind] = seconds


# -------------------------------------------------------------------- measurements


def measure_kernel(record: dict, step: Callable, sets: list[InputSet], settings: Settings) -> Callable[[bool], float]:
    """CUDA-graph time now (a failure leaves it None); returns the eager sampler, which
    ``run_unit`` calls in interleaved rounds (``interleave_eager``)."""
    graph_us = None
    try:
        graph_us = timing.graph_us(step, sets, settings.device)
    except Exception as e:  # e.g. a provider that syncs inside the capture
        if is_fatal(e):
            raise
        record["graph_error"] = describe(e)
    results.set_times(record, None, graph_us)

    def eager_sample(first: bool) -> float:
        warmup = settings.warmup_ms if first else 1.0
        return timing.eager_us(step, sets, settings.device, warmup, settings.rep_ms / EAGER_ROUNDS)

    return eager_sample


def interleave_eager(samplers: list[tuple[dict, Callable[[bool], float]]], rounds: int) -> None:
    """Eager time per provider: the median of ``rounds`` samples taken in turn (A, B, C,
    A, B, C, ...), so that a slow spell of the host (the small shapes' eager time is
    mostly host time) falls on every provider alike rather than on whichever ran then.
    A provider that fails in a later round keeps the error and no time."""
    samples: dict[int, list[float]] = {id(record): [] for record, _ in samplers}
    for i in range(rounds):
        for record, sample in samplers:
            if record.get("error"):
                continue
            try:
                samples[id(record)].append(sample(i == 0))
            except Exception as e:  # noqa: BLE001 - OOM or a crash mid-run: record, go on
                record.update(error=describe(e), fatal=is_fatal(e), ok=False)
                if record["fatal"]:
                    return
    for record, _ in samplers:
        got = samples[id(record)]
        if got and not record.get("error"):
            record["eager_samples_us"] = [round(v, 2) for v in got]
            results.set_times(record, statistics.median(got), record["graph_us"])


def measure_host(record: dict, step: Callable, sets: list[InputSet], settings: Settings) -> Callable[[bool], float]:
    """The host-time sampler: one batch of back-to-back calls per round, the rounds taken
    in turn across the providers like the eager ones (``interleave_eager``). Taken one
    provider after the other, a slow minute of the lent host fell on one of them: the
    LayerNorm fwd+bwd rows moved 1-9% against torch between runs (bench/NOTES.md, stop 22's
    Next 6)."""
    on_gpu = settings.device.startswith("cuda")
    calls = timing.HOST_CALLS if on_gpu else 3  # CPU smoke runs: a few calls are enough
    record["graph_us"] = None

    def sample(first: bool) -> float:
        return timing.host_us(step, sets[0], settings.device, calls=calls, repeats=1, warmup=20 if first else 2)

    return sample


def describe(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


def is_fatal(e: BaseException) -> bool:
    """A sticky CUDA error: the context is broken and nothing after it can run."""
    return any(marker in str(e) for marker in FATAL_CUDA)


def free_device_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- units


def make_inputs(unit: Unit, settings: Settings, rotate: bool) -> tuple[InputSet, list[InputSet]]:
    """(check set, timed sets): as many timed sets as rotation needs, or one."""
    spec = OP_SPECS[base_op(unit.op)]
    grad = unit.mode == "fwd_bwd"
    dtype = DTYPES[unit.dtype]
    weight, bias = make_params(spec, unit.n, dtype, settings.device, grad)

    def one(seed: int) -> InputSet:
        return make_set(spec, unit.m, unit.n, dtype, settings.device, grad, weight, bias, seed)

    check_set = one(seed=1)
    count = (
        rotation_count(check_set.per_call_bytes(), settings.rotate_bytes, settings.max_sets)
        if rotate
        else 1
    )
    return check_set, [one(seed=100 + i) for i in range(count)]


def failed_record(unit: Unit, provider: str, e: BaseException) -> dict:
    return results.make_record(
        unit.op, unit.mode, unit.dtype, unit.m, unit.n, provider,
        error=describe(e), fatal=is_fatal(e),
    )  # fmt: skip


def run_provider(unit, provider, registry, check_set, ref, sets, settings, measure) -> tuple[dict, Callable | None]:
    """Check, then time one provider: (record, eager sampler or None). Any failure
    becomes the record's ``error``."""
    record = results.make_record(
        unit.op, unit.mode, unit.dtype, unit.m, unit.n, provider, n_sets=len(sets)
    )
    sampler = None
    try:
        fn = registry.build(provider, base_op(unit.op))
        check = check_provider(fn, check_set, ref, unit.dtype)
        record.update(dw=check.dw, max_err=check.max_err, error=check.error)
        if check.error is None:
            sampler = measure(record, make_step(fn, unit.mode), sets, settings)
            record["ok"] = True
    except Exception as e:  # noqa: BLE001 - OOM, compile errors, missing features: record, go on
        record["error"] = describe(e)
        record["fatal"] = is_fatal(e)
        free_device_memory(settings.device)
    return record, sampler


def run_unit(
    unit: Unit, providers, registry: Registry, settings: Settings, measure, rotate: bool
) -> list[dict]:
    """Every provider on one unit; stops early only if the device is broken (``fatal``)."""
    op = base_op(unit.op)
    chosen = [p for p in providers if registry.supports(p, op)]
    try:
        check_set, sets = make_inputs(unit, settings, rotate)
        ref = reference_results(op, check_set)
    except Exception as e:  # noqa: BLE001 - e.g. OOM building the inputs: every provider fails alike
        free_device_memory(settings.device)
        return [failed_record(unit, p, e) for p in chosen]
    records, samplers = [], []
    for provider in chosen:
        record, sampler = run_provider(unit, provider, registry, check_set, ref, sets, settings, measure)
        records.append(record)
        if record["fatal"]:
            break
        if sampler is not None:
            samplers.append((record, sampler))
    if not any(r["fatal"] for r in records):
        interleave_eager(samplers, EAGER_ROUNDS)
    del check_set, sets, ref, samplers
    free_device_memory(settings.device)
    return records


def main_units(ops, modes, dtypes, shapes_for) -> list[Unit]:
    return [
        Unit(op, mode, dtype, m, n)
        for op in ops
        for mode in modes
        for dtype in dtypes
        for m, n in shapes_for(op)
    ]


def host_units(ops, modes, host_m) -> list[Unit]:
    return [
        Unit(op + HOST_SUFFIX, mode, HOST_DTYPE, m, HOST_N)
        for op in HOST_OPS
        if op in ops
        for mode in modes
        for m in host_m
    ]


# --------------------------------------------------------------------------- output


def progress_line(unit: Unit, records: list[dict], elapsed: float) -> str:
    def cell(r: dict) -> str:
        if not r["ok"]:
            return f"{r['provider']} FAIL"
        if r["op"].endswith(HOST_SUFFIX):
            return f"{r['provider']} {r['us']:.1f}us"
        graph = "-" if r["graph_gbps"] is None else f"{r['graph_gbps']:.0f}"
        return f"{r['provider']} {r['gbps']:.0f}/{graph}"

    return f"[{elapsed:4.0f}s] {unit.label()}: " + " | ".join(cell(r) for r in records)


def failure_lines(records: list[dict], limit: int = 15) -> list[str]:
    failed = [r for r in records if not r["ok"] or r.get("graph_error")]
    lines = [
        f"  {r['op']} {r['mode']} {r['dtype']} {r['M']}x{r['N']} {r['provider']}: "
        f"{(r['error'] or 'graph: ' + str(r.get('graph_error')))[:160]}"
        for r in failed[:limit]
    ]
    if len(failed) > limit:
        lines.append(f"  ... and {len(failed) - limit} more (see the JSON)")
    return lines or ["  none"]


# ------------------------------------------------------------------------------ CLI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", default=",".join(OPS), help=f"comma list of {OPS}")
    p.add_argument("--modes", default=",".join(MODES), help="fwd,fwd_bwd")
    p.add_argument("--dtypes", default="bf16", help="comma list of bf16,fp16,fp32")
    p.add_argument(
        "--preset",
        choices=PRESETS,
        default=None,
        help="shape set (default: GPU_HOST.md's 7 shapes)",
    )
    p.add_argument("--shapes", default=None, help="explicit shapes for every op: MxN,MxN,...")
    p.add_argument("--providers", default=",".join(PROVIDERS), help=f"comma list of {PROVIDERS}")
    p.add_argument("--no-host", action="store_true", help="skip the host-overhead section")
    p.add_argument("--host-only", action="store_true", help="only the host-overhead section")
    p.add_argument(
        "--quick", action="store_true", help="3 shapes, shorter timing, host M in {1, 128}"
    )
    p.add_argument(
        "--time-budget", type=float, default=None, help="seconds; stop gracefully before"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for the JSON")
    p.add_argument("--commit", default=None, help="commit to record (default: git of the repo)")
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cuda (default when present) or cpu (a smoke run of the same pipeline)",
    )
    p.add_argument("--warmup-ms", type=float, default=None)
    p.add_argument("--rep-ms", type=float, default=None)
    p.add_argument("--rotate-mb", type=float, default=ROTATE_MB)
    args = p.parse_args(argv)
    args.ops = _choices(args.ops, OPS, "--ops")
    args.modes = _choices(args.modes, MODES, "--modes")
    args.dtypes = _choices(args.dtypes, tuple(DTYPES), "--dtypes")
    args.providers = _choices(args.providers, PROVIDERS, "--providers")
    if args.shapes and args.preset:
        p.error("--shapes and --preset exclude each other")
    args.preset = args.preset or ("quick" if args.quick else "default")
    args.shapes = parse_shapes(args.shapes) if args.shapes else None
    args.warmup_ms = args.warmup_ms or (5.0 if args.quick else 10.0)
    args.rep_ms = args.rep_ms or (30.0 if args.quick else 50.0)
    return args


def _choices(text: str, allowed: tuple[str, ...], flag: str) -> tuple[str, ...]:
    chosen = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in chosen if v not in allowed]
    if bad:
        raise SystemExit(f"{flag}: unknown {bad}; choose from {allowed}")
    return chosen


def usable_providers(requested, registry: Registry) -> tuple[list[str], dict[str, str]]:
    """Requested providers minus optional ones that do not import (with the reason)."""
    usable, skipped = [], {}
    # Canonical order: Liger (which writes dx into dy) runs last on the shared inputs.
    for name in [p for p in PROVIDERS if p in requested]:
        try:
            registry.load(name)
        except ProviderMissing as e:
            skipped[name] = str(e)
            continue
        except Exception as e:  # noqa: BLE001
            if name in OPTIONAL:
                skipped[name] = describe(e)
                continue  # a required provider keeps going: its records carry the error
        usable.append(name)
    return usable, skipped


def run_settings(args: argparse.Namespace, skipped: dict[str, str]) -> dict:
    return {
        "device": args.device,
        "ops": list(args.ops),
        "modes": list(args.modes),
        "dtypes": list(args.dtypes),
        "preset": None if args.shapes else args.preset,
        "shapes": [list(s) for s in args.shapes] if args.shapes else None,
        "providers": list(args.providers),
        "skipped_providers": skipped,
        "quick": args.quick,
        "warmup_ms": args.warmup_ms,
        "rep_ms": args.rep_ms,
        "rotate_mb": args.rotate_mb,
        "graph_min_calls": timing.GRAPH_MIN_CALLS,
        "eager_timer": (
            f"median of {EAGER_ROUNDS} rounds taken in turn across the providers of a unit, "
            "each a triton.testing.do_bench median (L2 flushed per call, inputs rotated)"
        ),
        "graph_timer": "CUDA graph of whole cycles over the rotated input sets, median replay / calls",
        "host_timer": "wall clock, back-to-back calls on one input set, no flush, median of 5 rounds of 200 calls taken in turn across the providers",
        "fwd_inputs_require_grad": False,
        "time_budget_s": args.time_budget,
    }


class Run:
    """The run's document, written after every unit."""

    def __init__(self, args: argparse.Namespace, skipped: dict[str, str]) -> None:
        commit = args.commit or results.git_commit(REPO)
        self.doc = results.new_doc(
            results.device_name(args.device), commit, run_settings(args, skipped)
        )
        self.path = results.output_path(args.out, self.doc["date"], self.doc["gpu"], commit)

        self.fatal: str | None = None  # the first sticky CUDA error: the run stops there

    def add(self, records: list[dict]) -> None:
        self.doc["records"].extend(records)
        results.write_json(self.path, self.doc)
        fatal = [r["error"] for r in records if r.get("fatal")]
        if fatal and not self.fatal:
            self.fatal = fatal[0]
            print(f"FATAL: {self.fatal}: stopping", flush=True)

    def finish(self, budget: Budget, planned: int, done: int) -> None:
        self.doc["settings"].update(
            elapsed_s=round(budget.elapsed(), 1), units_planned=planned, units_done=done,
            stopped_early=done < planned, fatal_error=self.fatal,
        )  # fmt: skip
        results.write_json(self.path, self.doc)


def run_units(run: Run, units, budget: Budget, kind: str, reserve_s: float, run_one) -> int:
    """Run units while the budget allows; returns how many ran. Stops at a fatal error."""
    done = 0
    for unit in units:
        if run.fatal or not budget.allows(kind, reserve_s):
            print(f"[{budget.elapsed():4.0f}s] stopping before {unit.label()}", flush=True)
            break
        start = time.monotonic()
        records = run_one(unit)
        budget.record(kind, time.monotonic() - start)
        run.add(records)
        done += 1
        print(progress_line(unit, records, budget.elapsed()), flush=True)
    return done


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: pass --device cpu for a smoke run")
    budget = Budget(args.time_budget)
    registry = Registry()
    providers, skipped = usable_providers(args.providers, registry)
    settings = Settings(args.device, args.warmup_ms, args.rep_ms, int(args.rotate_mb * 2**20))
    run = Run(args, skipped)
    print(
        f"{run.doc['gpu']} | {run.doc['commit']} | {run.doc['versions']} | skipped: {skipped or 'none'}",
        flush=True,
    )

    shapes_for = (
        (lambda op: args.shapes) if args.shapes else (lambda op: preset_shapes(args.preset, op))
    )
    kernel_units = (
        [] if args.host_only else main_units(args.ops, args.modes, args.dtypes, shapes_for)
    )
    host_m = (1, 128) if args.quick else HOST_M
    overhead_units = [] if args.no_host else host_units(args.ops, args.modes, host_m)
    host_providers = [p for p in providers if p in HOST_PROVIDERS]

    def kernel_unit(unit: Unit) -> list[dict]:
        return run_unit(unit, providers, registry, settings, measure_kernel, rotate=True)

    def host_unit(unit: Unit) -> list[dict]:
        return run_unit(unit, host_providers, registry, settings, measure_host, rotate=False)

    reserve = HOST_RESERVE_S if overhead_units else 0.0
    done = run_units(run, kernel_units, budget, "kernel", reserve, kernel_unit)
    done += run_units(run, overhead_units, budget, "host", 0.0, host_unit)
    run.finish(budget, len(kernel_units) + len(overhead_units), done)
    print(table.render(run.doc))
    print("\n".join(["failures:", *failure_lines(run.doc["records"])]))
    print(summary_line(run))
    return 0 if run.fatal is None else 1


def summary_line(run: Run) -> str:
    s = run.doc["settings"]
    early = ", stopped early" if s["stopped_early"] else ""
    return (
        f"wrote {run.path} ({len(run.doc['records'])} records, "
        f"{s['units_done']}/{s['units_planned']} units, {s['elapsed_s']:.0f}s{early})"
    )


if __name__ == "__main__":
    sys.exit(main())
