"""Why the tuner and the benchmark rank some small-input configs apart (bench/NOTES.md
Next 5): output buffers.

The tuner gives each rotating input set its own outputs, so every call writes a fresh
buffer. The benchmark times the API call inside a CUDA graph: each call allocates its
output, the graph's pool hands the same block back once the previous output is dropped,
and every call writes the same addresses (as a model's caching allocator mostly does).
On inputs near the L2's size the two can favour different configs. Here pairs of configs
that the two disagreed on are timed in turns both ways, three times over.

    python bench/prototypes/output_rotation_probe.py
"""

import torch

from tuning import timing
from tuning.workload import Task, Workload

OUTPUTS = ("out", "h_out", "mean", "rstd", "dx", "dz")

# (task, {name: config}): the configs the tuner picked and the one the benchmark preferred.
CASES = [
    (Task("layer_norm", "infer", 4096, 1024, "float32"), {
        "w4 (b776ebc, bench 3882)": {"block_sizes": [4, 1], "num_stages": 1, "num_warps": 4, "pid_type": "xyz", "reduction_loops": [None]},
        "w2 (44ab899, bench 3632)": {"block_sizes": [4, 1], "num_stages": 1, "num_warps": 2, "pid_type": "xyz", "reduction_loops": [None]},
    }),
    (Task("rms_norm", "infer", 2048, 1024, "bfloat16"), {
        "rows2 w8 first (shipped)": {"block_sizes": [2, 1], "load_eviction_policies": ["first"] * 6, "num_stages": 1, "num_warps": 8, "pid_type": "xyz", "reduction_loops": [None]},
        "rows1 w4 (re-sweep, -5.4% in bench)": {"block_sizes": [1, 1], "num_stages": 1, "num_warps": 4, "pid_type": "xyz", "reduction_loops": [None]},
    }),
    (Task("layer_norm", "infer", 2048, 32768, "float32"), {
        "persistent w32 (b776ebc, bench 3660)": {"block_sizes": [1, 1], "load_eviction_policies": ["last"] * 9, "num_sm_multiplier": 2, "num_stages": 2, "num_warps": 32, "pid_type": "persistent_blocked", "reduction_loops": [None]},
        "flat w32 (44ab899, bench 3551)": {"block_sizes": [1, 1], "num_stages": 1, "num_warps": 32, "reduction_loops": [None]},
    }),
]


def share_outputs(wl: Workload) -> None:
    """Every input set writes set 0's outputs, as the benchmark's graph does."""
    first = wl.sets[0]
    for s in wl.sets[1:]:
        for name in OUTPUTS:
            if s.get(name) is not None:
                s[name] = first[name]


def main() -> None:
    dev = torch.device("cuda")
    for task, configs in CASES:
        for shared in (False, True):
            wl = Workload(task, dev)
            if shared:
                share_outputs(wl)
            runs = [wl.runner(c) for c in configs.values()]
            for run in runs:
                wl.check(run)
            rows = [timing.interleaved_ms(runs, len(wl.sets), dev, timing.FINAL_TIMING) for _ in range(3)]
            label = "shared outputs  " if shared else "rotating outputs"
            for j, name in enumerate(configs):
                gbps = [wl.model_bytes() / r[j] / 1e6 for r in rows]
                print(f"{task.label:34s} {label} sets={len(wl.sets):2d} {name:38s} " + " ".join(f"{g:6.0f}" for g in gbps), flush=True)
            del wl, runs
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
