"""Where our 8 MB forwards lose the eager column to inductor (bench/NOTES.md Next 0b, attempt 83).

At 4096x1024 the benchmark's eager samples of our forwards fall in two modes, ~8.8 and
~9.3-9.5 us (f93845f: LayerNorm bf16 [8.86, 9.31, 9.52, 8.86, 8.93]), inductor's in one
(~8.7-8.9). ``inductor_gap_probe.py`` split flushed calls by CUPTI: our kernels run
shorter than inductor's after a flush; what moves is the wait from the flush kernel's end
to our kernel's start (2.5 or 3.2 us, a block of calls at a time). Here, per provider, in
alternating blocks of flushed calls under CUPTI, each block's event time and the
distribution of its calls' waits and kernel times, so the modes can be pinned on a
provider, a launch path or a program:

- ``tilenorm``: the public API, as the benchmark calls it;
- ``inductor``: the benchmark's ``torch.compile(dynamic=False)``;
- ``helion``: the shipped config through Helion's own launch (the tuner's path);
- ``r1w1``: inductor's program shape in our kernel (one row, one warp, recast: no shared
  memory, all programs resident at once).

    python bench/prototypes/flush_wait_probe.py [--blocks 8] [--calls 100] [--dtype bf16]
    python bench/prototypes/flush_wait_probe.py --configs FILE.json [--blocks 8] [--calls 100]

``--queued``: no profiler; per runner, alternating blocks of flushed calls timed by events
(the benchmark's eager clock) as they come, and with the whole block queued behind a GPU
sleep first, so that no launch can reach the GPU late: what the host's timing adds.

``--configs``: FILE maps cache keys to {name: config}; each key's configs (and the
shipped one, as ``shipped``) through Helion's launch, in the same alternating blocks,
pooled, beside their graph time (the tuner's clock, interleaved rounds): the kernel time
after a flush separated from the wait before it, for an A/B of configs.
"""

import gc
import json
import statistics

import torch
from torch.profiler import ProfilerActivity, profile

from eager_gap_probe import call_splits  # run from the repo root or this folder
from probe_common import ProbeRun, checked_runs, key_workload, shipped_entries
from variants_probe import varied

from bench.ops import make_step
from bench.providers import Registry
from bench.run import ROTATE_MB, Settings, Unit, make_inputs
from tuning import timing
from tuning.workload import Workload

UNITS = (("layer_norm", 4096, 1024), ("rms_norm", 4096, 1024))
DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def runners(op: str, m: int, n: int, dtype: str) -> dict:
    """name -> (run(i), number of input sets)."""
    settings = Settings("cuda", 10.0, 50.0, int(ROTATE_MB * 2**20))
    _, sets = make_inputs(Unit(op, "fwd", dtype, m, n), settings, rotate=True)
    registry = Registry()
    out = {}
    for provider in ("tilenorm", "inductor"):
        step = make_step(registry.build(provider, op), "fwd")
        out[provider] = ((lambda i, step=step: step(sets[i])), len(sets))
    key = f"{op}/infer/{DTYPES[dtype]}/{m}x{n}"
    wl = key_workload(key)
    shipped = shipped_entries()[key]["config"]
    one_warp = varied(shipped, {"block_sizes": [1, 1], "num_warps": 1, "recast": True, "load_eviction_policies": None})
    runs = checked_runs(wl, {"helion": shipped, "r1w1": one_warp})
    return out | {name: (run, len(wl.sets)) for name, run in runs.items()}


def block(run, n_sets: int, calls: int, scratch: torch.Tensor, first: int) -> dict:
    """One block of flushed calls under CUPTI: event us per call, and per call the wait
    (flush end -> first kernel start) and kernel span (first start -> last end)."""
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        events = timing.flushed_calls_ms(run, n_sets, calls, scratch, first=first)
    split = call_splits(prof)
    return {"event": [1000 * ms for ms in events], "wait": split["wait"], "kernel": split["kernel"]}


def quantiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=10)
    return f"{q[0]:5.2f} {statistics.median(values):5.2f} {q[-1]:5.2f}"


def config_runners(key: str, configs: dict) -> tuple[dict, Workload]:
    """The shipped config and ``configs`` of ``key``: name -> (run(i), number of input sets)."""
    wl = key_workload(key)
    runs = checked_runs(wl, {"shipped": shipped_entries()[key]["config"], **configs})
    return {name: (run, len(wl.sets)) for name, run in runs.items()}, wl


def warm_up(runs: dict, scratch: torch.Tensor) -> None:
    """First calls and first touches done, and the collector told to leave what exists:
    a collection over the compiled programs' objects would stall a launch."""
    for run, n_sets in runs.values():
        timing.flushed_calls_ms(run, n_sets, 20, scratch)
    gc.collect()
    gc.freeze()


def compare(title: str, runs: dict, blocks: int, calls: int, scratch: torch.Tensor, graph: dict | None = None) -> None:
    """Alternating blocks of flushed calls under CUPTI; per block and pooled quantiles."""
    warm_up(runs, scratch)
    print(f"== {title}: per block, us (p10 median p90)")
    print(f"  {'runner':<9} {'blk':>3}  {'event':^17}  {'wait':^17}  {'kernel':^17}  slow waits")
    pooled = {name: {"event": [], "wait": [], "kernel": []} for name in runs}
    for b in range(blocks):
        for name, (run, n_sets) in runs.items():
            got = block(run, n_sets, calls, scratch, b * calls)
            slow = sum(w > 2.9 for w in got["wait"]) / max(1, len(got["wait"]))
            print(f"  {name:<9} {b:3d}  {quantiles(got['event'])}  {quantiles(got['wait'])}  {quantiles(got['kernel'])}  {slow:4.0%}", flush=True)
            for k in pooled[name]:
                pooled[name][k] += got[k]
    print("  pooled:" + ("  (graph us: the tuner's clock)" if graph else ""))
    for name, got in pooled.items():
        extra = f"  graph {graph[name]:6.2f}" if graph else ""
        print(f"  {name:<9} all  {quantiles(got['event'])}  {quantiles(got['wait'])}  {quantiles(got['kernel'])}{extra}", flush=True)
    gc.unfreeze()


def queued_calls_us(run, n_sets: int, calls: int, scratch: torch.Tensor, first: int) -> list[float]:
    """``flushed_calls_ms`` with every call queued before the GPU reaches the first: a
    sleep long enough for the host to submit the block ahead of it."""
    torch.cuda.synchronize()
    torch.cuda._sleep(int(40e6))  # ~20 ms at the H200's clock: > 100 calls' host time
    return [1000 * ms for ms in timing.flushed_calls_ms(run, n_sets, calls, scratch, first=first)]


def compare_queued(title: str, runs: dict, blocks: int, calls: int, scratch: torch.Tensor) -> None:
    """Alternating blocks of flushed calls by events alone, as they come and queued."""
    warm_up(runs, scratch)
    pooled = {name: {"as they come": [], "queued": []} for name in runs}
    for b in range(blocks):
        for name, (run, n_sets) in runs.items():
            pooled[name]["as they come"] += [1000 * ms for ms in timing.flushed_calls_ms(run, n_sets, calls, scratch, first=b * calls)]
            pooled[name]["queued"] += queued_calls_us(run, n_sets, calls, scratch, b * calls)
    print(f"== {title}: event us per flushed call (p10 median p90), {blocks} blocks of {calls}")
    for name, got in pooled.items():
        print(f"  {name:<9} as they come {quantiles(got['as they come'])}   queued {quantiles(got['queued'])}", flush=True)
    gc.unfreeze()


def main() -> None:
    probe = ProbeRun()
    blocks, calls = int(probe.option("--blocks") or 8), int(probe.option("--calls") or 100)
    dtype = probe.option("--dtype") or "bf16"
    scratch = timing.flush_scratch(torch.device("cuda"))
    if probe.option("--configs"):
        for key, configs in json.load(open(probe.option("--configs"))).items():
            runs, wl = config_runners(key, configs)
            names = list(runs)
            clocks = timing.interleaved_clocks([runs[k][0] for k in names], len(wl.sets), wl.device, rounds=7, flushed=False)
            compare(key, runs, blocks, calls, scratch, {k: 1000 * c.graph_ms for k, c in zip(names, clocks)})
            del runs, wl
            torch.cuda.empty_cache()
        return
    for op, m, n in UNITS:
        runs = runners(op, m, n, dtype)
        if "--queued" in probe.argv:
            compare_queued(f"{op} {dtype} {m}x{n}", runs, blocks, calls, scratch)
        else:
            compare(f"{op} {dtype} {m}x{n}", runs, blocks, calls, scratch)
        del runs
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
