"""Why the LayerNorm inference forward trails inductor on wide rows (bench/NOTES.md attempt 29).

Everything in one process, every candidate timed the same way (the tuner's timing: a CUDA
graph over rotating input sets, kernel time only), bf16, plain LayerNorm with weight and
bias, no statistics stored:

  inductor   torch.compile(F.layer_norm, dynamic=False)
  shipped    kernels' cached inference config (tuning.workload runner)
  chunked    kernels.norm_kernels.norm_fwd_chunked ([M, 1, K]), as shipped (dynamic shapes)
             and compiled with static shapes; with OLD_KERNELS=path, also that file's
  proto_*    a plain two-pass kernel on [M, K] (bench/prototypes/ln_lanes_fwd.py's, K a
             compile-time constant) with three pilots (first value / mean of the first
             chunk / the same with the first chunk peeled), static shapes and dynamic M
  looped     norm_fwd with Helion's reduction loop (three reads of x, inductor's schedule)
             and per-pass eviction: the first two reads evict_last, the last evict_first

    [OLD_KERNELS=old_norm_kernels.py] [PROTOS=a,b] python bench/prototypes/wide_fwd_probe.py [MxN ...] [--no-looped]
"""
import importlib.util
import os
import sys

import helion
import helion.language as hl
import torch
import torch.nn.functional as F

from kernels import launch
from kernels import norm_kernels as nk
from tuning import timing
from tuning.workload import Task, Workload

def _ln_two_pass(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float, pilot_mode: hl.constexpr) -> torch.Tensor:
    """Two-pass chunked LayerNorm forward on [M, K] (K a multiple of the chunk) with the
    pilot taken three ways: "first" the row's first value (one scalar load), "mean" the
    mean of the first chunk read on its own before the loop, "peel" the same mean with
    the first chunk's sums taken from the registers it was read into (the loop starts
    at the second chunk)."""
    m, n = x.size()
    n = hl.specialize(n)
    out = torch.empty_like(x)
    block_n = hl.register_block_size(n)
    for tile_m in hl.tile(m):
        acc_s = hl.zeros([tile_m, block_n], dtype=torch.float32)
        acc_q = hl.zeros([tile_m, block_n], dtype=torch.float32)
        if pilot_mode == "first":
            pilot = x[tile_m, 0].to(torch.float32)
            start = 0
        else:
            pilot = hl.zeros([tile_m], dtype=torch.float32)
            for tile_p in hl.tile(block_n, block_size=block_n):
                xp = hl.load(x, [tile_m, tile_p], eviction_policy="evict_last").to(torch.float32)
                pilot = torch.mean(xp, dim=-1)
                if pilot_mode == "peel":
                    dp = xp - pilot[:, None]
                    acc_s = acc_s + dp
                    acc_q = acc_q + dp * dp
            if pilot_mode == "peel":
                start = block_n
            else:
                start = 0
        for tile_n in hl.tile(start, n, block_size=block_n):
            xsh = hl.load(x, [tile_m, tile_n], eviction_policy="evict_last").to(torch.float32) - pilot[:, None]
            acc_s = acc_s + xsh
            acc_q = acc_q + xsh * xsh
        shift = torch.sum(acc_s, dim=-1) * (1.0 / n)
        var = torch.sum(acc_q, dim=-1) * (1.0 / n) - shift * shift
        rs = 1.0 / torch.sqrt(var + eps)
        for tile_n in hl.tile(n, block_size=block_n):
            xc = hl.load(x, [tile_m, tile_n], eviction_policy="evict_first").to(torch.float32) - pilot[:, None] - shift[:, None]
            y = xc * rs[:, None] * w[tile_n].to(torch.float32)[None, :] + b[tile_n].to(torch.float32)[None, :]
            out[tile_m, tile_n] = y.to(x.dtype)
    return out


PROTO = {
    f"proto_{mode}_{'static' if static else 'dyn'}": (helion.kernel(_ln_two_pass, static_shapes=static, autotune_effort="none"), mode)
    for mode in ("first", "mean", "peel")
    for static in (True, False)
}
CHUNKED = {
    "chunked_dyn": helion.kernel(nk.norm_fwd_chunked, static_shapes=False, autotune_effort="none"),
    "chunked_static": helion.kernel(nk.norm_fwd_chunked, static_shapes=True, autotune_effort="none"),
}
if os.environ.get("OLD_KERNELS"):  # an older norm_kernels.py, whose norm_fwd_chunked had no pilot_width
    spec = importlib.util.spec_from_file_location("old_norm_kernels", os.environ["OLD_KERNELS"])
    old_nk = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old_nk
    spec.loader.exec_module(old_nk)
    CHUNKED["chunked_old_dyn"] = helion.kernel(old_nk.norm_fwd_chunked, static_shapes=False, autotune_effort="none")
if os.environ.get("PROTOS"):  # e.g. PROTOS=proto_first_dyn,proto_mean_dyn
    PROTO = {k: v for k, v in PROTO.items() if k in os.environ["PROTOS"].split(",")}
GRID = [(2048, 8), (2048, 16), (4096, 8), (4096, 16), (8192, 16), (8192, 32)]


def main() -> None:
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # CPU: a smoke test (TRITON_INTERPRET=1)
    shapes = [tuple(map(int, a.split("x"))) for a in sys.argv[1:] if "x" in a] or [(4096, 16384), (4096, 8192), (2048, 32768), (4096, 14336)]
    for m, n in shapes:
        wl = Workload(Task("layer_norm", "infer", m, n, "bfloat16", 1), dev)
        nsets = len(wl.sets)
        gb = lambda ms: wl.model_bytes() / ms / 1e6  # noqa: E731
        xs = [s["x"].view(m, n) for s in wl.sets]
        w, b = wl.weight.view(n), wl.bias.view(n)
        ref = F.layer_norm(xs[0].double(), (n,), w.double(), b.double(), 1e-5)
        rows = []

        def add(name: str, cfg: str, run) -> None:  # noqa: ANN001
            try:
                got = run(0)
                err = (got.view(m, n).double() - ref).abs().max().item() if got is not None else float("nan")
                rows.append((gb(timing.time_ms(run, nsets, dev)), name, cfg, err))
            except Exception as e:  # noqa: BLE001
                rows.append((0.0, name, cfg + " FAIL " + str(e).splitlines()[0][:60], 0.0))

        torch._dynamo.reset()
        ind = torch.compile(lambda x: F.layer_norm(x, (n,), w, b, 1e-5), dynamic=False)
        with torch.no_grad():
            add("inductor", "", lambda i: ind(xs[i]))
        shipped = launch.choose_config("layer_norm", "infer", m, n, 1, torch.bfloat16, dev)
        run = wl.runner(shipped)
        outs = [s["out"] for s in wl.sets]
        add("shipped", str(shipped), lambda i: (run(i), outs[i])[1])
        for bn, nw in GRID if dev.type == "cuda" else [(64, 4)]:
            if n % bn:
                continue
            cfg = helion.Config(block_sizes=[bn, 1], num_warps=nw, num_stages=1)
            for name, (kern, mode) in PROTO.items():
                fn = kern.bind((xs[0], w, b, 1e-5, mode)).compile_config(cfg)
                add(name, f"bn{bn} w{nw}", lambda i, fn=fn, mode=mode: fn(xs[i], w, b, 1e-5, mode))
            for name, kern in CHUNKED.items():
                config = {"block_sizes": [bn, 1, 1], "num_warps": nw, "num_stages": 1}
                args = [launch.fwd_kernel_args(config, wl._fwd_args(s)) for s in wl.sets]
                if name == "chunked_old_dyn":
                    args = [a[:-1] for a in args]
                fn = kern.bind(args[0]).compile_config(helion.Config(**config))
                add(name, f"bn{bn} w{nw}", lambda i, fn=fn, args=args: (fn(*args[i]), outs[i])[1])
            looped = {"block_sizes": [1, 1], "num_warps": nw, "num_stages": 1, "reduction_loops": [bn]}
            for ev_name, ev in (() if "--no-looped" in sys.argv else (("staged", ["last", "last", "last", "first", "last", "last", "", "", ""]), ("uniform-last", ["last"] * 9))):
                cfg = {**looped, "load_eviction_policies": ev}
                try:
                    r = wl.runner(cfg)
                    add(f"looped {ev_name}", f"chunk{bn} w{nw}", lambda i, r=r: (r(i), outs[i])[1])
                except Exception as e:  # noqa: BLE001
                    rows.append((0.0, f"looped {ev_name}", f"chunk{bn} w{nw} FAIL {str(e)[:60]}", 0.0))
        rows.sort(key=lambda r: -r[0])
        ind_gb = next(r[0] for r in rows if r[1] == "inductor")
        print(f"== bf16 {m}x{n}: inductor {ind_gb:.0f} GB/s (graph, rotating)", flush=True)
        best = {}
        for g, name, cfg, err in rows:
            best.setdefault(name, (g, cfg, err))
        for name, (g, cfg, err) in sorted(best.items(), key=lambda kv: -kv[1][0]):
            print(f"  best {name:20s} {g:6.0f} {g / ind_gb:5.3f}x  {cfg[:90]}  err {err:.3g}", flush=True)
        for g, name, cfg, err in rows:
            print(f"    {g:6.0f} {name:20s} {cfg[:90]}", flush=True)


if __name__ == "__main__":
    main()
