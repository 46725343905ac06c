"""Our tuner against Helion's own ``autotune_effort="quick"`` on the same kernel and inputs.

    python -m tuning.compare_helion --kernel rms_norm --modes fwd --shapes 4096x4096 2048x32768 \\
        --dtype bf16 --trials 24 --time-budget 40 --out tuning_out/compare

For each shape and mode: a fresh Optuna study (no cached warm start, its own journal
in --out) and Helion's quick autotuner on the kernel bound to the same arguments; each
winner is then checked against the float64 reference and timed the same way (kernel
time: a CUDA graph over rotating inputs). Prints GB/s and the wall time each search took.

Helion's autotuner compares every candidate's outputs with its default config's; in the
backward the dW/dB partial rows depend on m_block, so that check would reject every
other m_block: for bwd it runs with ``autotune_accuracy_check=False`` and the winner is
checked by us afterwards. Its dW/dB buffers have M rows, enough for any m_block.
GPU only: Helion's autotuner under Triton's interpreter would take hours.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tuning.compare_helion", description=__doc__.split("\n\n")[0])
    p.add_argument("--kernel", default="rms_norm")
    p.add_argument("--modes", nargs="+", default=["fwd"], choices=["fwd", "bwd"])
    p.add_argument("--shapes", nargs="+", default=["4096x4096"])
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--time-budget", type=float, default=40.0, help="seconds for our study")
    p.add_argument("--out", type=Path, default=Path("tuning_out/compare_helion"))
    return p.parse_args(argv)


def ours(task, device, args: argparse.Namespace, storage: Path) -> dict:
    from .tuner import TuneOptions, tune

    options = TuneOptions(
        n_trials=args.trials, time_budget_s=args.time_budget, storage=str(storage),
        out_dir=args.out, cache_path=None, cached_seed=False,
    )  # fmt: skip
    start = time.perf_counter()
    result = tune(task, device, options)
    wall = time.perf_counter() - start
    return {"gbps": result.gbps, "ms": result.ms, "wall_s": wall, "config": result.config,
            "trials": result.run_trials, "source": result.source, "error": result.error}  # fmt: skip


def helion_quick(task, device) -> dict:
    import helion

    from kernels import norm_kernels

    from .timing import FINAL_TIMING
    from .tuner import TuneOptions, measure
    from .workload import TrialError, Workload

    wl = Workload(task, device)
    fn = norm_kernels.norm_fwd if task.mode == "fwd" else norm_kernels.norm_bwd
    settings = {"static_shapes": False, "autotune_effort": "quick"}
    if task.mode == "bwd":
        settings["autotune_accuracy_check"] = False
    args = wl.kernel_args()
    bound = helion.kernel(fn, **settings).bind(args)
    start = time.perf_counter()
    try:
        config = dict(bound.autotune(args).config)
    except Exception as e:  # e.g. NoConfigFound
        return {"error": f"{type(e).__name__}: {e}", "wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    try:
        m = measure(wl, config, TuneOptions(), FINAL_TIMING)
    except TrialError as e:
        return {"error": f"its config fails our check: {e}", "wall_s": wall, "config": config}
    return {"gbps": m.gbps, "ms": m.ms, "wall_s": wall, "config": config}


def _row(task, mine: dict, theirs: dict) -> str:
    from .space import describe

    def side(r: dict) -> str:
        if r.get("gbps") is None:
            return f"{'-':>8} {r['wall_s']:7.1f}s  {r.get('error', '')[:60]}"
        return f"{r['gbps']:8.0f} {r['wall_s']:7.1f}s  {describe(r['config'], task.mode)}"

    return f"{task.mode:4} {task.shape:>11} | ours {side(mine)} | helion-quick {side(theirs)}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HELION_SKIP_CACHE", "1")  # time a real search, not a cache hit
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("compare_helion needs a CUDA GPU")
    from .sweep import DTYPES
    from .workload import Task

    device = torch.device("cuda", 0)
    args.out.mkdir(parents=True, exist_ok=True)
    storage = args.out / f"optuna-{int(time.time())}.journal"  # fresh studies every run
    records, lines = [], []
    for shape in args.shapes:
        m, n = (int(v) for v in shape.lower().split("x"))
        for mode in args.modes:
            task = Task(args.kernel, mode, m, n, DTYPES[args.dtype])
            mine, theirs = ours(task, device, args, storage), helion_quick(task, device)
            lines.append(_row(task, mine, theirs))
            print(lines[-1], flush=True)
            records.append({"task": task.label, "ours": mine, "helion_quick": theirs})
    print(
        f"\n{args.kernel} {args.dtype}: GB/s (TritonBench bytes, kernel time over rotating inputs) and search wall time",
        *lines,
        sep="\n",
    )
    (args.out / "compare_helion.json").write_text(json.dumps(records, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
