"""``python -m tuning.sweep``: tune kernels x modes x dtypes x shapes and fill the config cache.

Examples::

    # the GPU host's table, bf16, both norms, training fwd and bwd, ~6 minutes on one H200
    python -m tuning.sweep --kernels layer_norm rms_norm --modes fwd bwd --dtypes bf16 \\
        --shapes gpu_host --trials 30 --wall-budget 330 --workers 4 \\
        --cache tuning/configs/ --out tuning_out/h200

    # explicit shapes, resumable: run it again to continue the same studies
    python -m tuning.sweep --kernels rms_norm --shapes 4096x4096 8192x4096 --trials 40

Each study samples ``--trials`` configs, then searches locally around its fastest ones
(``--refine`` rounds), then re-times its finalists against the cache's incumbents.

Modes: ``fwd`` the training forward (it saves the statistics the backward reads),
``infer`` the forward of a call without grad, ``bwd`` the backward; all three by default.

One Optuna study per (kernel, mode, shape, dtype, GPU model) in ``--storage`` (default:
a journal file in ``--out``). Work is spread over ``--workers`` processes, each pinned to
one GPU with CUDA_VISIBLE_DEVICES (round robin; several workers per GPU compile in
parallel and take turns to time). On a CPU-only machine the kernels run under Triton's
interpreter (TRITON_INTERPRET=1 is set if triton is not imported yet): tiny shapes only.

Writes to ``--out``: results.json, table.txt, gbps_by_shape.png, optimization_history.png;
and merges each result into ``--cache`` (default: $TILENORM_CACHE or
``--out/<gpu>.json``; the shipped cache is ``tuning/configs/<gpu>.json``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime
import json
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path

from . import shapes

# Nothing here may touch CUDA at import time: worker processes import this module and
# only then get their CUDA_VISIBLE_DEVICES.

PRESETS = {
    "tritonbench": {"layer_norm": shapes.TRITONBENCH_LAYER_NORM, "rms_norm": shapes.TRITONBENCH_RMS_NORM},
    "llm": shapes.LLM,
    "gpu_host": shapes.GPU_HOST,
    "decode": shapes.DECODE,
}
DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16", "half": "float16",
          "fp32": "float32", "float32": "float32", "float": "float32"}  # fmt: skip
# tuning.cache.MODES, spelled out: this module imports nothing heavy before it must.
MODES = ("fwd", "infer", "bwd")
FINAL_OVERHEAD_S = 10.0  # per study: final measurements (finalists, heuristic, torch), cache write
STARTUP_S = 20.0  # worker start: imports, first compile


# ------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tuning.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--kernels",
        nargs="+",
        default=["layer_norm", "rms_norm"],
        help="tuning names (kernels.launch.Variant.tuning_name)",
    )
    p.add_argument(
        "--modes", nargs="+", default=list(MODES), choices=MODES,
        help="fwd: training forward (saves the statistics); infer: forward without grad; bwd",
    )
    p.add_argument("--dtypes", nargs="+", default=["bf16"], help="bf16 fp16 fp32")
    p.add_argument(
        "--shapes", nargs="+", default=["gpu_host"], help=f"presets ({', '.join(PRESETS)}) and/or MxN"
    )
    p.add_argument("--groups", type=int, default=None, help="groups for *_grouped kernels (default 8)")
    p.add_argument("--trials", type=int, default=20, help="sampled configs per study, in total over runs")
    p.add_argument(
        "--refine", type=int, default=None,
        help="rounds of local search around the fastest configs (their neighbours) after the sampled"
        " trials, then their cache-hint siblings (default: tuner.REFINE_ROUNDS; 0: neither)",
    )  # fmt: skip
    p.add_argument("--time-budget", type=float, default=None, help="seconds per study per run")
    p.add_argument(
        "--wall-budget",
        type=float,
        default=None,
        help="seconds for the whole sweep: sets the per-study budget and a deadline",
    )
    p.add_argument("--sampler", default="tpe", choices=["tpe", "random", "grid"])
    p.add_argument(
        "--storage", default=None, help="Optuna storage URL or journal file (default: OUT/optuna.journal)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes (default: one per visible GPU; 0: in this process)",
    )
    p.add_argument(
        "--cache", type=Path, default=None,
        help="config cache to merge results into: a .json file, or a folder (its <gpu>.json)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("tuning_out"), help="output folder")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--trial-timeout", type=float, default=180.0, help="seconds per compile+check or measurement"
    )
    p.add_argument(
        "--roof-gbps", type=float, default=None, help="copy roof for the %% column (default 4248 on CUDA)"
    )
    p.add_argument(
        "--sets", type=int, default=None, help="rotating input sets (default: enough to exceed 2x L2)"
    )
    return p.parse_args(argv)


def parse_shapes(tokens: list[str], kernel: str) -> list[tuple[int, int]]:
    """Presets and MxN tokens (comma- or space-separated) -> (M, N) list, in order, unique."""
    found: list[tuple[int, int]] = []
    for token in (t for arg in tokens for t in arg.split(",") if t):
        preset = PRESETS.get(token)
        if isinstance(preset, dict):
            family = "rms_norm" if "rms_norm" in kernel else "layer_norm"
            found += preset[family]
        elif preset is not None:
            found += preset
        else:
            try:
                found.append(shapes.parse_shape(token))
            except ValueError:
                raise SystemExit(
                    f"--shapes: {token!r} is neither a preset ({', '.join(PRESETS)}) nor MxN"
                ) from None
    return list(dict.fromkeys(found))


def make_tasks(args: argparse.Namespace) -> list:
    from .workload import Task, default_groups, variant_for

    tasks = []
    for kernel in args.kernels:
        try:
            variant_for(kernel)
        except ValueError as e:
            raise SystemExit(f"--kernels: {e}") from None
        for dtype in args.dtypes:
            if dtype not in DTYPES:
                raise SystemExit(f"--dtypes: unknown {dtype!r} (bf16, fp16, fp32)")
            for m, n in parse_shapes(args.shapes, kernel):
                groups = (
                    args.groups if kernel.endswith("_grouped") and args.groups else default_groups(kernel, n)
                )
                tasks += [Task(kernel, mode, m, n, DTYPES[dtype], groups) for mode in args.modes]
    # Largest first: the long studies start early, the short ones fill the gaps.
    return sorted(tasks, key=lambda t: -t.m * t.n)


# --------------------------------------------------------------------------- workers

_poisoned = False


def _worker_init(gpu_queue, triton_on_cpu: bool) -> None:
    gpu = gpu_queue.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if triton_on_cpu:
        import kernels

        kernels.set_cpu_backend("triton")


def _device():
    import torch

    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def run_task(task, options) -> dict:
    """Tune one task in this process; an error becomes the result's ``error``."""
    global _poisoned
    if _poisoned:
        os._exit(3)  # a pool worker whose CUDA context is dead: the parent starts a fresh one
    from .tuner import PHASES, FatalDeviceError, TuneResult, study_name, tune

    device = _device()
    try:
        for phase in PHASES:
            PHASES[phase] = 0.0
        result = tune(task, device, options).to_json()
        result["worker"] = _worker_record(device)
        return result
    except FatalDeviceError as e:
        _poisoned = True
        error = str(e)
    except Exception as e:
        traceback.print_exc()  # the table shows one line; the log keeps the traceback
        error = f"{type(e).__name__}: {e}"
    from . import cache

    gpu = cache.gpu_model(device)
    return TuneResult(task=task, gpu=gpu, study=study_name(task, gpu), error=error).to_json()


def _worker_record(device) -> dict:  # noqa: ANN001
    """Which process and GPU ran a study, and where its time went (see tuner.PHASES)."""
    from . import timing
    from .tuner import PHASES

    return {
        "pid": os.getpid(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "device": timing._device_id(device),
        **{k: round(v, 2) for k, v in PHASES.items()},
    }


def _visible_gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    return ids[: torch.cuda.device_count()] or [str(i) for i in range(torch.cuda.device_count())]


def run_pool(tasks: list, options, workers: int, gpus: list[str], on_result) -> list[dict]:
    """Run tasks on ``workers`` spawned processes; a crashed pool is restarted for what is left."""
    ctx = multiprocessing.get_context("spawn")
    pending, results, rounds = list(tasks), [], 0
    while pending and rounds < 3:
        rounds += 1
        gpu_queue = ctx.Queue()
        for i in range(workers):
            gpu_queue.put(gpus[i % len(gpus)] if gpus else None)
        init_args = (gpu_queue, not gpus)
        with cf.ProcessPoolExecutor(
            min(workers, len(pending)), mp_context=ctx, initializer=_worker_init, initargs=init_args
        ) as pool:
            futures = {pool.submit(run_task, task, options): task for task in pending}
            for future in cf.as_completed(futures):
                try:
                    result = future.result()
                except cf.process.BrokenProcessPool:
                    continue  # retried in the next round
                pending.remove(futures[future])
                results.append(result)
                on_result(result)
    for task in pending:
        from .tuner import TuneResult

        result = TuneResult(task=task, gpu="?", study="?", error="worker process died (3 attempts)").to_json()
        results.append(result)
        on_result(result)
    return results


# -------------------------------------------------------------------------- progress


class Progress:
    """rich's or tqdm's progress bar when installed, else a line per finished study."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self._bar, self._rich = total, 0, None, None
        try:
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(*RichProgress.get_default_columns(), transient=False)
            self._rich.start()
            self._bar = self._rich.add_task("tuning", total=total)
        except ImportError:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc="tuning")
            except ImportError:
                pass

    def update(self, result: dict) -> None:
        self.done += 1
        t = result["task"]
        if result.get("gbps"):
            outcome = (
                f"{result['gbps']:.4g} GB/s, {result['trials']} trials"
                f" ({result.get('refined', 0)} local), {result['source']} config"
            )
        else:
            outcome = (result.get("error") or "no result")[:80]
        line = f"{t['kernel']} {t['mode']} {t['dtype']} {t['m']}x{t['n']}: {outcome}"
        if self._rich is not None:
            self._rich.update(self._bar, advance=1, description=line[:60])
            self._rich.console.print(f"[{self.done}/{self.total}] {line}")
        elif self._bar is not None:
            self._bar.update(1)
            self._bar.write(f"[{self.done}/{self.total}] {line}")
        else:
            print(f"[{self.done}/{self.total}] {line}", flush=True)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
        elif self._bar is not None:
            self._bar.close()


# ------------------------------------------------------------------------------ main


def _prepare_cpu() -> None:
    """No GPU: run the generated Triton code under Triton's interpreter (must precede importing triton)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return
    if "triton" in sys.modules:
        raise SystemExit("no CUDA device: set TRITON_INTERPRET=1 before triton is imported")
    os.environ["TRITON_INTERPRET"] = "1"


def _budgets(
    args: argparse.Namespace, n_tasks: int, workers: int, start: float
) -> tuple[float | None, float | None]:
    """(per-study time budget, deadline) from --time-budget and --wall-budget."""
    if args.wall_budget is None:
        return args.time_budget, None
    lanes = max(1, workers)
    per_study = (args.wall_budget - STARTUP_S) * lanes / max(1, n_tasks) - FINAL_OVERHEAD_S
    per_study = max(5.0, per_study)
    if args.time_budget is not None:
        per_study = min(per_study, args.time_budget)
    return per_study, start + args.wall_budget - FINAL_OVERHEAD_S


def _check_cache_writable(path: Path, gpu: str) -> None:
    """Fail before hours of tuning if the cache file cannot take the results."""
    from . import cache

    try:
        cache.read_document(path, gpu)
    except cache.CacheFileError as e:
        raise SystemExit(
            f"--cache: {e}; refusing to overwrite it (move it away or pick another path)"
        ) from None


def _save(results: list[dict], args: argparse.Namespace, gpu: str, roof: float | None, wall_s: float) -> None:
    from . import report
    from .tuner import versions

    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "gpu": gpu,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": versions(),
        "wall_s": wall_s,
        "argv": sys.argv[1:],
        "results": results,
    }
    (args.out / "results.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (args.out / "table.txt").write_text(report.format_table(results, roof) + "\n")
    report.print_table(results, roof)
    for path in report.save_plots(results, args.out, roof):
        print(f"plot: {path}")
    print(f"results: {args.out / 'results.json'}  ({wall_s:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    start = time.time()
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        _prepare_cpu()
    from . import cache
    from .tuner import TuneOptions

    tasks = make_tasks(args)
    gpus = _visible_gpus()
    workers = (len(gpus) or 1) if args.workers is None else args.workers
    device = _device()
    gpu = cache.gpu_model(device)
    if args.cache is None:
        args.cache = cache.user_cache_path(gpu) or args.out / f"{gpu}.json"
    elif args.cache.is_dir() or args.cache.suffix != ".json":
        args.cache = args.cache / f"{gpu}.json"  # a folder of caches: this GPU model's file
    _check_cache_writable(args.cache, gpu)
    time_budget, deadline = _budgets(args, len(tasks), workers, start)
    refine = {} if args.refine is None else {"refine_rounds": args.refine}
    options = TuneOptions(
        n_trials=args.trials, time_budget_s=time_budget, deadline=deadline, sampler=args.sampler,
        storage=args.storage, out_dir=args.out, cache_path=args.cache, seed=args.seed,
        trial_timeout_s=args.trial_timeout, n_sets=args.sets, **refine,
    )  # fmt: skip
    budget = f", {time_budget:.0f} s per study" if time_budget else ""
    print(f"{len(tasks)} studies on {gpu}, {workers or 1} worker(s){budget}; cache: {args.cache}", flush=True)
    progress = Progress(len(tasks))
    try:
        if workers == 0:
            if device.type == "cpu":
                import kernels

                kernels.set_cpu_backend("triton")
            results = []
            for task in tasks:
                results.append(run_task(task, options))
                progress.update(results[-1])
                if _poisoned:
                    print("the CUDA context is unusable after a failed config: stopping; run again to resume")
                    break
        else:
            results = run_pool(tasks, options, workers, gpus, progress.update)
    finally:
        progress.close()
    roof = args.roof_gbps if args.roof_gbps is not None else (4248.0 if device.type == "cuda" else None)
    _save(results, args, gpu, roof, time.time() - start)
    return 0 if all(r.get("config") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
