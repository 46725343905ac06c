"""Does a whole-row forward held as power-of-two pieces beat the shipped config on rows
that are not a power of two? (bench/NOTES.md Next 3, attempt 84)

A whole-row forward holds its row on one power-of-two tile: 4096x8704 is a 16384-lane
tile of which 47% is padding that holds registers and runs every instruction (Triton
cannot prove the padded register blocks dead). ``norm_fwd``'s ``pieces`` (a config key of
ours) holds the row as 8192 + 512 instead, one block reduction more a row sum. Here, for
each cache key: the shipped config and a grid around it (pieces x warps x rows a program
x recast, the load hint as shipped on every load), screened by one round of both clocks
(graph and flushed), then the shipped config and the screen's best in interleaved rounds,
with each program's registers.

    python bench/prototypes/pieces_probe.py KEY [KEY ...] [--pieces 2,3] [--warps 4,8] [--rows 1,2] [--rounds 5] [--keep 4] [--budget S]
    TRITON_INTERPRET=1 python bench/prototypes/pieces_probe.py --check-only    # CPU: small rows, checked only

KEY is a forward cache key, e.g. ``layer_norm/infer/bfloat16/4096x8704``.
"""

import itertools

import torch

from inductor_gap_probe import best, print_table, screen  # run from the repo root or this folder
from probe_common import ProbeRun, checked_runs, key_workload, runner_registers, shipped_entries
from variants_probe import varied

from kernels.norm_kernels import _bounds
from tuning import timing
from tuning.workload import Task, Workload

# Enough hints for every load of a program in three pieces (Helion ignores the rest).
HINT_SLOTS = 24


def grid(config: dict, k: int, pieces_set, warps_set, rows_set) -> dict[str, dict]:
    """The shipped config and pieces x warps x rows x recast around it (one piece: the
    whole row as shipped), each program's cut distinct."""
    hints = config.get("load_eviction_policies")
    hint = hints[0] if hints and len(set(hints)) == 1 else None
    out = {"shipped": config}
    cuts = {}
    for pieces in pieces_set:
        cuts.setdefault(_bounds(k, pieces), pieces)
    groups = config["block_sizes"][1:]
    for (bounds, pieces), warps, rows, recast in itertools.product(cuts.items(), warps_set, rows_set, (False, True)):
        candidate = varied(config, {
            "block_sizes": [rows, *groups], "num_warps": warps, "recast": recast or None,
            "pieces": pieces if len(bounds) > 1 else None, "reduction_loops": [None],
            "load_eviction_policies": [hint] * HINT_SLOTS if hint else None,
        })  # fmt: skip
        if candidate not in out.values():
            out[f"p{len(bounds)}w{warps}r{rows}{'R' if recast else ''}"] = candidate
    return out


def probe_key(wl: Workload, shipped: dict, title: str, opts: dict) -> None:
    configs = grid(shipped, wl.k, opts["pieces"], opts["warps"], opts["rows"])
    runs = checked_runs(wl, configs)
    print(f"== {title}: {len(runs)} of {len(configs)} configs built and checked", flush=True)
    if not wl.device.type == "cuda":
        return
    screened = screen(wl, runs)
    finals = sorted(best(screened, opts["keep"]) | {"shipped"})
    clocks = dict(zip(finals, timing.interleaved_clocks([runs[k] for k in finals], len(wl.sets), wl.device, rounds=opts["rounds"])))
    print(f"  finals ({opts['rounds']} rounds in turns; x: shipped's time over the config's):")
    print_table(clocks, clocks["shipped"], sorted(finals, key=lambda k: clocks[k].score))
    gbps = wl.model_bytes() / 1e6
    for name in sorted(finals, key=lambda k: clocks[k].score):
        c = clocks[name]
        print(f"  {name:<14} graph {gbps / c.graph_ms:6.0f} GB/s  flushed {gbps / c.flushed_ms:6.0f} GB/s  "
              f"{runner_registers(runs[name])} regs  {configs[name]}", flush=True)  # fmt: skip


def main() -> None:
    probe = ProbeRun()
    parse = lambda name, default: tuple(map(int, (probe.option(name) or default).split(",")))  # noqa: E731
    opts = {
        "pieces": parse("--pieces", "2,3"), "warps": parse("--warps", "4,8"), "rows": parse("--rows", "1,2"),
        "rounds": int(probe.option("--rounds") or 5), "keep": int(probe.option("--keep") or 4),
    }  # fmt: skip
    if probe.check_only:
        shipped = {"block_sizes": [1, 1], "num_warps": 2, "num_stages": 1, "reduction_loops": [None]}
        for kernel in ("layer_norm", "rms_norm"):
            wl = Workload(Task(kernel, "fwd", 5, 200, "bfloat16", 1), probe.device)
            probe_key(wl, shipped, f"{kernel} 5x200 (check only)", {**opts, "warps": (1, 2), "rows": (1, 2)})
        return
    entries = shipped_entries()
    for key in [a for a in probe.argv[1:] if a.count("/") == 3]:
        if probe.out_of_time():
            return
        wl = key_workload(key)
        probe_key(wl, entries[key]["config"], key, opts)
        del wl
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
