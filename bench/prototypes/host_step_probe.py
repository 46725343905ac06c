"""Where a fwd+bwd step's eager time goes when the host, not the GPU, bounds it.

The benchmark's eager clock (``do_bench``: a 256 MB zero before every call, events around
the call) put our fwd+bwd at 0.84-0.99x of torch eager on LayerNorm/RMSNorm 4096x1024 and
4096x4096 (3ba2bf6) and 0.89-1.44x on the same rows in a later run (b0861ce), while our
kernels run 1.25-1.7x faster under CUDA graphs. When the host's time for one call exceeds
the flush plus the kernels, the events measure host time, not kernels. Here, per provider
and shape, in turns: the event time of flushed calls (the eager clock), the host's wall
time for the forward and for ``autograd.grad`` inside those same calls, the same two parts
back to back without a flush, and the graph time.

    python bench/prototypes/host_step_probe.py [--calls N] [--rounds R] [--units OP:DTYPE:MxN,...] [--split]

``--split`` adds, per provider, the flushed calls' CUPTI split (``eager_gap_probe``): the
wait from the flush's end to the call's first kernel, the span of its kernels and the
GPU's idle time inside that span (the host launching the backward after the forward's
kernels have ended shows there), and the kernels a call runs. Stop 51 (attempt 85) asked
it of the 64 MB and 128 MB rows whose fwd+bwd eager GB/s sat far under their graph GB/s.
"""

import statistics
import time

import torch

from eager_gap_probe import split_profile  # run from the repo root or this folder
from probe_common import ProbeRun

from bench import timing as bench_timing
from bench.ops import make_step
from bench.providers import Registry
from bench.run import ROTATE_MB, Settings, Unit, make_inputs
from tuning import timing as tuning_timing

UNITS = (
    ("layer_norm", "bf16", 4096, 1024),
    ("layer_norm", "bf16", 4096, 4096),
    ("rms_norm", "bf16", 4096, 1024),
    ("rms_norm", "bf16", 4096, 4096),
    ("layer_norm", "bf16", 4096, 8192),
)
PROVIDERS = ("tilenorm", "torch")


def timed_calls(fn, sets: list, calls: int, scratch: torch.Tensor | None) -> dict[str, float]:
    """Median us per call: events around the call, each right after ``scratch`` is zeroed
    (``tuning.timing.flushed_calls_ms``; None: back to back), and the host's wall time of
    the forward and of the gradient inside those calls."""
    fwd_us, grad_us = [], []

    def step(i: int) -> None:
        s = sets[i]
        t0 = time.perf_counter()
        out = fn(*s.args())
        t1 = time.perf_counter()
        torch.autograd.grad(out, s.targets, s.grad_outputs, allow_unused=True)
        fwd_us.append(1e6 * (t1 - t0))
        grad_us.append(1e6 * (time.perf_counter() - t1))

    event_ms = tuning_timing.flushed_calls_ms(step, len(sets), calls, scratch)
    return {"event": 1000.0 * statistics.median(event_ms), "fwd": statistics.median(fwd_us), "grad": statistics.median(grad_us)}


def parse_units(text: str) -> tuple:
    """"layer_norm:bf16:2048x32768,..." -> ((op, dtype, m, n), ...)."""
    units = []
    for item in text.split(","):
        op, dtype, shape = item.split(":")
        m, n = map(int, shape.split("x"))
        units.append((op, dtype, m, n))
    return tuple(units)


def main() -> None:
    probe = ProbeRun()
    calls = int(probe.option("--calls") or 100)
    rounds = int(probe.option("--rounds") or 5)
    units = parse_units(probe.option("--units")) if probe.option("--units") else UNITS
    settings = Settings("cuda", 10.0, 50.0, int(ROTATE_MB * 2**20))
    registry = Registry()
    scratch = tuning_timing.flush_scratch(torch.device("cuda"))
    print(f"{'unit':<24} {'provider':<9} {'eager':>7} {'graph':>7} | flushed: {'fwd':>6} {'grad':>6} | back to back: {'fwd':>6} {'grad':>6}")
    for op, dtype, m, n in units:
        _, sets = make_inputs(Unit(op, "fwd_bwd", dtype, m, n), settings, rotate=True)
        fns = {p: registry.build(p, op) for p in PROVIDERS}
        for fn in fns.values():
            timed_calls(fn, sets, 20, scratch)  # compile, record, warm the allocator
        samples = {p: [] for p in PROVIDERS}
        for r in range(rounds):
            for j in range(len(PROVIDERS)):
                p = PROVIDERS[(r + j) % len(PROVIDERS)]
                flushed = timed_calls(fns[p], sets, calls, scratch)
                plain = timed_calls(fns[p], sets, calls, None)
                samples[p].append((flushed, plain))
        for p, fn in fns.items():
            graph = bench_timing.graph_us(make_step(fn, "fwd_bwd"), sets, "cuda")
            med = lambda which, key: statistics.median(sample[which][key] for sample in samples[p])  # noqa: E731
            print(
                f"{op[:10]} {dtype} {m}x{n:<8} {p:<9} {med(0, 'event'):7.1f} {graph:7.1f} | "
                f"{med(0, 'fwd'):15.1f} {med(0, 'grad'):6.1f} | {med(1, 'fwd'):20.1f} {med(1, 'grad'):6.1f}",
                flush=True,
            )
        if "--split" in probe.argv:
            for p, fn in fns.items():
                split = split_profile(make_step(fn, "fwd_bwd"), sets, calls, scratch)
                print(f"    {p:<9} CUPTI, flushed: wait {split['wait']:6.1f} kernels {split['kernel']:6.1f} "
                      f"idle inside {split['idle']:6.1f} us, {split['kernels']:.0f} kernels: {', '.join(split['names'])}", flush=True)  # fmt: skip
        del sets, fns
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
