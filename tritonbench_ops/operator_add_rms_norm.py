"""TritonBench operator ``add_rms_norm``: the pre-norm residual add fused into RMSNorm.

``(x, residual, weight) -> (rms_norm(x + residual) * weight, x + residual)``, Llama
casting. Loaded by :mod:`tritonbench_ops.harness` as ``tritonbench.operators.add_rms_norm``
(TritonBench names an operator after its module path). Inputs at M = 2048 and
H = 1024 .. 32768 like TritonBench's rms_norm, or at ``--shapes``. The backward gets a
gradient for both outputs, as inside a transformer block.
"""

from tritonbench.utils.triton_op import BenchmarkOperator, register_benchmark

from tritonbench_ops import inputs
from tritonbench_ops.operator_common import (
    TilenormOperatorMixin,
    compile_per_shape,
    register_common,
    tilenorm_available,
    tilenorm_kernels,
)

try:
    from liger_kernel.transformers.fused_add_rms_norm import LigerFusedAddRMSNorm
except ImportError:
    LigerFusedAddRMSNorm = None

register_common("add_rms_norm")


class Operator(TilenormOperatorMixin, BenchmarkOperator):
    @register_benchmark(baseline=True)
    def eager(self, x, residual, weight, eps):
        return lambda: inputs.add_rms_norm(x, residual, weight, eps)

    @register_benchmark()
    def inductor_static(self, x, residual, weight, eps):
        compiled = compile_per_shape(inputs.add_rms_norm, self.mode)
        return lambda: compiled(x, residual, weight, eps)

    @register_benchmark(enabled=LigerFusedAddRMSNorm is not None)
    def liger_fused_add_rms(self, x, residual, weight, eps):
        module = LigerFusedAddRMSNorm(hidden_size=x.shape[-1], eps=eps, in_place=False)
        module.weight = weight
        return lambda: module(x, residual)

    @register_benchmark(enabled=tilenorm_available())
    def tilenorm(self, x, residual, weight, eps):
        add_rms_norm = tilenorm_kernels().add_rms_norm
        return lambda: add_rms_norm(x, residual, weight, eps)
