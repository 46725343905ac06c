"""Prototype, landed as ``kernels.norm_kernels.norm_fwd_chunked`` (NOTES attempt 24), kept
as the reference point of that kernel's remaining gap: plain LayerNorm forward with an explicit chunk loop and per-lane
shifted sums (one read of x for the statistics, one for the output), timed against the
shipped kernel and inductor (bench/NOTES.md attempt 23).

    python bench/prototypes/ln_lanes_fwd.py    # H200: table of GB/s; CPU: one interpreter check

Per row: pilot p = x[0]; per lane j of a chunk of ``block_n`` columns, S_j += x - p and
Q_j += (x - p)^2 over the chunks; then shift = sum(S)/N, var = sum(Q)/N - shift^2,
mean = p + shift; a second loop writes (x - mean) * rstd * w + b. No flags (residual,
gate, groups, casting), no masking (N must be a multiple of ``block_n``).
"""
import sys, torch, helion, helion.language as hl
import torch.nn.functional as F

@helion.kernel(static_shapes=True)
def ln_lanes(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    m, n = x.size()
    out = torch.empty_like(x)
    block_n = hl.register_block_size(n)
    for tile_m in hl.tile(m):
        pilot = x[tile_m, 0].to(torch.float32)
        acc_s = hl.zeros([tile_m, block_n], dtype=torch.float32)
        acc_q = hl.zeros([tile_m, block_n], dtype=torch.float32)
        for tile_n in hl.tile(n, block_size=block_n):
            xsh = x[tile_m, tile_n].to(torch.float32) - pilot[:, None]
            acc_s = acc_s + xsh
            acc_q = acc_q + xsh * xsh
        shift = torch.sum(acc_s, dim=-1) * (1.0 / n)
        var = torch.sum(acc_q, dim=-1) * (1.0 / n) - shift * shift
        rs = 1.0 / torch.sqrt(var + eps)
        mean = pilot + shift
        for tile_n in hl.tile(n, block_size=block_n):
            xc = x[tile_m, tile_n].to(torch.float32) - mean[:, None]
            y = xc * rs[:, None] * w[tile_n].to(torch.float32)[None, :] + b[tile_n].to(torch.float32)[None, :]
            out[tile_m, tile_n] = y.to(x.dtype)
    return out

if __name__ == "__main__":
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cpu":
        x = torch.randn(8, 256) + 100; w = torch.randn(256); b = torch.randn(256)
        bound = ln_lanes.bind((x, w, b, 1e-5))
        print(bound.config_spec.default_config())
        y = bound.compile_config(helion.Config(block_sizes=[2, 64], num_warps=4))(x, w, b, 1e-5)
        print((y - F.layer_norm(x.double(), (256,), w.double(), b.double()).float()).abs().max())
        sys.exit()
    import triton, kernels
    for dt, M, N in [(torch.bfloat16, 4096, 16384), (torch.bfloat16, 4096, 8192), (torch.bfloat16, 2048, 32768), (torch.float16, 4096, 8192), (torch.float32, 4096, 16384)]:
        xs = [torch.randn(M, N, device=dev, dtype=dt) for _ in range(2)]; w = torch.randn(N, device=dev, dtype=dt); b = torch.randn(N, device=dev, dtype=dt)
        ref = F.layer_norm(xs[0].double(), (N,), w.double(), b.double())
        gb = lambda us: 2 * M * N * xs[0].element_size() / us / 1e3
        i = [0]
        def rot(f):
            def g():
                i[0] ^= 1; return f(xs[i[0]])
            return g
        with torch.no_grad():
            ship = triton.testing.do_bench(rot(lambda x: kernels.layer_norm(x, w, b)), return_mode="median") * 1e3
            ind = torch.compile(lambda x: F.layer_norm(x, (N,), w, b, 1e-5), dynamic=False)
            ind(xs[0])
            tind = triton.testing.do_bench(rot(ind), return_mode="median") * 1e3
        res = []
        for bn in (1024, 2048, 4096):
            for nw in (4, 8, 16):
                for ev in ([], ["last", "first"]):
                    try:
                        cfg = dict(block_sizes=[bn, 1], num_warps=nw, num_stages=1)
                        if ev: cfg["load_eviction_policies"] = ["", "last", "first", "", ""]
                        fn = ln_lanes.bind((xs[0], w, b, 1e-5)).compile_config(helion.Config(**cfg))
                        err = (fn(xs[0], w, b, 1e-5).double() - ref).abs().max().item()
                        t = triton.testing.do_bench(rot(lambda x: fn(x, w, b, 1e-5)), return_mode="median") * 1e3
                        res.append((gb(t), bn, nw, bool(ev), err))
                    except Exception as e:
                        res.append((0, bn, nw, bool(ev), str(e)[:80]))
        res.sort(reverse=True)
        print(f"{dt} {M}x{N}: shipped {gb(ship):.0f} inductor {gb(tind):.0f} | lanes best: " + "; ".join(f"{g:.0f} bn{bn} w{nw} ev{int(ev)} err{err if isinstance(err, str) else round(err, 3)}" for g, bn, nw, ev, err in res[:4]), flush=True)
