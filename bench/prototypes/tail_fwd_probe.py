"""Does a narrower last step pay for the two-pass forward on rows its chunk does not
divide (bench/NOTES.md attempt 68)?

TritonBench's LayerNorm rows 4096 x (512 x odd) ran 3476-3818 GB/s at 3b78af5, under the
issue's 3820. Their whole-row programs compute the 16384-lane tile (8704: 47% of it
masked) and take a near constant time a row from 10752 to 12288 (width_scan_probe), and
the two-pass forward walks a ragged last chunk at full width: 12800 on 4096-lane chunks
is 16384 lanes, against 12288 whole chunks at 3908 GB/s. With ``norm_fwd_chunked``'s
``tail`` (a config key of ours, TAIL) the row's last K mod L columns are one step of
their own, the next power of two wide: 12800 = 3 x 4096 + 512 lanes.

Per shape: the shipped config, and two-pass configs with a tail (chunks 1024-8192, 8 or 16
warps, static), and the shipped config with a tail where it is two-pass. Tuner timing
(CUDA graph, inputs rotated past the L2), best of 2 rounds in turns, with registers.

    python bench/prototypes/tail_fwd_probe.py [--budget SECONDS] [--dtype float16] [--mode fwd] [--widths N,...]
"""

from probe_common import ProbeRun, compare_on, shipped_entries  # run from the repo root or this folder

from tuning.cache import STATIC, TAIL
from tuning.workload import Task

# The widest gaps to 3820 GB/s first (3b78af5's benchmark).
WIDTHS = [10752, 11264, 11776, 12800, 13312, 13824, 14848, 15360, 9728, 8704, 9216, 10240, 15872]
TWO_PASS = [(2048, 16, 1), (4096, 16, 1), (4096, 16, 3), (4096, 8, 1), (8192, 16, 1), (1024, 8, 1)]


def variants(config: dict, n: int) -> dict[str, dict]:
    """The shipped config (with a tail too, if it is two-pass and its chunk leaves one),
    and the TWO_PASS configs with a tail where their chunk leaves one."""
    out = {"shipped": config}
    chunked = len(config["block_sizes"]) == 3
    if chunked and n % config["block_sizes"][0]:
        out["shipped tail"] = {**config, TAIL: True}
    for chunk, warps, stages in TWO_PASS:
        if chunk >= n or n % chunk == 0:
            continue
        name = f"c{chunk} w{warps}" + (f" s{stages}" if stages > 1 else "") + " tail"
        out[name] = {"block_sizes": [chunk, 1, 1], "num_warps": warps, "num_stages": stages, STATIC: True, TAIL: True}
    return out


def main() -> None:
    probe = ProbeRun()
    dtype, mode = probe.task_options()
    entries = shipped_entries()
    widths = [int(w) for w in probe.option("--widths").split(",")] if probe.option("--widths") else WIDTHS
    for n in widths:
        if probe.out_of_time():
            break
        key = f"layer_norm/{mode}/{dtype}/4096x{n}"
        entry = entries.get(key) or entries.get(f"layer_norm/{mode}/bfloat16/4096x{n}")
        configs = variants(entry["config"], n)
        compare_on(probe, Task("layer_norm", mode, 4096, n, dtype, 1), configs, f"{key} (shipped {entry['config']})")


if __name__ == "__main__":
    main()
