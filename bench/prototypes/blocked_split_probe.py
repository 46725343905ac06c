"""The split backward in row blocks that stay in L2 (bench/NOTES.md Next 1; attempt 43).

The split backward (rows too wide for a register-resident dW accumulator) runs
``norm_bwd_coef`` over all rows (reads x and dy), then ``norm_bwd`` in channel tiles
(reads x and dy again, writes dx): 5 tensor-passes where the fused schedule moves 3.
At 2048x32768 bf16 x and dy are 256 MB together, so the second read comes from HBM.

Cut the rows into blocks whose x and dy fit in L2 (16-32 MB of the H200's 60) and run
both kernels block by block: coef(b), main(b), coef(b + 1), ... The second read of
each block should then hit L2, leaving HBM the fused schedule's 3 passes, at the price
of two launch tails per block. The dW/dB partial rows of every block go into one
buffer and one reduce sums them, as now.

For each shape: the shipped backward (coef + main + reduce over all rows) against the
blocked sequence at two block sizes and four main-kernel tilings, each timed as one
CUDA graph of the whole backward, in turns (``tuning.timing.interleaved_ms``); dx and
dW/dB checked against the shipped backward.

    python bench/prototypes/blocked_split_probe.py
"""

import torch

from kernels import heuristics, launch
from kernels.launch import Variant
from tuning import timing

SHAPES = [("rms_norm", 2048, 32768), ("layer_norm", 2048, 32768), ("layer_norm", 4096, 16384)]
BLOCK_MB = (16, 32)
TILINGS = [(16, 2048), (32, 2048)]  # (rows per program, channel tile); 1024 ran 0.25-0.5x (run 1)

_memo: dict = {}


def _compiled(name: str, args: tuple, config: dict):
    key = (name, tuple(a.shape if torch.is_tensor(a) else a for a in args), repr(config))
    if key not in _memo:
        bound = launch._kernels(False)[name].bind(args)
        _memo[key] = bound.compile_config(launch._fit(config, bound))
    return _memo[key]


class Problem:
    def __init__(self, op: str, m: int, k: int, dev: torch.device, dtype=torch.bfloat16) -> None:
        self.rms = op == "rms_norm"
        self.variant = Variant(rms=self.rms)
        self.m, self.k, self.dtype = m, k, dtype
        gen = torch.Generator(device=dev).manual_seed(0)
        self.x = torch.randn(m, 1, k, device=dev, dtype=dtype, generator=gen) * 2 + 0.5
        self.dy = torch.randn(m, 1, k, device=dev, dtype=dtype, generator=gen)
        self.w = (1 + 0.1 * torch.randn(1, k, device=dev, generator=gen)).to(dtype)
        self.b = None if self.rms else (0.1 * torch.randn(1, k, device=dev, generator=gen)).to(dtype)
        xf = self.x.float()
        self.mean = None if self.rms else xf.mean(-1)
        centred = xf if self.rms else xf - self.mean[..., None]
        self.rstd = torch.rsqrt(centred.square().mean(-1) + 1e-5)
        self.coef = torch.empty((2, m, 1), device=dev, dtype=torch.float32)
        self.dx = torch.empty_like(self.x)
        self.dw = torch.empty_like(self.w).view(-1)
        self.db = None if self.rms else torch.empty_like(self.b).view(-1)
        self.n_params = 1 if self.rms else 2
        self.shipped = launch.choose_config(self.variant.tuning_name, "bwd", m, k, 1, dtype, dev)
        self.coef_config = heuristics.coef_config(m, k, 1, launch._num_sms(dev))

    def _rows(self, r0: int, r1: int):
        mean = None if self.mean is None else self.mean[r0:r1]
        return self.dy[r0:r1], self.x[r0:r1], mean, self.rstd[r0:r1], self.coef[:, r0:r1]

    def plan(self, block_rows: int, config: dict, interleave: bool = True):
        """The backward as a list of (compiled call, args): per row block a coef and a
        main launch (block_rows = m: the shipped sequence), then one reduce. Without
        ``interleave`` the same launches run kernel by kernel (every coef, then every
        main): the launch count of the blocked sequence without its L2 reuse."""
        m_block = config["block_sizes"][0]
        blocks = [(r0, min(self.m, r0 + block_rows)) for r0 in range(0, self.m, block_rows)]
        parts = sum(-(-(r1 - r0) // m_block) for r0, r1 in blocks)
        part = torch.empty((parts, self.n_params, 1, self.k), device=self.x.device, dtype=torch.float32)
        calls, mains, p0 = [], [], 0
        for r0, r1 in blocks:
            dy, x, mean, rstd, coef = self._rows(r0, r1)
            split = config["block_sizes"][2] < self.k
            if split:
                cargs = (dy, x, None, self.w, self.b, mean, rstd, coef, 0.0, self.rms, "none")
                calls.append((_compiled("bwd_coef", cargs, self.coef_config), cargs))
            p1 = p0 + -(-(r1 - r0) // m_block)
            margs = launch._bwd_args(
                self.variant, dy, x, None, self.w, self.b, mean, rstd, coef if split else None, None,
                self.dx[r0:r1], None, part[p0:p1], True, 0.0,
            )  # fmt: skip
            (calls if interleave else mains).append((_compiled("bwd", margs, config), margs))
            p0 = p1
        calls += mains
        rargs = (part.view(parts, self.n_params, self.k), self.dw, self.db)
        rconf = heuristics.reduce_config(parts, self.k, launch._num_sms(self.x.device))
        calls.append((_compiled("reduce", rargs, rconf), rargs))

        def run(_i: int) -> None:
            for fn, args in calls:
                fn(*args)

        return run

    def result(self):
        return self.dx.clone(), self.dw.clone(), None if self.db is None else self.db.clone()


def _tiling(base: dict, m_block: int, tile_k: int) -> dict:
    config = {n: v for n, v in base.items() if n not in ("pid_type", "range_num_stages", "num_sm_multiplier")}
    config["block_sizes"] = [m_block, 1, tile_k, 4]
    config["num_warps"] = 8
    config["num_stages"] = 2
    return config


def main() -> None:
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # CPU: a smoke test (TRITON_INTERPRET=1)
    shapes = SHAPES if dev.type == "cuda" else [("rms_norm", 64, 512), ("layer_norm", 64, 512)]
    for op, m, k in shapes:
        p = Problem(op, m, k, dev)
        row_bytes = 2 * k * p.x.element_size()  # x and dy
        runs, names = [p.plan(m, p.shipped)], ["shipped"]
        p.plan(m, p.shipped)(0)
        want = p.result()
        for mb in BLOCK_MB if dev.type == "cuda" else (0.015,):
            block_rows = max(16, int(mb * 2**20) // row_bytes)
            for m_block, tile_k in TILINGS if dev.type == "cuda" else [(16, 128)]:
                config = _tiling(p.shipped, m_block, tile_k)
                for interleave in (True, False):
                    run = p.plan(block_rows, config, interleave)
                    run(0)
                    got = p.result()
                    for g, w in zip(got, want):
                        if w is not None:
                            torch.testing.assert_close(g.float(), w.float(), rtol=2e-2, atol=2e-2)
                    runs.append(run)
                    order = "interleaved" if interleave else "kernel-major"
                    names.append(f"{block_rows}-row blocks ({mb} MB), {m_block} rows x {tile_k} ch, {order}")
        ms = timing.interleaved_ms(runs, 1, dev)
        base = ms[0]
        print(f"{op} bf16 {m}x{k}: shipped {p.shipped}", flush=True)
        for name, t in zip(names, ms):
            gbps = 3 * p.x.numel() * p.x.element_size() / t / 1e6
            print(f"  {name:62s} {t * 1e3:8.1f} us  {gbps:6.0f} GB/s (bwd, 3x)  {base / t:.3f}x", flush=True)


if __name__ == "__main__":
    main()
