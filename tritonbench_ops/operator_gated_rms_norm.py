"""TritonBench operator ``gated_rms_norm``: RMSNorm gated by ``z * sigmoid(z)``, optionally grouped.

The norm of Mamba2 and of FLA's gated layers. Loaded by :mod:`tritonbench_ops.harness`
as ``tritonbench.operators.gated_rms_norm`` (TritonBench names an operator after its
module path). Inputs ``(x, z, weight, group_size, norm_before_gate, eps)`` at
M = 2048 and H = 1024 .. 32768 like TritonBench's rms_norm, or at ``--shapes``.

Operator options: ``--group-size K`` (statistics per K channels; default the whole row)
and ``--gate-before-norm`` (gate the input, ``norm_before_gate=False``).
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

register_common("gated_rms_norm")


class Operator(TilenormOperatorMixin, BenchmarkOperator):
    @classmethod
    def add_operator_args(cls, parser):
        parser.add_argument(
            "--group-size", type=int, default=None,
            help="channels per statistics group (default: the whole row)",
        )
        parser.add_argument(
            "--gate-before-norm", action="store_true",
            help="gate the input before the norm instead of the output after it",
        )

    def input_options(self):
        return {
            "group_size": self.op_args.group_size,
            "norm_before_gate": not self.op_args.gate_before_norm,
        }

    def stat_groups(self, args) -> int:
        x, group_size = args[0], args[3]
        return x.shape[-1] // group_size

    @register_benchmark(baseline=True)
    def eager(self, x, z, weight, group_size, norm_before_gate, eps):
        return lambda: inputs.gated_rms_norm(x, z, weight, group_size, norm_before_gate, eps)

    @register_benchmark()
    def inductor_static(self, x, z, weight, group_size, norm_before_gate, eps):
        compiled = compile_per_shape(inputs.gated_rms_norm, self.mode)
        return lambda: compiled(x, z, weight, group_size, norm_before_gate, eps)

    @register_benchmark(enabled=tilenorm_available())
    def tilenorm(self, x, z, weight, group_size, norm_before_gate, eps):
        rms_norm = tilenorm_kernels().rms_norm
        # "gemma" casting: fp32 throughout, one cast at the end, the convention of
        # Mamba2's gated norm and of the eager baseline (offset stays 0).
        return lambda: rms_norm(
            x, weight, eps, casting="gemma", z=z,
            norm_before_gate=norm_before_gate, group_size=group_size,
        )
