"""torch.compile and CUDA graphs with the kernels inside.

Under torch.compile the norms are custom ops (no graph break: fullgraph=True must
hold); their fake implementations are checked by ``torch.library.opcheck``. On the
GPU the kernels are captured in a CUDA graph and replayed with fresh inputs.
"""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels import ops


class Block(torch.nn.Module):
    """A pre-norm block using every module: residual RMSNorm, LayerNorm, gated grouped RMSNorm."""

    def __init__(self, n: int, device: str) -> None:
        super().__init__()
        self.norm1 = kernels.RMSNorm(n, device=device)
        self.proj = torch.nn.Linear(n, n, device=device)
        self.norm2 = kernels.LayerNorm(n, device=device)
        self.gated = kernels.GatedRMSNorm(n, group_size=n // 4, norm_before_gate=False, device=device)
        with torch.no_grad():
            for p in (self.norm1.weight, self.norm2.weight, self.gated.weight):
                p.normal_(1.0, 0.2)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        h, stream = self.norm1(x, residual)
        y = self.norm2(self.proj(h))
        return self.gated(y, x) + stream


def _run(model, x, r):  # noqa: ANN001, ANN202
    x = x.detach().requires_grad_()
    model.zero_grad()
    out = model(x, r)
    out.backward(torch.ones_like(out))
    return out.detach(), x.grad, [p.grad.clone() for p in model.parameters()]


def _compile_matches_eager(device: str) -> None:
    torch.manual_seed(0)
    model = Block(64, device)
    x = torch.randn(3, 5, 64, device=device)
    r = torch.randn(3, 5, 64, device=device)
    eager = _run(model, x, r)
    compiled = _run(torch.compile(model, fullgraph=True), x, r)
    torch.testing.assert_close(compiled[0], eager[0])
    torch.testing.assert_close(compiled[1], eager[1])
    for got, want in zip(compiled[2], eager[2]):
        torch.testing.assert_close(got, want)


def test_compile_fullgraph_matches_eager():
    kernels.set_cpu_backend("ref")
    torch._dynamo.reset()
    _compile_matches_eager("cpu")


@pytest.mark.parametrize("rms,gate,residual", [(True, "none", True), (False, "after", False), (True, "before", False)])
def test_custom_ops_pass_opcheck(rms, gate, residual):
    kernels.set_cpu_backend("ref")
    x = torch.randn(4, 32, requires_grad=True)
    z = torch.randn(4, 32, requires_grad=True) if gate != "none" else None
    res = torch.randn(4, 32, requires_grad=True) if residual else None
    w = torch.randn(32, requires_grad=True)
    b = None if rms else torch.randn(32, requires_grad=True)
    args = (x, res, z, w, b, rms, gate, "gemma", 1, 1e-5, 0.0)
    torch.library.opcheck(ops.norm_fwd, args)


def test_custom_op_path_matches_eager_path():
    """The op route (used under compile) and the eager route give identical results."""
    kernels.set_cpu_backend("ref")
    x = torch.randn(6, 48, requires_grad=True)
    r = torch.randn(6, 48, requires_grad=True)
    w = torch.randn(48, requires_grad=True)
    variant = kernels.functional._variant(True, "none", "llama", True, False)
    out_ops, h_ops = ops.norm_via_ops(variant, x, r, None, w, None, 1e-6, 0.0, 1)
    grads_ops = torch.autograd.grad((out_ops, h_ops), (x, r, w), (torch.ones_like(x), torch.ones_like(x)))
    out, h = kernels.add_rms_norm(x, r, w, 1e-6)
    grads = torch.autograd.grad((out, h), (x, r, w), (torch.ones_like(x), torch.ones_like(x)))
    assert torch.equal(out_ops, out) and torch.equal(h_ops, h)
    for a, b in zip(grads_ops, grads):
        assert torch.equal(a, b)


@pytest.mark.gpu
def test_compile_fullgraph_matches_eager_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch._dynamo.reset()
    _compile_matches_eager("cuda")


@pytest.mark.gpu
def test_cuda_graph_capture_and_replay():
    """fwd + bwd (dx, dw) captured once, replayed on new data: same as eager."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    n = 1024
    x = torch.randn(64, n, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(n, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    dy = torch.randn(64, n, device="cuda", dtype=torch.bfloat16)

    def step():  # noqa: ANN202
        out = kernels.rms_norm(x, w)
        gx, gw = torch.autograd.grad(out, (x, w), dy)
        return out, gx, gw

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm up: compile and cache launchers outside the capture
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static = step()
    for _ in range(2):
        with torch.no_grad():
            x.copy_(torch.randn_like(x))
            w.copy_(torch.randn_like(w))
            dy.copy_(torch.randn_like(dy))
        graph.replay()
        torch.cuda.synchronize()
        expect = step()
        for got, want in zip(static, expect):
            assert torch.equal(got, want)
