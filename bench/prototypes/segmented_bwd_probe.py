"""Would a fused LayerNorm backward whose row is cut into power-of-two segments (8704 =
8192 + 512) beat the shipped one on TritonBench's non-power-of-two widths (bench/NOTES.md
attempt 62)?

The shipped fused backward holds a whole row in one power-of-two tile: at 4096x8704 that
is a 16384-wide tile with 47% of its lanes masked, and its tuner GB/s fall from 3461
(8192) and 3144 (16384) to 2061-2608 at 8704-15872. The masked lanes move no bytes but
run every instruction and both block reductions, so the program is bound by its
per-row work, not by HBM. Here one program keeps its rows' dW/dB sums in registers per
segment (up to three: A, B, C lanes, the last ones masked past K), adds the segments'
row sums into the row's two coefficients and writes dx segment by segment.

This is a feasibility probe in plain Triton (the shipped kernels are Helion's): the
segmented program, the same program on one power-of-two tile (its control), and the
shipped backward config through the tuner's own runner, on the same input sets, by the
tuner's timing (CUDA graph, inputs rotated past the L2, the dW/dB reduce included);
``--fused`` adds the shipped kernel fused on the power-of-two tile at 8 and 16 warps.

    python bench/prototypes/segmented_bwd_probe.py [--budget SECONDS] [--fused]
    TRITON_INTERPRET=1 python bench/prototypes/segmented_bwd_probe.py --check-only    # CPU: small rows, checked only
"""

import itertools
import json

import torch
import triton
import triton.language as tl

from probe_common import ProbeRun  # run from the repo root or this folder

from tuning import timing
from tuning.workload import Task, Workload


@triton.jit
def _segment(X, DY, W, row, mean, rstd, offs, K: tl.constexpr):
    """A segment's xhat, dy and w * dy (zero past K)."""
    live = offs < K
    x = tl.load(X + row * K + offs, mask=live, other=0.0).to(tl.float32)
    dy = tl.load(DY + row * K + offs, mask=live, other=0.0).to(tl.float32)
    w = tl.load(W + offs, mask=live, other=0.0).to(tl.float32)
    xhat = tl.where(live, (x - mean) * rstd, 0.0)
    return xhat, dy, dy * w


@triton.jit
def _segmented_bwd(
    X, DY, W, MEAN, RSTD, DX, DWP, DBP, M,
    K: tl.constexpr, A: tl.constexpr, B: tl.constexpr, C: tl.constexpr,
    ROWS: tl.constexpr, STAGES: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    oa = tl.arange(0, A)
    ob = A + tl.arange(0, B)
    oc = A + B + tl.arange(0, C)
    dwa = tl.zeros([A], tl.float32)
    dba = tl.zeros([A], tl.float32)
    dwb = tl.zeros([B], tl.float32)
    dbb = tl.zeros([B], tl.float32)
    dwc = tl.zeros([C], tl.float32)
    dbc = tl.zeros([C], tl.float32)
    for row in tl.range(pid * ROWS, tl.minimum(pid * ROWS + ROWS, M), num_stages=STAGES):
        mean = tl.load(MEAN + row)
        rstd = tl.load(RSTD + row)
        xa, dya, ga = _segment(X, DY, W, row, mean, rstd, oa, K)
        c2 = tl.sum(ga * xa, 0)
        c1 = tl.sum(ga, 0)
        if B > 1:
            xb, dyb, gb = _segment(X, DY, W, row, mean, rstd, ob, K)
            c2 += tl.sum(gb * xb, 0)
            c1 += tl.sum(gb, 0)
        if C > 1:
            xc, dyc, gc = _segment(X, DY, W, row, mean, rstd, oc, K)
            c2 += tl.sum(gc * xc, 0)
            c1 += tl.sum(gc, 0)
        c2 = c2 / K
        c1 = c1 / K
        tl.store(DX + row * K + oa, ((ga - xa * c2 - c1) * rstd).to(DX.dtype.element_ty), mask=oa < K)
        dwa += dya * xa
        dba += dya
        if B > 1:
            tl.store(DX + row * K + ob, ((gb - xb * c2 - c1) * rstd).to(DX.dtype.element_ty), mask=ob < K)
            dwb += dyb * xb
            dbb += dyb
        if C > 1:
            tl.store(DX + row * K + oc, ((gc - xc * c2 - c1) * rstd).to(DX.dtype.element_ty), mask=oc < K)
            dwc += dyc * xc
            dbc += dyc
    tl.store(DWP + pid * K + oa, dwa, mask=oa < K)
    tl.store(DBP + pid * K + oa, dba, mask=oa < K)
    if B > 1:
        tl.store(DWP + pid * K + ob, dwb, mask=ob < K)
        tl.store(DBP + pid * K + ob, dbb, mask=ob < K)
    if C > 1:
        tl.store(DWP + pid * K + oc, dwc, mask=oc < K)
        tl.store(DBP + pid * K + oc, dbc, mask=oc < K)


def segments(k: int, most: int) -> tuple[int, int, int]:
    """Up to ``most`` power-of-two segments covering k: the largest power of two under it,
    then the same for the rest, the last one rounded up (1: no segment)."""
    sizes, rest = [], k
    while rest > 0 and len(sizes) < most - 1:
        top = 1 << (rest.bit_length() - 1)
        sizes.append(top)
        rest -= top
    if rest > 0:
        sizes.append(triton.next_power_of_2(rest))
    return tuple(sizes + [1] * (3 - len(sizes)))


def runner(wl: Workload, segs: tuple[int, int, int], rows: int, warps: int, stages: int):
    """run(i): the probe's program on input set i, then the dW/dB reduce (torch's sum)."""
    m, k = wl.m, wl.k
    p = -(-m // rows)
    dwp = torch.empty((p, k), device=wl.device)
    dbp = torch.empty((p, k), device=wl.device)
    w = wl.weight.view(k)

    def run(i: int) -> tuple:
        s = wl.sets[i]
        _segmented_bwd[(p,)](
            s["x"], s["dy"], w, s["mean"], s["rstd"], s["dx"], dwp, dbp, m,
            k, *segs, rows, stages, num_warps=warps,
        )  # fmt: skip
        return dwp.sum(0).to(w.dtype), dbp.sum(0).to(w.dtype)

    return run


def main() -> None:
    probe = ProbeRun()
    entries = json.load(open("tuning/configs/nvidia_h200.json"))["entries"]
    m, widths = (64, (200, 96)) if probe.check_only else (4096, (8704, 10752, 12288, 12800, 8192, 16384))
    for n in widths:
        if probe.out_of_time():
            break
        wl = Workload(Task("layer_norm", "bwd", m, n, "bfloat16", 1), probe.device)
        gbps = lambda run: wl.model_bytes() / timing.time_ms(run, len(wl.sets), wl.device) / 1e6  # noqa: E731
        results = {}
        if not probe.check_only:
            shipped = wl.runner(entries[f"layer_norm/bwd/bfloat16/{m}x{n}"]["config"])
            wl.check(shipped)
            results["shipped"] = round(gbps(shipped))
        layouts = {"pow2": (triton.next_power_of_2(n), 1, 1), "seg2": segments(n, 2), "seg3": segments(n, 3)}
        for name, segs in layouts.items():
            if name != "pow2" and segs == layouts["pow2"] or name == "seg3" and segs == layouts["seg2"]:
                continue
            best = (0.0, None)
            for rows, warps, stages in itertools.product((32, 64), (8, 16), (1, 2)):
                run = runner(wl, segs, rows, warps, stages)
                err = wl.check(run)
                if probe.check_only:
                    print(f"{m}x{n} {name} {segs} rows {rows} w {warps} s {stages}: err {err:.3g}", flush=True)
                    break
                best = max(best, (round(gbps(run)), f"rows {rows} w {warps} s {stages} err {err:.3g}"))
            results[f"{name} {segs}"] = best
        if not probe.check_only:
            # The shipped kernel fused on the power-of-two tile, as the control above.
            for warps, stages in itertools.product((8, 16), (1, 2)) if "--fused" in probe.argv else ():
                config = {"block_sizes": [32, 1, triton.next_power_of_2(n), 1], "num_warps": warps, "num_stages": stages}
                fused = wl.runner(config)
                wl.check(fused)
                results[f"helion fused w {warps} s {stages}"] = round(gbps(fused))
            results["shipped again"] = round(gbps(shipped))
        print(f"{m}x{n}: " + "; ".join(f"{k} {v}" for k, v in results.items()), flush=True)


if __name__ == "__main__":
    main()
