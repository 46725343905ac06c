"""Channel tiles that exchange their row sums (bench/NOTES.md Next 2): the wide backward
with each program holding a 1/T-wide slice of the row, and the row's two sums formed
from the T slices' partial sums through global memory.

The fused backward reads x and dy once but keeps dW (and dB) for the whole row in
registers: LayerNorm spills from 16384 channels, both norms at 32768, and the padded
non-power-of-two widths (TritonBench's LayerNorm 8704-15872) spill earlier. The split
backward stops the spills by reading x and dy twice (coefficients kernel, then channel
tiles): five units of x's bytes where three are needed. Attempt 39's sibling tiles
re-read the whole row from the L2 in each program, and were latency-bound.

Here the T programs of a row block (adjacent program ids: the channel tile is the first
tiled dim, which Helion's grid decodes fastest) walk the same rows in step. Per row
each program loads its own slice of x and dy once, stores its partial sums
sum(dxhat * xhat) (and sum(dxhat)) in slot [row, :, t] of a small buffer, bumps the
row's counter (release), waits until the counter reaches T (acquire), sums the T slots
in a fixed order (deterministic), and writes dx and its slice's dW/dB partials from the
registers it already holds. HBM traffic is the fused schedule's; registers are those of
a 1/T-wide row.

The wait needs the T programs of a row block resident together. They are adjacent
program ids, and CUDA dispatches blocks in id order, so at most one group straddles the
resident set and the complete groups ahead of it finish and make room: the forward-
progress argument of CUB's decoupled look-back scan. Triton's interpreter and Helion's
reference mode run programs one after another, so only T = 1 runs on the CPU.

Landed as ``norm_bwd``'s exchange schedule (kernels/norm_kernels.py, NOTES attempt 55),
which allocates zeroed counters per call instead of resetting them; this standalone copy
is kept as the record of runs 1-4 (``bench/results/2026-11-23_h200_exchange_bwd_probe_run*``).

    python bench/prototypes/exchange_bwd_probe.py [--budget SECONDS] [--check-only]

Per shape: the shipped backward (its cached schedule) and each exchange config, kernel
time (CUDA graph over two rotating input sets; the counter's memset and the partials'
reduce included) and GB/s by the bwd byte model (3x the bytes of x), after checking
dx and dW/dB against the shipped backward.
"""

import itertools
import random
import time

import torch

import helion
import helion.language as hl

from kernels import launch
from kernels.launch import Variant
from probe_common import ProbeRun
from row_group_probe import Schedule, compare, make_set  # run from this folder

SLOT_STRIDE = 32  # floats per row of the sums buffer: one 128-byte line per row


def exchange_bwd(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    mean: torch.Tensor | None,
    rstd: torch.Tensor,
    dx: torch.Tensor,
    dw_part: torch.Tensor,
    db_part: torch.Tensor | None,
    sums: torch.Tensor,
    count: torch.Tensor,
    rms: hl.constexpr,
    tiles: hl.constexpr,
    reload: hl.constexpr,
) -> torch.Tensor:
    """dx for [M, K] rows and dW (dB) partials [P, K]; ``sums`` [M, 2, T] (row stride one
    cache line) and ``count`` [M] int32 zeros are the exchange's scratch. ``count`` is
    left zero again: each program bumps its rows' counters a second time once it has
    read the sums, and the last of the 2T bumps takes the counter back to 0 (no memset
    per call). ``reload``: read x and dy again after the wait (L1/L2 hits) instead of
    keeping them in registers across it."""
    m, k = x.size()
    k = hl.specialize(k)
    m_block = hl.register_block_size(m)
    inv_k = 1.0 / k
    for tile_k, tile_mo in hl.tile([k, m], block_size=[None, m_block]):
        dw_acc = torch.zeros_like(dw_part[tile_mo.id, tile_k])
        if db_part is not None:
            db_acc = torch.zeros_like(db_part[tile_mo.id, tile_k])
        for tile_m in hl.tile(tile_mo.begin, tile_mo.end):
            wf = weight[tile_k].to(torch.float32)[None, :]
            xf = x[tile_m, tile_k].to(torch.float32)
            dyf = dy[tile_m, tile_k].to(torch.float32)
            rs = rstd[tile_m][:, None]
            if rms:
                xhat = xf * rs
            else:
                xhat = (xf - mean[tile_m][:, None]) * rs
            dxhat = dyf * wf
            hl.store(sums, [tile_m, 0, tile_k.id], torch.sum(dxhat * xhat, dim=-1))
            if not rms:
                hl.store(sums, [tile_m, 1, tile_k.id], torch.sum(dxhat, dim=-1))
            # Every thread's store is ordered before the release by the barrier.
            hl.inline_triton("tl.debug_barrier()", args=(), output_like=None)
            hl.atomic_add(count, [tile_m], 1, sem="release")
            seen = hl.atomic_add(count, [tile_m], 0, sem="acquire")
            while torch.min(seen) < tiles:
                seen = hl.atomic_add(count, [tile_m], 0, sem="acquire")
            c2 = torch.sum(sums[tile_m, 0, :], dim=-1) * inv_k
            if not rms:
                c1 = torch.sum(sums[tile_m, 1, :], dim=-1) * inv_k
            done = hl.atomic_add(count, [tile_m], 1)
            hl.atomic_add(count, [tile_m], torch.where(done == 2 * tiles - 1, -2 * tiles, 0))
            if reload:
                xf = x[tile_m, tile_k].to(torch.float32)
                dyf = dy[tile_m, tile_k].to(torch.float32)
                if rms:
                    xhat = xf * rs
                else:
                    xhat = (xf - mean[tile_m][:, None]) * rs
                dxhat = dyf * wf
            du = dxhat - xhat * c2[:, None]
            if not rms:
                du = du - c1[:, None]
                db_acc = db_acc + torch.sum(dyf, dim=0)
            dw_acc = dw_acc + torch.sum(dyf * xhat, dim=0)
            hl.store(dx, [tile_m, tile_k], (du * rs).to(dx.dtype))
        hl.store(dw_part, [tile_mo.id, tile_k], dw_acc)
        if db_part is not None:
            hl.store(db_part, [tile_mo.id, tile_k], db_acc)
    return dx


KERNEL = helion.kernel(exchange_bwd, static_shapes=False, autotune_effort="none")

SHAPES = [("rms_norm", 2048, 32768), ("layer_norm", 2048, 32768), ("layer_norm", 4096, 16384)]


def configs(k: int):
    """(T, config, reload) points for a K-wide row, in a fixed shuffled order (a budget cut
    leaves an even sample). Run 1 (one row per step, tiles of 2048-8192, 4-32 warps) was
    latency-bound: a program waits on every row with one row's loads in flight. Runs 2-3
    took R rows a step (R rows' loads in flight together, one wait for them): best at 64
    values of x per thread (2048 channels x 2 rows on 2 warps, 254 registers), and
    LayerNorm spilled there (its dB accumulator). Run 4 adds ``reload`` (x and dy read
    again after the wait, so they are not live across it) and the self-resetting counter."""
    points = []
    for tile, rows, warps, reload in itertools.product((1024, 2048, 4096), (1, 2, 4, 8), (1, 2, 4, 8), (False, True)):
        if k % tile or not 16 <= tile * rows // (32 * warps) <= 128:
            continue
        # block sizes: m_block, the channel tile, the rows of one step
        points.append((k // tile, {"block_sizes": [64, tile, rows], "num_warps": warps, "num_stages": 1}, reload))
    random.Random(0).shuffle(points)
    return points


class Exchange:
    def __init__(
        self, variant: Variant, sets: list[dict], m: int, k: int, tiles: int, config: dict, reload: bool = False
    ) -> None:
        self.variant, self.sets, self.tiles, self.reload = variant, sets, tiles, reload
        mb = config["block_sizes"][0]
        n_params = 1 if variant.rms else 2
        dev = sets[0]["x"].device
        self.part = torch.empty((-(-m // mb), n_params, 1, k), dtype=torch.float32, device=dev)
        self.dw = torch.empty(k, dtype=torch.float32, device=dev)
        self.db = None if variant.rms else torch.empty_like(self.dw)
        self.sums = torch.empty(m * SLOT_STRIDE, dtype=torch.float32, device=dev).as_strided(
            (m, 2, tiles), (SLOT_STRIDE, tiles, 1)
        )
        self.count = torch.zeros(m, dtype=torch.int32, device=dev)
        bound = KERNEL.bind(self._args(sets[0]))
        self.fn = bound.compile_config(launch._fit(config, bound))

    def registers(self) -> str:
        """Registers and spills of the compiled Triton program (after a first call)."""
        try:
            jit = self.fn.__globals__["_helion_exchange_bwd"]
            kernels = [k for cache in jit.device_caches.values() for k in cache[0].values()]
            return " ".join(f"regs={k.n_regs} spills={k.n_spills}" for k in kernels)
        except Exception as e:  # noqa: BLE001 (a probe's side note, never its failure)
            return f"registers unknown ({type(e).__name__})"

    def _args(self, s: dict) -> tuple:
        m, _, k = s["x"].shape
        db_part = None if self.variant.rms else self.part[:, 1, 0]
        mean = None if s["mean"] is None else s["mean"].view(m)
        return (s["dy"].view(m, k), s["x"].view(m, k), s["w"].view(k), mean, s["rstd"].view(m), s["dx"].view(m, k),
                self.part[:, 0, 0], db_part, self.sums, self.count, self.variant.rms, self.tiles, self.reload)  # fmt: skip

    def __call__(self, i: int) -> None:
        self.fn(*self._args(self.sets[i]))
        launch._reduce_into(self.part, self.dw, self.db)


def check(device: torch.device) -> None:
    """dx, dW, dB against float64 (T = 1 on the CPU, where programs run one at a time)."""
    m, k = 6, 256
    tile_counts = (1,) if device.type == "cpu" else (1, 2, 4)
    for rms, tiles, rows, reload in itertools.product((True, False), tile_counts, (1, 2), (False, True)):
        s = make_set(rms, m, k, device, 0)
        config = {"block_sizes": [4, k // tiles, rows], "num_warps": 4, "num_stages": 1}
        sched = Exchange(Variant(rms=rms), [s], m, k, tiles, config, reload)
        for _ in range(2):  # the second call runs on the counters the first left
            s["dx"].zero_()
            sched(0)
        assert not sched.count.any(), "counters not reset"
        x = s["x"].view(m, k).double().requires_grad_()
        w = s["w"].view(k).double().requires_grad_()
        b = None if rms else s["b"].view(k).double().requires_grad_()
        y = torch.nn.functional.rms_norm(x, (k,), w, 1e-5) if rms else torch.nn.functional.layer_norm(x, (k,), w, b, 1e-5)
        y.backward(s["dy"].view(m, k).double())
        errs = [(s["dx"].view(m, k).double() - x.grad).abs().max().item(), (sched.dw.double() - w.grad).abs().max().item()]
        if not rms:
            errs.append((sched.db.double() - b.grad).abs().max().item())
        print("rms" if rms else "ln", f"T={tiles} rows={rows} reload={reload:d}", "max errors dx, dw(, db):", " ".join(f"{e:.3g}" for e in errs))
        assert max(errs) < 0.1, errs


def main() -> None:
    run = ProbeRun()
    check(run.device)
    if run.check_only:
        return
    stop_all = time.perf_counter() + run.budget
    for number, (kernel, m, k) in enumerate(SHAPES):
        variant = Variant(rms=kernel == "rms_norm")
        sets = [make_set(variant.rms, m, k, run.device, seed) for seed in (0, 1)]
        shipped_config = launch.choose_config(kernel, "bwd", m, k, 1, torch.bfloat16, run.device)

        def candidates():  # noqa: ANN202
            built = []  # the last candidate's schedule, for its register count
            for tiles, config, reload in configs(k):
                mb, tile, rows = config["block_sizes"]
                label = f"T={tiles:2d} m_block={mb:3d} tile={tile:5d} rows={rows} w={config['num_warps']:2d} reload={reload:d}"
                yield label, config, lambda tiles=tiles, config=config, reload=reload: built.append(
                    Exchange(variant, sets, m, k, tiles, config, reload)) or built[-1]  # fmt: skip
                print(f"    {label}: {built[-1].registers() if built else ''}", flush=True)
                built.clear()

        shipped = Schedule(variant, sets, m, k, m, shipped_config)
        stop = time.perf_counter() + (stop_all - time.perf_counter()) / (len(SHAPES) - number)
        compare(f"{kernel} {m}x{k} ({shipped_config})", shipped, candidates(), m, k, stop)


if __name__ == "__main__":
    main()
