"""The exchange backward on LayerNorm rows narrower than 32768 (bench/NOTES.md Next 2b,
attempt 57).

The tuner offers the exchange schedule from 32768 channels only: attempt 55 measured it
behind the fused schedule at 16384 and the split one at LayerNorm 12288, but that was
before its row loop could be pipelined (attempt 56). Two things have changed since:

- LayerNorm's exchange configs spilled (255 registers) in attempt 56's probe, which tried
  2-8 rows a step on 2-8 warps: up to 64 values of x and dy per thread, plus the dW and dB
  accumulators. RMSNorm's sweep then won with one row a step on 4 warps (16 values per
  thread). LayerNorm at one row a step and 4-16 warps was never timed.
- TritonBench's LayerNorm rows 4096x8704-15872 (bf16 fwd+bwd 2411-2884 GB/s by kernel time,
  against 3528 at 8192 and 3395 at 16384) run the fused schedule on a 16384-wide channel
  tile, so up to 47% of the lanes are masked, or the split schedule. An exchange config
  tiles the row in 1024-4096 channels, every width of TritonBench's (steps of 512) to
  within one ragged tile.

    python bench/prototypes/exchange_width_probe.py [--budget SECONDS] [--check-only] [--shapes 4096x8704,...] [--set width|occupancy|wide] [--op rms_norm]

Per shape (LayerNorm bf16 backward): the shipped config and exchange configs (channel
tile, rows per step, warps, row loop pipelined 2 or 3 deep; m_block 32), each checked
against float64 and timed by the tuner's timing (CUDA graph over rotated inputs, the
scratch's memset and the dW/dB reduce included) in turns, best of 2; GB/s by the bwd byte
model, registers per thread beside each.
"""

import torch
from probe_common import ProbeRun, compare_configs, exchange_config  # run from this folder

from kernels import launch
from tuning.workload import Task, Workload

SHAPES = [(4096, 8704), (4096, 12288), (4096, 15872), (4096, 16384), (2048, 32768)]
# (channel tile, rows per step, warps, row stages, m_block, maxnreg or 0)
CONFIG_SETS = {
    # Runs 1-2: tile, warps and pipeline depth at m_block 32.
    "width": [
        (1024, 1, 4, 2, 32, 0), (1024, 1, 4, 3, 32, 0), (1024, 1, 8, 2, 32, 0),
        (2048, 1, 4, 2, 32, 0), (2048, 1, 4, 3, 32, 0), (2048, 1, 8, 2, 32, 0), (2048, 1, 8, 3, 32, 0),
        (4096, 1, 8, 2, 32, 0), (4096, 1, 16, 2, 32, 0), (2048, 2, 8, 2, 32, 0),
    ],
    # Run 3: residency. At m_block 32 these shapes have 1024 programs; LayerNorm's
    # 2048-channel tile on 4 warps takes 95 registers (5 blocks an SM: 660 resident, so
    # two waves of 32 waits each), RMSNorm's 64 (8 an SM: one wave). Fewer, longer
    # programs (m_block 64) or a deeper pipeline. (A register cap, Helion's maxnreg, is
    # refused outside persistent grids: run 3 failed to compile those.)
    "occupancy": [
        (2048, 1, 4, 2, 32, 0), (2048, 1, 4, 3, 32, 0), (2048, 1, 4, 4, 32, 0), (2048, 1, 4, 2, 64, 0),
        (2048, 1, 4, 3, 64, 0), (2048, 1, 4, 4, 64, 0), (1024, 1, 4, 3, 64, 0), (1024, 1, 4, 4, 64, 0),
        (2048, 1, 8, 3, 64, 0), (4096, 1, 8, 3, 64, 0), (2048, 1, 4, 3, 128, 0),
    ],
    # Run 6 (attempt 63): wide tiles. The fused backward on an 8192-wide row runs 3461 GB/s
    # (bf16 4096x8192, 16 warps) against 3149 at 16384 and the exchange's 2509 at 2048x32768
    # on 2048-channel tiles: two or four 8192-wide tiles (one program an SM at 16 warps)
    # exchanging their sums, or two 16384-wide ones.
    "wide": [
        (8192, 1, 16, 0, 32, 0), (8192, 1, 16, 2, 32, 0), (8192, 1, 16, 3, 32, 0), (8192, 1, 16, 4, 32, 0),
        (8192, 1, 8, 3, 32, 0), (8192, 1, 16, 3, 16, 0), (8192, 1, 16, 3, 64, 0),
        (16384, 1, 8, 0, 32, 0), (16384, 1, 16, 0, 32, 0),
        (4096, 1, 16, 3, 32, 0), (4096, 1, 8, 3, 32, 0),
    ],
}  # fmt: skip


def main() -> None:
    probe = ProbeRun()
    dev = probe.device
    op = probe.option("--op") or "layer_norm"
    picked = probe.option("--shapes")
    shapes = [tuple(map(int, s.split("x"))) for s in picked.split(",")] if picked else SHAPES
    if not probe.on_gpu:  # one tile per row: all the interpreter can run
        shapes, configs = [(16, 256)], [(256, 1, 2, 2, 32, 0)]
    else:
        configs = CONFIG_SETS[probe.option("--set") or "width"]
    for m, n in shapes:
        if probe.out_of_time():
            return
        wl = Workload(Task(op, "bwd", m, n, "bfloat16", 1), dev, n_sets=None if probe.on_gpu else 2)
        shipped = dict(launch.choose_config(op, "bwd", m, n, 1, torch.bfloat16, dev))
        named = {"shipped": shipped}
        for t, r, w, s, mb, cap in configs:
            config = exchange_config(t, r, w, s, m_block=mb) | ({"maxnreg": cap} if cap else {})
            named[f"t{t} r{r} w{w} s{s}" + (f" m{mb}" if mb != 32 else "") + (f" cap{cap}" if cap else "")] = config
        compare_configs(probe, wl, named, f"{op} bwd {m}x{n} bf16, shipped {shipped}")

if __name__ == "__main__":
    main()
