"""Forward and every gradient of the norm family against float64 references.

Each case runs on three routes through the same kernels: Helion's eager reference
mode on CPU ("ref"), the generated Triton code under Triton's interpreter ("triton"),
and CUDA ("cuda", only with ``-m gpu``). The error bound is relative to what plain
PyTorch achieves on the same inputs in the same dtype: at most 4x the error of
``torch.nn.functional`` (or of the float64 result rounded to the dtype, where torch
has no fused op), with a floor of a few ulps of the output's scale.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import kernels
from reference import norm64

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
ULP = {torch.float32: 2.0**-23, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


@pytest.fixture(
    params=["ref", "triton", pytest.param("cuda", marks=pytest.mark.gpu)],
)
def device(request):
    """A device string; on CPU, also selects the route CPU tensors take."""
    if request.param == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("needs CUDA")
        yield "cuda"
        return
    kernels.set_cpu_backend(request.param)
    yield "cpu"
    kernels.set_cpu_backend("ref")


def _error(got: torch.Tensor, ref64: torch.Tensor) -> float:
    return (got.double() - ref64).abs().max().item() if got.numel() else 0.0


def assert_close(name: str, got, ref64, peer, dtype, slack: float = 4.0, scale: float = 0.0) -> None:
    """``got`` is within ``slack`` x the peer's error of the float64 reference.

    ``scale`` overrides the magnitude the ulp floor is taken relative to (by default
    the reference's own largest value).
    """
    assert got.dtype == peer.dtype, f"{name}: dtype {got.dtype} != {peer.dtype}"
    assert got.shape == ref64.shape, f"{name}: shape {tuple(got.shape)}"
    assert torch.isfinite(got).all(), f"{name}: non-finite values"
    if not scale:
        scale = max(ref64.abs().max().item(), 1.0) if ref64.numel() else 1.0
    bound = max(slack * _error(peer, ref64), slack * ULP[dtype] * scale)
    err = _error(got, ref64)
    assert err <= bound, f"{name}: max error {err:.3g} > bound {bound:.3g} (peer {_error(peer, ref64):.3g})"


def make(shape, dtype, device, *, mean=0.0, std=1.0, requires_grad=True):
    t = (torch.randn(shape, dtype=torch.float64) * std + mean).to(dtype).to(device)
    return t.requires_grad_(requires_grad)


def leaf64(t):
    return None if t is None else t.detach().double().requires_grad_()


def grads(out, inputs, dy):
    live = [t for t in inputs if t is not None]
    got = torch.autograd.grad(out, live, dy, allow_unused=True)
    it = iter(got)
    return [None if t is None else next(it) for t in inputs]


def check_fwd_bwd(ours_fn, peer_fn, ref_kwargs, inputs, dtype, grad_scales=None):
    """Compare out and the gradients of every input of ours, the peer and float64.

    ``grad_scales(ref_in, dy64)``: per input, a magnitude its gradient's ulp floor may be
    taken relative to, where larger than the default (the gradient's own largest value,
    at least 1)."""
    out = ours_fn(*inputs)
    peer = peer_fn(*[None if t is None else t.detach().requires_grad_() for t in inputs])
    ref_in = [leaf64(t) for t in inputs]
    ref, _ = norm64(*ref_in[:3], **ref_kwargs(ref_in))
    assert_close("out", out, ref, peer.detach(), dtype)
    dy = torch.randn_like(out)
    ours_g = grads(out, inputs, dy)
    peer_in = [None if t is None else t.detach().requires_grad_() for t in inputs]
    peer_g = grads(peer_fn(*peer_in), peer_in, dy)
    ref_g = grads(ref, ref_in, dy.double())
    for i, (g, p, r) in enumerate(zip(ours_g, peer_g, ref_g)):
        if r is None:
            continue
        assert g is not None, f"missing gradient for input {i}"
        scale = 0.0
        if grad_scales is not None:  # never below the default floor
            scale = max(grad_scales(ref_in, dy.double())[i], r.abs().max().item(), 1.0)
        assert_close(f"grad[{i}]", g, r, p, dtype, scale=scale)


def norm_grad_scales(eps: float, rms: bool):  # noqa: ANN201
    """``grad_scales`` for a plain LayerNorm or RMSNorm: the size of what the gradients
    are computed from, as ulp floors for (dx, dw, db). dx = rstd * (dy w - mean(dy w) -
    xhat mean(dy w xhat)) (no mean term for RMSNorm) cancels terms of rstd * max|dy w| *
    (1 + max|xhat|) per row; dw and db sum dy xhat and dy over rows, whose rounding is
    relative to sum|dy xhat| and sum|dy|. Relative to the result alone, or to torch's own
    error (itself random), the bound failed 1 run in 250-600 at N = 3 in fp32."""
    return lambda ref_in, dy: _norm_grad_scales(ref_in, dy, eps, rms)


def _norm_grad_scales(ref_in, dy, eps: float, rms: bool) -> list[float]:  # noqa: ANN001
    x, w = ref_in[0].detach(), ref_in[1].detach()
    centred = x if rms else x - x.mean(-1, keepdim=True)
    rstd = (centred.pow(2).mean(-1, keepdim=True) + eps).rsqrt()
    xhat = centred * rstd
    dx_terms = rstd * (dy * w).abs().amax(-1, keepdim=True) * (1 + xhat.abs().amax(-1, keepdim=True))
    return [dx_terms.max().item(), (dy * xhat).abs().sum(0).max().item(), dy.abs().sum(0).max().item()]


# ------------------------------------------------------------------------ LayerNorm


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 127, 1000, 5120])
def test_layer_norm(device, dtype, n):
    m = 7 if n < 5000 else 3
    x = make((m, n), dtype, device, mean=0.5, std=2.0)
    w = make((n,), dtype, device, mean=1.0, std=0.5)
    b = make((n,), dtype, device, std=0.5)
    # dx is a difference of terms of size rstd * |dy w|: with one channel exactly 0 (two
    # equal terms times rstd = 1/sqrt(eps) ~ 316, one rounding of dy * w left by a fused
    # multiply-add), so the ulp floor is taken relative to those terms.
    check_fwd_bwd(
        lambda x, w, b: kernels.layer_norm(x, w, b, 1e-5),
        lambda x, w, b: F.layer_norm(x, (n,), w, b, 1e-5),
        lambda r: dict(eps=1e-5, rms=False),
        [x, w, b],
        dtype,
        grad_scales=norm_grad_scales(1e-5, rms=False),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 127, 1000, 5120])
def test_rms_norm(device, dtype, n):
    m = 7 if n < 5000 else 3
    x = make((m, n), dtype, device, std=2.0)
    w = make((n,), dtype, device, mean=1.0, std=0.5)
    check_fwd_bwd(
        lambda x, w, b: kernels.rms_norm(x, w, 1e-6, casting="gemma"),
        lambda x, w, b: F.rms_norm(x, (n,), w, 1e-6),
        lambda r: dict(eps=1e-6, rms=True),
        [x, w, None],
        dtype,
        grad_scales=norm_grad_scales(1e-6, rms=True),
    )


def test_wide_rows_loop_over_chunks(device):
    """A row wider than the registers hold (70000 > 32768): the chunked forward path."""
    n = 70000
    x = make((2, n), torch.float32, device, mean=3.0, std=2.0)
    w = make((n,), torch.float32, device, mean=1.0)
    b = make((n,), torch.float32, device)
    check_fwd_bwd(
        lambda x, w, b: kernels.layer_norm(x, w, b),
        lambda x, w, b: F.layer_norm(x, (n,), w, b),
        lambda r: dict(eps=1e-5, rms=False),
        [x, w, b],
        torch.float32,
    )


def _check_layer_norm_on(x: torch.Tensor, dtype: torch.dtype) -> None:
    """LayerNorm fwd and bwd of the fp32 input ``x`` cast to ``dtype``, against float64 and torch."""
    n = x.shape[-1]
    x = x.to(dtype).detach().requires_grad_()
    w = make((n,), dtype, x.device, mean=1.0, std=0.1)
    b = make((n,), dtype, x.device)
    check_fwd_bwd(
        lambda x, w, b: kernels.layer_norm(x, w, b),
        lambda x, w, b: F.layer_norm(x, (n,), w, b),
        lambda r: dict(eps=1e-5, rms=False),
        [x, w, b],
        dtype,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_mean_tiny_variance(device, dtype):
    """|mean| ~ 1e3 >> std ~ 1e-2: a one-pass E[x^2] - E[x]^2 variance fails this."""
    _check_layer_norm_on(make((5, 384), torch.float32, device, mean=1000.0, std=0.01, requires_grad=False), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_mean_with_an_outlier_first(device, dtype):
    """The forward shifts each row by its first value before the two-pass variance:
    a first value far from the rest (here 1e3 std away, on a 1e3 mean) must not cost
    accuracy, and neither must a first value equal to the mean (zero pilot residue)."""
    x = make((6, 1000), torch.float32, device, mean=1000.0, std=0.05, requires_grad=False)
    x[0::2, 0] = 1050.0
    x[1::2, 0] = x[1::2].mean(dim=-1)
    _check_layer_norm_on(x, dtype)


def test_3d_and_non_contiguous(device):
    base = make((4, 6, 96), torch.float32, device, std=3.0, requires_grad=False)
    x = base.transpose(0, 1).detach().requires_grad_()  # [6, 4, 96], non-contiguous
    assert not x.is_contiguous()
    w = make((96,), torch.float32, device, mean=1.0)
    b = make((96,), torch.float32, device)
    check_fwd_bwd(
        lambda x, w, b: kernels.layer_norm(x, w, b),
        lambda x, w, b: F.layer_norm(x, (96,), w, b),
        lambda r: dict(eps=1e-5, rms=False),
        [x, w, b],
        torch.float32,
    )
    strided = make((5, 200), torch.bfloat16, device, requires_grad=False)[:, ::2]
    w2 = make((100,), torch.bfloat16, device, mean=1.0)
    strided.requires_grad_()
    check_fwd_bwd(
        lambda x, w, b: kernels.rms_norm(x, w, casting="gemma"),
        lambda x, w, b: F.rms_norm(x, (100,), w, 1e-6),
        lambda r: dict(eps=1e-6, rms=True),
        [strided, w2, None],
        torch.bfloat16,
    )


def test_single_row_and_no_affine(device):
    x = make((1, 257), torch.float16, device, mean=-2.0)
    check_fwd_bwd(
        lambda x, w, b: kernels.layer_norm(x),
        lambda x, w, b: F.layer_norm(x, (257,)),
        lambda r: dict(eps=1e-5, rms=False),
        [x, None, None],
        torch.float16,
    )
    check_fwd_bwd(
        lambda x, w, b: kernels.rms_norm(x, casting="gemma"),
        lambda x, w, b: F.rms_norm(x, (257,), None, 1e-6),
        lambda r: dict(eps=1e-6, rms=True),
        [x, None, None],
        torch.float16,
    )


# ------------------------------------------------------------ Gemma, casting modes


def _llama_rms(x, w, eps):
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)


def _gemma_rms(x, w, eps):
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return (h * (1.0 + w.float())).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_llama_casting(device, dtype):
    x = make((6, 320), dtype, device, std=2.0)
    w = make((320,), dtype, device, mean=1.0, std=0.3)
    check_fwd_bwd(
        lambda x, w, b: kernels.rms_norm(x, w, 1e-6, casting="llama"),
        lambda x, w, b: _llama_rms(x, w, 1e-6),
        lambda r: dict(eps=1e-6, rms=True),
        [x, w, None],
        dtype,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gemma_offset(device, dtype):
    x = make((6, 320), dtype, device, std=2.0)
    w = make((320,), dtype, device, std=0.3)  # Gemma's weight sits around 0
    check_fwd_bwd(
        lambda x, w, b: kernels.rms_norm(x, w, 1e-6, offset=1.0, casting="gemma"),
        lambda x, w, b: _gemma_rms(x, w, 1e-6),
        lambda r: dict(eps=1e-6, rms=True, offset=1.0),
        [x, w, None],
        dtype,
    )


@pytest.mark.parametrize("w_dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_llama_casting_offset_and_weight_dtype(device, offset, w_dtype):
    """The forward compiles ``offset`` in as a constant (an add only when non-zero) and loads
    a 16-bit weight before the statistics, an fp32 one after them: every pairing matches."""
    x = make((5, 320), torch.bfloat16, device, std=2.0)
    w = make((320,), w_dtype, device, mean=1.0 - offset, std=0.3)

    def peer(x, w, b):
        h = x.float()
        h = (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)
        return (h.float() * (w.float() + offset)).to(x.dtype)

    check_fwd_bwd(
        lambda x, w, b: kernels.rms_norm(x, w, 1e-6, offset=offset, casting="llama"),
        peer,
        lambda r: dict(eps=1e-6, rms=True, offset=offset),
        [x, w, None],
        torch.bfloat16,
    )


def test_casting_none_computes_in_input_dtype(device):
    """"none" rounds x*rstd to the input dtype before the weight: visibly unlike "gemma"."""
    x = make((8, 512), torch.bfloat16, device, std=2.0, requires_grad=False)
    w = make((512,), torch.bfloat16, device, mean=1.0, std=0.3, requires_grad=False)
    got = kernels.rms_norm(x, w, casting="none")
    h = x.float()
    rstd = torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
    expect = x * rstd.to(x.dtype) * w  # the whole epilogue in bf16
    # Three roundings to bf16; Triton's interpreter truncates each (the GPU rounds
    # to nearest), so it gets a looser bound there.
    interp = device == "cpu" and kernels.get_cpu_backend() == "triton"
    ulps = 6 if interp else 2
    assert _error(got, expect.double()) <= ulps * ULP[torch.bfloat16] * expect.abs().max().item()


# -------------------------------------------------------------- gated and grouped


GATED = [
    # (rms, norm_before_gate, group_size, with_bias)
    (True, True, None, False),
    (True, False, None, False),
    (True, True, 32, False),
    (True, False, 32, True),
    (False, True, None, True),
    (False, False, 64, True),
]


@pytest.mark.parametrize("rms,before,group,with_bias", GATED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gated_grouped(device, dtype, rms, before, group, with_bias):
    n = 128
    x = make((5, 3, n), dtype, device, mean=0.3, std=1.5)
    z = make((5, 3, n), dtype, device, std=2.0)
    w = make((n,), dtype, device, mean=1.0, std=0.3)
    b = make((n,), dtype, device, std=0.3) if with_bias else None
    fn = kernels.rms_norm if rms else kernels.layer_norm
    kw = dict(z=None, norm_before_gate=before, group_size=group)

    def ours(x, w, b, z):
        return fn(x, w, eps=1e-5, bias=b, **{**kw, "z": z}) if rms else fn(x, w, b, 1e-5, **{**kw, "z": z})

    def peer(x, w, b, z):  # float64 math rounded once: the best any dtype-out kernel can do
        return norm64(x, w, b, 1e-5, rms=rms, z=z, **{k: v for k, v in kw.items() if k != "z"})[0].to(dtype)

    out = ours(x, w, b, z)
    ref_in = [leaf64(t) for t in (x, w, b, z)]
    ref, _ = norm64(*ref_in[:3], 1e-5, rms=rms, z=ref_in[3], norm_before_gate=before, group_size=group)
    assert_close("out", out, ref, peer(x, w, b, z).detach(), dtype)
    dy = torch.randn_like(out)
    got = grads(out, [x, w, b, z], dy)
    want = grads(ref, ref_in, dy.double())
    for name, g, r in zip(["dx", "dw", "db", "dz"], got, want):
        if r is not None:
            # Gradients have no low-precision peer here: bound by the dtype's rounding
            # of the exact gradient, with the usual slack.
            assert_close(name, g, r, r.to(dtype), dtype, slack=8.0)


# ------------------------------------------------------------------ residual add


@pytest.mark.parametrize("rms", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_add_norm(device, rms, dtype):
    n = 192
    x = make((4, 5, n), dtype, device)
    r = make((4, 5, n), dtype, device, mean=2.0, std=3.0)
    w = make((n,), dtype, device, mean=1.0, std=0.3)
    b = None if rms else make((n,), dtype, device, std=0.3)
    if rms:
        out, h = kernels.add_rms_norm(x, r, w, 1e-6, casting="gemma")
    else:
        out, h = kernels.add_layer_norm(x, r, w, b, 1e-6)
    inputs = [x, r, w, b]
    ref_in = [leaf64(t) for t in inputs]
    ref, ref_h = norm64(ref_in[0], ref_in[2], ref_in[3], 1e-6, rms=rms, residual=ref_in[1])
    if device == "cpu" and kernels.get_cpu_backend() == "triton" and dtype == torch.bfloat16:
        # Triton's interpreter truncates fp32 -> bf16 (the GPU rounds to nearest):
        # there, h may differ from torch's rounding by one ulp, never more.
        ulp = ULP[dtype] * (x + r).abs().double().clamp_min(1e-30)
        assert ((h.double() - (x + r).double()).abs() <= ulp * 2).all()
    else:
        assert torch.equal(h, x + r), "h must equal the unfused x + residual exactly"
    assert_close("out", out, ref, ref.to(dtype), dtype)
    # Both outputs feed the loss, as in a pre-norm block where h continues the stream.
    dy, dh = torch.randn_like(out), torch.randn_like(h)
    got = torch.autograd.grad((out, h), [t for t in inputs if t is not None], (dy, dh))
    want = torch.autograd.grad(
        (ref, ref_h), [t for t in ref_in if t is not None], (dy.double(), dh.double())
    )
    for name, g, w64 in zip(["dx", "dresidual", "dw", "db"], got, want):
        assert_close(name, g, w64, w64.to(dtype), dtype, slack=8.0)


# ------------------------------------------------------- two-pass chunked forward
#
# ``norm_fwd_chunked`` runs where a config asks for it (a tuned cache entry, or the
# heuristic for rows past the registers). These cases give it configs through a real
# cache file: chunks that do not divide the row, a chunk wider than the row, groups,
# gates, a residual, and rows whose first values are outliers (the pilot: the mean of
# the first 16 values of a 16-bit row, else of the first chunk).

CHUNKED = [
    # (kernel args, M, N, lanes, rows per program)
    (dict(rms=False), 5, 100, 32, 2),  # 4 chunks, the last one 4 wide
    (dict(rms=False), 1, 20, 32, 1),  # one chunk wider than the row
    (dict(rms=False, gate="before", group=48), 3, 96, 16, 1),
    (dict(rms=False, gate="after", bias=False), 4, 80, 32, 4),
    (dict(rms=False, residual=True), 3, 70, 16, 2),
    (dict(rms=True, gate="after", residual=False), 3, 70, 16, 1),
    (dict(rms=False), 2, 12, 8, 1),  # a 16-bit input's pilot (16 values) wider than the row
    (dict(rms=False, lead=16), 3, 200, 64, 1),  # every pilot value an outlier
]


@pytest.fixture
def cached_config(tmp_path, device):
    """Write one config per call into a cache file the lookup reads (``mode``: "fwd", the
    training forward, "infer", the forward without grad, or "bwd")."""
    from tuning import cache

    yield lambda *args, **kwargs: force_config(tmp_path, device, *args, **kwargs)
    cache.set_cache_path(None)
    kernels.launch.clear_compiled()


def force_config(path, device, kernel: str, dtype: torch.dtype, m: int, n: int, config: dict, mode: str = "fwd") -> None:  # noqa: ANN001
    """Make ``config`` the only cache entry the lookup reads (a cache file under ``path``)
    and forget what was compiled; ``cached_config``'s body, for tests on one device."""
    from tuning import cache

    gpu = cache.gpu_model(torch.device(device))
    entry = {
        "kernel": kernel, "mode": mode, "dtype": cache.dtype_name(dtype), "m": m, "n": n,
        "config": config, "ms": 1.0, "gbps": 1.0, "trials": 1, "date": "2026-11-22T00:00:00Z",
        "versions": {},
    }  # fmt: skip
    cache.write_entries(path / f"{gpu}.json", gpu, gpu, {cache.entry_key(kernel, mode, entry["dtype"], m, n): entry})
    cache.set_cache_path(path)
    kernels.launch.clear_compiled()


def _torch_norm(x, w, b, z, r, *, rms, gate, group, eps):  # noqa: ANN001, ANN202
    """The same norm composed of torch's own ops in the input dtype: what the model would
    run unfused, as the peer whose error ours is bounded by. Returns (out, h)."""
    h = x + r if r is not None else None
    u = h if h is not None else x
    if gate == "before":
        u = u * F.silu(z)
    n = u.shape[-1]
    gs = group or n
    ug = u.unflatten(-1, (n // gs, gs))
    ug = F.rms_norm(ug, (gs,), eps=eps) if rms else F.layer_norm(ug, (gs,), eps=eps)
    y = ug.flatten(-2) * w
    if b is not None:
        y = y + b
    if gate == "after":
        y = y * F.silu(z)
    return y, h


def _reference64(inputs: list, *, rms: bool, gate: str, group: int | None) -> tuple:
    """float64 leaves of [x, w, b, z, residual] (None kept) and the reference (out, h), eps 1e-5."""
    x, w, b, z, r = ref_in = [leaf64(t) for t in inputs]
    ref, ref_h = norm64(
        x, w, b, 1e-5, rms=rms, z=z, norm_before_gate=gate != "before", group_size=group, residual=r
    )
    return ref_in, ref, ref_h


def _kernel_name(rms: bool, gate: str, residual: bool) -> str:
    return kernels.launch.Variant(rms=rms, gate=gate, residual=residual).tuning_name


@pytest.mark.parametrize("case", CHUNKED, ids=lambda c: "-".join(f"{k}={v}" for k, v in c[0].items()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_forward(device, cached_config, dtype, case):
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs the whole-row kernel; its semantics are the other routes' reference")
    opts, m, n, lanes, rows = case
    _check_chunked_forward(cached_config, device, dtype, opts, m, n, {"block_sizes": [lanes, rows, 1], "num_warps": 2, "num_stages": 1})


# (kernel options, M, N, chunk, rows a step, warps) where a 16-bit row's second pass can
# read by read-only loads on CUDA: runs of 16 bytes a thread, K a multiple of 8.
READ_ONLY = [
    (dict(rms=False), 5, 1000, 512, 1, 2),  # a ragged last chunk
    (dict(rms=False), 7, 2048, 256, 2, 1),  # a ragged last program
    (dict(rms=True, residual=True), 3, 1536, 512, 1, 2),  # the residual sum re-read
    (dict(rms=False, gate="after"), 4, 1024, 256, 1, 1),
    (dict(rms=True, group=256), 3, 1024, 256, 1, 1),  # groups: the weight is [G, K]
]


@pytest.mark.parametrize("case", READ_ONLY, ids=lambda c: "-".join(f"{k}={v}" for k, v in c[0].items()) + f"-{c[2]}")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_chunked_forward_read_only(device, cached_config, dtype, case):
    """A static two-pass config with READ_ONLY (the second pass on ``ld.global.nc`` loads)
    matches float64 and torch's own error, training and inference, ragged last chunk and
    program, residual, gate and groups included; on CUDA its programs were compiled for
    aligned tensors and so read read-only, under Triton's interpreter the key is ignored."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs the whole-row kernel; its semantics are the other routes' reference")
    from tuning.cache import READ_ONLY as KEY

    from tuning.cache import STATIC

    opts, m, n, lanes, rows, warps = case
    config = {"block_sizes": [lanes, rows, 1], "num_warps": warps, "num_stages": 1, KEY: True, STATIC: True}
    _check_chunked_forward(cached_config, device, dtype, opts, m, n, config)
    aligned = [key[-1] for key in kernels.launch._compiled if key[0] == "fwd"]
    assert aligned == [True], "the fresh inputs are aligned: read-only where the device runs PTX"
    assert lanes * dtype.itemsize >= 16 * 32 * warps


def _check_chunked_forward(cached_config, device, dtype, opts, m, n, config):  # noqa: ANN001
    """The two-pass forward at ``config`` (cached for the variant of ``opts``) against
    float64 and torch's own ops: training output and gradients, then inference."""
    rms, gate, residual = opts["rms"], opts.get("gate", "none"), opts.get("residual", False)
    group = opts.get("group")
    name = _kernel_name(rms, gate, residual) + ("_grouped" if group else "")
    cached_config(name, dtype, m, n, config)
    x = make((m, n), dtype, device, mean=40.0, std=0.5)
    with torch.no_grad():
        x[0, : opts.get("lead", 1)] = 90.0  # outlier first values: a pilot 100 std away from its row
    x.requires_grad_()
    w = make((n,), dtype, device, mean=1.0, std=0.3)
    b = None if rms or opts.get("bias") is False else make((n,), dtype, device, std=0.3)
    z = make((m, n), dtype, device, std=2.0) if gate != "none" else None
    r = make((m, n), dtype, device, std=3.0) if residual else None
    kw = dict(z=z, norm_before_gate=gate != "before", group_size=group)

    def call() -> tuple:
        if residual:
            fn = kernels.add_rms_norm if rms else kernels.add_layer_norm
            return fn(x, r, w, 1e-5) if rms else fn(x, r, w, b, 1e-5)
        if rms:
            return kernels.rms_norm(x, w, 1e-5, casting="gemma", **kw), None
        return kernels.layer_norm(x, w, b, 1e-5, **kw), None

    out, h = call()
    inputs = [x, w, b, z, r]
    ref_in, ref, ref_h = _reference64(inputs, rms=rms, gate=gate, group=group)
    peer_in = [None if t is None else t.detach().requires_grad_() for t in inputs]
    peer, peer_h = _torch_norm(*peer_in, rms=rms, gate=gate, group=group, eps=1e-5)
    assert_close("out", out, ref, peer.detach(), dtype)
    outs, douts = [out], [torch.randn_like(out)]
    if residual:
        assert (h.double() - ref_h).abs().max() <= 2 * ULP[dtype] * ref_h.abs().max()
        outs.append(h)
        douts.append(torch.randn_like(h))
    live = lambda ts: [t for t in ts if t is not None]  # noqa: E731
    got = torch.autograd.grad(outs, live(inputs), douts)
    want = torch.autograd.grad([ref, ref_h][: len(outs)], live(ref_in), [d.double() for d in douts])
    peer_g = torch.autograd.grad([peer, peer_h][: len(outs)], live(peer_in), douts)
    for i, (g, w64, p) in enumerate(zip(got, want, peer_g)):
        # The backward reads the mean and rstd the chunked forward saved.
        assert_close(f"grad[{i}]", g, w64, p, dtype)
    # The inference forward (no statistics stored), with the same pilot.
    cached_config(name, dtype, m, n, config, mode="infer")
    with torch.no_grad():
        out_infer, h_infer = call()
    assert_close("out (inference)", out_infer, ref, peer.detach(), dtype)
    if residual:
        assert torch.equal(h_infer, h)


# (kernel options, M, N, backward block sizes [m_block, group tile, channel tile, inner
# rows], row-loop stages): M leaves a short last program and a short last step.
PIPELINED_BWD = [
    (dict(rms=False), 37, 256, [8, 1, 256, 2], 3),
    (dict(rms=True, gate="before", group=64), 21, 256, [4, 1, 64, 2], 2),
    (dict(rms=True, residual=True), 19, 320, [4, 1, 512, 1], 4),  # K padded to the tile
    (dict(rms=False, gate="after"), 13, 2048, [8, 1, 512, 2], 3),  # split: channel tiles
]


def _tuning_name(opts: dict) -> str:
    name = _kernel_name(opts["rms"], opts.get("gate", "none"), opts.get("residual", False))
    return name + ("_grouped" if opts.get("group") else "")


def _norm_and_reference(opts: dict, m: int, n: int, device, dtype) -> tuple:  # noqa: ANN001
    """Fresh inputs for ``opts`` (a large-mean x; gate, residual, groups as asked), our
    outputs through the public API and the float64 ones: (outs, refs, inputs, ref_in)."""
    rms, gate, residual, group = opts["rms"], opts.get("gate", "none"), opts.get("residual", False), opts.get("group")
    x = make((m, n), dtype, device, mean=3.0)
    w = make((n,), dtype, device, mean=1.0, std=0.3)
    b = None if rms else make((n,), dtype, device, std=0.3)
    z = make((m, n), dtype, device, std=2.0) if gate != "none" else None
    r = make((m, n), dtype, device, std=3.0) if residual else None
    if residual:
        out, h = kernels.add_rms_norm(x, r, w, 1e-5)
    elif rms:
        out, h = kernels.rms_norm(x, w, 1e-5, z=z, norm_before_gate=gate != "before", group_size=group), None
    else:
        out, h = kernels.layer_norm(x, w, b, 1e-5, z=z, norm_before_gate=gate != "before"), None
    inputs = [x, w, b, z, r]
    ref_in, ref, ref_h = _reference64(inputs, rms=rms, gate=gate, group=group)
    outs, refs = ([out, h], [ref, ref_h]) if residual else ([out], [ref])
    return outs, refs, inputs, ref_in


def _grads_and_reference(outs: list, refs: list, inputs: list, ref_in: list) -> tuple:
    """The gradients of every input that has one, ours and float64, for one random dout."""
    douts = [torch.randn_like(o) for o in outs]
    live = lambda ts: [t for t in ts if t is not None]  # noqa: E731
    got = torch.autograd.grad(outs, live(inputs), douts)
    want = torch.autograd.grad(refs, live(ref_in), [d.double() for d in douts])
    return got, want


def _compiled_configs() -> list[dict]:
    return [c for _, c in kernels.launch._compiled.values()]


@pytest.mark.parametrize("case", PIPELINED_BWD, ids=lambda c: f"{c[1]}x{c[2]}-{c[3]}-s{c[4]}")
def test_pipelined_backward(device, cached_config, case):
    """The backward with its row loop software-pipelined (``range_num_stages``: on CUDA,
    Triton prefetches the next steps' rows into shared memory) matches the float64
    reference, ragged last program and step included."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    opts, m, n, sizes, stages = case
    dtype = torch.bfloat16
    config = {"block_sizes": sizes, "num_warps": 4, "num_stages": 1, "range_num_stages": [0, stages]}
    cached_config(_tuning_name(opts), dtype, m, n, config, mode="bwd")
    got, want = _grads_and_reference(*_norm_and_reference(opts, m, n, device, dtype))
    assert config in _compiled_configs(), "the backward did not run the pipelined config"
    for i, (g, w64) in enumerate(zip(got, want)):
        assert_close(f"grad[{i}]", g, w64, w64.to(dtype), dtype, slack=8.0)


# (kernel options, M, N, backward block sizes [m_block, group tile, channel tile, inner
# rows], row-loop stages): the exchange schedule, whose channel tiles form the row sums
# from each other's flagged partial sums, unpipelined and with the next steps' rows
# prefetched. On the CPU the channel tile spans the row (Triton's interpreter runs the
# programs one after another, so a program cannot wait for another's partial sums).
EXCHANGE_BWD = [
    (dict(rms=True), 37, 256, [8, 1, 64, 2], 0),  # ragged last program and step
    (dict(rms=True), 37, 256, [8, 1, 64, 2], 2),
    (dict(rms=False), 19, 320, [4, 1, 128, 1], 0),  # 3 tiles, the last one partly masked
    (dict(rms=False), 45, 320, [16, 1, 128, 2], 3),
    (dict(rms=True, residual=True), 21, 512, [8, 1, 128, 4], 2),
    # one row a step, pipelined: the collected sums are reduced to scalars
    (dict(rms=False), 37, 768, [8, 1, 256, 1], 2),
    (dict(rms=True), 33, 1000, [8, 1, 256, 1], 3),  # the last of 4 tiles partly masked
    (dict(rms=False), 1, 320, [4, 1, 128, 1], 2),  # M = 1: the lag's two steps, dW/dB direct
    (dict(rms=True, group=128), 9, 512, [4, 1, 64, 2], 0),  # 2 tiles in each of 4 groups
    # gated: dz stored in the loading step (gate after) or with the lagged dx (before)
    (dict(rms=False, gate="after"), 13, 512, [4, 1, 128, 2], 0),
    (dict(rms=True, gate="after"), 37, 768, [8, 1, 256, 1], 2),
    (dict(rms=False, gate="before"), 19, 320, [4, 1, 128, 1], 3),
    (dict(rms=True, gate="before", group=128), 9, 512, [4, 1, 64, 2], 2),
]


@pytest.mark.parametrize("case", EXCHANGE_BWD, ids=lambda c: f"{_tuning_name(c[0])}-{c[1]}x{c[2]}-{c[3]}-s{c[4]}")
def test_exchange_backward(device, cached_config, case):
    """The exchange backward (channel tiles meeting through flagged partial sums)
    matches the float64 reference (dz of the gated variants too), on CUDA with several
    tiles per row and with its row loop pipelined, and is the schedule that ran."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    opts, m, n, sizes, stages = case
    k = opts.get("group") or n
    if device == "cpu":
        sizes = [sizes[0], 1, 1 << (k - 1).bit_length(), sizes[3]]  # one tile: the whole row
    dtype = torch.bfloat16
    config = {"block_sizes": sizes, "num_warps": 4, "num_stages": 1, "loop_orders": [[2, 1, 0]], "exchange": True}
    if stages:
        config["range_num_stages"] = [0, stages]
    cached_config(_tuning_name(opts), dtype, m, n, config, mode="bwd")
    got, want = _grads_and_reference(*_norm_and_reference(opts, m, n, device, dtype))
    assert config in _compiled_configs(), "the backward did not run the exchange config"
    tiles = kernels.launch._exchange_tiles(config, k, torch.device(device))
    assert tiles == -(-k // sizes[2]), tiles
    for i, (g, w64) in enumerate(zip(got, want)):
        assert_close(f"grad[{i}]", g, w64, w64.to(dtype), dtype, slack=8.0)


# (kernel options, M, N, backward block sizes, pid type): the fused backward with its
# channel tile first in the grid (``loop_orders`` [[2, 1, 0]], the space's ``tile_first``):
# ragged rows on a padded tile, M = 1, groups (the group tile then walks before the rows),
# gates, the residual's gradient, a persistent grid.
TILE_FIRST_BWD = [
    (dict(rms=False), 37, 200, [8, 1, 256, 2], "flat"),
    (dict(rms=True), 1, 320, [4, 1, 512, 1], "flat"),
    (dict(rms=True, group=96), 13, 384, [4, 1, 128, 2], "flat"),
    (dict(rms=True, gate="before"), 21, 136, [8, 1, 256, 4], "flat"),
    (dict(rms=False, gate="after"), 19, 520, [4, 1, 1024, 1], "flat"),
    (dict(rms=True, residual=True), 11, 72, [4, 1, 128, 2], "flat"),
    (dict(rms=False), 45, 264, [16, 1, 512, 2], "persistent_blocked"),
]


@pytest.mark.parametrize("case", TILE_FIRST_BWD, ids=lambda c: f"{_tuning_name(c[0])}-{c[1]}x{c[2]}-{c[3]}-{c[4]}")
def test_fused_backward_with_the_channel_tile_first(device, cached_config, case):
    """A fused backward config whose channel tile is first in the grid matches the float64
    reference and is the config that ran."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    opts, m, n, sizes, pid_type = case
    if device == "cpu" and pid_type != "flat":
        pytest.skip("a persistent grid needs the SM count")
    dtype = torch.bfloat16
    config = {"block_sizes": sizes, "num_warps": 4, "num_stages": 1, "loop_orders": [[2, 1, 0]]}
    if pid_type != "flat":
        config["pid_type"] = pid_type
    cached_config(_tuning_name(opts), dtype, m, n, config, mode="bwd")
    got, want = _grads_and_reference(*_norm_and_reference(opts, m, n, device, dtype))
    assert config in _compiled_configs(), "the backward did not run the channel-tile-first config"
    for i, (g, w64) in enumerate(zip(got, want)):
        assert_close(f"grad[{i}]", g, w64, w64.to(dtype), dtype, slack=8.0)


# (kernel options, M, N, backward block sizes, more config): bf16 backwards whose config
# says ``widen`` (bf16 loads converted by bit moves on CUDA; the CPU runs Triton's own
# conversion): fused on a ragged row, with the residual's gradient (dh), both gates (z),
# groups, the split and the exchange schedules, a pipelined row loop.
WIDENED_BWD = [
    (dict(rms=False), 37, 200, [8, 1, 256, 2], {}),
    (dict(rms=True, residual=True), 11, 72, [4, 1, 128, 2], {"range_num_stages": [0, 2]}),
    (dict(rms=False, gate="after"), 19, 520, [4, 1, 1024, 1], {"loop_orders": [[2, 1, 0]]}),
    (dict(rms=True, gate="before", group=96), 13, 384, [4, 1, 128, 2], {}),
    (dict(rms=False), 21, 1000, [8, 1, 256, 2], {}),  # split: 4 channel tiles
    (dict(rms=False), 45, 320, [16, 1, 128, 1], {"loop_orders": [[2, 1, 0]], "exchange": True, "range_num_stages": [0, 3]}),
]


@pytest.mark.parametrize("case", WIDENED_BWD, ids=lambda c: f"{_tuning_name(c[0])}-{c[1]}x{c[2]}-{c[3]}-{sorted(c[4])}")
def test_widened_backward(device, cached_config, case):
    """A bf16 backward config with ``widen`` matches the float64 reference (dx, dW, dB,
    dz, the residual's gradient) and is the config that ran; on CUDA launch passes the
    flag (``bwd_widen``), on the CPU never."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    opts, m, n, sizes, more = case
    k = opts.get("group") or n
    if device == "cpu" and more.get("exchange"):
        sizes = [sizes[0], 1, 1 << (k - 1).bit_length(), sizes[3]]  # one tile: the whole row
    dtype = torch.bfloat16
    config = {"block_sizes": sizes, "num_warps": 4, "num_stages": 1, **more, "widen": True}
    cached_config(_tuning_name(opts), dtype, m, n, config, mode="bwd")
    got, want = _grads_and_reference(*_norm_and_reference(opts, m, n, device, dtype))
    assert config in _compiled_configs(), "the backward did not run the widened config"
    x = torch.empty(1, 1, k, device=device, dtype=dtype)
    assert kernels.launch.bwd_widen(config, x) == (device == "cuda") and not kernels.launch.bwd_widen({**config, "widen": False}, x)
    for i, (g, w64) in enumerate(zip(got, want)):
        assert_close(f"grad[{i}]", g, w64, w64.to(dtype), dtype, slack=8.0)


# (kernel options, M, N, backward block sizes, more config): backward configs that say
# ``trim`` (the fused tile's dead lanes pinned to zeros): ragged rows on a padded tile,
# with the residual's gradient, both gates, groups, fp32, fp16 and bf16, a pipelined
# row loop on a persistent grid; and a split config, which ignores the key.
TRIMMED_BWD = [
    (dict(rms=False), 37, 200, [8, 1, 256, 2], {"loop_orders": [[2, 1, 0]]}, torch.bfloat16),
    (dict(rms=True, residual=True), 11, 72, [4, 1, 128, 2], {"range_num_stages": [0, 2]}, torch.float16),
    (dict(rms=False, gate="after"), 19, 520, [4, 1, 1024, 1], {"loop_orders": [[2, 1, 0]], "pid_type": "persistent_blocked"}, torch.bfloat16),
    (dict(rms=True, gate="before", group=96), 13, 384, [4, 1, 128, 2], {}, torch.bfloat16),
    (dict(rms=False), 9, 100, [4, 1, 128, 1], {}, torch.float32),
    (dict(rms=False), 21, 1000, [8, 1, 256, 2], {}, torch.bfloat16),  # split: 4 channel tiles
]


@pytest.mark.parametrize("case", TRIMMED_BWD, ids=lambda c: f"{_tuning_name(c[0])}-{c[1]}x{c[2]}-{c[3]}-{sorted(c[4])}-{c[5]}")
def test_trimmed_backward(device, cached_config, case):
    """A backward config with ``trim`` matches the float64 reference (dx, dW, dB, dz, the
    residual's gradient) and is the config that ran."""
    config = _check_flagged_backward(device, cached_config, case, "trim")
    assert kernels.launch.bwd_trim(config) and not kernels.launch.bwd_trim({**config, "trim": False})


def _check_flagged_backward(device, cached_config, case: tuple, key: str) -> dict:  # noqa: ANN001
    """Run ``case`` (kernel options, M, N, block sizes, more config, dtype) with its backward
    config saying ``key``: every gradient matches the float64 reference and that config is
    the one that ran. Returns the config."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    opts, m, n, sizes, more, dtype = case
    if device == "cpu":
        more = {k: v for k, v in more.items() if k != "pid_type"}  # persistent grids need a GPU
    config = {"block_sizes": sizes, "num_warps": 4, "num_stages": 1, **more, key: True}
    cached_config(_tuning_name(opts), dtype, m, n, config, mode="bwd")
    got, want = _grads_and_reference(*_norm_and_reference(opts, m, n, device, dtype))
    assert config in _compiled_configs(), f"the backward did not run the config with {key}"
    for i, (g, w64) in enumerate(zip(got, want)):
        assert_close(f"grad[{i}]", g, w64, w64.to(dtype), dtype, slack=8.0)
    return config


# (kernel options, M, N, backward block sizes, more config, dtype): backward configs that
# say ``recast`` (x, dy and the weight held in 16 bits across the row sums, converted again
# for dx; CUDA only, the CPU ignores the key): LayerNorm and RMSNorm fused, ragged and
# trimmed or not, with the residual's gradient, a pipelined row loop on a persistent grid,
# two rows a step; and configs that must ignore it (a gate, the split schedule, fp32).
RECAST_BWD = [
    (dict(rms=False), 37, 200, [8, 1, 256, 1], {"loop_orders": [[2, 1, 0]], "trim": True}, torch.bfloat16),
    (dict(rms=False), 29, 512, [4, 1, 512, 2], {"range_num_stages": [0, 3]}, torch.float16),
    (dict(rms=True, residual=True), 11, 72, [4, 1, 128, 2], {"range_num_stages": [0, 2], "widen": True}, torch.bfloat16),
    (dict(rms=False), 45, 1000, [8, 1, 1024, 1], {"pid_type": "persistent_blocked", "range_num_stages": [0, 3], "trim": True}, torch.float16),
    (dict(rms=False, gate="after"), 19, 520, [4, 1, 1024, 1], {"loop_orders": [[2, 1, 0]]}, torch.bfloat16),
    (dict(rms=False), 21, 1000, [8, 1, 256, 2], {}, torch.bfloat16),  # split: 4 channel tiles
    (dict(rms=False), 9, 100, [4, 1, 128, 1], {}, torch.float32),
]


@pytest.mark.parametrize("case", RECAST_BWD, ids=lambda c: f"{_tuning_name(c[0])}-{c[1]}x{c[2]}-{c[3]}-{sorted(c[4])}-{c[5]}")
def test_recast_backward(device, cached_config, case):
    """A backward config with ``recast`` matches the float64 reference (dx, dW, dB, dz, the
    residual's gradient) and is the config that ran; launch passes the flag for 16-bit
    rows on CUDA only."""
    config = _check_flagged_backward(device, cached_config, case, "recast")
    dtype = case[-1]
    x = torch.empty(1, 1, case[2], device=device, dtype=dtype)
    passed = kernels.launch.bwd_recast(config, x)
    assert passed == (device == "cuda" and dtype != torch.float32) and not kernels.launch.bwd_recast({**config, "recast": False}, x)


def _check_fp32_params_backward(device, cached_config, config: dict, what: str) -> None:
    """A LayerNorm backward of bf16 rows whose weight and bias are fp32, at ``config``,
    matches the float64 reference and is the config that ran."""
    m, n, dtype = 19, 328, torch.bfloat16
    cached_config("layer_norm", dtype, m, n, config, mode="bwd")
    x = make((m, n), dtype, device, mean=3.0)
    w, b = make((n,), torch.float32, device, mean=1.0, std=0.3), make((n,), torch.float32, device, std=0.3)
    dy = torch.randn(m, n, device=device, dtype=dtype)
    got = torch.autograd.grad(kernels.layer_norm(x, w, b, 1e-5), (x, w, b), dy)
    refs = [t.detach().double().requires_grad_() for t in (x, w, b)]
    want = torch.autograd.grad(F.layer_norm(refs[0], (n,), refs[1], refs[2], 1e-5), refs, dy.double())
    assert config in _compiled_configs(), f"the backward did not run the {what} config"
    for i, (g, w64) in enumerate(zip(got, want)):
        assert_close(f"grad[{i}]", g, w64, w64.to(g.dtype), dtype, slack=8.0)


def test_recast_backward_with_an_fp32_weight(device, cached_config):
    """A recast LayerNorm backward of a bf16 row whose weight and bias are fp32 (held
    values are 16-bit only: the fp32 weight stays as it is) matches the float64 reference."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    config = {"block_sizes": [4, 1, 512, 1], "num_warps": 4, "num_stages": 1, "range_num_stages": [0, 2], "recast": True}
    _check_fp32_params_backward(device, cached_config, config, "recast")


def test_exchange_backward_with_an_fp32_weight(device, cached_config):
    """The exchange backward of bf16 rows with an fp32 weight and bias, which it loads
    per row (a 16-bit weight is held across the row loop: the exchange cases above), on
    CUDA over three channel tiles, the last one partly masked."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    tile = 512 if device == "cpu" else 128  # the CPU's one tile: the whole row
    config = {"block_sizes": [4, 1, tile, 1], "num_warps": 4, "num_stages": 1, "loop_orders": [[2, 1, 0]], "exchange": True, "range_num_stages": [0, 2]}
    _check_fp32_params_backward(device, cached_config, config, "exchange")


def test_trim_pins_the_fused_tiles_dead_lanes():
    """``trim`` pins xhat, dy and dxhat to constant zeros (dy and dxhat -0.0, which a sum
    absorbs) beyond the row, by the tile's own lanes (its offset cancels); only in the
    fused schedule (no row coefficients), and not without the flag."""
    import helion

    from kernels import launch

    m, g, k = 8, 1, 40
    x, dy = torch.randn(m, g, k), torch.randn(m, g, k)
    w, b = torch.randn(g, k), torch.randn(g, k)
    mean, rstd = torch.randn(m, g), torch.rand(m, g)
    part = torch.zeros(1, 2, g, k)
    kernel = launch._kernels(False)["bwd"]
    for coef, tile in ((None, 64), (torch.zeros(2, m, g), 16)):
        for trim in (False, True):
            args = launch._bwd_args(
                launch.Variant(rms=False), dy, x, None, w, b, mean, rstd, coef, None,
                torch.empty_like(x), None, part[:, 0], part[:, 1], 0.0, 0, (False, trim, False),
            )  # fmt: skip
            code = kernel.bind(args).to_triton_code(helion.Config(block_sizes=[8, 1, tile, 2], num_warps=4, num_stages=1))
            body = code.split("def _helion_norm_bwd", 1)[1].split("\ndef ", 1)[0]
            pinned = body.count("tl.full([], -0.0, tl.float32)")
            assert pinned == (2 if trim and coef is None else 0), (tile, trim, pinned)
            assert ("indices_2 - " in body) == (trim and coef is None), (tile, trim)


def test_widened_backward_converts_bf16_by_bit_moves():
    """The backward's compile-time ``widen`` converts every bf16 value it loads (x, dy,
    the weight, the bias; z and dh where the variant has them) by ``_f32``'s
    shift-and-mask, and only bf16 ones."""
    import helion

    from kernels import launch

    move = "shl.b32 $0, $2, 16"
    m, g, k = 8, 1, 64
    cases = {"layer_norm": (False, "none", False, 4), "rms_gated_residual": (True, "after", True, 5)}
    for dtype in (torch.bfloat16, torch.float16):
        for name, (rms, gate, residual, moves) in cases.items():
            x, dy = torch.randn(m, g, k, dtype=dtype), torch.randn(m, g, k, dtype=dtype)
            z = torch.randn_like(x) if gate != "none" else None
            dh = torch.randn_like(x) if residual else None
            w, b = torch.randn(g, k, dtype=dtype), None if rms else torch.randn(g, k, dtype=dtype)
            mean, rstd = torch.randn(m, g), torch.rand(m, g)
            part = torch.zeros(1, 2, g, k)
            for widen in (False, True):
                args = launch._bwd_args(
                    launch.Variant(rms=rms, gate=gate), dy, x, z, w, b, None if rms else mean, rstd, None, dh,
                    torch.empty_like(x), None if z is None else torch.empty_like(x), part[:, 0], None if rms else part[:, 1], 0.0, 0, (widen, False, False),
                )  # fmt: skip
                code = launch._kernels(False)["bwd"].bind(args).to_triton_code(helion.Config(block_sizes=[8, 1, k, 2], num_warps=4, num_stages=1))
                expected = moves if widen and dtype == torch.bfloat16 else 0
                assert code.count(move) == expected, (name, dtype, widen, code.count(move))


# (kernel options, M, N, forward block sizes, backward block sizes): configs with one
# grid axis per tiled dim (pid_type "xyz"): the group tiles on y, the split backward's
# channel tiles on z, the two-pass forward's rows on x.
XYZ_GRIDS = [
    (dict(rms=True, group=64), 37, 256, [2, 1], [8, 1, 64, 2]),
    (dict(rms=False, gate="after"), 21, 4096, [1024, 2, 1], [4, 1, 4096, 1]),
    (dict(rms=False), 13, 2048, [1, 1], [8, 1, 512, 2]),  # split backward
]


@pytest.mark.parametrize("case", XYZ_GRIDS, ids=lambda c: f"{c[1]}x{c[2]}-{c[3]}-{c[4]}")
def test_per_axis_grids(device, cached_config, case):
    """Forward and backward launched on a per-axis grid (``pid_type="xyz"``: no program-id
    decode) match the float64 reference, ragged last tiles included."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    opts, m, n, fwd_sizes, bwd_sizes = case
    dtype = torch.bfloat16
    base = {"num_warps": 4, "num_stages": 1, "pid_type": "xyz"}
    fwd = {**base, "block_sizes": fwd_sizes} | ({"reduction_loops": [None]} if len(fwd_sizes) == 2 else {})
    bwd = {**base, "block_sizes": bwd_sizes}
    cached_config(_tuning_name(opts), dtype, m, n, fwd, mode="fwd")
    cached_config(_tuning_name(opts), dtype, m, n, bwd, mode="bwd")
    outs, refs, inputs, ref_in = _norm_and_reference(opts, m, n, device, dtype)
    assert fwd in _compiled_configs(), "the forward did not run the xyz config"
    assert_close("out", outs[0], refs[0], refs[0].to(dtype), dtype, slack=8.0)
    got, want = _grads_and_reference(outs, refs, inputs, ref_in)
    assert bwd in _compiled_configs(), "the backward did not run the xyz config"
    for i, (g, w64) in enumerate(zip(got, want)):
        assert_close(f"grad[{i}]", g, w64, w64.to(dtype), dtype, slack=8.0)


def test_per_axis_grid_falls_back_to_flat_past_the_grid_limit(device, cached_config):
    """A nearest-shape "xyz" entry applied to a call whose groups (or channel tiles) would
    exceed CUDA's 65535 programs along y runs on the flat grid instead."""
    from kernels import launch

    limit = launch.MAX_GRID_YZ
    n = 2 * (limit + 1)  # one entry; calls split it into k channels x g groups
    xyz = {"block_sizes": [2, 1], "reduction_loops": [None], "num_warps": 4, "num_stages": 1, "pid_type": "xyz"}
    cached_config("rms_norm_grouped", torch.bfloat16, 8, n, xyz)
    dev = torch.device(device)
    pick = lambda k: launch.choose_config("rms_norm_grouped", "fwd", 8, k, n // k, torch.bfloat16, dev)  # noqa: E731
    assert pick(4) == xyz, "(limit + 1) / 2 groups fit on y"
    flat = pick(2)
    assert "pid_type" not in flat and {**flat, "pid_type": "xyz"} == xyz, "limit + 1 groups do not"
    bwd = {"block_sizes": [8, 1, 1, 1], "num_warps": 4, "num_stages": 1, "pid_type": "xyz"}
    cached_config("rms_norm_grouped", torch.bfloat16, 8, n, bwd, mode="bwd")
    pick_bwd = lambda k: launch.choose_config("rms_norm_grouped", "bwd", 8, k, n // k, torch.bfloat16, dev)  # noqa: E731
    assert pick_bwd(n // 4) == bwd and "pid_type" not in pick_bwd(n // 2), "channel tiles on z"


# (kernel options, M, N, backward block sizes, one partial row): with m_block >= M the
# backward writes dW/dB itself; with more rows, fp32 partials and the reduce.
ONE_PARTIAL_ROW = [
    (dict(rms=False), 3, 96, [4, 1, 128, 1], True),
    (dict(rms=False), 9, 96, [4, 1, 128, 1], False),
    (dict(rms=True), 1, 300, [1, 1, 512, 1], True),
    (dict(rms=True, group=64), 5, 256, [8, 1, 64, 1], True),
    (dict(rms=False), 4, 256, [4, 1, 64, 2], True),  # split: each channel tile writes its slice
]


@pytest.mark.parametrize("case", ONE_PARTIAL_ROW, ids=lambda c: f"{'rms' if c[0]['rms'] else 'ln'}-{c[1]}x{c[2]}-{c[3]}")
@pytest.mark.parametrize("w_dtype", [torch.bfloat16, torch.float32])
def test_backward_with_one_partial_row_writes_dw_db_itself(device, cached_config, case, w_dtype):
    """Where one program's rows cover M, the backward stores dW and dB in the parameters'
    dtype itself and no reduce is compiled or launched; with more programs, fp32 partials
    and the reduce. Either way dW, dB (also alone, the weight frozen) and dx match float64,
    and a repeated call (replayed, natively on CUDA) gives the same bits."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    opts, m, n, sizes, one_row = case
    rms, group, dtype = opts["rms"], opts.get("group"), torch.bfloat16
    cached_config(_tuning_name(opts), dtype, m, n, {"block_sizes": sizes, "num_warps": 4, "num_stages": 1}, mode="bwd")
    x = make((m, n), dtype, device, mean=3.0)
    w = make((n,), w_dtype, device, mean=1.0, std=0.3)
    b = None if rms else make((n,), w_dtype, device, std=0.3)
    ref_in, ref, _ = _reference64([x, w, b, None, None], rms=rms, gate="none", group=group)
    dy = torch.randn_like(x)
    for frozen in ([False] if rms else [False, True]):
        w.requires_grad_(not frozen)
        inputs = [t for t in (x, w, b) if t is not None and t.requires_grad]
        refs = [t for t, live in zip(ref_in, (x, w, b)) if live is not None and live.requires_grad]
        want = torch.autograd.grad(ref, refs, dy.double(), retain_graph=True)
        runs = []
        for _ in range(2):
            if rms:
                out = kernels.rms_norm(x, w, 1e-5, group_size=group)
            else:
                out = kernels.layer_norm(x, w, b, 1e-5)
            runs.append(torch.autograd.grad(out, inputs, dy))
        for i, (g, again, w64) in enumerate(zip(*runs, want)):
            assert torch.equal(g, again), f"grad[{i}] changed on the repeated call"
            assert g.dtype == inputs[i].dtype
            assert_close(f"grad[{i}]", g.to(dtype), w64, w64.to(dtype), dtype, slack=8.0)
    reduces = [key for key in kernels.launch._compiled if key[0] == "reduce"]
    assert bool(reduces) != one_row, f"reduce compiled: {bool(reduces)}, one partial row: {one_row}"


@pytest.mark.parametrize("p", [2, 16, 17, 100, 600])
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float32])
def test_partial_sum_reduce_over_any_number_of_rows(device, p, out_dtype):
    """The dW/dB reduce sums P partial rows in fp32 and casts once, whatever its launch
    shape: P on either side of the narrow-tile and rows-per-step thresholds (16, 512),
    a ragged last step (17, 100, 600 rows), a row width no tile divides (40), one output
    or two. Against the float64 sum, within one rounding of the output dtype."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    k = 40
    part = (torch.randn(p, 2, 1, k, dtype=torch.float64) * 3.0 + 1.0).float().to(device)
    want = part.double().sum(0).reshape(2, k)
    for n_outs in (2, 1):
        outs = [torch.empty(k, dtype=out_dtype, device=device) for _ in range(n_outs)]
        kernels.launch._reduce_into(part[:, :n_outs], *outs, *[None] * (2 - n_outs))
        for i, out in enumerate(outs):
            scale = part[:, i].double().abs().sum(0).reshape(k)
            err = (out.double() - want[i]).abs()
            bound = ULP[out_dtype] * want[i].abs() + 1e-6 * scale
            assert (err <= bound).all(), f"output {i}: max error {(err - bound).max().item():.3g} over the bound"


@pytest.mark.parametrize("gate", ["none", "after", "before"])
@pytest.mark.parametrize("sums_first", [True, False], ids=["sums-first", "interleaved"])
def test_layer_norm_backward_row_sums_in_either_order(device, monkeypatch, sums_first, gate):
    """LayerNorm's fused backward takes its two row sums back to back (rows wider than
    ``ROW_SUMS_INTERLEAVED_UP_TO``) or uses the first before taking the second: both
    orders match float64, gated either way, on a large-mean input."""
    monkeypatch.setattr(kernels.heuristics, "ROW_SUMS_INTERLEAVED_UP_TO", 0 if sums_first else 1 << 30)
    kernels.launch.clear_compiled()
    dtype, m, n = torch.bfloat16, 11, 300
    x = make((m, n), dtype, device, mean=50.0, std=0.5)
    w = make((n,), dtype, device, mean=1.0, std=0.3)
    b = make((n,), dtype, device, std=0.3)
    z = make((m, n), dtype, device, std=2.0) if gate != "none" else None
    before = gate == "before"
    ours = lambda x, w, b, z: kernels.layer_norm(x, w, b, 1e-5, z=z, norm_before_gate=not before)  # noqa: E731
    peer = lambda x, w, b, z: _torch_norm(x, w, b, z, None, rms=False, gate=gate, group=None, eps=1e-5)[0]  # noqa: E731
    check_fwd_bwd(ours, peer, lambda r: dict(eps=1e-5, rms=False, z=r[3], norm_before_gate=not before), [x, w, b, z], dtype)
    kernels.launch.clear_compiled()


def test_layer_norm_backward_row_sum_order_is_fixed_at_compile_time():
    """The order is a constexpr of the generated code, not a runtime branch: in the
    interleaved program c2 is used before c1's row sum, in the other it is not."""
    import helion

    from kernels import heuristics, launch

    m, g, k = 8, 1, 64
    x, dy = torch.randn(m, g, k), torch.randn(m, g, k)
    w, b = torch.randn(g, k), torch.randn(g, k)
    mean, rstd = torch.randn(m, g), torch.rand(m, g)
    part = torch.zeros(1, 2, g, k)
    config = helion.Config(block_sizes=[8, 1, k, 2], num_warps=4, num_stages=1)
    kernel = launch._kernels(False)["bwd"]
    codes = {}
    for k_wide in (k, 2 * heuristics.ROW_SUMS_INTERLEAVED_UP_TO):
        sums_first = heuristics.bwd_sums_first(k_wide)
        args = launch._bwd_args(
            launch.Variant(rms=False), dy, x, None, w, b, mean, rstd, None, None,
            torch.empty_like(x), None, part[:, 0], part[:, 1], 0.0,
        )[:-5] + (sums_first, 0, False, False, False)  # fmt: skip  (the order, no exchange, widen, trim or recast)
        body = kernel.bind(args).to_triton_code(config).split("def _helion_norm_bwd", 1)[1]
        body = body.split("\ndef ", 1)[0].splitlines()
        assert not any("sums_first" in line for line in body), "the order became a runtime argument"
        rows = [i for i, line in enumerate(body) if "tl.sum(" in line and ", 2)" in line]
        assert len(rows) == 2, f"expected two row sums, found {len(rows)}"
        # Between the sums: only the first's scaling (sums first), or also c2 broadcast
        # over the row and used (interleaved).
        codes[sums_first] = any("[:, :, None]" in line for line in body[rows[0] + 1 : rows[1]])
    assert codes == {True: False, False: True}


def test_static_configs_compile_for_their_shape_only(device, cached_config):
    """A "static" forward entry runs the program compiled for that exact shape (M, the
    strides and the grid constants) on that shape, and the program for any M on the
    others; both match float64, a two-pass entry too."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    from kernels import launch

    n = 4096
    for config in (
        {"block_sizes": [2, 1], "num_warps": 4, "num_stages": 1, "reduction_loops": [None], "static": True},
        {"block_sizes": [1024, 2, 1], "num_warps": 4, "num_stages": 1, "static": True},
    ):
        cached_config("layer_norm", torch.float32, 6, n, config, mode="infer")
        for m in (6, 5):
            x = make((m, n), torch.float32, device, mean=30.0, std=0.5)
            w = make((n,), torch.float32, device, mean=1.0, std=0.5)
            b = make((n,), torch.float32, device, std=0.5)
            with torch.no_grad():
                out = kernels.layer_norm(x, w, b, 1e-5)
            ref, _ = norm64(x.double(), w.double(), b.double(), eps=1e-5, rms=False)
            assert_close("out", out, ref, F.layer_norm(x, (n,), w, b, 1e-5), torch.float32)
            ran = [cfg for key, (_, cfg) in launch._compiled.items() if key[0] == "fwd" and key[2][0] == m]
            assert len(ran) == 1 and bool(ran[0].get("static")) == (m == 6), (m, ran)
            assert launch.fwd_kernel_name(ran[0]).endswith("_static") == (m == 6)


def test_training_and_inference_forwards_take_their_own_entries(device, cached_config):
    """A call with grad (statistics saved) runs the ``fwd`` entry, one without grad the
    ``infer`` entry: the same config can run the two compiled programs at different speeds."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    m, n = 6, 200
    whole = {"block_sizes": [2, 1], "num_warps": 2, "num_stages": 1, "reduction_loops": [None]}
    two_pass = {"block_sizes": [64, 1, 1], "num_warps": 2, "num_stages": 1}
    cached_config("layer_norm", torch.float32, m, n, whole, mode="fwd")
    cached_config("layer_norm", torch.float32, m, n, two_pass, mode="infer")
    x = make((m, n), torch.float32, device, mean=40.0, std=0.5, requires_grad=True)
    w = make((n,), torch.float32, device, mean=1.0)
    b = make((n,), torch.float32, device)
    with torch.no_grad():
        inferred = kernels.layer_norm(x, w, b)
    trained = kernels.layer_norm(x, w, b)
    ran = {key[6]: config for key, (_, config) in kernels.launch._compiled.items() if key[0] == "fwd"}
    assert ran == {True: two_pass, False: whole}, "key[6]: no statistics saved"
    ref = norm64(leaf64(x), leaf64(w), leaf64(b), 1e-5, rms=False)[0]
    for got in (inferred, trained):
        assert (got.double() - ref).abs().max() < 1e-4


# Variants whose forward loads its weight (and bias) after the statistics by default.
PARAMS_FIRST = [
    dict(rms=False),
    dict(rms=False, gate="after"),
    dict(rms=True, gate="after"),
    dict(rms=False, gate="before"),
]


@pytest.mark.parametrize("opts", PARAMS_FIRST, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_forward_with_params_first_config(device, cached_config, opts):
    """A forward config with PARAMS_FIRST (weight and bias loaded before the statistics)
    runs, training and inference, and matches the float64 reference."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    from tuning.cache import PARAMS_FIRST as KEY

    m, n, dtype = 5, 200, torch.bfloat16
    config = {"block_sizes": [2, 1], "num_warps": 4, "num_stages": 1, "reduction_loops": [None], KEY: True}
    for mode in ("fwd", "infer"):
        cached_config(_tuning_name(opts), dtype, m, n, config, mode=mode)
    with torch.no_grad():
        inferred = _norm_and_reference(opts, m, n, device, dtype)
    trained = _norm_and_reference(opts, m, n, device, dtype)
    ran = [c for key, (_, c) in kernels.launch._compiled.items() if key[0] == "fwd"]
    assert ran == [config, config], "both forwards ran the params-first config"
    for outs, refs, *_ in (inferred, trained):
        for out, ref in zip(outs, refs):
            assert_close("out", out, ref, ref.to(dtype), dtype, slack=8.0)


def test_params_first_moves_the_weight_and_bias_loads_before_the_row_sums():
    """``params_first`` is a compile-time argument: with it the generated forward loads
    the weight and bias before its first row sum, without it after its last; the
    default (``launch.params_first`` of a config without the key) is after for
    LayerNorm, before for a 16-bit RMSNorm weight."""
    import helion

    from kernels import launch
    from tuning.cache import PARAMS_FIRST as KEY

    m, g, k = 8, 1, 64
    x = torch.randn(m, g, k, dtype=torch.bfloat16)
    w, b = torch.randn(g, k, dtype=torch.bfloat16), torch.randn(g, k, dtype=torch.bfloat16)
    args = (x, None, None, w, b, torch.empty_like(x), None, None, None, 1e-5, 0.0, False, "none", "gemma")
    config = {"block_sizes": [2, 1], "num_warps": 4, "num_stages": 1, "reduction_loops": [None]}
    assert launch.params_first(config, args) is False
    assert launch.params_first({**config, KEY: True}, args) is True
    rms_args = (*args[:4], None, *args[5:11], True, "none", "gemma")
    assert launch.params_first(config, rms_args) is True
    assert launch.params_first(config, (*rms_args[:3], w.float(), *rms_args[4:])) is False, "fp32 weight"
    for first in (False, True):
        bound = launch._kernels(False)["fwd"].bind(launch.fwd_kernel_args({**config, KEY: first}, args))
        body = bound.to_triton_code(helion.Config(**config)).split("def _helion_norm_fwd", 1)[1]
        lines = body.split("\ndef ", 1)[0].splitlines()
        sums = [i for i, line in enumerate(lines) if "tl.sum(" in line]
        params = [i for i, line in enumerate(lines) if "tl.load(weight" in line or "tl.load(bias" in line]
        assert len(params) == 2 and sums, (params, sums)
        assert (max(params) < min(sums)) if first else (min(params) > max(sums)), (first, params, sums)


def test_widen_programs_convert_bf16_by_bit_moves():
    """``widen`` is a compile-time argument of both forward kernels, True on CUDA only
    (the moves are PTX) and for LayerNorm rows of ``launch.WIDEN_MIN_K`` values or more:
    with it every bf16 value loaded for the norm (x, the residual,
    the gate, the weight, the bias; the residual sum again) converts to fp32 by
    ``_f32``'s shift-and-mask, and a recast row's later passes by the same moves kept
    opaque; fp16 and fp32 values keep Triton's conversion. Numerics: the GPU suite."""
    import helion

    from kernels import launch

    move = "shl.b32 $0, $2, 16"
    x = torch.randn(8, 1, 64, dtype=torch.bfloat16)
    cases = {  # name -> (residual, z, weight, bias, rms, gate, recast, moves)
        "layer_norm": (None, None, True, True, False, "none", False, 3),
        "rms_recast": (None, None, True, None, True, "none", True, 3),
        "add_rms": (True, None, True, None, True, "none", False, 4),
        "gated_before": (None, True, True, None, True, "before", False, 3),
    }
    for dtype in (torch.bfloat16, torch.float16):
        xd = x.to(dtype)
        for name, (residual, z, weight, bias, rms, gate, recast, moves) in cases.items():
            r = torch.randn_like(xd) if residual else None
            zt = torch.randn_like(xd) if z else None
            w = torch.randn(1, 64, dtype=dtype) if weight else None
            b = torch.randn(1, 64, dtype=dtype) if bias else None
            h = torch.empty_like(xd) if residual else None
            call = (xd, r, zt, w, b, torch.empty_like(xd), h, None, None, 1e-5, 0.0, rms, gate, "gemma")
            assert launch.fwd_kernel_args({"block_sizes": [2, 1]}, call)[len(call)] is False, "CPU: no PTX"
            for widen in (False, True):
                args = (*call, widen, False, recast, False)
                config = helion.Config(block_sizes=[2, 1], num_warps=4, num_stages=1, reduction_loops=[None])
                code = launch._kernels(False)["fwd"].bind(args).to_triton_code(config)
                expected = moves if widen and dtype == torch.bfloat16 else 0
                assert code.count(move) == expected, (name, dtype, widen, code.count(move))
                chunked = (*call, widen, 64, False, launch.PILOT_VALUES, False, False)
                code = launch._kernels(False)["fwd_chunked"].bind(chunked).to_triton_code(helion.Config(block_sizes=[32, 2, 1], num_warps=1, num_stages=1))
                assert (code.count(move) > 0) == (widen and dtype == torch.bfloat16), (name, dtype, widen)
    # Where the weight multiplies a value rounded to the dtype (casting "llama" or "none")
    # and no offset is added, Triton multiplies in the dtype: the weight keeps its conversion.
    xb, wb = x, torch.randn(1, 64, dtype=torch.bfloat16)
    for casting, offset, moves in (("llama", 0.0, 1), ("none", 0.0, 1), ("llama", 1.0, 2), ("gemma", 0.0, 2)):
        call = (xb, None, None, wb, None, torch.empty_like(xb), None, None, None, 1e-6, offset, True, "none", casting)
        config = helion.Config(block_sizes=[2, 1], num_warps=4, num_stages=1, reduction_loops=[None])
        code = launch._kernels(False)["fwd"].bind((*call, True, False, False, False)).to_triton_code(config)
        assert code.count(move) == moves, (casting, offset, code.count(move))


@pytest.mark.gpu
def test_widen_is_passed_for_wide_layer_norm_rows_on_cuda():
    from kernels import launch

    config = {"block_sizes": [1, 1]}
    wide = launch.WIDEN_MIN_K
    for k, rms, expected in ((wide, False, True), (wide, True, False), (1, False, False), (wide - 1, False, False), (2 * wide, False, True)):
        x = torch.randn(4, 1, k, device="cuda", dtype=torch.bfloat16)
        call = (x, None, None, None, None, torch.empty_like(x), None, None, None, 1e-5, 0.0, rms, "none", "gemma")
        assert launch.fwd_kernel_args(config, call)[len(call)] is expected, (k, rms)


def test_read_only_programs_load_the_second_pass_by_ld_global_nc():
    """``read_only`` is a compile-time argument of the two-pass forward: with it the second
    pass reads the row (x, or the residual sum), the weight and the bias by
    ``ld.global.nc``, 16 bytes a load, addresses clamped into the tensors; without it by
    Triton's loads. ``launch.read_only`` asks for it only where the config has the key and
    the call can: CUDA tensors (never the CPU's interpreter), each thread's run of a chunk
    16 bytes or more, every tensor contiguous and 16-byte aligned."""
    import helion

    from kernels import launch
    from tuning.cache import READ_ONLY as KEY

    for dtype, wdtype, residual in ((torch.bfloat16, torch.bfloat16, False), (torch.float32, torch.float32, True), (torch.float16, torch.float32, False)):
        x = torch.randn(8, 2, 512, dtype=dtype)
        w, b = torch.randn(2, 512, dtype=wdtype), torch.randn(2, 512, dtype=wdtype)
        r, h = (torch.randn_like(x), torch.empty_like(x)) if residual else (None, None)
        config = {"block_sizes": [256, 2, 1], "num_warps": 1, "num_stages": 1}
        args = (x, r, None, w, b, torch.empty_like(x), h, None, None, 1e-5, 0.0, False, "none", "none")
        kernel_args = launch.fwd_kernel_args(config, args)
        assert kernel_args[-2] is False, "a CPU call never reads read-only"
        for read_only in (False, True):
            bound = launch._kernels(False)["fwd_chunked"].bind((*kernel_args[:-2], read_only, kernel_args[-1]))
            code = bound.to_triton_code(helion.Config(**config))
            assert code.count("ld.global.nc.L1::") == (3 if read_only else 0), (dtype, read_only)
            assert code.count(f"pack={16 // x.element_size()}") == (1 + (wdtype == dtype) * 2 if read_only else 0)
    assert launch.read_only({**config, KEY: True, "static": True}, args) is False, "CPU tensors run under the interpreter"
    aligned = torch.zeros(4, 1, 64, dtype=torch.bfloat16)
    assert launch.aligned16([aligned, None])
    assert not launch.aligned16([aligned.view(-1)[1:129].view(2, 1, 64)]), "2 bytes off a 16-byte boundary"
    assert not launch.aligned16([torch.zeros(4, 1, 68, dtype=torch.bfloat16)]), "rows of 136 bytes"
    assert not launch.aligned16([torch.zeros(4, 1, 128, dtype=torch.bfloat16)[:, :, :64]]), "not contiguous"


# Variants a recast forward serves: its u is the row or its residual sum.
RECAST = [
    dict(rms=False),
    dict(rms=True),
    dict(rms=True, residual=True),
    dict(rms=False, gate="after"),
    dict(rms=True, group=40),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("opts", RECAST, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_forward_with_recast_config(device, cached_config, opts, dtype):
    """A whole-row forward config with RECAST (the row held in its 16-bit form between
    the passes) matches float64 in training and inference, on rows with a large mean, one
    row and an odd width among them. On CUDA the programs recast; Triton's interpreter
    runs no PTX, so there the key is ignored (``launch.can_recast``)."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    from kernels import launch
    from tuning.cache import RECAST as KEY

    for m, n, warps in ((5, 200, 4), (1, 77, 2), (3, 40, 4)):
        n = n if not opts.get("group") else 200
        config = {"block_sizes": [2, 1], "num_warps": warps, "num_stages": 1, "reduction_loops": [None], KEY: True}
        for mode in ("fwd", "infer"):
            cached_config(_tuning_name(opts), dtype, m, n, config, mode=mode)
        with torch.no_grad():
            inferred = _norm_and_reference(opts, m, n, device, dtype)
        trained = _norm_and_reference(opts, m, n, device, dtype)
        ran = [c for key, (_, c) in launch._compiled.items() if key[0] == "fwd"]
        assert ran == [config, config], "both forwards ran the recast config"
        x = inferred[2][0]
        assert launch.can_recast(x, opts.get("gate", "none")) == (device == "cuda")
        for outs, refs, *_ in (inferred, trained):
            for out, ref in zip(outs, refs):
                assert_close("out", out, ref, ref.to(dtype), dtype, slack=8.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_recast_layer_norm_keeps_a_large_mean_row_accurate(device, cached_config, dtype):
    """A recast LayerNorm centres its passes on the rounded fp32 mean (one subtraction
    instead of two): on 16-bit rows whose |mean| is hundreds of times their spread, and on
    a constant row (variance 0: the output must be exactly the bias), its error stays
    within torch's own."""
    if device == "cpu" and kernels.get_cpu_backend() == "ref":
        pytest.skip("the reference mode runs without configs")
    from tuning.cache import RECAST as KEY

    m, n = 4, 300
    config = {"block_sizes": [1, 1], "num_warps": 4, "num_stages": 1, "reduction_loops": [None], KEY: True}
    cached_config("layer_norm", dtype, m, n, config, mode="infer")
    x = make((m, n), dtype, device, mean=700.0, std=4.0, requires_grad=False)
    x[1] = 700.0  # a constant row
    w = make((n,), dtype, device, mean=1.0, std=0.3, requires_grad=False)
    b = make((n,), dtype, device, std=0.3, requires_grad=False)
    with torch.no_grad():
        out = kernels.layer_norm(x, w, b, 1e-5)
    ref, _ = norm64(x.double(), w.double(), b.double(), eps=1e-5, rms=False)
    assert_close("out", out, ref, F.layer_norm(x, (n,), w, b, 1e-5), dtype)
    assert torch.equal(out[1], b), "a constant row normalizes to the bias"


def test_recast_programs_convert_the_held_row_once_a_pass():
    """``recast`` is a compile-time argument: with it the generated forward passes the
    16-bit row through an opaque register move before each pass after the first (two for
    LayerNorm: the variance and the output; one for RMSNorm: the output), without it
    none. ``launch.recast`` asks for it only where the config has the key and the row can
    be held: a 16-bit row on CUDA whose u is not gated before the norm."""
    import helion

    from kernels import launch
    from tuning.cache import RECAST as KEY

    x = torch.randn(8, 1, 64, dtype=torch.bfloat16)
    w = torch.randn(1, 64, dtype=torch.bfloat16)
    config = {"block_sizes": [2, 1], "num_warps": 4, "num_stages": 1, "reduction_loops": [None]}
    for rms, moves in ((False, 2), (True, 1)):
        for recast in (False, True):
            args = (x, None, None, w, None, torch.empty_like(x), None, None, None, 1e-5, 0.0, rms, "none", "gemma", False, False, recast, False)
            code = launch._kernels(False)["fwd"].bind(args).to_triton_code(helion.Config(**config))
            assert code.count("tl.inline_asm_elementwise(") == (moves if recast else 0), (rms, recast)
            assert code.count("is_pure=False") == (moves if recast else 0), (rms, recast)
    args = (x, None, None, w, None, torch.empty_like(x), None, None, None, 1e-5, 0.0, False, "none", "gemma")
    assert launch.recast({**config, KEY: True}, args) is False, "CPU tensors run under the interpreter"
    assert launch.can_recast(x.float(), "none") is False
    assert launch.can_recast(x, "before") is False


def test_plain_rms_norm_programs_take_one_approximate_rsqrt_the_others_and_the_reference_mode_none():
    """Plain RMSNorm's compiled forward programs compute rstd with Triton's ``tl.rsqrt``
    (one approximate instruction, as torch's CUDA norms); LayerNorm's, the gated and the
    residual RMSNorm's with an IEEE sqrt and a division (where the approximate one measured
    slower); the eager reference mode, which cannot run inline Triton, is passed
    ``fast_rsqrt`` False, and its RMSNorm still matches float64."""
    import helion

    from kernels import launch

    m, g, k = 8, 1, 256
    x = torch.randn(m, g, k, dtype=torch.bfloat16)
    other = torch.randn_like(x)
    cases = {  # (residual, z, h_out, rms, gate) -> rsqrt expected
        "rms": ((None, None, None, True, "none"), True),
        "layer_norm": ((None, None, None, False, "none"), False),
        "gated": ((None, other, None, True, "after"), False),
        "residual": ((other, None, torch.empty_like(x), True, "none"), False),
    }
    for name, ((residual, z, h_out, rms, gate), fast) in cases.items():
        args = (x, residual, z, None, None, torch.empty_like(x), h_out, None, None, 1e-5, 0.0, rms, gate, "gemma")
        for config in ({"block_sizes": [2, 1], "num_warps": 4, "num_stages": 1, "reduction_loops": [None]},
                       {"block_sizes": [64, 2, 1], "num_warps": 4, "num_stages": 1}):  # fmt: skip
            kernel_args = launch.fwd_kernel_args(config, args)
            assert kernel_args[-1] is fast, name
            bound = launch._kernels(False)[launch.fwd_kernel_name(config)].bind(kernel_args)
            code = bound.to_triton_code(helion.Config(**config))
            assert code.count("tl.rsqrt(") == (1 if fast else 0), (name, config)
            assert ("sqrt_rn" in code) != fast, (name, config)
    reference = torch.empty_like(x)
    launch._kernels(True)["fwd"](x, None, None, None, None, reference, None, None, None, 1e-5, 0.0, True, "none", "gemma", False, False, False, False)
    xf = x.double()
    expected = xf / torch.sqrt((xf * xf).mean(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(reference.double(), expected, atol=0.02, rtol=0.02)


def test_chunked_forward_pilot_width_and_shape():
    """The two-pass forward averages 16 values for a 16-bit row's pilot in training as in
    inference, one chunk for fp32; and the pilot stays [rows, groups, 1] in the generated
    program, so the mean's store cannot pull it into a 2-D layout (Triton 3.6 then
    converted a chunk-wide broadcast of it through shared memory: 14x slower on the H200,
    NOTES attempt 61)."""
    import helion

    from kernels import launch

    config = {"block_sizes": [64, 1, 1], "num_warps": 4, "num_stages": 1}
    for dtype, pilot in ((torch.bfloat16, launch.PILOT_VALUES), (torch.float16, launch.PILOT_VALUES), (torch.float32, 64)):
        x = torch.randn(8, 1, 256, dtype=dtype)
        stats = torch.empty(8, 1)
        for mean, rstd in ((None, None), (stats, torch.empty_like(stats))):  # inference, training
            args = (x, None, None, None, None, torch.empty_like(x), None, mean, rstd, 1e-5, 0.0, False, "none", "none")
            kernel_args = launch.fwd_kernel_args(config, args)
            assert kernel_args[-3] == pilot, (dtype, rstd is not None)
    bound = launch._kernels(False)["fwd_chunked"].bind(kernel_args)
    code = bound.to_triton_code(helion.Config(**config))
    assert "pilot = tl.full([_BLOCK_SIZE_1, _BLOCK_SIZE_2, 1]" in code
    assert "tl.store(mean_out" in code


# --------------------------------------------------------------------- edge cases


def test_empty_input(device):
    x = torch.empty((0, 64), device=device, requires_grad=True)
    w = torch.ones(64, device=device, requires_grad=True)
    out = kernels.rms_norm(x, w)
    assert out.shape == (0, 64)
    out.sum().backward()
    assert x.grad.shape == (0, 64) and torch.equal(w.grad, torch.zeros(64, device=device))
    out, h = kernels.add_layer_norm(x, x, w)
    assert out.shape == h.shape == (0, 64)


def test_no_grad_path_matches_autograd_path(device):
    x = make((9, 130), torch.float32, device)
    w = make((130,), torch.float32, device, mean=1.0)
    with_grad = kernels.layer_norm(x, w)
    with torch.no_grad():
        without = kernels.layer_norm(x, w)
    assert torch.equal(with_grad.detach(), without)


def test_repeated_calls_are_deterministic(device):
    x = make((64, 256), torch.float32, device)
    w = make((256,), torch.float32, device, mean=1.0)
    results = []
    for _ in range(2):
        w.grad = None
        kernels.rms_norm(x, w).backward(torch.ones(64, 256, device=device))
        results.append(w.grad.clone())
    assert torch.equal(results[0], results[1])


# --------------------------------------------------------------------- bad input


BAD = [
    (lambda x, w: kernels.layer_norm(x, w[:-1]), ValueError, "weight must have shape"),
    (lambda x, w: kernels.layer_norm(x, w, w[:5]), ValueError, "bias must have shape"),
    (lambda x, w: kernels.rms_norm(x.long(), w), TypeError, "x must be float32"),
    (lambda x, w: kernels.rms_norm(x, w.to(torch.int32)), TypeError, "weight must be float32"),
    (lambda x, w: kernels.rms_norm(x, w, eps=0.0), ValueError, "eps must be"),
    (lambda x, w: kernels.rms_norm(x, w, eps=-1e-6), ValueError, "eps must be"),
    (lambda x, w: kernels.rms_norm(x, w, casting="fp8"), ValueError, "casting must be"),
    (lambda x, w: kernels.rms_norm(x, w, group_size=7), ValueError, "group_size"),
    (lambda x, w: kernels.rms_norm(x, w, z=x[:, :8]), ValueError, "z must have the shape"),
    (lambda x, w: kernels.add_rms_norm(x, x.half(), w), TypeError, "residual must have the dtype"),
    (lambda x, w: kernels.add_rms_norm(x, x[:1], w), ValueError, "residual must have the shape"),
    (lambda x, w: kernels.layer_norm(x.sum(), None), ValueError, "at least one dimension"),
    (lambda x, w: kernels.layer_norm([1.0, 2.0], None), TypeError, "x must be a torch.Tensor"),
]


@pytest.mark.parametrize("call,exc,message", BAD)
def test_bad_input_is_rejected(call, exc, message):
    x = torch.randn(4, 64)
    w = torch.randn(64)
    with pytest.raises(exc, match=message):
        call(x, w)


@pytest.mark.gpu
def test_mixed_devices_are_rejected():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x = torch.randn(4, 64, device="cuda")
    with pytest.raises(ValueError, match="weight is on cpu"):
        kernels.rms_norm(x, torch.ones(64))


# ------------------------------------------------------------------ replayed calls

REPLAYED = {
    "rms_norm": lambda x, w, b, z, r: kernels.rms_norm(x, w),
    "layer_norm": lambda x, w, b, z, r: kernels.layer_norm(x, w, b),
    "gated_before_grouped": lambda x, w, b, z, r: kernels.rms_norm(
        x, w, z=z, norm_before_gate=False, group_size=64
    ),
    "gated_after_ln": lambda x, w, b, z, r: kernels.layer_norm(x, w, b, z=z),
    "add_rms_norm": lambda x, w, b, z, r: kernels.add_rms_norm(x, r, w, offset=1.0),
}


def _replayed_ref(name, x, w, b, z, r):
    """float64 (out, h) of REPLAYED[name]."""
    if name == "rms_norm":
        return norm64(x, w, None, 1e-6, rms=True)
    if name == "layer_norm":
        return norm64(x, w, b, 1e-5, rms=False)
    if name == "gated_before_grouped":
        return norm64(x, w, None, 1e-6, rms=True, z=z, norm_before_gate=False, group_size=64)
    if name == "gated_after_ln":
        return norm64(x, w, b, 1e-5, rms=False, z=z)
    return norm64(x, w, None, 1e-6, rms=True, offset=1.0, residual=r)


@pytest.mark.gpu
@pytest.mark.parametrize("name", list(REPLAYED))
@pytest.mark.parametrize("n", [256, 40000])  # 40000: the split (three-kernel) backward
def test_replayed_calls_match_reference(name, n):
    """Calls after the first replay recorded launches: fresh inputs every call, so a
    replay that kept a stale pointer, stride or size shows up as a wrong result."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from kernels import launch

    dtype = torch.bfloat16
    before = {k for k, v in launch._plans.items() if v is not None}
    for _ in range(3):
        x = make((3, 5, n), dtype, "cuda", mean=0.5)
        inputs = [
            x, make((n,), dtype, "cuda", mean=1.0, std=0.3), make((n,), dtype, "cuda", std=0.3),
            make(x.shape, dtype, "cuda"), make(x.shape, dtype, "cuda", mean=1.0),
        ]  # fmt: skip
        result = REPLAYED[name](*inputs)
        out = result[0] if isinstance(result, tuple) else result
        ref_in = [leaf64(t) for t in inputs]
        ref, ref_h = _replayed_ref(name, *ref_in)
        assert_close("out", out, ref, ref.to(dtype), dtype)
        dy = torch.randn_like(out)
        got = grads(out, inputs, dy)
        want = grads(ref, ref_in, dy.double())
        for i, (g, r) in enumerate(zip(got, want)):
            if r is not None:
                assert_close(f"grad[{i}]", g, r, r.to(dtype), dtype, slack=8.0)
    new = {k for k, v in launch._plans.items() if v is not None} - before
    assert {k[0] for k in new} == {"fwd", "bwd"}, "the forward and backward were not replayed"


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("name", list(REPLAYED))
def test_repeated_calls_take_the_fast_path(device, name, grad):
    """Calls after the first go through the ``launch.Call`` filed in ``launch.fast_plans``
    (no checks, no variant lookup; on CUDA the recorded plans of the forward and, with
    grad, the backward, replayed from C++ by ``kernels.native``): fresh inputs every
    call must still give the right outputs, the residual sum where there is one, and
    every gradient."""
    from kernels import native

    entry = check_repeated_calls(device, name, grad)
    if device == "cuda":
        assert entry.native is not None, "the repeated CUDA call is not native"
        if grad:
            assert native.backward_records(entry.native) == 1, "its backward is not native"


def check_repeated_calls(device: str, name: str, grad: bool):  # noqa: ANN201
    """Three calls of REPLAYED[name] on fresh inputs, each checked against float64;
    returns the one fast-path entry they made."""
    from kernels import launch

    dtype, n = torch.bfloat16, 128
    launch.fast_plans.clear()  # the entries are a cache, shared by the CPU routes
    with torch.set_grad_enabled(grad):
        for _ in range(3):
            inputs = [
                make((2, 7, n), dtype, device, mean=0.5), make((n,), dtype, device, mean=1.0, std=0.3),
                make((n,), dtype, device, std=0.3), make((2, 7, n), dtype, device),
                make((2, 7, n), dtype, device, mean=1.0),
            ]  # fmt: skip
            result = REPLAYED[name](*inputs)
            ref_in = [leaf64(t) for t in inputs]
            ref, ref_h = _replayed_ref(name, *ref_in)
            out = result[0] if isinstance(result, tuple) else result
            assert out.requires_grad == grad
            assert_close("out", out, ref, ref.to(dtype), dtype)
            if ref_h is not None:
                assert_close("h", result[1], ref_h, ref_h.to(dtype), dtype)
            if grad:
                dy = torch.randn_like(out)
                for i, (g, r) in enumerate(zip(grads(out, inputs, dy), grads(ref, ref_in, dy.double()))):
                    if r is not None:
                        assert_close(f"grad[{i}]", g, r, r.to(dtype), dtype, slack=8.0)
    assert len(launch.fast_plans) == 1, "the repeated call did not get a fast path"
    (entry,) = launch.fast_plans.values()
    assert entry.training == grad
    if device == "cuda":
        assert entry.fwd_plan is not None, "the fast path does not replay the forward"
        if grad:
            assert any(p is not None for p in entry.bwd_plans.values()), "nor the backward"
    return entry


def test_fast_path_follows_grad_mode_and_requires_grad(device):
    """One set of tensors called under grad, under no_grad, and with the weight frozen:
    each is its own fast-path entry, and each records (or not) the right graph."""
    x = make((3, 64), torch.float32, device)
    w = make((64,), torch.float32, device, mean=1.0)
    ref_in = [leaf64(x), leaf64(w)]
    ref, _ = norm64(*ref_in, None, 1e-6, rms=True)
    dy = torch.randn(3, 64, dtype=torch.float64, device=x.device)
    want = grads(ref, ref_in, dy)
    for frozen in (False, False, True, True, False):
        w.requires_grad_(not frozen)
        for _ in range(2):
            with torch.no_grad():
                assert kernels.rms_norm(x, w).grad_fn is None
        out = kernels.rms_norm(x, w)
        assert_close("out", out, ref, ref.float(), torch.float32)
        live = [x] if frozen else [x, w]
        got = torch.autograd.grad(out, live, dy.to(out))
        for name, g, r in zip(("dx", "dw"), got, want):
            assert_close(name, g, r, r.float(), torch.float32)
        if frozen:
            with pytest.raises(RuntimeError, match="does not require grad"):
                torch.autograd.grad(kernels.rms_norm(x, w), [w], dy.to(out))


@pytest.mark.gpu
def test_fast_path_keeps_scalars_and_checks_apart():
    """A fast-path entry serves only its own signature: another eps on the same
    tensors computes with that eps, and arguments the checks reject are still
    rejected (a wrong weight shape, eps=True where eps=1.0 was seen)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x = make((4, 256), torch.float32, "cuda", std=1e-2, requires_grad=False)
    w = make((256,), torch.float32, "cuda", mean=1.0, requires_grad=False)
    for eps in (1.0, 1.0, 1e-6, 1e-6, 1.0):
        ref, _ = norm64(x.double(), w.double(), None, eps, rms=True)
        assert_close(f"eps={eps}", kernels.rms_norm(x, w, eps), ref, ref.float(), torch.float32)
    with pytest.raises(TypeError, match="eps must be a float"):
        kernels.rms_norm(x, w, True)
    with pytest.raises(ValueError, match="weight must have shape"):
        kernels.rms_norm(x, w[:255])
    with pytest.raises(ValueError, match="weight is on cpu"):
        kernels.rms_norm(x, w.cpu())


@pytest.mark.gpu
def test_inputs_that_need_a_copy_are_never_replayed():
    """Leading dims that cannot merge into one row dim (a transposed batch) make the
    [M, G, K] view a copy: that signature keeps the general route, and stays right."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from kernels import launch

    for _ in range(2):
        x = make((5, 4, 96), torch.float32, "cuda").detach().transpose(0, 1)
        w = make((96,), torch.float32, "cuda", requires_grad=False)
        out = kernels.rms_norm(x, w)
        ref, _ = norm64(x.double(), w.double(), None, 1e-6, rms=True)
        assert_close("out", out, ref, ref.float(), torch.float32)
    assert any(
        v is None and k[0] == "fwd" and k[6][1] == x.stride() for k, v in launch._plans.items()
    ), "an input that needs a copy got a replay plan"
