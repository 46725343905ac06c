"""Does reading x, dy and w again after the row sums stop the wide fused backward spilling?
(bench/NOTES.md attempt 41)

The fused LayerNorm backward holds a whole row per step. Across its two row reductions
four row-wide fp32 values stay live per channel: the dW and dB accumulators, xhat and
dxhat; at 16384 channels and 16 warps that is 128 registers a thread before addresses,
so it spills (20 spilled registers at bf16 4096x16384, attempt 31). ``norm_bwd``'s
``row_order="reload"`` takes both sums, then loads x, dy and w again (L1/L2 hits) to
form du, so only the accumulators cross the reductions. The reloads carry a mask that
is true but for a NaN row, so Triton cannot merge them with the first loads.

For each shape: the shipped config and neighbours (warps, row pipelining) in both
orders, "sums_first" (shipped above 8192 channels) and "reload", each checked against
float64, timed the tuner's way (CUDA graph over rotating sets, kernel time, backward
and its dW/dB reduce) in turns, with the compiled main kernel's registers and spills.

    python bench/prototypes/reload_bwd_probe.py [MxN[:dtype] ...]
"""

import sys

import torch

from kernels import heuristics, launch
from tuning import cache, timing
from tuning.workload import Task, Workload

SHAPES = ["4096x16384", "4096x16384:float16", "4096x12288", "4096x15872", "4096x9216", "4096x8192"]
ORDERS = ("sums_first", "reload")


def _variants(shipped: dict) -> list[dict]:
    """The shipped config, and the same block sizes at 8/16/32 warps with the row loop
    pipelined (3 stages) or not."""
    out = [shipped]
    for warps in (8, 16, 32):
        for stages in (0, 3):
            c = {k: v for k, v in shipped.items() if k not in ("num_warps", "range_num_stages")}
            c["num_warps"] = warps
            if "range_num_stages" in shipped or stages:
                c["range_num_stages"] = [0, stages]
            if c not in out:
                out.append(c)
    return out


def _registers(run) -> str:  # noqa: ANN001
    """n_regs/n_spills of the Triton kernels the call ran (main kernel first)."""
    found = []
    for obj in list(getattr(run, "__closure__", None) or []):
        fn = obj.cell_contents
        g = getattr(fn, "__globals__", {})
        for name, val in g.items():
            if name.startswith("_helion_") and hasattr(val, "device_caches"):
                for caches in val.device_caches.values():
                    for k in caches[0].values():
                        found.append(f"{name[8:]} {k.n_regs}r/{k.n_spills}s")
    return ", ".join(sorted(set(found))) or "?"


def main() -> None:
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # CPU: a smoke test (TRITON_INTERPRET=1)
    shapes = [a for a in sys.argv[1:] if "x" in a] or SHAPES
    for spec in shapes:
        size, _, dtype = spec.partition(":")
        dtype = dtype or "bfloat16"
        m, n = map(int, size.split("x"))
        wl = Workload(Task("layer_norm", cache.BWD, m, n, dtype), dev)
        shipped = launch.choose_config("layer_norm", cache.BWD, m, n, 1, getattr(torch, dtype), dev)
        names, runs, regs = [], [], []
        for config in _variants(shipped):
            if wl.is_split(config):
                continue
            for order in ORDERS:
                heuristics.bwd_row_order = lambda k, order=order: order  # noqa: E731
                tag = f"{order:10s} w{config['num_warps']:<2d} rs{config.get('range_num_stages', [0, 0])[-1]}"
                tag += " (shipped)" if config is shipped else ""
                try:
                    run = wl.runner(config)
                    err = wl.check(run)
                except Exception as e:  # noqa: BLE001
                    print(f"  {tag} FAILED: {str(e).splitlines()[0][:100]}", flush=True)
                    continue
                names.append(tag)
                runs.append(run)
                regs.append(f"err {err:.2g}, {_registers(run)}")
        ms = timing.interleaved_ms(runs, len(wl.sets), dev, timing.FINAL_TIMING)
        gbps = [wl.model_bytes() / t / 1e6 for t in ms]
        print(f"== LayerNorm {dtype} {m}x{n} bwd (3x bytes of x), shipped {shipped}", flush=True)
        for g, name, r in sorted(zip(gbps, names, regs), key=lambda t: -t[0]):
            print(f"  {g:6.0f} GB/s  {name:34s} {r}", flush=True)


if __name__ == "__main__":
    main()
