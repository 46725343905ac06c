"""tilenorm's additions to TritonBench's ``layer_norm`` operator.

Loaded by :mod:`tritonbench_ops.harness` as ``tritonbench.operators.layer_norm.tilenorm``:
TritonBench names an operator after its module path, so under that name the providers
below join the upstream ones (Triton tutorial, torch, torch.compile, Liger).

Same inputs as upstream, ``(x, w_shape, weight, bias, eps)``, optionally at ``--shapes``.
Unlike upstream, the gradients of weight and bias are cleared between timed runs too,
so that no provider pays for accumulating into a stale ``.grad``.
"""

from tritonbench.operators.layer_norm.operator import Operator as TritonBenchLayerNorm
from tritonbench.utils.triton_op import register_benchmark

from tritonbench_ops import inputs
from tritonbench_ops.operator_common import (
    TilenormOperatorMixin,
    compile_per_shape,
    register_common,
    tilenorm_available,
    tilenorm_kernels,
)
from tritonbench_ops.unsloth_style import unsloth_layer_norm

register_common("layer_norm")


class Operator(TilenormOperatorMixin, TritonBenchLayerNorm):
    @register_benchmark(enabled=tilenorm_available())
    def tilenorm(self, x, w_shape, weight, bias, eps):
        layer_norm = tilenorm_kernels().layer_norm
        return lambda: layer_norm(x, weight, bias, eps)

    @register_benchmark()
    def unsloth_style(self, x, w_shape, weight, bias, eps):
        return lambda: unsloth_layer_norm(x, weight, bias, eps)

    @register_benchmark()
    def inductor_static(self, x, w_shape, weight, bias, eps):
        compiled = compile_per_shape(inputs.layer_norm, self.mode)
        return lambda: compiled(x, weight, bias, eps)
