"""What the probes share: their command line (``--budget SECONDS``, ``--check-only``), the
device they run on, and the tuner-timed comparison of several runners on one workload."""

import sys
import time

import torch

from tuning import timing
from tuning.workload import Workload


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

    def out_of_time(self) -> bool:
        if time.perf_counter() - self._start <= self.budget:
            return False
        print("budget spent", flush=True)
        return True


def best_gbps(wl: Workload, runs: dict, rounds: int) -> dict[str, float]:
    """GB/s (the workload's byte model) of each runner, best of ``rounds`` rounds that each
    time every runner once in turn by the tuner's timing."""
    best = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for name, run in runs.items():
            ms = timing.time_ms(run, len(wl.sets), wl.device)
            best[name] = max(best[name], wl.model_bytes() / ms / 1e6)
    return best
