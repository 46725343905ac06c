"""tilenorm's additions to TritonBench's ``rms_norm`` operator.

Loaded by :mod:`tritonbench_ops.harness` as ``tritonbench.operators.rms_norm.tilenorm``
(TritonBench names an operator after its module path).

Upstream feeds ``(H, input)`` with an input that does not require grad, and each
provider builds its own module with an fp32 weight: its backward computes dW only, and
a bf16 run mixes dtypes. Here the inputs are ``(H, x, weight)``: x requires grad and one
weight, in x's dtype, is shared by every provider, upstream ones included (their modules
get it assigned), so every fwd+bwd computes dx and dW alike.
"""

import torch
from tritonbench.operators.rms_norm.operator import LigerRMSNorm, LlamaRMSNorm
from tritonbench.operators.rms_norm.operator import Operator as TritonBenchRMSNorm
from tritonbench.utils.triton_op import REGISTERED_BENCHMARKS, register_benchmark

from tritonbench_ops import inputs
from tritonbench_ops.operator_common import (
    TilenormOperatorMixin,
    compile_per_shape,
    register_common,
    tilenorm_available,
    tilenorm_kernels,
)
from tritonbench_ops.unsloth_style import unsloth_rms_norm

register_common("rms_norm")
# Upstream registers liger_rms as enabled even without Liger, and then fails on it.
REGISTERED_BENCHMARKS["rms_norm"]["liger_rms"].enabled = LigerRMSNorm is not None


def _share_weight(module: torch.nn.Module, weight: torch.nn.Parameter) -> None:
    module.weight = weight


class Operator(TilenormOperatorMixin, TritonBenchRMSNorm):
    # -- upstream providers, given the shared weight

    def llama_rms(self, H, x, weight):
        fn = super().llama_rms(H, x)
        _share_weight(self.llama_rms_op, weight)
        return fn

    def liger_rms(self, H, x, weight):
        fn = super().liger_rms(H, x)
        _share_weight(self.liger_rms_op, weight)
        # In place, Liger overwrites dy with dx: the timed backward reuses one dy.
        self.liger_rms_op.in_place = False
        return fn

    def quack_rms(self, H, x, weight):
        fn = super().quack_rms(H, x)
        _share_weight(self.quack_rms_op, weight)
        return fn

    def aiter(self, H, x, weight):
        fn = super().aiter(H, x)
        _share_weight(self.aiter_rms_op, weight)
        return fn

    def inductor_rms(self, H, x, weight):
        # Upstream's torch.compile defaults (it recompiles with dynamic shapes after
        # the first shape), on a fresh module holding the shared weight.
        module = LlamaRMSNorm(hidden_size=H, eps=self.eps).to(self.device)
        _share_weight(module, weight)
        compiled = torch.compile(module)
        return lambda: compiled(x)

    # -- added providers

    @register_benchmark(enabled=tilenorm_available())
    def tilenorm(self, H, x, weight):
        rms_norm = tilenorm_kernels().rms_norm
        return lambda: rms_norm(x, weight, self.eps)

    @register_benchmark()
    def unsloth_style(self, H, x, weight):
        return lambda: unsloth_rms_norm(x, weight, self.eps)

    @register_benchmark()
    def inductor_static(self, H, x, weight):
        compiled = compile_per_shape(inputs.llama_rms_norm, self.mode)
        return lambda: compiled(x, weight, self.eps)
