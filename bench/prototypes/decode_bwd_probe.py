"""Decode fwd+bwd: where inductor's step and ours spend their time (NOTES Next 1 of stop 27).

At M = 8 and 128 our fwd+bwd step trails inductor's by 0.1-0.7 us of kernel time
(LayerNorm 8x4096 0.94x, 8x8192 0.93x, 128x4096 0.99x; RMSNorm 128x4096/8192 0.93x).
Both steps launch three kernels. For each shape this probe

1. lists every kernel of one step, inductor's and ours, with its grid, block and median
   duration (torch.profiler's CUDA trace over eager steps: the kernels' own times);
2. times the benchmark's fwd+bwd step (``bench.run``'s step, inputs, rotation and CUDA
   graph) for inductor and for our step under backward configs the tuner never measured:
   the split schedule (row coefficients, then channel tiles over the rows) with every row
   in one program per tile, so the backward writes dW/dB itself (2 launches, like
   inductor's dx kernel and column-reduction kernel), and the reduce of the shipped
   schedule with other column tiles. Figures are the median of rounds taken in turn.

    python bench/prototypes/decode_bwd_probe.py
"""

import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from bench import timing as bench_timing
from bench.ops import make_step
from bench.providers import Registry
from bench.run import ROTATE_MB, Settings, Unit, make_inputs
from kernels import heuristics, launch
from tuning import cache, timing
from tuning.timing import capture_graph, replays_ms

ROUNDS = 7
CASES = [
    ("layer_norm", 8, 4096), ("layer_norm", 8, 8192), ("layer_norm", 128, 4096),
    ("rms_norm", 128, 4096), ("rms_norm", 128, 8192), ("layer_norm", 32, 4096),
]  # fmt: skip
_reduce_override: dict | None = None
_shipped_reduce = heuristics.reduce_config


def _reduce_config(p: int) -> dict:
    return dict(_reduce_override) if _reduce_override else _shipped_reduce(p)


heuristics.reduce_config = _reduce_config  # launch reads it through the module


def _candidates(m: int, k: int, shipped: dict) -> dict[str, tuple[dict, dict | None]]:
    """name -> (backward config, reduce config or None for the heuristic's)."""
    out = {"shipped": (shipped, None)}
    for cols in (64, 256):
        for rows in (8, 32):
            out[f"shipped, reduce {cols} cols x {rows} rows"] = (shipped, {"block_sizes": [cols, rows], "num_warps": 4, "num_stages": 1})
    mb = max(1, 1 << (m - 1).bit_length())
    tiles = (128, 256, 512, 1024) if m <= 32 else (256, 512, 1024)
    for m_block in [mb] if m <= 32 else [mb, 32]:
        for tile in tiles:
            for warps in (2, 4) if m <= 32 else (4,):
                inner = min(m_block, 8)
                cfg = {"block_sizes": [m_block, 1, tile, inner], "num_warps": warps, "num_stages": 1}
                out[f"split m_block {m_block} tile {tile} inner {inner} w{warps}"] = (cfg, None)
    return out


def kernel_profile(step, sets, steps: int = 30) -> list[tuple]:
    """(name, grid, block, launches per step, median us) of every GPU op in ``step``."""
    for i in range(5):
        step(sets[i % len(sets)])
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for i in range(steps):
            step(sets[i % len(sets)])
        torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text())["traceEvents"]
    rows: dict[tuple, list[float]] = {}
    for ev in events:
        if ev.get("cat") not in ("kernel", "gpu_memset", "gpu_memcpy"):
            continue
        a = ev.get("args", {})
        rows.setdefault((ev["name"][:70], str(a.get("grid")), str(a.get("block"))), []).append(ev["dur"])
    return [(n, g, b, len(d) / steps, statistics.median(d)) for (n, g, b), d in rows.items()]


class Step:
    """The benchmark's fwd+bwd step captured in a CUDA graph over the rotating sets."""

    def __init__(self, step, sets) -> None:
        self.calls = bench_timing.graph_calls(len(sets))
        self.graph = capture_graph(lambda i: step(sets[i % len(sets)]), min(3, len(sets)), self.calls)
        self.held = (dict(launch._compiled), dict(launch._plans))
        replays_ms(self.graph, 5)

    def us(self) -> float:
        return 1000.0 * statistics.median(replays_ms(self.graph, 100)) / self.calls


def _override(folder: Path, op: str, m: int, n: int, config: dict) -> None:
    dev = torch.device("cuda")
    gpu = cache.gpu_model(dev)
    entry = {"kernel": op, "mode": cache.BWD, "dtype": "bfloat16", "m": m, "n": n, "groups": 1,
             "config": config, "source": "probe", "ms": 1.0, "gbps": 0.0, "gbps_exact": 0.0, "trials": 0,
             "date": "", "versions": {}}  # fmt: skip
    path = folder / f"{abs(hash(json.dumps(config, sort_keys=True)))}.json"
    cache.write_entries(path, gpu, torch.cuda.get_device_name(dev), {cache.entry_key(op, cache.BWD, "bfloat16", m, n): entry})
    cache.set_cache_path(path)
    launch.clear_compiled()


def run_case(op: str, m: int, n: int, folder: Path) -> None:
    global _reduce_override
    print(f"\n=== {op} bf16 {m}x{n} fwd+bwd", flush=True)
    settings = Settings("cuda", 25.0, 100.0, int(ROTATE_MB * (1 << 20)))
    _, sets = make_inputs(Unit(op, "fwd_bwd", "bf16", m, n), settings, rotate=True)
    registry = Registry()
    cache.set_cache_path(None)
    launch.clear_compiled()
    steps = {"inductor": make_step(registry.build("inductor", op), "fwd_bwd"),
             "tilenorm": make_step(registry.build("tilenorm", op), "fwd_bwd")}  # fmt: skip
    for name, step in steps.items():
        for kname, grid, block, per_step, us in kernel_profile(step, sets):
            print(f"  {name:9s} {per_step:4.1f}x {us:6.2f} us  grid {grid:14s} block {block:12s} {kname}", flush=True)
    shipped = cache.lookup(op, cache.BWD, m, n, torch.bfloat16, torch.device("cuda"))
    print(f"  shipped bwd config: {shipped}", flush=True)
    timers = {"inductor": Step(steps["inductor"], sets)}
    for name, (config, reduce) in _candidates(m, n, shipped).items():
        _override(folder, op, m, n, config)
        _reduce_override = reduce
        try:
            step = make_step(registry.build("tilenorm", op), "fwd_bwd")
            step(sets[0])
            timers[name] = Step(step, sets)
        except Exception as e:  # a config this schedule cannot compile: say so, go on
            print(f"  {name}: failed: {type(e).__name__}: {str(e)[:120]}", flush=True)
        finally:
            _reduce_override = None
    names = list(timers)
    figures = timing._in_turns([timers[k].us for k in names], ROUNDS)
    ranked = sorted(zip(figures, names))
    for us, name in ranked:
        print(f"  {us:6.2f} us  {figures[names.index('inductor')] / us:5.3f}x inductor  {name}", flush=True)
    cache.set_cache_path(None)
    launch.clear_compiled()


def main() -> None:
    cases = CASES if len(sys.argv) == 1 else [c for c in CASES if f"{c[0]}:{c[1]}x{c[2]}" in sys.argv[1:]]
    with tempfile.TemporaryDirectory() as folder:
        for op, m, n in cases:
            run_case(op, m, n, Path(folder))


if __name__ == "__main__":
    main()
