"""Why the tuner and the benchmark ranked two RMSNorm configs apart (bench/NOTES.md
Next 9, attempt 38): the tuner rotated 8 input sets of x + out (64 MB of reads for an
8 MB input, about one L2), the benchmark 16 (128 MB of reads). Time both configs by the
tuner's clock over 8, 16 and 32 sets, A B A B, and see whether the ranking follows the
rotation.

    python bench/prototypes/rotation_probe.py
"""

import torch

from tuning import timing
from tuning.workload import Task, Workload

TASK = Task("rms_norm", "infer", 4096, 1024, "bfloat16", 1)
CONFIGS = {  # the cached xyz entry the benchmark preferred, and the tuner's pick at 7e9aa89
    "xyz_last": {"block_sizes": [2, 1], "load_eviction_policies": ["last"] * 6, "num_stages": 1,
                 "num_warps": 4, "pid_type": "xyz", "reduction_loops": [None]},
    "flat_4rows": {"block_sizes": [4, 1], "num_stages": 1, "num_warps": 4, "reduction_loops": [None]},
}  # fmt: skip


def main() -> None:
    device = torch.device("cuda")
    for n_sets in (8, 16, 32):
        wl = Workload(TASK, device, n_sets=n_sets)
        runs = {name: wl.runner(cfg) for name, cfg in CONFIGS.items()}
        for run in runs.values():
            wl.check(run)
        best = dict.fromkeys(runs, 0.0)
        for _ in range(3):
            for name, run in runs.items():
                ms = timing.time_ms(run, n_sets, device, timing.FINAL_TIMING)
                best[name] = max(best[name], wl.model_bytes() / ms / 1e6)
        ratio = best["xyz_last"] / best["flat_4rows"]
        cells = "  ".join(f"{k} {v:.0f}" for k, v in best.items())
        print(f"{n_sets:3d} sets ({n_sets * wl._read_bytes() >> 20} MB read per cycle): {cells}  xyz_last/flat {ratio:.3f}")
        del wl, runs
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
