"""Sibling column tiles for the wide backward (bench/NOTES.md Next 2-3): one launch in
which every program recomputes its rows' coefficients from the whole row, then writes
dx and the dW/dB partials of its own channel tile.

The split backward reads x and dy twice from HBM (coefficients kernel, then the
channel-tiled main kernel over all M rows): five units of x's bytes where three are
needed. The fused backward reads them once but holds dW (and dB) for the whole row in
registers: LayerNorm spills at 16384 channels, and both spill at 32768. Here each of G
programs of a row block (the G channel tiles of the same rows, adjacent program ids)
walks the whole row in chunks for the two row sums, then re-reads its own tile for dx
and dW/dB. The G programs read the same rows at about the same time, so one of them
brings a row from HBM and the others, and the tile's re-read, hit the L2: HBM traffic
as the fused schedule's, with the register footprint of a 1/G-wide row.

    python bench/prototypes/recompute_bwd_probe.py [--budget SECONDS]

Per shape: the shipped backward (its cached schedule) and each sibling config, kernel
time (CUDA graph over two rotating input sets) and GB/s by the bwd byte model (3x the
bytes of x), after checking dx and dW/dB against the shipped backward.
"""

import itertools
import random
import sys
import time

import torch

import helion
import helion.language as hl

from kernels import launch
from kernels.launch import Variant
from row_group_probe import Schedule, compare, make_set  # the sibling probe's harness (run from this folder)


def sibling_bwd(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    mean: torch.Tensor | None,
    rstd: torch.Tensor,
    dx: torch.Tensor,
    dw_part: torch.Tensor,
    db_part: torch.Tensor | None,
    rms: hl.constexpr,
) -> torch.Tensor:
    """dx for [M, K] rows, dW (and dB) partials [P, K] per program row block."""
    m, k = x.size()
    k = hl.specialize(k)
    m_block = hl.register_block_size(m)
    lanes = hl.register_block_size(k)
    inv_k = 1.0 / k
    for tile_k, tile_mo in hl.tile([k, m], block_size=[None, m_block]):
        dw_acc = torch.zeros_like(dw_part[tile_mo.id, tile_k])
        if db_part is not None:
            db_acc = torch.zeros_like(db_part[tile_mo.id, tile_k])
        for tile_m in hl.tile(tile_mo.begin, tile_mo.end):
            rs = rstd[tile_m]
            # sum(dxhat * xhat) = rs * sum(dy * w * (x - mean)); sum(dxhat) = sum(dy * w)
            acc2 = hl.zeros([tile_m, lanes], dtype=torch.float32)
            if not rms:
                acc1 = hl.zeros([tile_m, lanes], dtype=torch.float32)
            for tile_c in hl.tile(k, block_size=lanes):
                xc = x[tile_m, tile_c].to(torch.float32)
                dxh = dy[tile_m, tile_c].to(torch.float32) * weight[tile_c].to(torch.float32)[None, :]
                if rms:
                    acc2 = acc2 + dxh * xc
                else:
                    acc2 = acc2 + dxh * (xc - mean[tile_m][:, None])
                    acc1 = acc1 + dxh
            c2 = torch.sum(acc2, dim=-1) * rs * inv_k
            xf = x[tile_m, tile_k].to(torch.float32)
            dyf = dy[tile_m, tile_k].to(torch.float32)
            if rms:
                xhat = xf * rs[:, None]
            else:
                xhat = (xf - mean[tile_m][:, None]) * rs[:, None]
            dxhat = dyf * weight[tile_k].to(torch.float32)[None, :]
            dw_acc = dw_acc + torch.sum(dyf * xhat, dim=0)
            du = dxhat - xhat * c2[:, None]
            if not rms:
                c1 = torch.sum(acc1, dim=-1) * inv_k
                du = du - c1[:, None]
                db_acc = db_acc + torch.sum(dyf, dim=0)
            hl.store(dx, [tile_m, tile_k], (du * rs[:, None]).to(dx.dtype))
        hl.store(dw_part, [tile_mo.id, tile_k], dw_acc)
        if db_part is not None:
            hl.store(db_part, [tile_mo.id, tile_k], db_acc)
    return dx


KERNEL = helion.kernel(sibling_bwd, static_shapes=False, autotune_effort="none")

SHAPES = [("rms_norm", 2048, 32768), ("layer_norm", 2048, 32768), ("layer_norm", 4096, 16384)]
TILES = [2, 4]  # channel tiles per row (G)
M_BLOCKS = [16, 32]
LANES = [2048, 4096]
WARPS = [8, 16]
STAGES = [(0, 0), (3, 2)]  # (row loop, chunk loop) range_num_stages


def configs(k: int):
    """Every point, in a fixed shuffled order (a budget cut leaves an even sample)."""
    points = list(itertools.product(TILES, M_BLOCKS, LANES, WARPS, STAGES))
    random.Random(0).shuffle(points)
    for g, mb, lanes, warps, (row_st, chunk_st) in points:
        if k // g < lanes:
            continue
        # block sizes: m_block, lanes (the chunk loop's), tile_k, the row loop's rows (1)
        yield {"block_sizes": [mb, lanes, k // g, 1], "num_warps": warps, "num_stages": 1,
               "range_num_stages": [0, row_st, chunk_st]}  # fmt: skip


class Sibling:
    def __init__(self, variant: Variant, sets: list[dict], m: int, k: int, config: dict) -> None:
        self.variant, self.sets = variant, sets
        mb = config["block_sizes"][0]
        n_params = 1 if variant.rms else 2
        dev = sets[0]["x"].device
        self.part = torch.empty((-(-m // mb), n_params, 1, k), dtype=torch.float32, device=dev)
        self.dw = torch.empty(k, dtype=torch.float32, device=dev)
        self.db = None if variant.rms else torch.empty_like(self.dw)
        bound = KERNEL.bind(self._args(sets[0]))
        self.fn = bound.compile_config(launch._fit(config, bound))

    def _args(self, s: dict) -> tuple:
        """The row-group probe's [M, 1, K] set as this kernel's [M, K] arguments."""
        m, _, k = s["x"].shape
        db_part = None if self.variant.rms else self.part[:, 1, 0]
        mean = None if s["mean"] is None else s["mean"].view(m)
        return (s["dy"].view(m, k), s["x"].view(m, k), s["w"].view(k), mean, s["rstd"].view(m), s["dx"].view(m, k),
                self.part[:, 0, 0], db_part, self.variant.rms)  # fmt: skip

    def __call__(self, i: int) -> None:
        self.fn(*self._args(self.sets[i]))
        launch._reduce_into(self.part, self.dw, self.db)


def check_cpu() -> None:
    """Interpreter check of the kernel against a float64 reference (TRITON_INTERPRET=1)."""
    m, k = 6, 128
    for rms in (True, False):
        s = make_set(rms, m, k, torch.device("cpu"), 0)
        sched = Sibling(Variant(rms=rms), [s], m, k, {"block_sizes": [2, 32, 64, 1], "num_warps": 4, "num_stages": 1})
        sched.fn(*sched._args(s))
        x = s["x"].view(m, k).double().requires_grad_()
        w = s["w"].view(k).double().requires_grad_()
        b = None if rms else s["b"].view(k).double().requires_grad_()
        y = torch.nn.functional.rms_norm(x, (k,), w, 1e-5) if rms else torch.nn.functional.layer_norm(x, (k,), w, b, 1e-5)
        y.backward(s["dy"].view(m, k).double())
        part = sched.part.sum(0)[:, 0].double()
        print("rms" if rms else "ln", "dx err", (s["dx"].view(m, k).double() - x.grad).abs().max().item(),
              "dw err", (part[0] - w.grad).abs().max().item(),
              "db err", None if rms else (part[1] - b.grad).abs().max().item())


def main() -> None:
    if "--cpu" in sys.argv:
        check_cpu()
        return
    budget = float(sys.argv[sys.argv.index("--budget") + 1]) if "--budget" in sys.argv else 1e9
    start = time.perf_counter()
    dev = torch.device("cuda")
    for number, (kernel, m, k) in enumerate(SHAPES):
        variant = Variant(rms=kernel == "rms_norm")
        sets = [make_set(variant.rms, m, k, dev, seed) for seed in (0, 1)]
        shipped_config = launch.choose_config(kernel, "bwd", m, k, 1, torch.bfloat16, dev)

        def candidates():  # noqa: ANN202
            for config in configs(k):
                mb, lanes, tile, _ = config["block_sizes"]
                label = (f"G={k // tile} m_block={mb:3d} lanes={lanes:5d} w={config['num_warps']:2d} "
                         f"st={config['range_num_stages'][1:]}")  # fmt: skip
                yield label, config, lambda config=config: Sibling(variant, sets, m, k, config)

        shipped = Schedule(variant, sets, m, k, m, shipped_config)
        compare(f"{kernel} {m}x{k} ({shipped_config})", shipped, candidates(), m, k,
                start + budget * (number + 1) / len(SHAPES))


if __name__ == "__main__":
    main()
