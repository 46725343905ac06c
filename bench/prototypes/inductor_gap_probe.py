"""Our forward configs against inductor's program on one shape, by both clocks (bench/NOTES.md
Next 0b, attempt 83).

At 4096x1024 the benchmark ranks us first by kernel time (graph clock) and behind inductor
by eager time (the L2 flushed before each call): after a flush our kernels run longer over
their graph time than inductor's. Inductor picks its config by timing it after a flush
(``do_bench``); our tuner by the geometric mean of both clocks. Here, for each cache key:

1. inductor's program for the shape (the benchmark's ``torch.compile(dynamic=False)``):
   its Triton source's loads and stores, and the launch config its autotuner kept
   (block sizes, warps, registers);
2. a grid of our configs around the shipped one (rows a program x warps x load eviction
   hint x recast, the rest as shipped, plus the shipped config's one-knob variants)
   screened by one round of both clocks with inductor among them, then the knobs the grid
   held as shipped (params_first, static, grid) flipped on the screen's best, screened
   the same way;
3. the shipped config, inductor and the screens' best by each clock and by their mean,
   timed in interleaved rounds (``tuning.timing.interleaved_clocks``) and printed as
   ratios over inductor; then each one's flushed calls under CUPTI, splitting the event
   time into the wait after the flush and the kernel itself.

    python bench/prototypes/inductor_gap_probe.py KEY [KEY ...] [--rounds 7] [--keep 6] [--rows 1,2,4,8] [--warps 1,2,4,8,16]

KEY is a forward cache key, e.g. ``layer_norm/infer/bfloat16/4096x1024``.
"""

import gc
import itertools
import re

import torch

from eager_gap_probe import split_profile  # run from the repo root or this folder
from eager_gap_probe import variants as one_knob_variants
from probe_common import ProbeRun, checked_runs, key_workload, shipped_entries
from variants_probe import varied

from bench.providers import Registry
from tuning import timing
from tuning.workload import Workload

ROWS = (1, 2, 4, 8)
WARPS = (1, 2, 4, 8, 16)
HINTS = ("last", "first", None)
RECAST = (False, True)


def grid(config: dict, rows_set=ROWS, warps_set=WARPS) -> dict[str, dict]:
    """The shipped config, its one-knob variants and rows x warps x hint x recast around it."""
    out = one_knob_variants(config)
    slots = len(config.get("load_eviction_policies") or [None] * 9)
    groups = config["block_sizes"][1:]
    for rows, warps, hint, recast in itertools.product(rows_set, warps_set, HINTS, RECAST):
        candidate = varied(config, {
            "block_sizes": [rows, *groups], "num_warps": warps,
            "load_eviction_policies": hint and [hint] * slots, "recast": recast or None,
        })  # fmt: skip
        if candidate not in out.values():
            out[f"r{rows}w{warps}{(hint or '-')[0]}{'R' if recast else ''}"] = candidate
    return out


def inductor_runner(wl: Workload, op: str):
    """run(i): the benchmark's inductor provider on the workload's input set i, and the
    Triton source inductor generated for it."""
    fn = Registry().build("inductor", op)
    n = wl.task.n
    w = wl.weight.reshape(n)
    b = None if wl.bias is None else wl.bias.reshape(n)
    xs = [s["x"].reshape(wl.m, n) for s in wl.sets]
    from torch._inductor.utils import run_and_get_code

    _, sources = run_and_get_code(fn, xs[0], None, w, b)
    return (lambda i: fn(xs[i], None, w, b)), sources


def describe_inductor(sources: list[str]) -> None:
    """The Triton kernels' decorators, loads and stores, and the configs the autotuners kept."""
    for src in sources:
        for line in src.splitlines():
            if re.search(r"@triton_heuristics|def triton_|tl\.load|tl\.store|size_hints|num_warps", line):
                print("   |", line.strip()[:200])
    for obj in gc.get_objects():
        if type(obj).__name__ == "CachingAutotuner" and getattr(obj, "launchers", None):
            for launcher in obj.launchers:
                config = getattr(launcher, "config", None)
                print(f"   inductor kept {getattr(obj, 'fn', None) and obj.fn.__name__}: {config} "
                      f"regs={getattr(launcher, 'n_regs', '?')} spills={getattr(launcher, 'n_spills', '?')} "
                      f"shared={getattr(launcher, 'shared', '?')}", flush=True)  # fmt: skip


def toggles(config: dict) -> dict[str, dict]:
    """``config`` with one of the knobs the grid keeps as shipped flipped."""
    out = {}
    for knob in ("params_first", "static"):
        out[f"{knob}={not config.get(knob, False)}"] = varied(config, {knob: not config.get(knob, False) or None})
    for pid in (None, "xyz"):
        out[f"pid={pid or 'flat'}"] = varied(config, {"pid_type": pid})
    return out


def screen(wl: Workload, runs: dict, extra: dict | None = None) -> dict[str, timing.Clocks]:
    """One round of both clocks for every run (and ``extra`` runs), in turns."""
    runs = runs | (extra or {})
    names = list(runs)
    return dict(zip(names, timing.interleaved_clocks([runs[k] for k in names], len(wl.sets), wl.device, rounds=1)))


def best(clocks: dict[str, timing.Clocks], keep: int) -> set[str]:
    """The ``keep`` fastest by each clock and by the tuner's score (their geometric mean)."""
    picked = set()
    for rank in (lambda c: c.flushed_ms, lambda c: c.graph_ms, lambda c: c.score):
        picked |= set(sorted(clocks, key=lambda k: rank(clocks[k]))[:keep])
    return picked


def print_table(clocks: dict[str, timing.Clocks], ref: timing.Clocks, names: list[str]) -> None:
    print(f"  {'config':<34} {'graph us':>9} {'flushed us':>11} {'graph x':>8} {'flushed x':>10} {'mean x':>7}   (x: inductor's time over ours)")
    for name in names:
        c = clocks[name]
        print(f"  {name:<34} {1000 * c.graph_ms:9.2f} {1000 * c.flushed_ms:11.2f} {ref.graph_ms / c.graph_ms:8.3f} "
              f"{ref.flushed_ms / c.flushed_ms:10.3f} {ref.score / c.score:7.3f}", flush=True)  # fmt: skip


def probe_key(key: str, rounds: int, keep: int, rows_set=ROWS, warps_set=WARPS) -> None:
    wl = key_workload(key)
    kernel = wl.task.kernel
    shipped = shipped_entries()[key]["config"]
    print(f"== {key}  shipped {shipped}", flush=True)
    inductor, sources = inductor_runner(wl, kernel)
    describe_inductor(sources)
    configs = grid(shipped, rows_set, warps_set)
    runs = checked_runs(wl, configs)
    screened = screen(wl, runs, {"inductor": inductor})
    # Second screen: the knobs the grid held as shipped, flipped on the first screen's best.
    flips = {}
    for name in best({k: c for k, c in screened.items() if k != "inductor"}, 3):
        for knob, config in toggles(configs[name]).items():
            if config not in configs.values() and config not in flips.values():
                flips[f"{name}+{knob}"] = config
    configs |= flips
    flipped = checked_runs(wl, flips)
    runs |= flipped
    screened |= screen(wl, flipped, {"inductor2": inductor})
    print(f"  screen (one round; inductor twice: {1000 * screened['inductor'].flushed_ms:.2f} / "
          f"{1000 * screened['inductor2'].flushed_ms:.2f} us flushed), the 30 fastest after a flush:")  # fmt: skip
    print_table(screened, screened["inductor"], sorted(screened, key=lambda k: screened[k].flushed_ms))
    finals = ["inductor", *sorted(best({k: c for k, c in screened.items() if k in runs}, keep) | {"shipped"})]
    clocks = dict(zip(finals, timing.interleaved_clocks(
        [inductor if k == "inductor" else runs[k] for k in finals], len(wl.sets), wl.device, rounds=rounds)))  # fmt: skip
    print(f"  finals ({rounds} rounds in turns):")
    print_table(clocks, clocks["inductor"], sorted(finals, key=lambda k: clocks[k].score))
    scratch = timing.flush_scratch(wl.device)
    print("  after a flush, by CUPTI (us: wait from the flush's end to the kernel's start, kernel):")
    for name in finals:
        split = split_profile(inductor if name == "inductor" else runs[name], list(range(len(wl.sets))), 200, scratch)
        print(f"  {name:<34} wait {split['wait']:6.2f} kernel {split['kernel']:6.2f}", flush=True)
    for name in finals[1:]:
        print(f"  {name}: {configs[name]}")
    del wl, runs, inductor
    torch.cuda.empty_cache()


def main() -> None:
    probe = ProbeRun()
    keys = [a for a in probe.argv[1:] if a.count("/") == 3]
    rounds, keep = int(probe.option("--rounds") or 7), int(probe.option("--keep") or 6)
    rows_set = tuple(map(int, probe.option("--rows").split(","))) if probe.option("--rows") else ROWS
    warps_set = tuple(map(int, probe.option("--warps").split(","))) if probe.option("--warps") else WARPS
    for key in keys:
        if probe.out_of_time():
            return
        probe_key(key, rounds, keep, rows_set, warps_set)


if __name__ == "__main__":
    main()
