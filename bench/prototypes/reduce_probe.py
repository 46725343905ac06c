"""The dW/dB partial-sum reduce's launch shape (NOTES attempt 49).

``decode_bwd_probe.py`` found the reduce taking 2.8-3.1 us of RMSNorm's 128x4096/8192
fwd+bwd step (128 partial rows), more than the backward kernel itself (2.5-3.7 us); its
config was ``heuristics.reduce_config``'s (32-column tiles, 32 rows a step, 4 warps),
set when the partials came from M = 2048-4096 and never measured against others (the
rule this probe led to replaced it; "heuristic" below is whichever rule is current). Here
the reduce alone is timed over a grid of column tiles, rows per step and warps, on the
partial shapes the shipped backward configs produce (P partial rows x n_params x N), the
partials resident in the L2 as in a real step (the backward has just written them):
a CUDA graph of 20 back-to-back calls on one buffer.

    python bench/prototypes/reduce_probe.py
"""

import itertools
import json
import os
import statistics
import sys

import torch

from kernels import heuristics, launch
from tuning.timing import capture_graph, replays_ms

# (P, n_params, N): decode (M = 8-128 at m_block 1-2), then GPU_HOST backward partials.
SHAPES = [
    (8, 2, 4096), (8, 2, 8192), (32, 2, 4096), (64, 2, 4096), (128, 1, 4096), (128, 1, 8192),
    (128, 2, 8192), (64, 2, 1024), (256, 1, 1024), (256, 2, 4096), (128, 1, 8192 * 2), (16, 2, 32768),
]  # fmt: skip
COLS = (16, 32, 64, 128)
ROWS = (8, 32, 128, 256, 512)
WARPS = (1, 2, 4, 8)
CALLS = 20
# ``--grid``: every P x n_params x N below, every config, all figures to $OUT/reduce_grid.json
GRID_P = (8, 16, 32, 64, 128, 256, 512, 1024)
GRID_N = (1024, 4096, 8192, 16384, 32768)


def reduce_us(compiled, args: tuple) -> float:
    graph = capture_graph(lambda i: compiled(*args), 1, CALLS)
    replays_ms(graph, 10)
    return 1000.0 * statistics.median(replays_ms(graph, 60)) / CALLS


def main() -> None:
    dev = torch.device("cuda")
    kernel = launch._kernels(False)["reduce"]
    grid = "--grid" in sys.argv
    shapes = list(itertools.product(GRID_P, (1, 2), GRID_N)) if grid else SHAPES
    dump = []
    for p, n_params, n in shapes:
        part = torch.randn(p, n_params, n, device=dev, dtype=torch.float32)
        outs = [torch.empty(n, device=dev, dtype=torch.bfloat16) for _ in range(n_params)]
        args = (part, outs[0], outs[1] if n_params == 2 else None)
        bound = kernel.bind(args)
        expect = part.sum(0)
        shipped = heuristics.reduce_config(p)
        results = []
        configs = [shipped] + [
            {"block_sizes": [c, r], "num_warps": w, "num_stages": 1}
            for c, r, w in itertools.product(COLS, ROWS, WARPS)
            if r <= max(8, 1 << (p - 1).bit_length()) and c * r // (32 * w) <= 128
        ]
        for config in configs:
            try:
                compiled = bound.compile_config(config)
                compiled(*args)
                got = torch.stack([o.float() for o in outs])
                assert torch.allclose(got, expect.to(torch.bfloat16).float(), rtol=1e-2, atol=1e-2)
                results.append((reduce_us(compiled, args), config))
            except Exception as e:  # report and go on
                print(f"  {config}: {type(e).__name__}: {str(e)[:100]}", flush=True)
        base = results[0][0]
        dump.append({"p": p, "n_params": n_params, "n": n, "heuristic": base,
                     "results": [[us, c["block_sizes"], c["num_warps"]] for us, c in results[1:]]})  # fmt: skip
        results.sort(key=lambda r: r[0])
        print(f"\nP={p} n_params={n_params} N={n}: heuristic {shipped['block_sizes']} w{shipped['num_warps']} {base:.2f} us", flush=True)
        for us, config in results[:3 if grid else 6]:
            print(f"  {us:5.2f} us  {base / us:5.2f}x  cols {config['block_sizes'][0]:4d} rows {config['block_sizes'][1]:4d} w{config['num_warps']}", flush=True)
    if grid:
        with open(os.path.join(os.environ.get("OUT", "."), "reduce_grid.json"), "w") as f:
            json.dump(dump, f)


if __name__ == "__main__":
    main()
