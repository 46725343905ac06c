"""Does a forward that walks its rows in a pipelined loop pay on the wide LayerNorm rows
(bench/NOTES.md attempt 69)?

The whole-row forward (``norm_fwd``) is one row per program, or a persistent grid whose
row loop Helion 1.4 emits without ``num_stages`` (``tl.range(pid, total, _NUM_SM)``):
either way a row's load starts only when the row before it on that program is written,
and 2-3 programs an SM (the 16384-lane tile at 8 warps, 80-128 registers) leave each
SM's loads idle while its rows reduce. At 4096 x 10752-12288 the time a row is near
constant (width_scan_probe). Here a program owns ``m_block`` rows and walks them in an
inner loop whose ``range_num_stages`` has Triton prefetch the next row into shared
memory (cp.async) while this one reduces, as the backward's row loop does (attempt 30).

A plain LayerNorm inference forward (weight, bias, 16-bit x, the first-value pilot of
``norm_fwd``), [M, K]; timed against the shipped config by the tuner's timing (CUDA graph,
inputs rotated past the L2), best of 2 rounds in turns, with registers.

    python bench/prototypes/row_loop_fwd_probe.py [--budget SECONDS] [--widths N,...] [--check-only]
"""

import torch

import helion
import helion.language as hl
from probe_common import ProbeRun, best_gbps, runner_registers, shipped_entries  # run from the repo root or this folder

from tuning.workload import Task, Workload

WIDTHS = [10752, 11776, 12800, 13824, 8704, 9728, 14848, 15872, 12288]
# (m_block, warps, stages)
LOOPS = [(16, 8, 2), (16, 8, 1), (16, 16, 2), (16, 16, 3), (32, 4, 2)]


@helion.kernel(static_shapes=True, autotune_effort="none")
def row_loop_layer_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, out: torch.Tensor, eps: float, hoisted: hl.constexpr
) -> torch.Tensor:
    """y = (x - mean) * rstd * w + b over the last dim of [M, K], a program's m_block
    rows walked one a step (the loop Triton may pipeline). ``hoisted``: w and b loaded once
    a program, before its row loop (held in registers), rather than per row in the loop,
    where Triton prefetches them with x (shared memory for three rows a stage)."""
    m, k = x.size()
    m_block = hl.register_block_size(m)
    inv_k = 1.0 / k
    for tile_b in hl.tile(m, block_size=m_block):
        if hoisted:
            w_held = weight[None, :]
            b_held = bias[None, :]
        for tile_m in hl.tile(tile_b.begin, tile_b.end, block_size=1):
            xf = x[tile_m, :].to(torch.float32)
            pilot = x[tile_m, 0].to(torch.float32)
            pilot = torch.where(pilot == pilot, pilot, 0.0)
            xs = xf - pilot[:, None]
            shift = torch.sum(xs, dim=-1) * inv_k
            xc = xs - shift[:, None]
            var = torch.sum(xc * xc, dim=-1) * inv_k
            rs = 1.0 / torch.sqrt(var + eps)
            if hoisted:
                wv, bv = w_held, b_held
            else:
                wv, bv = weight[None, :], bias[None, :]
            y = xc * rs[:, None] * wv.to(torch.float32) + bv.to(torch.float32)
            hl.store(out, [tile_m, slice(None)], y.to(out.dtype))  # not `out[...] =`: see norm_bwd on range_num_stages
    return out


def loop_runner(wl: Workload, m_block: int, warps: int, stages: int, hoisted: bool = False):  # noqa: ANN201
    sets = [(s["x"].view(wl.m, wl.k), wl.weight.view(wl.k), wl.bias.view(wl.k), s["out"].view(wl.m, wl.k)) for s in wl.sets]
    bound = row_loop_layer_norm.bind((*sets[0], 1e-5, hoisted))
    config = {"block_sizes": [m_block], "num_warps": warps, "num_stages": 1}
    if stages > 1:
        config["range_num_stages"] = [0, stages]
    compiled = bound.compile_config(helion.Config(**config))
    return (lambda i: compiled(*sets[i], 1e-5, hoisted)), compiled


def main() -> None:
    probe = ProbeRun()
    entries = shipped_entries()
    widths = [int(w) for w in probe.option("--widths").split(",")] if probe.option("--widths") else WIDTHS
    for n in widths:
        if probe.out_of_time():
            break
        wl = Workload(Task("layer_norm", "infer", 4096, n, "bfloat16", 1), probe.device)
        config = entries[f"layer_norm/infer/bfloat16/4096x{n}"]["config"]
        runs = {"shipped": wl.runner(config)}
        wl.check(runs["shipped"])
        for (m_block, warps, stages), hoisted in [(loop, h) for loop in LOOPS for h in (False, True)]:
            name = f"loop {m_block} rows w{warps} s{stages}" + (" hoisted" if hoisted else "")
            try:
                run, _ = loop_runner(wl, m_block, warps, stages, hoisted)
                run(0)
                x, w, b, out = (t.float() for t in (wl.sets[0]["x"], wl.weight, wl.bias, wl.sets[0]["out"]))
                ref = torch.nn.functional.layer_norm(x.view(wl.m, wl.k), (wl.k,), w.view(-1), b.view(-1), 1e-5)
                err = (out.view(wl.m, wl.k) - ref).abs().max().item()
                if err > 0.1:
                    raise ValueError(f"max error {err}")
            except Exception as e:  # noqa: BLE001 - report and go on
                print(f"  {name}: failed ({type(e).__name__}: {str(e)[:200]})", flush=True)
                continue
            runs[name] = run
        print(f"layer_norm/infer/bfloat16/4096x{n} (shipped {config})", flush=True)
        if probe.check_only:
            continue
        best = best_gbps(wl, runs, rounds=2)
        for name, gbps in sorted(best.items(), key=lambda kv: -kv[1]):
            print(f"  {name:24s} {gbps:6.0f} GB/s ({gbps / best['shipped']:.3f}x shipped, {runner_registers(runs[name])} regs)", flush=True)
        del wl, runs


if __name__ == "__main__":
    main()
