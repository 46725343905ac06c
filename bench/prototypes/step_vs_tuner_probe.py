"""Does the tuner time a config as the benchmark does? (bench/NOTES.md Next 1 of stop 23)

After the tuner's input sets began sharing their outputs (attempt 40), two re-tuned small
inputs still moved the wrong way in the benchmark: RMSNorm bf16 2048x1024 inference -5.1%
(its new config differs from the old only in the eviction policy) and LayerNorm bf16
4096x1536 -2.2% (eviction policy and grid). Eviction hints act on what the L2 keeps from
call to call, which is where the two ways of timing can still differ. Here, in one process
and in turns, each config of a pair is timed

- the benchmark's way: ``bench.run``'s fwd step (the public call, its output allocated
  inside the graph) over ``bench.run``'s rotating input sets, the config served from a
  one-entry user cache;
- the tuner's way: ``tuning.workload.Workload``'s launcher over its own input sets.

If the two ways rank the pair alike, the benchmark's earlier figures differ by run, not by
method; if not, what differs between the two calls is the next thing to remove.

    python bench/prototypes/step_vs_tuner_probe.py
"""

import tempfile
from pathlib import Path

import torch

from bench import timing as bench_timing
from bench.ops import make_step
from bench.providers import Registry
from bench.run import ROTATE_MB, Settings, Unit, make_inputs
from kernels import launch
from tuning import cache, timing
from tuning.timing import capture_graph, replays_ms
from tuning.workload import Task, Workload

ROUNDS = 7

# (kernel, M, N, dtype, {name: inference config})
CASES = [
    ("rms_norm", 2048, 1024, "bfloat16", {
        "91501e3 (bench 2535)": {"block_sizes": [2, 1], "load_eviction_policies": ["first"] * 6, "num_stages": 1,
                                 "num_warps": 8, "pid_type": "xyz", "reduction_loops": [None]},
        "1b70502 (bench 2405)": {"block_sizes": [2, 1], "num_stages": 1, "num_warps": 8, "pid_type": "xyz",
                                 "reduction_loops": [None]},
    }),
    ("layer_norm", 4096, 1536, "bfloat16", {
        "91501e3 (bench 3368)": {"block_sizes": [4, 1], "load_eviction_policies": ["last"] * 9, "num_stages": 1,
                                 "num_warps": 2, "pid_type": "xyz", "reduction_loops": [None]},
        "1b70502 (bench 3292)": {"block_sizes": [4, 1], "load_eviction_policies": ["first"] * 9, "num_stages": 1,
                                 "num_warps": 2, "reduction_loops": [None]},
    }),
]  # fmt: skip

SHORT = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


class BenchStep:
    """The benchmark's fwd step for one config, captured once as ``bench.timing`` does."""

    def __init__(self, kernel: str, m: int, n: int, dtype: str, config: dict, folder: Path) -> None:
        dev = torch.device("cuda")
        gpu = cache.gpu_model(dev)
        path = folder / f"{abs(hash(str(config)))}.json"
        entry = {"kernel": kernel, "mode": cache.INFER, "dtype": dtype, "m": m, "n": n, "groups": 1,
                 "config": config, "source": "probe", "ms": 1.0, "gbps": 0.0, "gbps_exact": 0.0, "trials": 0,
                 "date": "", "versions": {}}  # fmt: skip
        cache.write_entries(path, gpu, torch.cuda.get_device_name(dev), {cache.entry_key(kernel, cache.INFER, dtype, m, n): entry})
        cache.set_cache_path(path)
        launch.clear_compiled()
        settings = Settings("cuda", 25.0, 100.0, int(ROTATE_MB * (1 << 20)))
        _, self.sets = make_inputs(Unit(kernel, "fwd", SHORT[dtype], m, n), settings, rotate=True)
        step = make_step(Registry().build("tilenorm", kernel), "fwd")
        self.calls = bench_timing.graph_calls(len(self.sets))
        self.graph = capture_graph(lambda i: step(self.sets[i % len(self.sets)]), min(3, len(self.sets)), self.calls)
        self.gbps_per_ms = 2 * m * n * torch.finfo(getattr(torch, dtype)).bits / 8 / 1e6
        # The graph replays the launches it captured: hold the compiled kernels (and their
        # replay plans) that the next config's clear_compiled() would drop.
        self.held = (dict(launch._compiled), dict(launch._plans))
        replays_ms(self.graph, 20)

    def gbps(self) -> float:
        return self.gbps_per_ms / (sorted(replays_ms(self.graph, 200))[100] / self.calls)


class TunerRun:
    """The tuner's launcher for one config, as its finals time it."""

    def __init__(self, kernel: str, m: int, n: int, dtype: str, config: dict) -> None:
        dev = torch.device("cuda")
        self.wl = Workload(Task(kernel, cache.INFER, m, n, dtype), dev)
        run = self.wl.runner(config)
        self.wl.check(run)
        self.replayer = timing._Replayer(run, len(self.wl.sets), timing.FINAL_TIMING)

    def gbps(self) -> float:
        return self.wl.model_bytes() / self.replayer.ms(40.0) / 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        for kernel, m, n, dtype, configs in CASES:
            timers = {}
            for name, config in configs.items():
                timers[f"bench {name}"] = BenchStep(kernel, m, n, dtype, config, Path(folder))
                timers[f"tuner {name}"] = TunerRun(kernel, m, n, dtype, config)
            cache.set_cache_path(None)
            launch.clear_compiled()
            names = list(timers)
            figures = timing._in_turns([timers[k].gbps for k in names], ROUNDS)
            for name, gbps in zip(names, figures):
                print(f"{kernel} {dtype} {m}x{n}  {name:30s} {gbps:7.0f} GB/s (median of {ROUNDS} rounds in turn)", flush=True)


if __name__ == "__main__":
    main()
