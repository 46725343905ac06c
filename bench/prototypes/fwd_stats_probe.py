"""Probe behind the ``infer`` cache mode (bench/NOTES.md attempt 26): LayerNorm bf16 forward
configs timed as the training forward (mean/rstd stored) and as the inference forward (no
stores), each with the tuner's graph timing and with do_bench (L2 flushed). H200 output of
2026-11-22 (at 14f5825's kernels): ``bench/results/2026-11-22_h200_fwd_stats_probe.txt``.

    python bench/prototypes/fwd_stats_probe.py    # on a CUDA host
"""
import torch, triton
from kernels import launch
from tuning.workload import Task, Workload
from tuning import timing
dev = torch.device("cuda")
W = lambda n: {"block_sizes": [1, 1], "num_warps": n, "num_stages": 1, "reduction_loops": [None]}
T = lambda l, n: {"block_sizes": [l, 1, 1], "num_warps": n, "num_stages": 1}
cases = {
    (4096, 12288): [None, W(8), W(16), T(4096, 16), T(2048, 8), T(1024, 4)],
    (4096, 15872): [None, T(4096, 16), T(1024, 4), T(512, 4)],
    (4096, 9728): [None, W(8), T(512, 4), T(1024, 4), T(2048, 8)],
    (4096, 8192): [None, T(2048, 8), T(4096, 16)],
    (2048, 32768): [None, T(4096, 16), T(2048, 8)],
    (4096, 16384): [None, W(16)],
}
for (m, n), cfgs in cases.items():
    wl = Workload(Task("layer_norm", "fwd", m, n, "bfloat16", 1), dev)
    gb = lambda ms: wl.model_bytes() / ms / 1e6
    saved = [(s["mean"], s["rstd"]) for s in wl.sets]
    for cfg in cfgs:
        cfg = cfg or launch.choose_config("layer_norm", "fwd", m, n, 1, torch.bfloat16, dev)
        out = []
        for stats in (True, False):
            for s, (mu, r) in zip(wl.sets, saved):
                s["mean"], s["rstd"] = (mu, r) if stats else (None, None)
            try:
                run = wl.runner(cfg)
                g = timing.time_ms(run, len(wl.sets), dev)
                it = iter(range(10**9))
                d = triton.testing.do_bench(lambda: run(next(it) % len(wl.sets)), return_mode="median")
                out.append(f"{gb(g):.0f}/{gb(d):.0f}")
            except Exception as e:
                out.append("fail " + str(e)[:50])
        print(f"{m}x{n} {str(cfg)[:110]:110s} stats g/db {out[0]:>10s}  nostats g/db {out[1]:>10s}", flush=True)
