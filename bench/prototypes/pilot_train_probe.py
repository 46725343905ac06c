"""The two-pass forward's pilot width against the statistics stores (bench/NOTES.md attempt 29 d):
``norm_fwd_chunked`` at one config, training (mean/rstd stored) and inference, with pilots of
16, 64, 256 values and one whole chunk. On the H200 every pilot narrower than the chunk made
the training program ~14x slower; output in bench/results/2026-11-22_h200_pilot_train_probe.txt.

    python bench/prototypes/pilot_train_probe.py    # CUDA only
"""
import torch, helion
from kernels import launch
from tuning import timing
from tuning.workload import Task, Workload
dev = torch.device("cuda")
for m, n, chunk, w in ((4096, 16384, 4096, 16), (2048, 32768, 4096, 16)):
    for mode in ("fwd", "infer"):
        for pw in (16, chunk, 64, 256):
            wl = Workload(Task("layer_norm", mode, m, n, "bfloat16", 1), dev)
            cfg = {"block_sizes": [chunk, 1, 1], "num_warps": w, "num_stages": 1}
            args = [wl._fwd_args(s) + (n, False, pw) for s in wl.sets]
            fn = launch._kernels(False)["fwd_chunked"].bind(args[0]).compile_config(helion.Config(**cfg))
            run = lambda i: fn(*args[i])
            err = wl.check(run)
            ms = timing.time_ms(run, len(wl.sets), dev)
            print(f"{m}x{n} {mode:5s} pilot {pw:5d}: {wl.model_bytes() / ms / 1e6:6.0f} GB/s  ({ms*1e3:7.1f} us) err {err:.3g}", flush=True)
