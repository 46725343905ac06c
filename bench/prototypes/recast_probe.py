"""Does holding the row in its 16-bit form between the forward's passes pay (bench/NOTES.md
attempt 66)?

A whole-row forward keeps the row as fp32 values across its reductions; offline (triton
3.6, sm_90) LayerNorm bf16 4096x12800 on 8 warps takes 124-128 registers, two programs an
SM, and with the row recast from its bf16 registers for each pass (``norm_fwd``'s
``recast``) 78: three. The same program at 12288 ran 3786 GB/s on 80 registers, 12800 3340
on 117-128 (width_scan_probe).

Per shape: the shipped config (recast too where it holds the whole row) and the whole-row
program on 8 warps, on the per-axis grid and static, each with and without recast. Tuner timing (CUDA graph, inputs rotated past the L2), best of 2
rounds in turns, with registers per thread.

    python bench/prototypes/recast_probe.py [--budget SECONDS] [--dtype float16] [--mode fwd] [--shapes op:MxN,...] [--grids] [--w4]
"""

from probe_common import ProbeRun, compare_on, shipped_entries  # run from the repo root or this folder

from tuning.cache import RECAST
from tuning.workload import Task

SHAPES = [("layer_norm", 4096, n) for n in range(8192, 16385, 512)] + [
    ("layer_norm", 8192, 4096), ("layer_norm", 32768, 4096), ("layer_norm", 4096, 4096), ("layer_norm", 2048, 32768),
    ("rms_norm", 4096, 8192), ("rms_norm", 4096, 16384), ("rms_norm", 2048, 16384), ("rms_norm", 2048, 32768),
    ("rms_norm", 8192, 4096), ("rms_norm", 32768, 4096),
]  # fmt: skip
WHOLE_W8 = {"block_sizes": [1, 1], "num_warps": 8, "num_stages": 1, "reduction_loops": [None]}


def variants(config: dict, grids: bool = False, w4: bool = False) -> dict[str, dict]:
    """The shipped config, recast where it holds the whole row (also on twice the warps),
    and the whole-row 8-warp program (the one whose registers recasting cut to three
    programs an SM) both ways. ``grids``: also the shipped config on the per-axis grid,
    static, and without its eviction hint (NOTES Next 4: the flat grid's division).
    ``w4``: also the whole row on 4 warps, per-axis grid and static, each both ways."""
    out = {"shipped": config}
    if len(config["block_sizes"]) == 2 and config.get("reduction_loops", [None])[0] is None:
        out["recast"] = {**config, RECAST: True}
        if config["num_warps"] < 32:
            out[f"recast w{2 * config['num_warps']}"] = {**config, RECAST: True, "num_warps": 2 * config["num_warps"]}
    if grids:
        out["shipped xyz"] = {**config, "pid_type": "xyz"}
        out["shipped static"] = {**config, "static": True}
        out["shipped no hint"] = {k: v for k, v in config.items() if k != "load_eviction_policies"}
        out["shipped xyz no hint"] = {**out["shipped no hint"], "pid_type": "xyz"}
    if w4:  # half the warps: 128 lanes a thread, where a static row's dead lanes fold away
        for grid in ({"pid_type": "xyz"}, {"static": True}):
            whole = {**WHOLE_W8, "num_warps": 4, **grid}
            out[f"whole w4 {next(iter(grid))}"] = whole
            out[f"whole w4 {next(iter(grid))} recast"] = {**whole, RECAST: True}
    for grid in ({"pid_type": "xyz"}, {"static": True}):
        whole = {**WHOLE_W8, **grid}
        if whole != config:
            out[f"whole w8 {next(iter(grid))}"] = whole
        out[f"whole w8 {next(iter(grid))} recast"] = {**whole, RECAST: True}
    return out


def main() -> None:
    probe = ProbeRun()
    dtype, mode = probe.task_options()
    entries = shipped_entries()
    shapes = SHAPES
    if probe.option("--shapes"):
        shapes = [(op, *map(int, s.split("x"))) for op, s in (a.split(":") for a in probe.option("--shapes").split(","))]
    for op, m, n in shapes:
        if probe.out_of_time():
            break
        key = f"{op}/{mode}/{dtype}/{m}x{n}"
        sibling = f"{op}/{mode}/bfloat16/{m}x{n}"
        entry = entries.get(key) or entries.get(sibling)
        if entry is None:
            print(f"{key}: no entry", flush=True)
            continue
        configs = variants(entry["config"], grids="--grids" in probe.argv, w4="--w4" in probe.argv)
        compare_on(probe, Task(op, mode, m, n, dtype, 1), configs, f"{key} (shipped {entry['config']})")


if __name__ == "__main__":
    main()
