"""Non-power-of-two LayerNorm inference rows (bench/NOTES.md attempt 28): inductor's chosen
kernel and config, and ours (whole row / Helion loop / two-pass, several configs) in one
process, GB/s by the tuner's timing (graph over rotating sets) and do_bench (L2 flushed).

    OUT=some_dir python bench/prototypes/np2_probe.py [N ...]   # H200: M = 4096, bf16

Writes inductor's generated kernels to $OUT/inductor_src.txt. Output of the 2026-11-22 run:
bench/results/2026-11-22_h200_np2_probe.txt.
"""
import gc, os, sys, torch, triton
import torch.nn.functional as F
from kernels import launch
from tuning.workload import Task, Workload
from tuning import timing
from torch._inductor.runtime.triton_heuristics import CachingAutotuner
dev = torch.device("cuda")
OUT = os.environ["OUT"]
W = lambda n, r=1: {"block_sizes": [r, 1], "num_warps": n, "num_stages": 1, "reduction_loops": [None]}
L = lambda c, n: {"block_sizes": [1, 1], "num_warps": n, "num_stages": 1, "reduction_loops": [c]}
T = lambda l, n: {"block_sizes": [l, 1, 1], "num_warps": n, "num_stages": 1}
widths = [int(a) for a in sys.argv[1:]] or [7680, 8704, 9728, 12288, 15872]
SEEN = set()
src = open(f"{OUT}/inductor_src.txt", "w")
for n in widths:
    m = 4096
    wl = Workload(Task("layer_norm", "infer", m, n, "bfloat16", 1), dev)
    gb = lambda ms: wl.model_bytes() / ms / 1e6
    # inductor
    torch._dynamo.reset(); gc.collect()
    x = torch.randn(m, n, device=dev, dtype=torch.bfloat16); w = torch.randn(n, device=dev, dtype=torch.bfloat16); b = torch.randn(n, device=dev, dtype=torch.bfloat16)
    xs = [torch.randn(m, n, device=dev, dtype=torch.bfloat16) for _ in range(4)]
    f = torch.compile(lambda x: F.layer_norm(x, (n,), w, b, 1e-5), dynamic=False)
    with torch.no_grad():
        f(x)
        it = iter(range(10**9))
        ind_db = triton.testing.do_bench(lambda: f(xs[next(it) % 4]), return_mode="median")
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for i in range(4):
                f(xs[i])
        g.replay(); torch.cuda.synchronize()
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
        ev[0].record()
        for _ in range(50): g.replay()
        ev[1].record(); torch.cuda.synchronize()
        ind_g = ev[0].elapsed_time(ev[1]) / 200
    ats = []
    for o in gc.get_objects():
        try:
            if isinstance(o, CachingAutotuner) and id(o) not in SEEN:
                SEEN.add(id(o)); ats.append(o)
        except ReferenceError:
            pass
    for a in ats:
        cfgs = [str(l.config) for l in a.launchers]
        src.write(f"==== n={n} {a.fn.__name__} launchers={cfgs}\n{a.fn.src}\n")
        print(f"{m}x{n} inductor {a.fn.__name__} {cfgs} size_hints={a.size_hints}", flush=True)
    print(f"{m}x{n} inductor graph {gb(ind_g):.0f} do_bench {gb(ind_db):.0f}", flush=True)
    cands = [None, W(8), W(16), W(32), W(8, 2), L(2048, 8), L(4096, 16), L(1024, 4)] + [T(l, max(4, min(16, l // 256))) for l in (512, 1024, 2048, 4096)] + [T(l, max(4, min(16, l // 512))) for l in (1024, 2048, 4096)]
    rows = []
    for cfg in cands:
        cfg = cfg or launch.choose_config("layer_norm", "infer", m, n, 1, torch.bfloat16, dev)
        try:
            run = wl.runner(cfg)
            err = wl.check(run)
            gms = timing.time_ms(run, len(wl.sets), dev)
            it = iter(range(10**9))
            d = triton.testing.do_bench(lambda: run(next(it) % len(wl.sets)), return_mode="median")
            rows.append((gb(gms), gb(d), str(cfg)))
        except Exception as e:
            rows.append((0, 0, str(cfg) + " fail " + str(e)[:60]))
    for r in sorted(rows, reverse=True):
        print(f"  {r[0]:6.0f} {r[1]:6.0f}  {r[2][:120]}", flush=True)
src.close()
