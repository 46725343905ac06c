"""What static shapes buy the forward now (bench/NOTES.md Next 4 and 8; attempt 42).

Attempts 24 and 29 measured the forward compiled with Helion's ``static_shapes=True``
(M, the strides and K compile-time constants) 2-9% ahead of the shipped dynamic-M
program on wide LayerNorm rows; that was before the per-axis grid (attempt 33, which
took M out of the kernel's arguments) and the re-tunes since. Inductor, the peer we tie
on LayerNorm 4096x8192/16384, compiles per shape.

For each (kernel, mode, shape): the shipped config compiled as shipped (dynamic M and
strides) and the same config with static shapes, timed the tuner's way (CUDA graph over
rotating sets, kernel time) in turns; the ratio static / dynamic, then its geomean.

    python bench/prototypes/static_probe.py [--dtype bfloat16]
"""

from statistics import geometric_mean
import sys

import helion
import torch

from kernels import launch
from kernels import norm_kernels as nk
from tuning import timing
from tuning.workload import Task, Workload

SHAPES = [(4096, 1024), (4096, 4096), (8192, 4096), (32768, 4096), (4096, 8192), (4096, 16384), (2048, 32768)]
STATIC = {
    "fwd": helion.kernel(nk.norm_fwd, static_shapes=True, autotune_effort="none"),
    "fwd_chunked": helion.kernel(nk.norm_fwd_chunked, static_shapes=True, autotune_effort="none"),
}


def main() -> None:
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # CPU: a smoke test (TRITON_INTERPRET=1)
    dtype = sys.argv[sys.argv.index("--dtype") + 1] if "--dtype" in sys.argv else "bfloat16"
    shapes = SHAPES if dev.type == "cuda" else [(64, 512)]
    ratios: dict[str, list[float]] = {}
    for mode in ("infer", "fwd"):
        for kernel in ("layer_norm", "rms_norm"):
            for m, n in shapes:
                wl = Workload(Task(kernel, mode, m, n, dtype), dev)
                config = launch.choose_config(kernel, mode, m, n, 1, getattr(torch, dtype), dev)
                dynamic = wl.runner(config)
                args = [launch.fwd_kernel_args(config, wl._fwd_args(s)) for s in wl.sets]
                fixed = STATIC[launch.fwd_kernel_name(config)].bind(args[0]).compile_config(helion.Config(**config))
                static = lambda i, fixed=fixed, args=args: fixed(*args[i])  # noqa: E731
                errs = [wl.check(dynamic), wl.check(static)]
                ms = timing.interleaved_ms([dynamic, static], len(wl.sets), dev)
                g = [wl.model_bytes() / t / 1e6 for t in ms]
                ratios.setdefault(f"{kernel} {mode}", []).append(g[1] / g[0])
                print(
                    f"{kernel:10s} {mode:5s} {dtype} {m}x{n}: dynamic {g[0]:5.0f}  static {g[1]:5.0f} GB/s"
                    f"  {g[1] / g[0]:.3f}x  err {errs[0]:.2g}/{errs[1]:.2g}  {config}",
                    flush=True,
                )
    for key, r in ratios.items():
        print(f"geomean static/dynamic {key}: {geometric_mean(r):.3f}", flush=True)


if __name__ == "__main__":
    main()
