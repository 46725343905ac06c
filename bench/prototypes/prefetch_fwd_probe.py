"""Does the two-pass forward's output pass gain from loading a step ahead (bench/NOTES.md
attempt 71)?

Attempt 68 found the two-pass forward's time goes by steps, not lanes. The SASS of the
shipped program (triton 3.6, sm_90, offline) says which steps: with the row's width a
compile-time constant the statistics pass is unrolled and every chunk's load issued at
once, but in the output pass each step's loads come after the previous step's store,
and ptxas cannot move a load above a store it cannot prove apart, so every step waits a
full load latency (``range_unroll_factors`` unrolls the loop and keeps that order).
Here the output pass carries the next chunk of x in registers: step j loads chunk j and
writes chunk j - 1, so a load is in flight while the step before it computes and stores.

A plain LayerNorm inference forward (weight, bias, 16-bit x, the 16-value pilot of
``norm_fwd_chunked``), [M, K], ``ahead`` = 0 (as shipped) or 1; timed against the
shipped config by the tuner's timing (CUDA graph, inputs rotated past the L2), best of 2
rounds in turns, with registers.

Then (``readonly``, the default variants; ``--ahead`` adds the above): the output pass's
loads of x, w and b as ``ld.global.nc`` (inline PTX: Triton has no read-only load), which
ptxas may move above an earlier store, with the loop unrolled 2 or 8 times
(``range_unroll_factors``) so that there is a later step's load to move.

    python bench/prototypes/prefetch_fwd_probe.py [--budget SECONDS] [--widths N,...] [--ahead] [--check-only]
"""

import torch

import helion
import helion.language as hl
from probe_common import ProbeRun, best_gbps, runner_registers, shipped_entries  # run from the repo root or this folder

from tuning.workload import Task, Workload

WIDTHS = [10752, 11776, 12800, 13824, 14848, 15360, 8704, 9728, 11264, 13312, 12288]
# (lanes, warps)
CHUNKS = [(2048, 8), (2048, 16), (4096, 16), (1024, 8)]


# The output pass's loads as read-only (ld.global.nc), which ptxas may issue before the
# previous step's store. Eight 16-bit values a thread (one 16-byte load) in the layout the
# store gives them; a group past the row's end is read at its last group (K % 8 == 0) and
# its lanes are masked at the store.
def _read_only_source(evict: str, row: bool) -> str:
    """Inline Triton: the chunk at ``cols`` of row ``rows`` of ``p`` (or of the vector
    ``p``, ``row`` False) by ``ld.global.nc`` with the L1 eviction priority ``evict``."""
    base = "{p} + {rows}[:, None] * {k}" if row else "{p} + tl.zeros([1, 1], tl.int32)"
    return f"""ro_cols = tl.minimum({{cols}}, {{k}} - 8)
ro_ptr = {base} + ro_cols[None, :]
tl.inline_asm_elementwise(
    "ld.global.nc.L1::{evict}.v4.b32 {{{{$0, $1, $2, $3}}}}, [$4];",
    "=r,=r,=r,=r,l,l,l,l,l,l,l,l", [ro_ptr], dtype=tl.bfloat16, is_pure=True, pack=8,
)"""


_READ_ONLY_ROW = _read_only_source("evict_first", row=True)  # x: read once more, then not again
_READ_ONLY_VEC = _read_only_source("evict_last", row=False)  # w, b: read by every row


@helion.kernel(static_shapes=True, autotune_effort="none")
def two_pass_layer_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, out: torch.Tensor, eps: float,
    ahead: hl.constexpr, step: hl.constexpr, readonly: hl.constexpr,
) -> torch.Tensor:  # fmt: skip
    """y = (x - mean) * rstd * w + b over the last dim of [M, K], one row a program, the
    row walked twice in chunks of the config's block size: sums about a 16-value pilot P, then the output.
    ``ahead``: the output pass loads chunk j of x (1; and of the weight and bias: 2) while
    it writes chunk j - 1 (``step``: the block size again, as a constant)."""
    m, k = x.size()
    lanes = hl.register_block_size(k)
    inv_k = 1.0 / k
    for tile_m in hl.tile(m, block_size=1):
        pilot = hl.zeros([tile_m, 1], dtype=torch.float32)
        for tile_p in hl.tile(16, block_size=16):  # one step
            xp = hl.load(x, [tile_m, tile_p], eviction_policy="evict_last").to(torch.float32)
            pilot = torch.sum(xp, dim=-1, keepdim=True) * (1.0 / 16)
        acc_s = hl.zeros([tile_m, lanes], dtype=torch.float32)
        acc_q = hl.zeros([tile_m, lanes], dtype=torch.float32)
        for tile_k in hl.tile(k, block_size=lanes):
            d = hl.load(x, [tile_m, tile_k], eviction_policy="evict_last").to(torch.float32) - pilot
            d = torch.where((tile_k.index < k)[None, :], d, 0.0)
            acc_s = acc_s + d
            acc_q = acc_q + d * d
        shift = torch.sum(acc_s, dim=-1) * inv_k
        var = torch.sum(acc_q, dim=-1) * inv_k - shift * shift
        var = torch.maximum(var, torch.zeros_like(var))
        rs = 1.0 / torch.sqrt(var + eps)
        if ahead:
            nxt = hl.zeros([tile_m, lanes], dtype=x.dtype)
            w_nxt = hl.zeros([lanes], dtype=weight.dtype)
            b_nxt = hl.zeros([lanes], dtype=bias.dtype)
            for tile_j in hl.tile(k + step, block_size=lanes):
                cur = nxt
                nxt = hl.load(x, [tile_m, tile_j.index], extra_mask=(tile_j.index < k)[None, :], eviction_policy="evict_first")
                col = tile_j.index - step  # Helion cannot subtract the block size itself
                ok = (col >= 0) & (col < k)
                if ahead == 2:  # the weight and bias a step ahead too
                    wv, bv = w_nxt, b_nxt
                    w_nxt = hl.load(weight, [tile_j.index], extra_mask=tile_j.index < k)
                    b_nxt = hl.load(bias, [tile_j.index], extra_mask=tile_j.index < k)
                else:
                    wv = hl.load(weight, [col], extra_mask=ok)
                    bv = hl.load(bias, [col], extra_mask=ok)
                xc = (cur.to(torch.float32) - pilot) - shift[:, None]
                y = xc * rs[:, None] * wv.to(torch.float32)[None, :] + bv.to(torch.float32)[None, :]
                hl.store(out, [tile_m, col], y.to(out.dtype), extra_mask=ok[None, :])
        elif readonly:
            for tile_k in hl.tile(k, block_size=lanes):
                like = hl.zeros([tile_m, lanes], dtype=x.dtype)
                xb = hl.inline_triton(_READ_ONLY_ROW, args={"p": x, "rows": tile_m.index, "cols": tile_k.index, "k": k}, output_like=like)
                wv = hl.inline_triton(_READ_ONLY_VEC, args={"p": weight, "cols": tile_k.index, "k": k}, output_like=like)
                bv = hl.inline_triton(_READ_ONLY_VEC, args={"p": bias, "cols": tile_k.index, "k": k}, output_like=like)
                xc = (xb.to(torch.float32) - pilot) - shift[:, None]
                y = xc * rs[:, None] * wv.to(torch.float32) + bv.to(torch.float32)
                out[tile_m, tile_k] = y.to(out.dtype)
        else:
            for tile_k in hl.tile(k, block_size=lanes):
                xc = (hl.load(x, [tile_m, tile_k], eviction_policy="evict_first").to(torch.float32) - pilot) - shift[:, None]
                y = xc * rs[:, None] * weight[tile_k].to(torch.float32)[None, :] + bias[tile_k].to(torch.float32)[None, :]
                out[tile_m, tile_k] = y.to(out.dtype)
    return out


def two_pass_runner(wl: Workload, lanes: int, warps: int, ahead: int = 0, readonly: bool = False, unroll: int = 0):  # noqa: ANN201
    sets = [(s["x"].view(wl.m, wl.k), wl.weight.view(wl.k), wl.bias.view(wl.k), s["out"].view(wl.m, wl.k)) for s in wl.sets]
    args = (1e-5, ahead, lanes, readonly)
    bound = two_pass_layer_norm.bind((*sets[0], *args))
    extra = {"range_unroll_factors": [0, 0, unroll]} if unroll else {}
    compiled = bound.compile_config(helion.Config(block_sizes=[lanes], num_warps=warps, num_stages=1, **extra))
    return lambda i: compiled(*sets[i], *args)


def max_error(wl: Workload) -> float:
    x, w, b, out = (t.double() for t in (wl.sets[0]["x"], wl.weight, wl.bias, wl.sets[0]["out"]))
    ref = torch.nn.functional.layer_norm(x.view(wl.m, wl.k), (wl.k,), w.view(-1), b.view(-1), 1e-5)
    return (out.view(wl.m, wl.k) - ref).abs().max().item()


def main() -> None:
    probe = ProbeRun()
    entries = shipped_entries()
    widths = [int(w) for w in probe.option("--widths").split(",")] if probe.option("--widths") else WIDTHS
    m = int(probe.option("--rows") or 4096)
    for n in widths:
        if probe.out_of_time():
            break
        wl = Workload(Task("layer_norm", "infer", m, n, "bfloat16", 1), probe.device)
        config = entries.get(f"layer_norm/infer/bfloat16/{m}x{n}", {}).get("config")
        runs = {"shipped": wl.runner(config)} if config and probe.on_gpu else {}
        variants = {}
        for lanes, warps in CHUNKS:
            if lanes >= 2 * n:
                continue
            variants[f"c{lanes} w{warps}"] = dict(lanes=lanes, warps=warps)
            variants[f"c{lanes} w{warps} u8"] = dict(lanes=lanes, warps=warps, unroll=8)
            for unroll in (0, 2, 8):
                variants[f"c{lanes} w{warps} nc" + (f" u{unroll}" if unroll else "")] = dict(lanes=lanes, warps=warps, readonly=True, unroll=unroll)
            if "--ahead" in probe.argv:
                for ahead in (1, 2):
                    variants[f"c{lanes} w{warps}" + ("", " ahead x", " ahead xwb")[ahead]] = dict(lanes=lanes, warps=warps, ahead=ahead)
        for name, variant in variants.items():
            try:
                run = two_pass_runner(wl, **variant)
                run(0)
                err = max_error(wl)
                if not err < 0.05:
                    raise ValueError(f"max error {err}")
            except Exception as e:  # noqa: BLE001 - report and go on
                print(f"  {name}: failed ({type(e).__name__}: {str(e)[:300]})", flush=True)
                continue
            if probe.check_only:
                print(f"  {name}: max error {err:.3g}", flush=True)
            runs[name] = run
        print(f"layer_norm/infer/bfloat16/{m}x{n} (shipped {config})", flush=True)
        if probe.check_only:
            continue
        best = best_gbps(wl, runs, rounds=2)
        base = best.get("shipped", 1.0)
        for name, gbps in sorted(best.items(), key=lambda kv: -kv[1]):
            print(f"  {name:18s} {gbps:6.0f} GB/s ({gbps / base:.3f}x shipped, {runner_registers(runs[name])} regs)", flush=True)
        del wl, runs


if __name__ == "__main__":
    main()
