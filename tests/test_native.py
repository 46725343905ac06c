"""The native call path (``kernels.native``): C++ replays of recorded launches and a C++
autograd node for repeated CUDA calls.

On the CPU the extension is built against the installed torch (what a user's first
CUDA call does) and its argument packing is checked; on CUDA (``-m gpu``) the native
calls are checked against float64 references with partial and missing gradients,
and the Python route they replace is still checked on its own."""

from __future__ import annotations

import shutil
import struct
import warnings

import pytest
import torch

import kernels
from kernels import launch, native
from reference import norm64
from test_kernels import REPLAYED, assert_close, check_repeated_calls, force_config, grads, leaf64, make

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_extension_builds_against_this_torch(monkeypatch):
    """The C++ source compiles and loads with the installed torch (a build error would
    silently send every user to the slower Python route)."""
    monkeypatch.delenv("TILENORM_NATIVE", raising=False)
    monkeypatch.setattr(native, "fast", native.fast)
    monkeypatch.setattr(native, "_ext", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the build failing only warns
        ext = native.extension()
    assert ext is not None
    for name in ("make_call", "add_backward", "set_fallback", "backward_records", "fast", "file", "clear_fast"):
        assert callable(getattr(ext, name))


def test_native_path_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("TILENORM_NATIVE", "0")
    monkeypatch.setattr(native, "fast", native.fast)  # restored afterwards, as _ext
    monkeypatch.setattr(native, "_ext", None)
    assert native.extension() is None
    assert native.fast is native._no_fast


@pytest.mark.parametrize(
    "ty, value, fmt",
    [
        ("i32", -3, "<i"), ("i32", 2**31 - 1, "<i"), ("u32", 2**32 - 1, "<I"),
        ("i64", -(2**40), "<q"), ("i1", 1, "<b"), ("i16", -2, "<h"),
        ("fp32", 1e-6, "<f"), ("fp32", -0.1, "<f"), ("fp64", 1e-300, "<d"), ("fp16", 0.5, "<e"),
    ],
)  # fmt: skip
def test_scalar_arguments_pack_as_their_c_types(ty, value, fmt):
    """The record's constant is the little-endian bytes of the C type Triton's launcher
    passes for that signature type, zero-extended to 8 bytes."""
    want = int.from_bytes(struct.pack(fmt, value), "little")
    assert native._bits(ty, value) == want


@pytest.mark.parametrize("ty, value", [("bf16", 1.0), ("i32", 1.5), ("nvTmaDesc", 0)])
def test_unpackable_arguments_get_no_record(ty, value):
    assert native._bits(ty, value) is None


# --------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("name", list(REPLAYED))
def test_python_route_without_native(monkeypatch, name, grad):
    """With the native path off, repeated CUDA calls still replay from Python, right."""
    monkeypatch.setattr(native, "_ext", False)
    monkeypatch.setattr(native, "fast", native._no_fast)  # as a process that never loaded it
    entry = check_repeated_calls("cuda", name, grad)
    assert entry.native is None


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("through", ["out", "h", "both"])
def test_native_backward_with_partial_gradients(through):
    """add_rms_norm repeated with gradients through out, h or both, and with dW wanted
    or not (autograd.grad over x alone): each combination gets its own record or the
    Python fallback (out without a gradient), and every gradient matches float64."""
    launch.fast_plans.clear()
    dtype, shape = torch.bfloat16, (3, 5, 256)
    for want_w in (True, False, True, False):
        for _ in range(3):
            x, r = make(shape, dtype, "cuda"), make(shape, dtype, "cuda", mean=1.0)
            w = make((256,), dtype, "cuda", mean=1.0, std=0.3)
            out, h = kernels.add_rms_norm(x, r, w)
            ref_in = [leaf64(t) for t in (x, r, w)]
            ref, ref_h = norm64(ref_in[0], ref_in[2], None, 1e-6, rms=True, residual=ref_in[1])
            outs, refs = {"out": ([out], [ref]), "h": ([h], [ref_h]), "both": ([out, h], [ref, ref_h])}[through]
            dys = [torch.randn_like(o) for o in outs]
            targets = [x, r, w] if want_w else [x, r]
            got = torch.autograd.grad(outs, targets, dys)
            want = torch.autograd.grad(
                refs, ref_in[: len(targets)], [d.double() for d in dys], allow_unused=True
            )  # h alone does not depend on w: its gradient is zero
            for i, (g, v) in enumerate(zip(got, want)):
                v = torch.zeros_like(g, dtype=torch.float64) if v is None else v
                assert_close(f"{through} grad[{i}]", g, v, v.to(dtype), dtype, slack=8.0)
    (entry,) = launch.fast_plans.values()
    assert entry.native is not None
    # h alone: the output's gradient is missing and that backward stays in Python.
    assert native.backward_records(entry.native) == (0 if through == "h" else 2)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("frozen", ["x", "weight", "bias"])
def test_native_backward_with_a_frozen_input(frozen):
    """LayerNorm repeated with one of x, weight, bias not requiring grad: the others'
    gradients match float64 on every call (native from the third call on)."""
    launch.fast_plans.clear()
    for _ in range(3):
        x = make((6, 384), torch.float32, "cuda", mean=2.0)
        w = make((384,), torch.float32, "cuda", mean=1.0, std=0.3)
        b = make((384,), torch.float32, "cuda", std=0.3)
        inputs = {"x": x, "weight": w, "bias": b}
        inputs[frozen].requires_grad_(False)
        live = [t for t in inputs.values() if t.requires_grad]
        out = kernels.layer_norm(x, w, b)
        ref_in = {k: leaf64(t).requires_grad_(t.requires_grad) for k, t in inputs.items()}
        ref, _ = norm64(ref_in["x"], ref_in["weight"], ref_in["bias"], 1e-5, rms=False)
        dy = torch.randn_like(out)
        got = torch.autograd.grad(out, live, dy)
        want = torch.autograd.grad(ref, [t for t in ref_in.values() if t.requires_grad], dy.double())
        for i, (g, v) in enumerate(zip(got, want)):
            assert_close(f"grad[{i}]", g, v, v.float(), torch.float32, slack=8.0)
    (entry,) = launch.fast_plans.values()
    assert entry.native is not None and native.backward_records(entry.native) == 1


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("rms", [True, False], ids=["rms_norm", "layer_norm"])
def test_native_exchange_backward(tmp_path, rms):
    """The exchange backward (channel tiles meeting through flagged partial-sum slots,
    which must start at zero on every call) is recorded for the C++ route like the
    others, and its repeats match float64 on fresh inputs, pipelined, on a ragged last
    program and tile."""
    from tuning import cache

    m, n, dtype = 37, 1000, torch.bfloat16
    config = {
        "block_sizes": [8, 1, 256, 1], "num_warps": 4, "num_stages": 1, "loop_orders": [[2, 1, 0]],
        "exchange": True, "range_num_stages": [0, 2],
    }  # fmt: skip
    force_config(tmp_path, "cuda", "rms_norm" if rms else "layer_norm", dtype, m, n, config, mode="bwd")
    try:
        for _ in range(4):
            x = make((m, n), dtype, "cuda", mean=2.0)
            w = make((n,), dtype, "cuda", mean=1.0, std=0.3)
            b = None if rms else make((n,), dtype, "cuda", std=0.3)
            out = kernels.rms_norm(x, w, 1e-5) if rms else kernels.layer_norm(x, w, b, 1e-5)
            ref_in = [leaf64(t) for t in (x, w, b)]
            ref, _ = norm64(*ref_in, 1e-5, rms=rms)
            dy = torch.randn_like(out)
            for i, (g, r) in enumerate(zip(grads(out, [x, w, b], dy), grads(ref, ref_in, dy.double()))):
                if r is not None:
                    assert_close(f"grad[{i}]", g, r, r.to(dtype), dtype, slack=8.0)
        assert config in [c for _, c in launch._compiled.values()], "the backward did not run the exchange config"
        (call,) = launch.fast_plans.values()
        assert call.native is not None and native.backward_records(call.native) == 1
    finally:
        cache.set_cache_path(None)
        launch.clear_compiled()


@pytest.mark.gpu
@cuda
def test_native_outputs_print_and_keep_autograd_semantics():
    """A native training call's output names its node, refuses a second backward
    through freed buffers, and detects an in-place change of a saved input."""
    x = make((4, 128), torch.float32, "cuda")
    w = make((128,), torch.float32, "cuda", mean=1.0)
    for _ in range(2):
        out = kernels.rms_norm(x, w)
    assert "NormFunction" in repr(out)
    out.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.sum().backward()
    out = kernels.rms_norm(x, w)
    with torch.no_grad():
        x.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


@pytest.mark.gpu
@cuda
def test_native_calls_follow_the_current_stream():
    """Native launches go to the caller's current stream (here a side stream), in order
    with the work queued there."""
    x = make((64, 512), torch.bfloat16, "cuda", requires_grad=False)
    w = make((512,), torch.bfloat16, "cuda", mean=1.0, requires_grad=False)
    ref, _ = norm64(x.double() + 1.0, w.double(), None, 1e-6, rms=True)
    kernels.rms_norm(x, w)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        y = x.clone()
        torch.cuda._sleep(10_000_000)  # keeps the side stream busy: a launch elsewhere runs first
        y.add_(1.0)
        out = kernels.rms_norm(y, w)
    torch.cuda.current_stream().wait_stream(side)
    assert_close("out", out, ref, ref.to(torch.bfloat16), torch.bfloat16)


class _PythonLookup(dict):
    """Stands in for ``launch.fast_plans``: a call that reaches Python's lookup says so."""

    def get(self, key, default=None):  # noqa: ANN001, ANN201
        raise LookupError("python lookup")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_native_table_serves_repeats_and_misses_on_any_change(monkeypatch, grad):
    """The C++ fast-path table answers a repeated call without Python's lookup (right
    against float64, gradients included), and a change of any part of the key (the
    function, a scalar's value or type, the grad mode, requires_grad, shape, strides,
    dtype, alignment) misses it and reaches Python's lookup instead."""
    launch.fast_plans.clear()
    dtype, n = torch.bfloat16, 256

    def inputs():
        return make((4, n), dtype, "cuda", mean=0.5, requires_grad=grad), make((n,), dtype, "cuda", mean=1.0, requires_grad=grad)

    for _ in range(2):
        kernels.rms_norm(*inputs(), eps=1.0)
    assert native.extension().fast_entries() == 1
    monkeypatch.setattr(launch, "fast_plans", _PythonLookup())
    x, w = inputs()
    out = kernels.rms_norm(x, w, eps=1.0)
    ref_in = [leaf64(t) for t in (x, w)]
    ref, _ = norm64(ref_in[0], ref_in[1], None, 1.0, rms=True)
    assert_close("out", out, ref, ref.to(dtype), dtype)
    if grad:
        dy = torch.randn_like(out)
        for i, (g, v) in enumerate(zip(torch.autograd.grad(out, (x, w), dy), torch.autograd.grad(ref, ref_in, dy.double()))):
            assert_close(f"grad[{i}]", g, v, v.to(dtype), dtype, slack=8.0)

    wide = make((4, 2 * n), dtype, "cuda", requires_grad=grad)
    unaligned = torch.empty(4 * n + 1, dtype=dtype, device="cuda")[1:].view(4, n).copy_(x).requires_grad_(grad)
    changes = {
        "function": lambda: kernels.layer_norm(x, w, eps=1.0),
        "eps value": lambda: kernels.rms_norm(x, w, eps=0.5),
        "eps type": lambda: kernels.rms_norm(x, w, eps=True),  # == 1.0, same hash
        "casting": lambda: kernels.rms_norm(x, w, eps=1.0, casting="gemma"),
        "grad mode": lambda: torch.no_grad()(lambda: kernels.rms_norm(x, w, eps=1.0))(),  # filed with grad on
        "requires_grad": lambda: kernels.rms_norm(x.detach().requires_grad_(not grad), w, eps=1.0),
        "shape": lambda: kernels.rms_norm(x[:2], w, eps=1.0),
        "strides": lambda: kernels.rms_norm(wide[:, :n], w, eps=1.0),
        "dtype": lambda: kernels.rms_norm(x.detach().half().requires_grad_(grad), w.detach().half().requires_grad_(grad), eps=1.0),
        "alignment": lambda: kernels.rms_norm(unaligned, w, eps=1.0),
    }
    for change, call in changes.items():
        with pytest.raises(LookupError, match="python lookup"):
            call()
            pytest.fail(f"{change}: served from the C++ table")
