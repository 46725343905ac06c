"""What the probes share: their command line (``--budget SECONDS``, ``--check-only``), the
device they run on, the tuner-timed comparison of several runners on one workload, and
the registers per thread of what a runner launched."""

import json
import sys
import time

import torch

from tuning import timing
from tuning.workload import Task, TrialError, Workload


class ProbeRun:
    """A probe's options and clock: ``budget`` seconds in all (default: no limit),
    ``check_only`` (check against float64 and stop: also runs on the CPU under Triton's
    interpreter), the device (CUDA when there is one)."""

    def __init__(self, argv: list[str] | None = None) -> None:
        argv = sys.argv if argv is None else argv
        self.argv = argv
        self.budget = float(argv[argv.index("--budget") + 1]) if "--budget" in argv else float("inf")
        self.check_only = "--check-only" in argv
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.on_gpu = self.device.type == "cuda"
        self._start = time.perf_counter()

    def option(self, name: str) -> str | None:
        """The value after ``name`` on the command line, or None."""
        return self.argv[self.argv.index(name) + 1] if name in self.argv else None

    def task_options(self) -> tuple[str, str]:
        """(dtype, mode) from ``--dtype`` (default bfloat16) and ``--mode`` (default infer)."""
        return self.option("--dtype") or "bfloat16", self.option("--mode") or "infer"

    def out_of_time(self) -> bool:
        if time.perf_counter() - self._start <= self.budget:
            return False
        print("budget spent", flush=True)
        return True


# The other 16-bit dtype, whose entry a 16-bit lookup without its own takes.
SIBLING = {"bfloat16": "float16", "float16": "bfloat16"}


def shipped_tasks(probe: ProbeRun, entries: dict[str, dict], keys: list[str]):  # noqa: ANN201
    """(key, Task) for each cache key ("kernel/mode/dtype/MxN") that has a shipped entry
    (the others reported), until the probe's budget is spent."""
    for key in keys:
        if probe.out_of_time():
            return
        if key not in entries:
            print(f"{key}: no shipped entry", flush=True)
            continue
        kernel, mode, dtype, shape = key.split("/")
        m, n = map(int, shape.split("x"))
        yield key, Task(kernel, mode, m, n, dtype, 1)


def shipped_entries() -> dict[str, dict]:
    """The shipped H200 cache's entries (run from the repo root)."""
    return json.load(open("tuning/configs/nvidia_h200.json"))["entries"]


def key_workload(key: str) -> Workload:
    """The tuner's workload for a cache key ("kernel/mode/dtype/MxN") on CUDA."""
    kernel, mode, dtype, shape = key.split("/")
    m, n = map(int, shape.split("x"))
    return Workload(Task(kernel, mode, m, n, dtype, 1), torch.device("cuda"))


def checked_runs(wl: Workload, configs: dict[str, dict]) -> dict:
    """Each named config compiled and checked against float64 (a failure reported and
    skipped): name -> run(i)."""
    runs = {}
    for name, config in configs.items():
        try:
            run = wl.runner(config)
            wl.check(run)
            runs[name] = run
        except Exception as e:  # noqa: BLE001 - a config that does not build is a result
            print(f"  {name}: failed ({type(e).__name__}: {str(e)[:100]})", flush=True)
    return runs


def best_gbps(wl: Workload, runs: dict, rounds: int) -> dict[str, float]:
    """GB/s (the workload's byte model) of each runner, best of ``rounds`` rounds that each
    time every runner once in turn by the tuner's timing."""
    best = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for name, run in runs.items():
            ms = timing.time_ms(run, len(wl.sets), wl.device)
            best[name] = max(best[name], wl.model_bytes() / ms / 1e6)
    return best


def exchange_config(tile: int, rows: int, warps: int, stages: int, m_block: int) -> dict:
    """A backward config of the exchange schedule: ``tile`` channels a program, ``rows``
    a step, the row loop pipelined ``stages`` deep (0: not)."""
    config = {
        "block_sizes": [m_block, 1, tile, rows], "num_warps": warps, "num_stages": 1,
        "loop_orders": [[2, 1, 0]], "exchange": True,
    }  # fmt: skip
    if stages:
        config["range_num_stages"] = [0, stages]
    return config


def registers(fn) -> str:  # noqa: ANN001
    """Registers per thread of the Triton program(s) a Helion compiled callable launched."""
    jit = next((v for v in getattr(fn, "__globals__", {}).values() if hasattr(v, "device_caches")), None)
    if jit is None:
        return "-"
    regs = {k.n_regs for cache in jit.device_caches.values() for k in cache[0].values()}
    return "/".join(map(str, sorted(regs))) or "-"


def runner_registers(run) -> str:  # noqa: ANN001
    """Registers per thread of the compiled kernel a ``Workload.runner`` closure calls."""
    for cell in getattr(run, "__closure__", None) or ():
        if hasattr(cell.cell_contents, "__globals__"):
            return registers(cell.cell_contents)
    return "-"


def compare_configs(probe: ProbeRun, wl: Workload, configs: dict[str, dict], title: str) -> dict[str, float]:
    """Compile and check each named config (a failure is reported and skipped), then,
    unless ``--check-only``, time them in turns (best of 2) and print GB/s against the
    one named "shipped", with each one's registers per thread; returns the GB/s by name."""
    runs = {}
    for name, config in configs.items():
        if probe.out_of_time():
            break
        try:
            run = wl.runner(config)
            err = wl.check(run)
        except (TrialError, Exception) as e:  # noqa: BLE001 - report and go on
            print(f"  {name}: failed ({type(e).__name__}: {str(e)[:150]})", flush=True)
            continue
        runs[name] = run
        if probe.check_only:
            print(f"  {name}: worst relative error {err:.2g}", flush=True)
    print(title, flush=True)
    if probe.check_only or not runs:
        return {}
    best = best_gbps(wl, runs, rounds=2)
    base = best.get("shipped") or 1.0
    for name, gbps in sorted(best.items(), key=lambda kv: -kv[1]):
        print(f"  {name:18s} {gbps:6.0f} GB/s ({gbps / base:.3f}x shipped, {runner_registers(runs[name])} regs)", flush=True)
    return best


def with_pilot(config: dict, kernel_args: tuple, width: int | None) -> tuple:
    """``kernels.launch.fwd_kernel_args``'s result with a chunked forward's pilot width
    forced (None: one chunk); a whole-row config's arguments unchanged."""
    if len(config["block_sizes"]) != 3:
        return kernel_args
    return (*kernel_args[:-3], width or config["block_sizes"][0], *kernel_args[-2:])


def compare_on(probe: ProbeRun, task: Task, configs: dict[str, dict], title: str) -> dict[str, float]:
    """``compare_configs`` on a fresh workload for ``task``, whose input sets are freed
    before the next task's are made."""
    wl = Workload(task, probe.device)
    best = compare_configs(probe, wl, configs, title)
    del wl
    if probe.on_gpu:
        torch.cuda.empty_cache()
    return best
