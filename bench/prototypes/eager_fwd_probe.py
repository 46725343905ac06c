"""Why our no-grad forward trails inductor's by eager time where it leads by kernel time
(bench/NOTES.md attempt 51). At 4096x1024 bf16 our forward runs 1.06-1.07x inductor's
speed under CUDA-graph replay but 0.95-0.97x by the benchmark's eager clock
(``triton.testing.do_bench``: the L2 zeroed before every call, so each call starts with a
cold L2 full of dirty lines). The host is not the cause: the flush keeps the GPU busy
long after the call is queued. So the difference is in how a program behaves right
after the flush, and that depends on the config, which the tuner chooses by graph time.

    python bench/prototypes/eager_fwd_probe.py [--budget SECONDS] [--check-only] [--shapes op:MxN,...]

Per shape (bf16 inference forward), in turns over 3 rounds, median of each:

- ``copy``: ``y.copy_(x)``, the same bytes moved (x read, y written), as a floor;
- ``inductor``: the benchmark's inductor provider (torch.compile, static shape);
- ``api``: our public call, as the benchmark makes it;
- ``shipped``: the shipped config through the tuner's runner (kernel launch only);
- the shipped config with one knob changed: rows per program x warps, each load eviction
  policy, evict-first stores (``.cs``), ``static`` on/off.

Columns: eager us (flushed), graph us (tuner timing: CUDA graph over rotated inputs), and
their difference. ``--check-only`` checks every config against float64 and stops (runs
on the CPU under ``TRITON_INTERPRET=1``).
"""

import statistics

import torch
from probe_common import ProbeRun

from bench import providers, timing as bench_timing
from kernels import functional, launch
from tuning import timing
from tuning.workload import Task, TrialError, Workload

SHAPES = [("layer_norm", 4096, 1024), ("rms_norm", 4096, 1024), ("layer_norm", 4096, 8192)]
ROUNDS = 3


def variants(shipped: dict, n_loads: int) -> dict[str, dict]:
    """The shipped config and its one-knob neighbours."""
    plain = {k: v for k, v in shipped.items() if k not in ("load_eviction_policies", "store_cache_modifiers")}
    out = {"shipped": shipped}
    for rows in (1, 2, 4, 8):
        for warps in (1, 2, 4, 8):
            out[f"r{rows}w{warps}"] = {**shipped, "block_sizes": [rows, *shipped["block_sizes"][1:]], "num_warps": warps}
    out["evict_none"] = plain
    for policy in ("first", "last"):
        out[f"evict_{policy}"] = {**plain, "load_eviction_policies": [policy] * n_loads}
    out["stores_cs"] = {**shipped, "store_cache_modifiers": [".cs"] * 4}
    out["static_flip"] = {**shipped, "static": not shipped.get("static", False)}
    return out


def eager_us(run, n_sets: int, device: torch.device) -> float:
    state = {"i": 0}

    def step() -> None:
        run(state["i"] % n_sets)
        state["i"] += 1

    return bench_timing.eager_us(lambda _: step(), [None], str(device), 25.0, 100.0)


def main() -> None:
    probe = ProbeRun()
    dev = probe.device
    shapes = SHAPES if probe.on_gpu else [("layer_norm", 8, 256), ("rms_norm", 6, 512)]
    if probe.option("--shapes"):
        shapes = [(s.split(":")[0], *map(int, s.split(":")[1].split("x"))) for s in probe.option("--shapes").split(",")]
    for op, m, n in shapes:
        if probe.out_of_time():
            return
        wl = Workload(Task(op, "infer", m, n, "bfloat16", 1), dev, n_sets=None if dev.type == "cuda" else 2)
        shipped = dict(launch.choose_config(op, "infer", m, n, 1, torch.bfloat16, dev))
        if dev.type != "cuda":
            shipped = {"block_sizes": [2, 1], "num_warps": 4, "num_stages": 1, "reduction_loops": [None]}
        n_loads = wl.bound(shipped).config_spec.load_eviction_policies.length
        runs, errors = {}, {}
        for name, config in variants(shipped, n_loads).items():
            try:
                run = wl.runner(config)
                errors[name] = wl.check(run)  # the tuner's own check against float64
                runs[name] = run
            except TrialError as e:
                print(f"  {name}: failed ({str(e)[:120]})", flush=True)
        print(f"{op} infer {m}x{n} bf16 shipped {shipped}; worst relative error "
              f"{max(errors.values()):.2g} over {len(errors)} configs", flush=True)  # fmt: skip
        if probe.check_only:
            continue
        sets = wl.sets
        x = [s["x"].view(m, n) for s in sets]
        y = [torch.empty_like(t) for t in x]
        weight = wl.weight.view(n)
        bias = torch.zeros_like(weight) if op == "layer_norm" else None
        compiled = providers._inductor(op)
        api = functional.layer_norm if op == "layer_norm" else functional.rms_norm

        def api_run(i: int) -> None:
            with torch.no_grad():
                api(x[i], weight, bias) if op == "layer_norm" else api(x[i], weight)

        others = {
            "copy": lambda i: y[i].copy_(x[i]),
            "inductor": lambda i: compiled(x[i], None, weight, bias),
            "api": api_run,
        }
        everything = {**others, **runs}
        for run in everything.values():  # compile and warm
            run(0)
        eager = {k: [] for k in everything}
        for _ in range(ROUNDS):
            for name, run in everything.items():
                eager[name].append(eager_us(run, len(sets), dev))
        graph = {k: 1000 * timing.time_ms(run, len(sets), dev) for k, run in everything.items()}
        base = statistics.median(eager["inductor"])
        print(f"  {'config':<12} {'eager':>7} {'graph':>7} {'gap':>6} {'vs ind':>7}", flush=True)
        for name in everything:
            e = statistics.median(eager[name])
            print(f"  {name:<12} {e:7.2f} {graph[name]:7.2f} {e - graph[name]:6.2f} {base / e:7.3f}", flush=True)


if __name__ == "__main__":
    main()
