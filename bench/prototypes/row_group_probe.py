"""Row groups for the split backward (bench/NOTES.md Next 3): does walking the rows in
groups that fit the L2 turn the split schedule's second read of x and dy into L2 hits?

The split backward (rows of 32768 channels) runs two kernels over all M rows: the row
coefficients (``norm_bwd_coef``: reads x and dy) and the channel-tiled main kernel
(``norm_bwd``: reads x and dy again, writes dx and per-program dW/dB partial rows). Five
units of x's bytes from HBM where three are needed. Here both kernels run once per group
of R rows instead: the group's x and dy (R x K x 4 bytes in bf16: 16 MB at R = 128,
K = 32768) are still in the H200's 60 MB L2 when the main kernel reads them again. The
main kernel cuts each group into a few m-blocks and wide channel tiles, so a group
launch still spreads over 64-512 programs, and each group writes its own partial rows
(M / m_block of them in all, reduced once at the end as now).

    python bench/prototypes/row_group_probe.py [--budget SECONDS] [--kernel-major]

Per shape it prints the shipped schedule and each grouped variant: kernel time (CUDA
graph over two rotating input sets, bytes past the L2) and GB/s by the bwd byte model
(3x the bytes of x), after checking dx and dW/dB against the shipped schedule's. With
``--kernel-major`` each variant is also timed with the same launches in kernel order
(every group's coefficients, then every group's main kernel): the launch count of the
grouped schedule without its L2 reuse, so the difference is what the reuse buys
(attempt 43).
"""

import itertools
import sys
import time

import torch

from kernels import heuristics, launch
from kernels.launch import Variant
from tuning import timing

SHAPES = [("layer_norm", 2048, 32768), ("rms_norm", 2048, 32768)]
GROUP_ROWS = [128, 256]
M_BLOCK_SPLITS = [2, 4, 8]  # m-blocks per group
TILES = [1024, 2048, 4096]
PROGRAMS = (64, 512)  # programs per group launch: enough to fill 132 SMs, no more
INNER = [2, 4]
WARPS = [4, 8]
ROW_STAGES = [3]  # the first run (m_block = R, 256-512 tiles) never won without it


def group_configs(k: int):
    """(R, main config) pairs whose group launch spreads over PROGRAMS[0]..PROGRAMS[1] programs.

    The first run of this probe tied m_block to R, so each program walked R rows of a
    256-512-channel tile: 0.07-0.39x of the shipped split (per-step loads too narrow).
    Here a group is cut into several m-blocks and the tiles are wide.
    """
    for rows, splits, tile in itertools.product(GROUP_ROWS, M_BLOCK_SPLITS, TILES):
        if not PROGRAMS[0] <= splits * (k // tile) <= PROGRAMS[1]:
            continue
        for inner, warps, stages in itertools.product(INNER, WARPS, ROW_STAGES):
            config = {"block_sizes": [rows // splits, 1, tile, inner], "num_warps": warps, "num_stages": 1,
                      "range_num_stages": [0, stages]}  # fmt: skip
            yield rows, config


def make_set(rms: bool, m: int, k: int, dev: torch.device, seed: int) -> dict:
    """x, dy, w, b and the forward's mean/rstd for one bf16 input set."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = (torch.randn(m, k, generator=gen) * 2 + 0.5).to(torch.bfloat16).to(dev)
    dy = torch.randn(m, k, generator=gen).to(torch.bfloat16).to(dev)
    w = (torch.randn(k, generator=gen) * 0.3 + 1).to(torch.bfloat16).to(dev)
    b = None if rms else (torch.randn(k, generator=gen) * 0.3).to(torch.bfloat16).to(dev)
    xf = x.float()
    mean = None if rms else xf.mean(-1, keepdim=True)
    centered = xf if rms else xf - mean
    rstd = torch.rsqrt(centered.pow(2).mean(-1, keepdim=True) + 1e-5)
    return {"x": x.view(m, 1, k), "dy": dy.view(m, 1, k), "w": w.view(1, k), "b": None if b is None else b.view(1, k),
            "mean": mean, "rstd": rstd, "dx": torch.empty_like(x).view(m, 1, k),
            "coef": torch.empty((2, m, 1), dtype=torch.float32, device=dev)}  # fmt: skip


def compiled(name: str, args: tuple, config: dict):  # noqa: ANN201
    bound = launch._kernels(False)[name].bind(args)
    return bound.compile_config(launch._fit(config, bound))


class Schedule:
    """Coefficients then main kernel per group of ``rows`` rows (rows = M: the shipped one;
    a main config whose channel tile spans the row is the fused schedule, with no
    coefficients kernel)."""

    def __init__(
        self, variant: Variant, sets: list[dict], m: int, k: int, rows: int, main_config: dict, interleave: bool = True
    ) -> None:
        self.variant, self.sets, self.m, self.k, self.rows = variant, sets, m, k, rows
        self.interleave = interleave  # False: every group's coefficients first (no L2 reuse)
        self.m_block = main_config["block_sizes"][0]
        self.split = main_config["block_sizes"][2] < k
        n_params = 1 if variant.rms else 2
        self.part = torch.empty((-(-m // self.m_block), n_params, 1, k), dtype=torch.float32, device=sets[0]["x"].device)
        self.dw = torch.empty(k, dtype=torch.float32, device=self.part.device)
        self.db = None if variant.rms else torch.empty_like(self.dw)
        s, g = sets[0], slice(0, rows)
        self.coef_fn = compiled("bwd_coef", self._coef_args(s, g), heuristics.coef_config(rows, k, 1, 132))
        self.main_fn = compiled("bwd", self._main_args(s, g, 0), main_config)

    def _coef_args(self, s: dict, g: slice) -> tuple:
        mean = None if s["mean"] is None else s["mean"][g]
        return (s["dy"][g], s["x"][g], None, s["w"], s["b"], mean, s["rstd"][g], s["coef"][:, g], 0.0,
                self.variant.rms, self.variant.gate)  # fmt: skip

    def _main_args(self, s: dict, g: slice, p0: int) -> tuple:
        mean = None if s["mean"] is None else s["mean"][g]
        p1 = p0 + -(-(g.stop - g.start) // self.m_block)
        return launch._bwd_args(
            self.variant, s["dy"][g], s["x"][g], None, s["w"], s["b"], mean, s["rstd"][g],
            s["coef"][:, g] if self.split else None,
            None, s["dx"][g], None, *launch._grad_targets(self.part[p0:p1], self.dw, self.db, 1, self.k), 0.0,
        )  # fmt: skip

    def __call__(self, i: int) -> None:
        s = self.sets[i]
        groups = [slice(r0, min(self.m, r0 + self.rows)) for r0 in range(0, self.m, self.rows)]
        for g in groups:
            if self.split:
                self.coef_fn(*self._coef_args(s, g))
            if self.interleave:
                self.main_fn(*self._main_args(s, g, g.start // self.m_block))
        if not self.interleave:
            for g in groups:
                self.main_fn(*self._main_args(s, g, g.start // self.m_block))
        launch._reduce_into(self.part, self.dw, self.db)


def gbps(sched: Schedule, m: int, k: int) -> float:
    ms = timing.time_ms(sched, len(sched.sets), sched.part.device)
    return 3 * m * k * 2 / ms / 1e6


def checked_gbps(build, want: tuple, m: int, k: int, label: str) -> float | None:  # noqa: ANN001
    """GB/s (bf16, bwd byte model) of the schedule ``build()`` makes, after checking its dx,
    dW and dB on set 0 against ``want`` (relative error 2e-2); None, with a line saying why,
    if it is wrong or fails."""
    try:
        sched = build()
        sched(0)
        torch.cuda.synchronize()
        errs = [(got.float() - ref.float()).abs().max().item() / max(ref.float().abs().max().item(), 1e-6)
                for got, ref in zip((sched.sets[0]["dx"], sched.dw, sched.db), want) if ref is not None]  # fmt: skip
        if max(errs) > 2e-2:
            print(f"  {label}: WRONG (relative error {max(errs):.3g})", flush=True)
            return None
        return gbps(sched, m, k)
    except Exception as e:  # noqa: BLE001
        print(f"  {label}: FAIL {str(e)[:160]}", flush=True)
        return None


def compare(title: str, shipped, candidates, m: int, k: int, stop: float) -> bool:  # noqa: ANN001
    """Time the shipped schedule, then each (label, config, build) of ``candidates`` against
    it, checked against its results, until ``stop`` (a perf_counter time); prints a line
    per candidate and the best. False when the budget ran out."""
    shipped(0)
    torch.cuda.synchronize()
    sets = shipped.sets
    want = (sets[0]["dx"].clone(), shipped.dw.clone(), None if shipped.db is None else shipped.db.clone())
    base = gbps(shipped, m, k)
    print(f"{title} shipped {base:6.0f} GB/s", flush=True)
    best = (0.0, None)
    for label, config, build in candidates:
        if time.perf_counter() > stop:
            print("budget spent", flush=True)
            return False
        got = checked_gbps(build, want, m, k, f"{label} {config}")
        if got is None:
            continue
        best = max(best, (got, config), key=lambda t: t[0])
        print(f"  {label}: {got:6.0f} GB/s ({got / base:.2f}x)", flush=True)
    print(f"{title}: best {best[0]:.0f} GB/s ({best[0] / base:.2f}x shipped) {best[1]}", flush=True)
    return True


def main() -> None:
    budget = float(sys.argv[sys.argv.index("--budget") + 1]) if "--budget" in sys.argv else 1e9
    orders = (True, False) if "--kernel-major" in sys.argv else (True,)
    stop = time.perf_counter() + budget
    dev = torch.device("cuda")
    for kernel, m, k in SHAPES:
        variant = Variant(rms=kernel == "rms_norm")
        sets = [make_set(variant.rms, m, k, dev, seed) for seed in (0, 1)]
        shipped_config = launch.choose_config(kernel, "bwd", m, k, 1, torch.bfloat16, dev)

        def candidates():  # noqa: ANN202
            for (rows, config), interleave in itertools.product(group_configs(k), orders):
                mb, _, tile, inner = config["block_sizes"]
                label = f"R={rows:4d} m_block={mb:3d} tile={tile:5d} in={inner} w={config['num_warps']}"
                label += "" if interleave else " kernel-major"
                yield label, config, lambda rows=rows, config=config, interleave=interleave: Schedule(
                    variant, sets, m, k, rows, config, interleave
                )

        shipped = Schedule(variant, sets, m, k, m, shipped_config)
        if not compare(f"{kernel} {m}x{k} ({shipped_config})", shipped, candidates(), m, k, stop):
            return


if __name__ == "__main__":
    main()
