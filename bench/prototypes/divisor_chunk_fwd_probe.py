"""Why TritonBench's LayerNorm forwards at 4096x10752-13824 run at 3200-3650 GB/s where
12288 and 14336 pass 3850 (bench/NOTES.md attempt 66).

The fast wide rows are walked by the two-pass forward in chunks that divide the row
(12288 = 3 x 4096, 14336 = 7 x 2048, 16384 = 4 x 4096): no masked lane anywhere. The
slow ones hold the row whole on a 16384-wide tile (12800: 22% of its lanes masked) or
take ragged chunks, because the tuner's chunks stop at 1/16 of the padded row (1024
lanes) and the only chunk that divides 12800, 13824 or 10752 is 512. A 512-lane chunk of
one row is a 1 KB load per step, too little in flight, so here it is paired with several
rows a step (a [rows, 512] chunk: 2-8 KB).

Per shape: the shipped inference config against two-pass configs on the row's largest
power-of-two divisor, 2-16 rows a step, 4-8 warps, the loop 1-3 stages deep, static
shapes; and the whole row two rows a program on 16 warps. Tuner timing (CUDA graph,
inputs rotated past the L2), best of 2 rounds in turns.

    python bench/prototypes/divisor_chunk_fwd_probe.py [--budget SECONDS] [--dtype float16] [--widths 12800,...] [--mode fwd]
    TRITON_INTERPRET=1 python bench/prototypes/divisor_chunk_fwd_probe.py --check-only    # CPU: a small row, checked only
"""

from probe_common import ProbeRun, compare_on, shipped_entries  # run from the repo root or this folder

from tuning.workload import Task

WIDTHS = [12800, 13312, 13824, 10752, 11264, 11776]


def divisor_chunk(n: int, cap: int = 4096) -> int:
    """The largest power of two that divides ``n``, at most ``cap``."""
    return min(n & -n, cap)


def candidates(shipped: dict, n: int) -> dict[str, dict]:
    chunk = divisor_chunk(n)
    out = {"shipped": shipped}
    for rows in (2, 4, 8, 16):
        for warps in (4, 8):
            for stages in (1, 3):
                if rows * chunk * 2 > 128 * 32 * warps or rows * chunk < 32 * warps:
                    continue
                out[f"two-pass {chunk}x{rows} w{warps} s{stages}"] = {
                    "block_sizes": [chunk, rows, 1], "num_warps": warps, "num_stages": stages, "static": True,
                }  # fmt: skip
    out["whole row x2 w16"] = {"block_sizes": [2, 1], "num_warps": 16, "num_stages": 1, "reduction_loops": [None], "static": True}
    return out


def main() -> None:
    probe = ProbeRun()
    dtype, mode = probe.task_options()
    entries = shipped_entries()
    widths = [int(w) for w in probe.option("--widths").split(",")] if probe.option("--widths") else WIDTHS
    m = 4096
    if probe.check_only:
        m, widths = 5, [640]
    for n in widths:
        if probe.out_of_time():
            break
        key = f"layer_norm/{mode}/{dtype}/4096x{n}"
        shipped = entries[key]["config"] if key in entries else {"block_sizes": [1, 1], "num_warps": 8, "reduction_loops": [None]}
        configs = candidates(shipped, n)
        if probe.check_only:
            configs = {k: v for k, v in configs.items() if "w4 s1" in k}
        compare_on(probe, Task("layer_norm", mode, m, n, dtype, 1), configs, f"{key} (shipped {shipped})")


if __name__ == "__main__":
    main()
