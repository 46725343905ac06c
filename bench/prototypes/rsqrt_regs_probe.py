"""Why the approximate rsqrt slowed the gated and add+RMSNorm forwards (bench/NOTES.md
attempts 51 and 53) while it sped plain RMSNorm's up.

Read on the CPU with triton 3.6's ptxas (the device's compiler), the gated inference program
at 4096x8192 (8 warps) takes 68 registers per thread with ``tl.rsqrt`` and 64 with the IEEE
sqrt and division: past 64, a 256-thread program no longer fits 4 times in an SM's 64K
registers (3 programs, 24 warps instead of 32), so fewer rows are in flight. If that is the
cause, capping the registers (Helion's ``maxnreg``, which the tuner does not offer) should
give the rsqrt program back its speed.

    python bench/prototypes/rsqrt_regs_probe.py [--budget SECONDS] [--check-only]

Per shape (bf16 inference forward, the shipped config), timed by the tuner's timing (CUDA
graph over rotated inputs) in turns, best of 3: ``ieee`` (what ships for gated/add),
``rsqrt``, and ``rsqrt`` with ``maxnreg`` 64 and 128; GB/s by the forward byte model, each
config's registers per thread (the compiled program's ``n_regs``) beside it. Helion 1.4
accepts ``maxnreg`` only with a persistent ``pid_type``, so the capped variants fail on the
other configs (reported, not timed).

Result (H200, 2026-11-23, ``bench/results/2026-11-23_h200_rsqrt_regs_probe.txt``): not the
registers. The gated rsqrt programs lost 10-17% with the same count as the IEEE ones
(4096x1024 40/40, 4096x16384 64/64, 128x8192 40/37); see NOTES attempt 53.
"""

import torch
from probe_common import ProbeRun, best_gbps, registers

from kernels import launch
from tuning.workload import Task, TrialError, Workload

SHAPES = [
    ("gated_rms_norm", 4096, 1024), ("gated_rms_norm", 4096, 4096), ("gated_rms_norm", 4096, 8192),
    ("gated_rms_norm", 4096, 16384), ("gated_rms_norm", 32, 8192), ("gated_rms_norm", 128, 8192),
    ("add_rms_norm", 4096, 1024), ("rms_norm", 4096, 1024), ("rms_norm", 4096, 8192),
]  # fmt: skip
VARIANTS = {"ieee": (False, None), "rsqrt": (True, None), "rsqrt/r64": (True, 64), "rsqrt/r128": (True, 128)}


def runner(wl: Workload, config: dict, fast: bool, maxnreg: int | None):  # noqa: ANN201
    """run(i) of ``config`` with ``fast_rsqrt`` (the last argument) forced to ``fast`` and the register cap."""
    if maxnreg is not None:
        config = {**config, "maxnreg": maxnreg}
    args = [(*launch.fwd_kernel_args(config, wl._fwd_args(s))[:-1], fast) for s in wl.sets]
    bound = launch._kernels(False)[launch.fwd_kernel_name(config)].bind(args[0])
    compiled = bound.compile_config(launch._fit(config, bound))
    run = lambda i: compiled(*args[i])  # noqa: E731
    run.compiled = compiled
    return run


def main() -> None:
    probe = ProbeRun()
    dev = probe.device
    shapes = SHAPES if probe.on_gpu else [("gated_rms_norm", 8, 256), ("add_rms_norm", 4, 512)]
    variants = VARIANTS if probe.on_gpu else {k: v for k, v in VARIANTS.items() if v[1] is None}
    for op, m, n in shapes:
        if probe.out_of_time():
            return
        wl = Workload(Task(op, "infer", m, n, "bfloat16", 1), dev, n_sets=None if probe.on_gpu else 2)
        shipped = dict(launch.choose_config(op, "infer", m, n, 1, torch.bfloat16, dev))
        runs, errors = {}, {}
        for name, (fast, cap) in variants.items():
            try:
                run = runner(wl, shipped, fast, cap)
                errors[name] = wl.check(run)
                runs[name] = run
            except (TrialError, Exception) as e:  # noqa: BLE001 - report and go on
                print(f"  {name}: failed ({type(e).__name__}: {str(e)[:150]})", flush=True)
        worst = max(errors.values(), default=float("nan"))
        print(f"{op} infer {m}x{n} bf16 {shipped}; worst relative error {worst:.2g}", flush=True)
        if probe.check_only:
            print("  registers: " + ", ".join(f"{k} {registers(r.compiled)}" for k, r in runs.items()), flush=True)
            continue
        best = best_gbps(wl, runs, rounds=3)
        base = best.get("ieee") or 1.0
        print("  " + "  ".join(f"{k} {v:.0f} ({v / base:.3f}, {registers(runs[k].compiled)} regs)"
                               for k, v in best.items()), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
