"""The two-pass forward's pilot width, training (mean and rstd stored) against inference
(bench/NOTES.md attempts 29 d and 61): ``norm_fwd_chunked`` at the shipped inference
config of each shape, both modes, with a 16-value pilot and a one-chunk pilot, through
the tuner's own compile, check and timing (graph, rotating sets), in two rounds.

Attempt 29 found every pilot narrower than the chunk made the training program ~14x
slower (output in bench/results/2026-11-22_h200_pilot_train_probe.txt). Attempt 61 found
why offline (bench/prototypes/offline_sm90.py --forward): the pilot, a [rows, groups]
value carried out of its one-step loop, took the 2-D layout of the mean's store, and
Triton broadcast it to the chunk before converting it, through shared memory, 2052
st.shared per thread. Kept [rows, groups, 1] it stays in the chunk's layout.

    python bench/prototypes/pilot_train_probe.py [MODE ...]    # CUDA only; fwd infer by default
"""

import json
import sys

import torch

from probe_common import with_pilot  # run from the repo root or this folder

from kernels import launch
from tuning import timing
from tuning.workload import Task, Workload

SHAPES = (
    ("bfloat16", 2048, 32768), ("float16", 2048, 32768), ("bfloat16", 4096, 16384), ("bfloat16", 4096, 8192),
    ("bfloat16", 4096, 15872), ("bfloat16", 4096, 14848), ("bfloat16", 4096, 12288),
)  # fmt: skip
SHIPPED = launch.fwd_kernel_args


def forcing_pilot(width: int | None):
    """``launch.fwd_kernel_args`` with the chunked forward's pilot width forced (None: one chunk)."""
    return lambda config, call: with_pilot(config, SHIPPED(config, call), width)


def main() -> None:
    dev = torch.device("cuda")
    entries = json.load(open("tuning/configs/nvidia_h200.json"))["entries"]
    for rnd in (1, 2):
        for dtype, m, n in SHAPES:
            config = entries[f"layer_norm/infer/{dtype}/{m}x{n}"]["config"]
            for mode in sys.argv[1:] or ("fwd", "infer"):
                wl = Workload(Task("layer_norm", mode, m, n, dtype, 1), dev)
                for pilot in (16, None):
                    launch.fwd_kernel_args = forcing_pilot(pilot)
                    run = wl.runner(config)
                    err = wl.check(run)
                    ms = timing.time_ms(run, len(wl.sets), dev)
                    print(
                        f"round {rnd} {dtype:8s} {m}x{n} {mode:5s} pilot {pilot or 'chunk':>5}: "
                        f"{wl.model_bytes() / ms / 1e6:6.0f} GB/s ({ms * 1e3:6.1f} us) err {err:.3g}",
                        flush=True,
                    )
    launch.fwd_kernel_args = SHIPPED
    print("configs:", {f"{m}x{n} {d}": entries[f"layer_norm/infer/{d}/{m}x{n}"]["config"] for d, m, n in SHAPES})


if __name__ == "__main__":
    main()
