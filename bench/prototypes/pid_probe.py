"""The grid's program-id decode, A/B (bench/NOTES.md Next 2 and 6). Helion's default
``pid_type="flat"`` launches a 1-D grid and splits ``program_id(0)`` into the tile
indices with a runtime ``%`` and ``//`` by the number of row tiles (M is dynamic);
``"xyz"`` launches one grid axis per tiled dim, so the kernel reads its tile indices
straight from ``program_id(0..2)`` and M is no longer an argument. Everything else in
the generated code is the same (checked on the CPU).

    python bench/prototypes/pid_probe.py [--budget SECONDS]

Each (kernel, mode, shape) runs its shipped config as cached ("flat") and with
``pid_type="xyz"``, timed A B A B by the tuner's timing (CUDA graph over rotating
sets); the better of each pair is printed, then the geomean per mode.
"""
from statistics import geometric_mean
import sys
import time

import torch

from kernels import launch
from tuning import timing
from tuning.workload import Task, Workload

SHAPES = [(4096, 1024), (4096, 4096), (8192, 4096), (32768, 4096), (4096, 8192), (4096, 16384), (2048, 32768)]
TB_RMS = [(2048, 1024), (2048, 2048), (2048, 4096), (2048, 8192)]


def gbps(wl: Workload, run) -> float:  # noqa: ANN001
    return wl.model_bytes() / timing.time_ms(run, len(wl.sets), wl.device) / 1e6


def main() -> None:
    budget = float(sys.argv[sys.argv.index("--budget") + 1]) if "--budget" in sys.argv else 1e9
    start = time.perf_counter()
    dev = torch.device("cuda")
    cases = [(k, "infer", s) for k in ("rms_norm", "layer_norm") for s in SHAPES + TB_RMS]
    cases += [(k, "bwd", s) for k in ("layer_norm", "rms_norm") for s in SHAPES]
    cases += [(k, "fwd", s) for k in ("layer_norm", "rms_norm") for s in SHAPES]
    ratios: dict[str, list[float]] = {}
    for kernel, mode, (m, n) in cases:
        if time.perf_counter() - start > budget:
            print("budget spent", flush=True)
            break
        wl = Workload(Task(kernel, mode, m, n, "bfloat16", 1), dev)
        flat = dict(launch.choose_config(kernel, mode, m, n, 1, torch.bfloat16, dev))
        if flat.get("pid_type", "flat") != "flat":
            print(f"{kernel:10s} {mode:5s} {m}x{n:<6d} skipped: {flat['pid_type']}", flush=True)
            continue
        try:
            runs = {"flat": wl.runner(flat), "xyz": wl.runner({**flat, "pid_type": "xyz"})}
            for run in runs.values():
                wl.check(run)
            best = {name: 0.0 for name in runs}
            for _ in range(2):
                for name, run in runs.items():
                    best[name] = max(best[name], gbps(wl, run))
        except Exception as e:  # noqa: BLE001
            print(f"{kernel:10s} {mode:5s} {m}x{n:<6d} FAIL {str(e)[:120]}", flush=True)
            continue
        r = best["xyz"] / best["flat"]
        ratios.setdefault(mode, []).append(r)
        print(f"{kernel:10s} {mode:5s} {m}x{n:<6d} flat {best['flat']:6.0f} xyz {best['xyz']:6.0f} ({(r - 1) * 100:+5.1f}%)  {flat}", flush=True)
    for mode, rs in ratios.items():
        print(f"{mode}: geomean xyz/flat {geometric_mean(rs):.4f} over {len(rs)} rows", flush=True)


if __name__ == "__main__":
    main()
