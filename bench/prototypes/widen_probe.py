"""Does converting bf16 to fp32 by bit moves pay? (bench/NOTES.md attempt 75)

Triton converts the high value of a register holding two bf16 values by a byte permute and
a shift; ``norm_kernels._f32`` does it by one mask (``widen``, passed by
``kernels.launch.fwd_kernel_args`` on CUDA). Offline, the read-only two-pass program at
bf16 4096x12800 went from 688 to 624 SASS instructions (fp16's count), the recast whole
row from 1048 to 904. Here each shipped bf16 forward (or backward: mode ``bwd``, the
backward's ``launch.bwd_widen``) entry of the given kernels, modes and
shapes is timed with and without it, in one process, in turns (tuner timing, best of 2).

    python bench/prototypes/widen_probe.py --kernels layer_norm,rms_norm --modes infer,fwd,bwd \
        --shapes 4096x4096,2048x32768 [--budget SECONDS]
"""

from probe_common import ProbeRun, best_gbps, runner_registers, shipped_entries, shipped_tasks  # run from the repo root or this folder

from kernels import launch
from tuning.workload import Workload

SHIPPED = launch.fwd_kernel_args
SHIPPED_BWD = launch.bwd_widen


def with_widen(widen: bool, backward: bool) -> None:
    """Force the forward's or the backward's ``widen`` (whatever launch's rule says) for
    the runners built next; the forward's is the first argument after the call's."""
    if backward:
        launch.bwd_widen = lambda config, x: widen
    else:
        launch.fwd_kernel_args = lambda config, call: (*(a := SHIPPED(config, call))[: len(call)], widen, *a[len(call) + 1 :])


def restore() -> None:
    launch.fwd_kernel_args, launch.bwd_widen = SHIPPED, SHIPPED_BWD


def main() -> None:
    probe = ProbeRun()
    kernels = (probe.option("--kernels") or "layer_norm").split(",")
    modes = (probe.option("--modes") or "infer").split(",")
    shapes = (probe.option("--shapes") or "4096x4096").split(",")
    entries = shipped_entries()
    keys = [f"{kernel}/{mode}/bfloat16/{shape}" for shape in shapes for kernel in kernels for mode in modes]
    for key, task in shipped_tasks(probe, entries, keys):
        wl = Workload(task, probe.device)
        config = entries[key]["config"]
        runs = {}
        for name, widen in (("triton", False), ("widen", True)):
            with_widen(widen, backward=task.mode == "bwd")
            try:
                runs[name] = wl.runner(config)
                wl.check(runs[name])
            finally:
                restore()
        best = best_gbps(wl, runs, rounds=2)
        regs = "/".join(runner_registers(runs[n]) for n in runs)
        print(f"{key:42s} triton {best['triton']:6.0f} widen {best['widen']:6.0f} GB/s  {best['widen'] / best['triton']:.3f}x  regs {regs}", flush=True)
        del wl, runs


if __name__ == "__main__":
    main()
