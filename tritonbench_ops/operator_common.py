"""What tilenorm's TritonBench operators share: shapes, metrics, accuracy, compiling.

Imports TritonBench; loaded only by :mod:`tritonbench_ops.harness`.
"""

from __future__ import annotations

import argparse
import importlib
import types
import warnings
from typing import Any, Callable, Iterable

import torch
from tritonbench.utils.triton_op import (
    REGISTERED_BENCHMARKS,
    REGISTERED_METRICS,
    REGISTERED_X_VALS,
    Mode,
)

from tritonbench_ops import byte_model, inputs

COMMON_METRICS = ("gbps", "exact_gbps", "pct_roof")
DEFAULT_METRICS = ["latency", "gbps", "exact_gbps", "pct_roof", "accuracy"]
X_LABEL = "(M, N)"

# Relative error (Frobenius norm) allowed against the baseline provider, by dtype:
# a few units of the dtype's rounding, well below what a wrong formula produces.
ACCURACY_TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2e-2}


def register_common(op_name: str) -> None:
    """Register the mixin's metrics and the x-axis label for ``op_name``.

    TritonBench's ``register_metric``/``register_x_val`` decorators file what they
    decorate under the operator named by the function's module path; the mixin's methods
    live outside that path, so this does the same filing with an explicit name.
    """
    metrics = REGISTERED_METRICS[op_name]
    for name in COMMON_METRICS:
        if name not in metrics:
            metrics.append(name)
    REGISTERED_X_VALS[op_name] = X_LABEL


def tilenorm_kernels():
    """tilenorm's ``kernels`` package, imported on first use (it compiles with Helion)."""
    return importlib.import_module("kernels")


def tilenorm_available() -> bool:
    """Whether the tilenorm providers can run; says why not, rather than just vanish."""
    try:
        module = tilenorm_kernels()
    except ImportError as error:
        warnings.warn(f"tilenorm providers disabled: cannot import kernels ({error})")
        return False
    if not hasattr(module, "rms_norm"):
        # Hugging Face's hub-kernels package is also imported as `kernels`.
        warnings.warn(f"tilenorm providers disabled: {module.__file__} is not tilenorm")
        return False
    return True


def allow_repeated_backward(mode: Mode) -> None:
    """Let compiled graphs run their backward more than once.

    The timed backward replays one graph (retain_graph=True); buffers that AOTAutograd
    donates to the backward would be gone after its first run. TritonBench's own
    compiled layer_norm provider switches donation off the same way.
    """
    if mode in (Mode.BWD, Mode.FWD_BWD):
        from torch._functorch import config as functorch_config

        functorch_config.donated_buffer = False


def compile_per_shape(fn: Callable, mode: Mode) -> Callable:
    """``torch.compile(fn, dynamic=False)`` on a private copy of ``fn``.

    Called once per input shape. Dynamo keeps one compile cache per code object and
    falls back to eager after ``recompile_limit`` shapes; a fresh code object per shape
    keeps every shape statically compiled, however many shapes a run has.
    """
    allow_repeated_backward(mode)
    private = types.FunctionType(
        fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )
    private.__kwdefaults__ = fn.__kwdefaults__
    return torch.compile(private, dynamic=False)


def grad_leaves(args: Iterable[Any]) -> list[torch.Tensor]:
    """The input tensors that receive gradients."""
    return [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad and a.is_leaf]


def activation(args: Iterable[Any]) -> torch.Tensor:
    """The input x: the first tensor with two or more dims."""
    return next(a for a in args if isinstance(a, torch.Tensor) and a.dim() >= 2)


def _flatten(out: Any) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.detach().double(), b.detach().double()
    return ((a64 - b64).norm() / b64.norm().clamp_min(1e-30)).item()


class TilenormOperatorMixin:
    """Mixed in before a ``BenchmarkOperator`` subclass.

    Operator options (after TritonBench's own flags): ``--shapes MxN,MxN,...`` replaces
    the default input shapes.
    """

    DEFAULT_METRICS = DEFAULT_METRICS

    def __init__(self, tb_args: argparse.Namespace, extra_args: list[str] | None = None):
        # Parsed before the base __init__: TritonBench counts the inputs right after it.
        self.op_args = self.parse_operator_args(extra_args or [])
        super().__init__(tb_args, extra_args)
        # For every compiled provider, upstream ones included.
        allow_repeated_backward(self.mode)

    # -- options and inputs

    @classmethod
    def add_operator_args(cls, parser: argparse.ArgumentParser) -> None:
        """Extra options of one operator (subclasses extend)."""

    @classmethod
    def parse_operator_args(cls, extra_args: list[str]) -> argparse.Namespace:
        parser = argparse.ArgumentParser(prog="tritonbench_ops", add_help=False)
        parser.add_argument(
            "--shapes",
            type=inputs.parse_shapes,
            default=None,
            help="comma-separated MxN input shapes, e.g. 4096x1024,8192x4096",
        )
        cls.add_operator_args(parser)
        args, _unknown = parser.parse_known_args(extra_args)
        return args

    @property
    def input_dtype(self) -> torch.dtype:
        # TritonBench leaves dtype None for precision "bypass": use fp32, as its
        # layer_norm does by passing dtype=None to torch.randn.
        return self.dtype or torch.float32

    def shapes(self) -> list[tuple[int, int]]:
        return list(self.op_args.shapes or inputs.DEFAULT_SHAPES[self.name])

    def input_options(self) -> dict[str, Any]:
        return {}

    def get_input_iter(self):
        build = inputs.INPUT_BUILDERS[self.name]
        for m, n in self.shapes():
            yield build(m, n, self.input_dtype, self.device, **self.input_options())

    def get_x_val(self, example_inputs) -> tuple[int, int]:
        x = activation(example_inputs)
        return (x.shape[0], x.shape[1])

    def get_grad_to_none(self, args) -> list[torch.Tensor]:
        return grad_leaves(args)

    def get_bwd_fn(self, fwd_fn: Callable) -> Callable:
        """Backward of one forward, replayed; a gradient for every output.

        The output gradients are drawn from a fixed seed, so that every provider
        differentiates the same loss and their input gradients can be compared.
        """
        outputs = _flatten(fwd_fn())
        grads = self._output_grads(outputs)
        return lambda: torch.autograd.backward(outputs, grads, retain_graph=True)

    def _get_bm_func(self, bm_func_name: str):
        """The timed function of one provider; in fwd_bwd mode, a forward and then the
        backward of that same forward.

        TritonBench's own fwd_bwd step runs a forward and then replays the backward of
        an older forward taken outside the timing. Under ``--cudagraph`` that backward
        runs on the stream of the old forward, the legacy default stream, which no
        capture may touch: every provider, torch's included, failed with
        cudaErrorStreamCaptureImplicit (H200, 2026-11-22). Differentiating the step's
        own forward keeps the whole step on the capturing stream, and is the step a
        training loop (and ``python -m bench.run``) times.
        """
        if self.mode != Mode.FWD_BWD:
            return super()._get_bm_func(bm_func_name)
        if REGISTERED_BENCHMARKS[self.name][bm_func_name].fwd_only:
            raise ValueError(f"{bm_func_name} has no backward (a forward-only provider)")
        make = getattr(self, bm_func_name)
        args = self.example_inputs
        fwd_fn = make(**args) if isinstance(args, dict) else make(*args)
        grads = self._output_grads(_flatten(fwd_fn()))

        def fwd_bwd():
            out = fwd_fn()
            torch.autograd.backward(_flatten(out), grads)
            return out, None

        fwd_bwd._name = bm_func_name
        return fwd_bwd

    def _output_grads(self, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self._output_grad(out, seed) for seed, out in enumerate(outputs)]

    @staticmethod
    def _output_grad(out: torch.Tensor, seed: int) -> torch.Tensor:
        g = torch.Generator(device=out.device).manual_seed(1000 + seed)
        grad = torch.randn(out.shape, generator=g, device=out.device, dtype=torch.float32)
        return grad.to(out.dtype)

    # -- bandwidth metrics

    def _mode_name(self) -> str:
        return "fwd" if self.mode == Mode.FWD_NO_GRAD else self.mode.value

    def stat_groups(self, args) -> int:
        """Statistics per row (grouped operators return groups per row)."""
        return 1

    def model_bytes(self, args) -> int:
        x = activation(args)
        return byte_model.tritonbench_bytes(self._mode_name(), x.numel(), x.element_size())

    def exact_bytes(self, args) -> int:
        x = activation(args)
        kind = byte_model.KINDS[self.name]
        m, n = x.shape[0], x.shape[1]
        groups = self.stat_groups(args)
        # Without grad (inference) a forward saves no statistics for a backward.
        save_stats = self.mode != Mode.FWD_NO_GRAD
        return byte_model.exact_bytes(
            kind, self._mode_name(), m, n, x.element_size(), groups, save_stats
        )

    @staticmethod
    def _latency_ms(metrics) -> float | None:
        return metrics.latency.p50 if metrics.latency is not None else None

    def gbps(self, fn, args, metrics) -> float | None:
        """GB/s by TritonBench's byte model (2x / 3x / 5x the bytes of x)."""
        ms = self._latency_ms(metrics)
        return None if ms is None else byte_model.gbps(self.model_bytes(args), ms)

    def exact_gbps(self, fn, args, metrics) -> float | None:
        """GB/s counting every tensor the op must read or write once."""
        ms = self._latency_ms(metrics)
        return None if ms is None else byte_model.gbps(self.exact_bytes(args), ms)

    def pct_roof(self, fn, args, metrics) -> float | None:
        """exact_gbps as a % of the H200 copy roof: bytes actually moved vs the most possible."""
        achieved = self.exact_gbps(fn, args, metrics)
        return None if achieved is None else byte_model.pct_of_roof(achieved)

    # -- accuracy

    def accuracy(self, fn: Callable, baseline_fn: Callable) -> bool | None:
        """Outputs (fwd modes) and every input gradient (bwd modes) against the baseline.

        Replaces TritonBench's check, which reads ``.grad`` of the backward's return
        value (None) and so reports every backward as inaccurate.
        """
        if self.mode == Mode.FWD_NO_GRAD:
            return None  # the timed function returns nothing to compare
        got, want = self._results(fn), self._results(baseline_fn)
        if len(got) != len(want):
            return False
        return all(self._close(a, b) for a, b in zip(got, want))

    def _results(self, fn: Callable) -> list[torch.Tensor | None]:
        leaves = self.get_grad_to_none(self.example_inputs)
        for t in leaves:
            t.grad = None
        out = fn()
        results = []
        if self.mode == Mode.FWD:
            results += _flatten(out)
        elif self.mode == Mode.FWD_BWD:
            results += _flatten(out[0])
        if self.mode in (Mode.BWD, Mode.FWD_BWD):
            results += [t.grad for t in leaves]
        return [None if r is None else r.detach().clone() for r in results]

    def _close(self, a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
        if a is None or b is None or a.shape != b.shape:
            return False
        rtol, atol = self.tb_args.rtol, self.tb_args.atol
        if rtol is not None or atol is not None:
            # TritonBench's --rtol/--atol, when given, replace the norm-wise check.
            try:
                torch.testing.assert_close(
                    a, b, rtol=rtol or 0.0, atol=atol or 0.0, check_dtype=False
                )
                return True
            except AssertionError:
                return False
        return relative_error(a, b) <= ACCURACY_TOL.get(b.dtype, 1e-4)
