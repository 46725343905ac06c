"""Is it the config or the width? One forward config timed across neighbouring row widths
(bench/NOTES.md attempt 66).

TritonBench's LayerNorm forwards at 4096x12800-13824 run at 3200-3400 GB/s where 12288
and 14336 pass 3850, each on its own tuned config. Here each named config runs at every
width (M = 4096), so a drop that follows the width under one config is the width's, and
a config that holds its GB/s across the widths is one the tuner missed. Tuner timing
(CUDA graph, inputs rotated past the L2), best of 2 rounds in turns.

    python bench/prototypes/width_scan_probe.py [--budget SECONDS] [--mode infer] [--widths 12288,12800,...]
    TRITON_INTERPRET=1 python bench/prototypes/width_scan_probe.py --check-only    # CPU: a small row, checked only
"""

from probe_common import ProbeRun, compare_on  # run from the repo root or this folder

from tuning.workload import Task

WIDTHS = [12288, 12800, 13312, 13824, 14336]
WHOLE = {"block_sizes": [1, 1], "num_stages": 1, "reduction_loops": [None]}
CONFIGS = {
    # 12800's shipped inference config (persistent, whole row, 8 warps) and 12288's
    # training one (whole row, 8 warps, per-axis grid).
    "whole w8 persistent": {**WHOLE, "num_warps": 8, "pid_type": "persistent_interleaved", "num_sm_multiplier": 4},
    "whole w8 xyz": {**WHOLE, "num_warps": 8, "pid_type": "xyz"},
    "whole w4 xyz": {**WHOLE, "num_warps": 4, "pid_type": "xyz"},
    "whole w16 xyz": {**WHOLE, "num_warps": 16, "pid_type": "xyz"},
    "whole w8 static": {**WHOLE, "num_warps": 8, "static": True},
    # 12288's inference config: two passes over 4096-wide chunks, 16 warps, 3 stages.
    "two-pass 4096 w16 s3": {"block_sizes": [4096, 1, 1], "num_stages": 3, "num_warps": 16, "pid_type": "xyz"},
    "two-pass 4096 w16 s3 static": {"block_sizes": [4096, 1, 1], "num_stages": 3, "num_warps": 16, "static": True},
    # 14336's: 2048-wide chunks.
    "two-pass 2048 w16 static": {"block_sizes": [2048, 1, 1], "num_stages": 1, "num_warps": 16, "static": True},
    "two-pass 8192 w16 static": {"block_sizes": [8192, 1, 1], "num_stages": 2, "num_warps": 16, "static": True},
}


def main() -> None:
    probe = ProbeRun()
    mode = probe.option("--mode") or "infer"
    dtype = probe.option("--dtype") or "bfloat16"
    widths = [int(w) for w in probe.option("--widths").split(",")] if probe.option("--widths") else WIDTHS
    m, configs = 4096, dict(CONFIGS)
    if probe.check_only:
        m, widths = 3, [640]
        configs = {k: {**v, "num_warps": 4} for k, v in configs.items() if "persistent" not in k}
    for n in widths:
        if probe.out_of_time():
            break
        # compare_on prints ratios against "shipped": name the first config so.
        named = {"shipped" if i == 0 else k: v for i, (k, v) in enumerate(configs.items())}
        compare_on(probe, Task("layer_norm", mode, m, n, dtype, 1), named, f"layer_norm/{mode}/{dtype}/{m}x{n} (shipped = {next(iter(configs))})")


if __name__ == "__main__":
    main()
