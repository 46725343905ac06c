"""Does converting bf16 to fp32 by bit moves pay? (bench/NOTES.md attempt 75)

Triton converts the high value of a register holding two bf16 values by a byte permute and
a shift; ``norm_kernels._f32`` does it by one mask (``widen``, passed by
``kernels.launch.fwd_kernel_args`` on CUDA). Offline, the read-only two-pass program at
bf16 4096x12800 went from 688 to 624 SASS instructions (fp16's count), the recast whole
row from 1048 to 904. Here each shipped bf16 forward entry of the given kernels, modes and
shapes is timed with and without it, in one process, in turns (tuner timing, best of 2).

    python bench/prototypes/widen_probe.py --kernels layer_norm,rms_norm --modes infer,fwd \
        --shapes 4096x4096,2048x32768 [--budget SECONDS]
"""

from probe_common import ProbeRun, best_gbps, runner_registers, shipped_entries  # run from the repo root or this folder

from kernels import launch
from tuning.workload import Task, Workload

SHIPPED = launch.fwd_kernel_args


def without_widen(config: dict, call: tuple) -> tuple:
    """``launch.fwd_kernel_args`` with ``widen`` (the first argument after the call's) False."""
    args = SHIPPED(config, call)
    return (*args[: len(call)], False, *args[len(call) + 1 :])


def main() -> None:
    probe = ProbeRun()
    kernels = (probe.option("--kernels") or "layer_norm").split(",")
    modes = (probe.option("--modes") or "infer").split(",")
    shapes = (probe.option("--shapes") or "4096x4096").split(",")
    entries = shipped_entries()
    for shape in shapes:
        for kernel in kernels:
            for mode in modes:
                if probe.out_of_time():
                    return
                key = f"{kernel}/{mode}/bfloat16/{shape}"
                if key not in entries:
                    continue
                m, n = map(int, shape.split("x"))
                wl = Workload(Task(kernel, mode, m, n, "bfloat16", 1), probe.device)
                config = entries[key]["config"]
                runs = {}
                for name, args_of in (("triton", without_widen), ("widen", SHIPPED)):
                    launch.fwd_kernel_args = args_of
                    try:
                        runs[name] = wl.runner(config)
                        wl.check(runs[name])
                    finally:
                        launch.fwd_kernel_args = SHIPPED
                best = best_gbps(wl, runs, rounds=2)
                regs = "/".join(runner_registers(runs[n]) for n in runs)
                print(f"{key:42s} triton {best['triton']:6.0f} widen {best['widen']:6.0f} GB/s  {best['widen'] / best['triton']:.3f}x  regs {regs}", flush=True)
                del wl, runs


if __name__ == "__main__":
    main()
