"""The exchange backward with its row loop software-pipelined (bench/NOTES.md Next 2,
attempt 56).

Attempt 55's exchange schedule waits for a row's other channel tiles with a spin loop
(a Triton ``while`` over an acquire atomic) after a CTA barrier and a release atomic.
Triton 3.6's pipeliner skips a loop that holds a nested loop or a barrier, so that
schedule could not prefetch the next steps' x and dy while a step waits: each program
had one step's loads in flight and then sat idle in the wait. ``norm_bwd`` now writes
each tile's partial sums with a flag in one 64-bit store and reads them with an
inline-asm spin on that slot (``_exchange`` in kernels/norm_kernels.py): no
barrier, no nested loop, and nothing the pipeliner would hoist above the wait. On the
CPU, triton 3.6 compiled the RMSNorm 2048x32768 program (2048-channel tiles x 2 rows, 2
warps) with ``range_num_stages`` 2 into cp.async prefetches (90 in the PTX), 144
registers, no spills.

    python bench/prototypes/exchange_stages_probe.py [--budget SECONDS] [--check-only]

Per shape (bf16 backward): the shipped config (its cached schedule) and exchange configs
(channel tile, rows per step, warps; m_block 64) with the row loop unpipelined and
pipelined 2 and 3 deep, each checked against float64 and timed by the tuner's timing
(CUDA graph over rotated inputs, the scratch's memset and the dW reduce included) in
turns, best of 2; GB/s by the bwd byte model, registers per thread beside each.
``--quick``: RMSNorm only, four tiles.

Result (H200, 2026-11-23, ``bench/results/2026-11-23_h200_exchange_stages_probe_run1..4.txt``;
NOTES attempt 56). Runs 1-3 waited in inline asm fed from the row sums' own layout, which
holds every slot in every thread: 4-5x slower than the old counter at its config. Run 4,
the landed form (slots read by a relaxed atomic, one per thread): RMSNorm 2048x32768
2069-2081 GB/s at the old exchange config (2761 with the counter), 2838-2857 at
2048-channel tiles x 2 rows on 2 warps pipelined 2 deep (unpipelined 2429-2443); the
sweep then found 3211 (bf16). LayerNorm's exchange configs still spill: 0.5-0.8x of the
split backward.
"""

import torch
from probe_common import ProbeRun, compare_configs, exchange_config  # run from this folder

from kernels import launch
from tuning.workload import Task, Workload

SHAPES = [("rms_norm", 2048, 32768), ("layer_norm", 2048, 32768), ("layer_norm", 4096, 16384), ("layer_norm", 4096, 12288)]
# (channel tile, rows per step, warps)
TILES = [(2048, 2, 2), (2048, 2, 4), (2048, 4, 4), (2048, 4, 8), (2048, 8, 8), (4096, 2, 4), (4096, 2, 8), (4096, 4, 8)]
STAGES = (0, 2, 3)


def main() -> None:
    probe = ProbeRun()
    dev = probe.device
    shapes = SHAPES if probe.on_gpu else [("rms_norm", 16, 256), ("layer_norm", 16, 256)]
    if "--quick" in probe.argv:
        shapes, tiles_gpu = shapes[:1], [(4096, 2, 4), (2048, 2, 2), (2048, 4, 4), (4096, 4, 8)]
    else:
        tiles_gpu = TILES
    tiles = tiles_gpu if probe.on_gpu else [(256, 2, 2)]  # one tile per row: all the interpreter can run
    for op, m, n in shapes:
        if probe.out_of_time():
            return
        wl = Workload(Task(op, "bwd", m, n, "bfloat16", 1), dev, n_sets=None if probe.on_gpu else 2)
        shipped = dict(launch.choose_config(op, "bwd", m, n, 1, torch.bfloat16, dev))
        configs = {"shipped": shipped}
        for (tile, rows, warps), stages in ((t, s) for t in tiles for s in STAGES):
            configs[f"t{tile} r{rows} w{warps} s{stages}"] = exchange_config(tile, rows, warps, stages, m_block=64)
        compare_configs(probe, wl, configs, f"{op} bwd {m}x{n} bf16, shipped {shipped}")

if __name__ == "__main__":
    main()
