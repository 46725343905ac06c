"""The Unsloth-style baseline kernels against float64 PyTorch: forward, dx, dW, dB.

On a machine without CUDA they run in Triton's interpreter, which must be switched on
before the kernels are defined (conftest.py does it too, except under ``-m gpu``).
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tritonbench_ops import unsloth_style  # noqa: E402
from tritonbench_ops.unsloth_style import unsloth_layer_norm, unsloth_rms_norm  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Relative Frobenius-norm error allowed against float64: a few roundings of the dtype.
# (Observed: ~1e-7 in fp32; ~6e-3 for the bf16 Llama forward, which rounds twice.)
TOL = {torch.float32: 1e-5, torch.bfloat16: 1.5e-2}

# Odd widths exercise the masked tail of the block; 37 rows give several rows per
# backward program and a shorter last block.
SHAPES = [(5, 3), (37, 127), (6, 1000)]
DTYPES = [torch.float32, torch.bfloat16]


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    want = want.detach().double()
    return ((got.detach().double() - want).norm() / want.norm()).item()


def make(shape, dtype, seed, scale=1.0, shift=0.0, grad=True):
    g = torch.Generator().manual_seed(seed)
    t = (shift + scale * torch.randn(shape, generator=g)).to(dtype).to(DEVICE)
    return t.requires_grad_(grad)


def ref_layer_norm(x, w, b, eps):
    x64 = x.double()
    mean = x64.mean(-1, keepdim=True)
    var = ((x64 - mean) ** 2).mean(-1, keepdim=True)
    return (x64 - mean) / torch.sqrt(var + eps) * w.double() + b.double()


def ref_rms_norm(x, w, eps, gemma):
    x64 = x.double()
    xhat = x64 / torch.sqrt((x64 * x64).mean(-1, keepdim=True) + eps)
    return xhat * (w.double() + (1.0 if gemma else 0.0))


def grads_of(fn, leaves, dy):
    for t in leaves:
        t.grad = None
    y = fn(*leaves)
    y.backward(dy.to(y.dtype))
    return y, [t.grad for t in leaves]


def reference_grads(ref, leaves, dy):
    leaves64 = [t.detach().double().requires_grad_() for t in leaves]
    y = ref(*leaves64)
    y.backward(dy.double())
    return y, [t.grad for t in leaves64]


def assert_all_close(got, want, dtype, names):
    for g, w, name in zip(got, want, names):
        assert g is not None, f"no gradient for {name}"
        assert g.dtype == dtype, f"{name}: dtype {g.dtype}, want {dtype}"
        err = rel_err(g, w)
        assert err < TOL[dtype], f"{name}: relative error {err:.2e} >= {TOL[dtype]:.0e}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_layer_norm_matches_float64(shape, dtype):
    m, n = shape
    # A large mean against the spread: a one-pass variance would lose digits here.
    x = make((m, n), dtype, 1, scale=0.5, shift=-2.3)
    w, b = make((n,), dtype, 2), make((n,), dtype, 3)
    dy = make((m, n), torch.float32, 4, grad=False)
    y, grads = grads_of(lambda x, w, b: unsloth_layer_norm(x, w, b, 1e-5), [x, w, b], dy)
    y64, grads64 = reference_grads(lambda x, w, b: ref_layer_norm(x, w, b, 1e-5), [x, w, b], dy)
    assert_all_close([y, *grads], [y64, *grads64], dtype, ["y", "dx", "dw", "db"])


@pytest.mark.parametrize("gemma", [False, True], ids=["llama", "gemma"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_rms_norm_matches_float64(shape, dtype, gemma):
    m, n = shape
    x = make((m, n), dtype, 5)
    w = make((n,), dtype, 6, scale=0.1, shift=0.0 if gemma else 1.0)
    dy = make((m, n), torch.float32, 7, grad=False)
    fn = lambda x, w: unsloth_rms_norm(x, w, 1e-6, gemma=gemma)  # noqa: E731
    ref = lambda x, w: ref_rms_norm(x, w, 1e-6, gemma)  # noqa: E731
    y, grads = grads_of(fn, [x, w], dy)
    y64, grads64 = reference_grads(ref, [x, w], dy)
    assert_all_close([y, *grads], [y64, *grads64], dtype, ["y", "dx", "dw"])


def test_gemma_adds_one_to_the_weight():
    x, w = make((4, 16), torch.float32, 8, grad=False), make((16,), torch.float32, 9, grad=False)
    llama_plus_one = unsloth_rms_norm(x, w + 1.0, 1e-6, gemma=False)
    gemma = unsloth_rms_norm(x, w, 1e-6, gemma=True)
    assert rel_err(gemma, llama_plus_one) < 1e-6
    assert rel_err(unsloth_rms_norm(x, w, 1e-6), gemma) > 0.1


def test_leading_dims_and_strided_input():
    base = make((2, 3, 64), torch.float32, 10, grad=False)
    x = base[:, :, ::2].detach().requires_grad_()  # not contiguous along the row
    w = make((64,), torch.float32, 11, grad=False)[::2].detach().requires_grad_()  # strided
    b = make((32,), torch.float32, 12)
    y = unsloth_layer_norm(x, w, b, 1e-5)
    assert y.shape == x.shape
    # sum() hands the backward an expanded dy (all strides 0).
    y.sum().backward()
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, w, b))
    ref_layer_norm(x64, w64, b64, 1e-5).sum().backward()
    assert rel_err(y, ref_layer_norm(x, w, b, 1e-5)) < 1e-5
    for got, want in [(x.grad, x64.grad), (w.grad, w64.grad), (b.grad, b64.grad)]:
        assert rel_err(got, want) < 1e-5


def test_empty_input():
    x = torch.empty(0, 8, device=DEVICE, requires_grad=True)
    w = torch.ones(8, device=DEVICE, requires_grad=True)
    y = unsloth_rms_norm(x, w)
    assert y.shape == (0, 8)
    y.sum().backward()
    assert x.grad.shape == (0, 8)
    assert torch.equal(w.grad, torch.zeros(8, device=DEVICE))


def test_bad_weight_shape_is_rejected():
    x = torch.randn(4, 8, device=DEVICE)
    with pytest.raises(ValueError, match=r"\(8,\)"):
        unsloth_rms_norm(x, torch.ones(7, device=DEVICE))


@pytest.mark.parametrize(
    "n, block, warps",
    [(3, 4, 4), (1000, 1024, 4), (2048, 2048, 8), (4097, 8192, 16), (16384, 16384, 16),
     (32768, 32768, 32), (65536, 65536, 32)],
)
def test_calculate_settings_follows_unsloth(n, block, warps):
    assert unsloth_style.calculate_settings(n) == (block, warps)


def test_rows_wider_than_one_block_are_refused():
    with pytest.raises(ValueError, match="too wide"):
        unsloth_style.calculate_settings(65537)


@pytest.mark.parametrize("n_rows", [0, 1, 2, 7, 8, 9, 37, 1000])
def test_backward_grid_covers_every_row_once(n_rows):
    programs, per_program = unsloth_style.backward_grid(n_rows, torch.device("cpu"))
    owned = [
        r for p in range(programs)
        for r in range(p * per_program, min((p + 1) * per_program, n_rows))
    ]
    assert owned == list(range(n_rows))
    assert all(p * per_program < n_rows for p in range(programs)), "a program with no rows"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("shape", [(4096, 4096), (2048, 32768)], ids=str)
def test_compiled_kernels_at_benchmark_shapes(shape):
    m, n = shape
    x = make((m, n), torch.bfloat16, 13)
    w, b = make((n,), torch.bfloat16, 14), make((n,), torch.bfloat16, 15)
    dy = make((m, n), torch.float32, 16, grad=False)
    y, grads = grads_of(lambda x, w, b: unsloth_layer_norm(x, w, b, 1e-5), [x, w, b], dy)
    y64, grads64 = reference_grads(lambda x, w, b: ref_layer_norm(x, w, b, 1e-5), [x, w, b], dy)
    assert_all_close([y, *grads], [y64, *grads64], torch.bfloat16, ["y", "dx", "dw", "db"])
    y, grads = grads_of(lambda x, w: unsloth_rms_norm(x, w, 1e-6), [x, w], dy)
    y64, grads64 = reference_grads(lambda x, w: ref_rms_norm(x, w, 1e-6, False), [x, w], dy)
    assert_all_close([y, *grads], [y64, *grads64], torch.bfloat16, ["y", "dx", "dw"])
