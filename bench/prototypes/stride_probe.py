"""An A/B of two versions of kernels/norm_kernels.py (an older file against the working
tree's) on the same workloads and configs, in one process. Written for bench/NOTES.md
attempt 29, where the working tree made the streamed tensors' strides compile-time
constants (hl.specialize); output in bench/results/2026-11-22_h200_stride_probe.txt.

    git show <rev>:kernels/norm_kernels.py > /tmp/old_norm_kernels.py
    OLD_KERNELS=/tmp/old_norm_kernels.py python bench/prototypes/stride_probe.py [--bwd]

Each (kernel, mode, shape) runs its shipped config (plus, for wide LayerNorm inference
rows, a grid of two-pass chunks) with both kernel sets, timed A B A B by the tuner's
timing (CUDA graph over rotating sets); the better of each pair of timings is printed.
"""
import importlib.util
import os
import sys
from statistics import geometric_mean

import torch

from kernels import launch
from kernels import norm_kernels as nk
from tuning import timing
from tuning.workload import Task, Workload

spec = importlib.util.spec_from_file_location("old_norm_kernels", os.environ["OLD_KERNELS"])
old_nk = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = old_nk  # Helion's generated code imports the kernels' module
spec.loader.exec_module(old_nk)
SETS = {"old": old_nk.make_kernels(False), "new": nk.make_kernels(False)}

FWD_SHAPES = [(4096, 1024), (4096, 4096), (8192, 4096), (32768, 4096), (4096, 8192), (4096, 16384), (2048, 32768), (4096, 14336)]
BWD_SHAPES = [(4096, 1024), (4096, 4096), (8192, 4096), (32768, 4096), (4096, 8192), (4096, 16384), (2048, 32768)]
CHUNKS = [(2048, 8), (4096, 16), (8192, 16), (8192, 32)]


def measure(wl: Workload, config: dict) -> dict[str, float]:
    runs = {}
    for name, kset in SETS.items():
        launch._kernels = lambda ref, kset=kset: kset  # noqa: E731  the Workload compiles through this
        runs[name] = wl.runner(config)
        wl.check(runs[name])
    best = {name: 0.0 for name in runs}
    for _ in range(2):
        for name, run in runs.items():
            best[name] = max(best[name], wl.model_bytes() / timing.time_ms(run, len(wl.sets), wl.device) / 1e6)
    return best


def main() -> None:
    dev = torch.device("cuda")
    cases = [("layer_norm", "infer", s) for s in FWD_SHAPES] + [("rms_norm", "infer", s) for s in FWD_SHAPES[:4]]
    cases += [("layer_norm", "fwd", s) for s in FWD_SHAPES[:6]]
    if "--bwd" in sys.argv:
        cases += [("layer_norm", "bwd", s) for s in BWD_SHAPES] + [("rms_norm", "bwd", s) for s in BWD_SHAPES[:4]]
    ratios = []
    for kernel, mode, (m, n) in cases:
        wl = Workload(Task(kernel, mode, m, n, "bfloat16", 1), dev)
        configs = [launch.choose_config(kernel, mode, m, n, 1, torch.bfloat16, dev)]
        if kernel == "layer_norm" and mode == "infer" and n >= 8192:
            configs += [{"block_sizes": [c, 1, 1], "num_warps": w, "num_stages": 1} for c, w in CHUNKS if n % c == 0]
        for i, config in enumerate(configs):
            try:
                gb = measure(wl, config)
            except Exception as e:  # noqa: BLE001
                print(f"{kernel:10s} {mode:5s} {m}x{n:<6d} FAIL {str(e)[:100]}", flush=True)
                continue
            if i == 0:
                ratios.append(gb["new"] / gb["old"])
            tag = "shipped" if i == 0 else "chunk  "
            print(f"{kernel:10s} {mode:5s} {m}x{n:<6d} {tag} old {gb['old']:6.0f} new {gb['new']:6.0f} ({(gb['new'] / gb['old'] - 1) * 100:+5.1f}%)  {config}", flush=True)
    geo = geometric_mean(ratios)
    print(f"geomean new/old over the shipped configs: {geo:.4f}", flush=True)


if __name__ == "__main__":
    main()
