"""Does the fused backward run faster with its channel tile first in the grid (bench/NOTES.md
attempt 63)?

Helion's default grid takes the channel tile's index as the program id divided by the row
tiles' count, a runtime value, so in the fused backward (one channel tile spans the row)
Triton cannot see that the tile's offset is 0: every lane's column and mask stay runtime
values through the row loop. With the tile first (``loop_orders`` [[2, 1, 0]], the tuner's
``tile_first``) its index is the program id modulo one tile, a constant. Offline (triton
3.6, sm_90) that removed the 76 spilled bytes of TritonBench's LayerNorm rows 9216-12288
at 16 warps, and added spills to a few narrow rows' shipped configs.

Per shape: the shipped config, the same with the tile first, and that at half and twice
the warps (a spill-free 8-warp program on the padded 16384 tile is what beat the shipped
configs by 5-8% in attempt 62's plain-Triton probe), by the tuner's timing (CUDA graph,
inputs rotated past the L2, the dW/dB reduce included), best of 2 rounds in turns.

    python bench/prototypes/tile_first_probe.py [--budget SECONDS] [--dtype float16] [--shapes MxN,...]
    TRITON_INTERPRET=1 python bench/prototypes/tile_first_probe.py --check-only    # CPU: small rows, checked only
"""

import json

from probe_common import ProbeRun, compare_on  # run from the repo root or this folder

from tuning.workload import Task

# TritonBench's LayerNorm rows past 8192 (M = 4096), then GPU_HOST's fused LayerNorm and
# RMSNorm backwards.
SHAPES = [("layer_norm", 4096, n) for n in range(8704, 16385, 512)] + [
    ("layer_norm", 4096, 1024), ("layer_norm", 4096, 4096), ("layer_norm", 8192, 4096),
    ("rms_norm", 4096, 1024), ("rms_norm", 4096, 4096), ("rms_norm", 2048, 16384),
]  # fmt: skip


def variants(config: dict) -> dict[str, dict]:
    first = {**config, "loop_orders": [[2, 1, 0]]}
    out = {"shipped": config, "tile first": first}
    for warps in (config["num_warps"] // 2, config["num_warps"] * 2):
        if 1 <= warps <= 32:
            out[f"tile first w{warps}"] = {**first, "num_warps": warps}
    return out


def main() -> None:
    probe = ProbeRun()
    dtype = probe.option("--dtype") or "bfloat16"
    entries = json.load(open("tuning/configs/nvidia_h200.json"))["entries"]
    shapes = SHAPES
    if probe.option("--shapes"):
        shapes = [(op, *map(int, s.split("x"))) for op, s in (a.split(":") for a in probe.option("--shapes").split(","))]
    if probe.check_only:
        shapes = [("layer_norm", 37, 200), ("rms_norm", 19, 96)]
    for op, m, n in shapes:
        if probe.out_of_time():
            break
        key = f"{op}/bwd/{dtype}/{m}x{n}"
        config = entries[key]["config"] if key in entries else {"block_sizes": [8, 1, 256, 1], "num_warps": 4}
        if config["block_sizes"][2] < n or config.get("loop_orders"):
            print(f"{key}: not a fused config without a loop order ({config})", flush=True)
            continue
        compare_on(probe, Task(op, "bwd", m, n, dtype, 1), variants(config), f"{key} (shipped {config})")


if __name__ == "__main__":
    main()
