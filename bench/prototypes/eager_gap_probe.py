"""Where a forward's eager time goes beyond its kernel time (bench/NOTES.md attempt 80).

The benchmark's eager clock (``triton.testing.do_bench``: the L2 flushed by a 256 MB
``zero_`` before every call) put our narrow-row forwards 0.5-2 us further above their
CUDA-graph time than torch's and inductor's (TritonBench LayerNorm bf16 4096x1024-3584,
RMSNorm 2048x1024-4096 at b675e8f), enough to lose 4096x1024 and 4096x3584 by eager
time while ahead by kernel time. Here each provider's flushed calls run once under
``torch.profiler`` (CUPTI), and the call's event-to-event time splits into the wait
after the flush kernel ends before the provider's first kernel starts, the provider's
kernel time, and the rest; beside them the same calls unprofiled (``eager``, and
``again`` after the profiled pass, for their spread) and the graph time.

    python bench/prototypes/eager_gap_probe.py [--calls N] [--dtype bf16]
    python bench/prototypes/eager_gap_probe.py --configs KEY [KEY ...] [--calls N] [--against CACHE.json]

``--configs``: for each cache key ("kernel/mode/dtype/MxN"), the shipped config and
variants of it (eviction hints, grid, rows, warps, static) timed both ways in turns: the
tuner's graph time and the flushed event time, to see whether a config that ties by
kernel time pays less after a flush.
"""

import statistics

import torch
from torch.profiler import ProfilerActivity, profile

from probe_common import ProbeRun, checked_runs, key_workload, shipped_entries  # run from the repo root or this folder
from variants_probe import varied

from bench import timing as bench_timing
from bench.ops import make_step
from bench.providers import Registry
from bench.run import ROTATE_MB, Settings, Unit, make_inputs
from tuning import timing as tuning_timing

SHAPES = (
    ("layer_norm", 4096, 1024),
    ("layer_norm", 4096, 2560),
    ("layer_norm", 4096, 3584),
    ("rms_norm", 2048, 1024),
    ("rms_norm", 2048, 4096),
    ("layer_norm", 4096, 8192),
)
PROVIDERS = ("tilenorm", "torch", "inductor")


def flushed_calls(step, sets: list, calls: int, cache: torch.Tensor) -> list[float]:
    """us per call between events around it, the L2 flushed before each (the tuner's
    flushed clock, do_bench's loop)."""
    return [1000.0 * ms for ms in tuning_timing.flushed_calls_ms(lambda i: step(sets[i]), len(sets), calls, cache)]


FLUSH_MIN_US = 20.0  # a 256 MB fill runs ~60 us on an H200


def _is_flush(e) -> bool:  # noqa: ANN001 - a CUPTI kernel record
    """The flush is a fill of the scratch (tens of us); a call's own fills (zeroed
    counters, gradient buffers) are short."""
    return "FillFunctor" in e.name and e.time_range.elapsed_us() > FLUSH_MIN_US


def call_splits(prof) -> dict:  # noqa: ANN001 - a torch.profiler.profile
    """Per call of a profiled flushed loop, from CUPTI's kernel records: the wait (the
    flush kernel's end -> the call's first kernel start), the kernel time (first start ->
    last end), the GPU's idle time inside it (the kernel time less the kernels' own) and
    the number of kernels; and the kernels' names."""
    kernels = sorted(
        (e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA and e.time_range.elapsed_us() > 0),
        key=lambda e: e.time_range.start,
    )
    waits, spans, idles, counts = [], [], [], []
    call: list = []
    flush_end = None
    for e in kernels + [None]:
        is_flush = e is not None and _is_flush(e)
        if (e is None or is_flush) and call and flush_end is not None:
            waits.append(call[0].time_range.start - flush_end)
            spans.append(call[-1].time_range.end - call[0].time_range.start)
            idles.append(spans[-1] - sum(k.time_range.elapsed_us() for k in call))
            counts.append(len(call))
        if e is None:
            break
        if is_flush:
            flush_end, call = e.time_range.end, []
        else:
            call.append(e)
    names = sorted({e.name[:60] for e in kernels if not _is_flush(e)})
    return {"wait": waits, "kernel": spans, "idle": idles, "kernels": counts, "names": names}


def split_profile(step, sets: list, calls: int, cache: torch.Tensor) -> dict:
    """Median wait (flush end -> first kernel start), kernel time (first start -> last
    end), idle time inside it and kernels per call, from CUPTI's kernel records."""
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        flushed_calls(step, sets, calls, cache)
    split = call_splits(prof)
    return {k: (v if k == "names" else statistics.median(v)) for k, v in split.items()}


def variants(config: dict) -> dict[str, dict]:
    """The shipped config and its one-knob variants (``variants_probe.varied`` changes:
    None removes a key) that differ from it: eviction hints, static shapes, grid, rows
    of a whole-row config, warps."""
    evictions = len(config.get("load_eviction_policies") or [None] * 9)
    changes = {f"evict={h or '-'}": {"load_eviction_policies": h and [h] * evictions} for h in (None, "last", "first")}
    changes[f"static={not config.get('static', False)}"] = {"static": not config.get("static", False)}
    changes |= {f"pid={p or 'flat'}": {"pid_type": p} for p in (None, "xyz", "persistent_blocked")}
    rows, *rest = config["block_sizes"]
    if len(rest) == 1:  # whole row: [rows, groups]
        changes |= {f"rows={r}": {"block_sizes": [r, *rest]} for r in (rows // 2, rows * 2) if r >= 1}
    changes |= {f"warps={w}": {"num_warps": w} for w in (config["num_warps"] // 2, config["num_warps"] * 2) if 1 <= w <= 32}
    out = {"shipped": config}
    for name, change in changes.items():
        v = varied(config, change)
        if v not in out.values():
            out[name] = v
    return out


def config_table(keys: list[str], calls: int, against: str | None = None) -> None:
    """Each key's config variants: graph us (tuner timing) and flushed event us, in turns."""
    import json

    entries = shipped_entries()
    others = json.load(open(against))["entries"] if against else {}
    cache = tuning_timing.flush_scratch(torch.device("cuda"))
    for key in keys:
        wl = key_workload(key)
        configs = variants(entries[key]["config"])
        if key in others and others[key]["config"] != entries[key]["config"]:
            configs["against"] = others[key]["config"]
        runs = checked_runs(wl, configs)
        sets = len(wl.sets)
        graph = {k: [] for k in runs}
        flushed = {k: [] for k in runs}
        for _ in range(3):
            for name, run in runs.items():
                graph[name].append(1000.0 * tuning_timing.time_ms(run, sets, wl.device))
                flushed[name].append(statistics.median(flushed_calls(run, list(range(sets)), calls, cache)))
        print(key, {k: v for k, v in entries[key]["config"].items() if k != "load_eviction_policies"}, flush=True)
        base_g, base_f = min(graph["shipped"]), statistics.median(flushed["shipped"])
        for name in runs:
            g, f = min(graph[name]), statistics.median(flushed[name])
            print(f"  {name:22s} graph {g:7.2f} us ({base_g / g:.3f}x)  flushed {f:7.2f} us ({base_f / f:.3f}x)", flush=True)
        del wl, runs
        torch.cuda.empty_cache()


def main() -> None:
    probe = ProbeRun()
    argv = probe.argv
    if "--configs" in argv:
        keys = [a for a in argv[argv.index("--configs") + 1 :] if "/" in a and not a.endswith(".json")]
        config_table(keys, int(probe.option("--calls") or 100), probe.option("--against"))
        return
    calls = int(probe.option("--calls") or 200)
    dtype_name = probe.option("--dtype") or "bf16"
    settings = Settings("cuda", 10.0, 50.0, int(ROTATE_MB * 2**20))
    registry = Registry()
    cache = tuning_timing.flush_scratch(torch.device("cuda"))
    print(f"{'shape':<22} {'provider':<9} {'eager':>7} {'graph':>7} {'again':>8} {'wait':>6} {'kernel':>7} {'rest':>6} {'n':>3}")
    for op, m, n in SHAPES:
        _, sets = make_inputs(Unit(op, "fwd", dtype_name, m, n), settings, rotate=True)
        for provider in PROVIDERS:
            step = make_step(registry.build(provider, op), "fwd")
            for s in sets[:3]:
                step(s)
            flushed_calls(step, sets, 20, cache)
            eager = statistics.median(flushed_calls(step, sets, calls, cache))
            graph = bench_timing.graph_us(step, sets, "cuda")
            split = split_profile(step, sets, calls, cache)
            again = statistics.median(flushed_calls(step, sets, calls, cache))
            rest = eager - split["wait"] - split["kernel"]
            print(
                f"{op[:10]} {m}x{n:<10} {provider:<9} {eager:7.2f} {graph:7.2f} {again:8.2f} "
                f"{split['wait']:6.2f} {split['kernel']:7.2f} {rest:6.2f} {split['kernels']:3.0f}  {split['names'][:2]}",
                flush=True,
            )


if __name__ == "__main__":
    main()
