"""Does a LayerNorm backward with db taken apart beat the split schedule on wide rows?

The fused backward keeps a program's dw and db partial rows in registers across its
rows; from 16384 channels (LayerNorm) that spills, so those rows run the split
schedule: ``norm_bwd_coef`` reads x and dy for the row coefficients, then ``norm_bwd``
reads them again per channel tile (5 units of x's bytes, against 3 for the fused one).
RMSNorm's fused backward, which carries dw only, still runs from registers at 16384
(H200 bf16 4096x16384: 3631 GB/s). So: the fused body with dw only, and db as a column
sum of dy by ``norm_bwd`` with ``dx`` None (its "db pass"): 4 units, in registers.

Per shape it times, with the tuner's timing (CUDA graph over rotating sets, kernel
time, GB/s by TritonBench's bwd model, 3x the bytes of x):
  shipped     the cached config (split on these widths)
  main        the fused body without db (a grid of m_block x warps x row stages)
  db pass     the column sum alone at the best main's m_block (lanes x rows x warps)
  main+db     the best of each, with the reduce, checked against float64

    python bench/prototypes/db_pass_probe.py
"""
import itertools

import helion
import torch

from kernels import launch
from tuning import timing
from tuning.workload import Task, Workload

SHAPES = [(4096, 16384), (4096, 12288), (4096, 8704), (4096, 8192), (2048, 32768)]


def time_gbps(wl: Workload, run) -> float:  # noqa: ANN001
    return max(wl.model_bytes() / timing.time_ms(run, len(wl.sets), wl.device) / 1e6 for _ in range(2))


def compiled(args: tuple, config: dict):  # noqa: ANN201
    bound = launch._kernels(False)["bwd"].bind(args)
    return bound.compile_config(launch._fit(config, bound))


def main_args(wl: Workload, s: dict, part: torch.Tensor) -> tuple:
    a = list(wl._bwd_args(s, part, None))
    a[12] = None  # no db partials: the db pass writes them
    return tuple(a)


def db_args(wl: Workload, s: dict, part: torch.Tensor) -> tuple:
    a = list(wl._bwd_args(s, part, None))
    a[9] = a[10] = a[11] = None  # dx, dz, dw_part: the column sum of dy only
    return tuple(a)


def probe(m: int, n: int) -> None:
    dev = torch.device("cuda")
    wl = Workload(Task("layer_norm", "bwd", m, n, "bfloat16", 1), dev)
    shipped = launch.choose_config("layer_norm", "bwd", m, n, 1, torch.bfloat16, dev)
    base = time_gbps(wl, wl.runner(shipped))
    print(f"== layer_norm bwd bf16 {m}x{n}  shipped {base:.0f} GB/s  {shipped}", flush=True)
    kp = 1 << (n - 1).bit_length()
    mains = []
    for mb, warps, rs in itertools.product((32, 64), (16, 32), (0, 3)):
        cfg = {"block_sizes": [mb, 1, kp, 1], "num_warps": warps, "num_stages": 1, "range_num_stages": [0, rs]}
        part = launch._partials(-(-m // mb), 2, 1, n, dev)
        try:
            fn = compiled(main_args(wl, wl.sets[0], part), cfg)
            args = [main_args(wl, s, part) for s in wl.sets]
            mains.append((time_gbps(wl, lambda i: fn(*args[i])), mb, warps, rs, cfg))
        except Exception as e:  # noqa: BLE001
            print(f"   main mb={mb} w={warps} rs={rs} FAIL {str(e).splitlines()[0][:80]}")
    mains.sort(key=lambda r: -r[0])
    for g, mb, w, rs, _ in mains[:4]:
        print(f"   main alone {g:6.0f} (bwd-model GB/s)  mb={mb} w={w} rs={rs}", flush=True)
    _, mb, _, _, main_cfg = mains[0]
    part = launch._partials(-(-m // mb), 2, 1, n, dev)
    dbs = []
    for lanes, inner, warps, rs in itertools.product((1024, 2048), (4, 8), (4, 8), (0, 3)):
        cfg = {"block_sizes": [mb, 1, lanes, inner], "num_warps": warps, "num_stages": 1, "range_num_stages": [0, rs]}
        try:
            fn = compiled(db_args(wl, wl.sets[0], part), cfg)
            args = [db_args(wl, s, part) for s in wl.sets]
            dbs.append((time_gbps(wl, lambda i: fn(*args[i])), lanes, inner, warps, rs, cfg))
        except Exception as e:  # noqa: BLE001
            print(f"   db lanes={lanes} in={inner} w={warps} rs={rs} FAIL {str(e).splitlines()[0][:80]}")
    dbs.sort(key=lambda r: -r[0])
    for g, lanes, inner, w, rs, _ in dbs[:4]:
        print(f"   db alone {g:6.0f} (x3 model)  lanes={lanes} in={inner} w={w} rs={rs}", flush=True)
    fmain = compiled(main_args(wl, wl.sets[0], part), main_cfg)
    fdb = compiled(db_args(wl, wl.sets[0], part), dbs[0][-1])
    margs = [main_args(wl, s, part) for s in wl.sets]
    dargs = [db_args(wl, s, part) for s in wl.sets]

    def run(i: int):  # noqa: ANN202
        fmain(*margs[i])
        fdb(*dargs[i])
        return launch._reduce_params(part, wl.weight, wl.bias)

    err = wl.check(run)
    g = time_gbps(wl, run)
    print(f"   main+db+reduce {g:6.0f} GB/s  {g / base:.3f}x shipped  (max rel err {err:.2e})", flush=True)


if __name__ == "__main__":
    for m, n in SHAPES:
        try:
            probe(m, n)
        except Exception as e:  # noqa: BLE001
            print(f"== {m}x{n} FAIL {e}", flush=True)
