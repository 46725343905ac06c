"""One tuning problem: a kernel variant, mode (fwd/bwd), shape and dtype on a device.

A :class:`Workload` owns the inputs (several rotating sets), builds the Helion kernel's
arguments exactly as ``kernels.launch.launch_fwd``/``launch_bwd`` do, compiles and runs
one config, checks it against a float64 torch reference, and counts the bytes moved.
The torch baseline (``F.layer_norm``/``F.rms_norm``, or the same composite for gated,
residual and grouped variants) runs on the same inputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import helion
import torch
import torch.nn.functional as F

from kernels import heuristics, launch
from kernels.launch import Variant

from . import cache, timing

BASE_KERNELS = ("layer_norm", "rms_norm")
EPS = 1e-5
DEFAULT_GROUPS = 8  # grouped variants (gated Mamba2-style norms) when no --groups is given
# Error allowed relative to the reference's largest magnitude. Configs change the
# summation order, not the math: a wrong config misses rows or writes garbage.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}


class TrialError(RuntimeError):
    """A config that cannot be used: compile error, launch failure, wrong output."""


@dataclass(frozen=True)
class Task:
    """What one Optuna study tunes: kernel (variant tuning name), mode, M x N, dtype name."""

    kernel: str
    mode: str
    m: int
    n: int
    dtype: str
    groups: int = 1

    @property
    def shape(self) -> str:
        return f"{self.m}x{self.n}"

    @property
    def kernel_mode(self) -> str:
        """The kernel the task runs: "fwd" for both forwards (training and inference), or "bwd"."""
        return cache.BWD if self.mode == cache.BWD else cache.FWD

    @property
    def label(self) -> str:
        groups = f"/g{self.groups}" if self.groups > 1 else ""
        return f"{self.kernel}/{self.mode}/{self.dtype}/{self.shape}{groups}"


# ------------------------------------------------------------------------------ variants


def variant_for(kernel: str) -> Variant:
    """The Variant whose ``tuning_name`` is ``kernel`` (gated ones gate after the norm)."""
    rest = kernel.removeprefix("add_")
    gated = rest.startswith("gated_")
    base = rest.removeprefix("gated_").removesuffix("_grouped")
    if base not in BASE_KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(known_kernels())}")
    rms = base == "rms_norm"
    variant = Variant(
        rms=rms,
        gate="after" if gated else "none",
        casting="llama" if rms else "gemma",  # the public API's defaults
        residual=kernel.startswith("add_"),
        grouped=rest.endswith("_grouped"),
    )
    if variant.tuning_name != kernel:
        raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(known_kernels())}")
    return variant


def known_kernels() -> list[str]:
    names = {
        Variant(rms=rms, gate=gate, residual=res, grouped=grp).tuning_name
        for rms, gate, res, grp in itertools.product(
            (False, True), ("none", "after"), (False, True), (False, True)
        )
    }
    return sorted(names)


def default_groups(kernel: str, n: int) -> int:
    if not kernel.endswith("_grouped"):
        return 1
    return DEFAULT_GROUPS if n % DEFAULT_GROUPS == 0 else 1


# --------------------------------------------------------------------------- torch math


def torch_norm(variant: Variant, x, residual, z, weight, bias, groups: int):
    """The variant in plain torch ([M, N] tensors, [N] params): reference and baseline."""
    h = x if residual is None else x + residual
    u = h * F.silu(z) if variant.gate == "before" else h
    m, n = u.shape
    grouped = groups > 1
    if variant.rms:
        w = None if grouped else weight
        y = F.rms_norm(u.view(m, groups, n // groups), (n // groups,), w, EPS).view(m, n)
    else:
        w, b = (None, None) if grouped else (weight, bias)
        y = F.layer_norm(u.view(m, groups, n // groups), (n // groups,), w, b, EPS).view(m, n)
    if grouped and weight is not None:
        y = y * weight
    if grouped and bias is not None:
        y = y + bias
    if variant.gate == "after":
        y = y * F.silu(z)
    return y, h


def _stats(variant: Variant, h: torch.Tensor, groups: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    """fp32 mean (LayerNorm) and rstd of each [row, group], computed in float64."""
    m, n = h.shape
    u = h.double().view(m, groups, n // groups)
    mean = None if variant.rms else u.mean(-1)
    centered = u if mean is None else u - mean[..., None]
    rstd = torch.rsqrt((centered * centered).mean(-1) + EPS)
    return (None if mean is None else mean.float()), rstd.float()


def _rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got = got.double()
    if not torch.isfinite(got).all():
        return float("inf")
    scale = want.abs().max().item() if want.numel() else 0.0
    return (got - want).abs().max().item() / max(scale, 1e-6)


# ----------------------------------------------------------------------------- workload


class Workload:
    """Inputs, kernel arguments, reference, baseline and byte counts of one task on one device."""

    def __init__(self, task: Task, device: torch.device, n_sets: int | None = None, seed: int = 0) -> None:
        if task.mode not in cache.MODES:
            raise ValueError(f"mode must be one of {cache.MODES}, got {task.mode!r}")
        if task.n % task.groups:
            raise ValueError(f"groups={task.groups} does not divide N={task.n}")
        self.task, self.device = task, device
        self.forward = task.kernel_mode == cache.FWD
        # The training forward writes the mean/rstd the backward reads; inference none.
        self.saves_stats = task.mode == cache.FWD
        self.variant = variant_for(task.kernel)
        self.dtype = getattr(torch, task.dtype)
        self.m, self.g, self.k = task.m, task.groups, task.n // task.groups
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.weight = (1 + 0.1 * self._randn(task.n)).view(self.g, self.k)
        self.bias = None if self.variant.rms else (0.1 * self._randn(task.n)).view(self.g, self.k)
        # dW and dB, where a backward config writes them itself (one partial row).
        self.param_grads = (
            (None, None) if self.forward
            else (torch.empty_like(self.weight), None if self.bias is None else torch.empty_like(self.bias))
        )  # fmt: skip
        if n_sets is None:
            n_sets = timing.rotating_sets(self._read_bytes(), device)
        outputs = self._make_outputs()
        self.sets = [self._make_set() | outputs for _ in range(n_sets)]
        self.reference = self._reference(self.sets[0])

    # ------------------------------------------------------------------ inputs

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.gen, device=self.device, dtype=torch.float32).to(self.dtype)

    def _x3(self) -> torch.Tensor:
        return self._randn(self.m, self.task.n).view(self.m, self.g, self.k)

    def _empty3(self) -> torch.Tensor:
        return torch.empty((self.m, self.g, self.k), dtype=self.dtype, device=self.device)

    def _read_bytes(self) -> int:
        """Bytes of the [M, N] inputs one call reads: what rotation must keep out of the L2
        (as the benchmark's ``bench.ops.InputSet.per_call_bytes``; outputs do not count)."""
        v, gated = self.variant, self.variant.gate != "none"
        if self.forward:
            tensors = 1 + v.residual + gated  # x (+ residual) (+ z)
        else:
            tensors = 2 + v.residual + gated  # dy, x (+ dh) (+ z)
        return tensors * self.m * self.task.n * self.dtype.itemsize

    def _make_set(self) -> dict:
        """One set of inputs (the forward's x, residual, z; the backward's dy, x = h, z, dh
        and the forward's statistics of x)."""
        v = self.variant
        z = self._x3() if v.gate != "none" else None
        if self.forward:
            return {"x": self._x3(), "residual": self._x3() if v.residual else None, "z": z}
        x = self._x3()  # for residual variants this is h = x + residual, what bwd reads
        mean, rstd = _stats(v, x.view(self.m, -1), self.g)
        return {"dy": self._x3(), "x": x, "z": z, "mean": mean, "rstd": rstd, "dh": self._x3() if v.residual else None}

    def _make_outputs(self) -> dict:
        """One set of outputs, shared by every input set: the benchmark's calls (and a
        model's) write buffers that the allocator hands back call after call. Outputs per
        input set made every call write fresh lines: on inputs of a few MB that timed
        configs 15-20% below the benchmark and ranked them apart (RMSNorm bf16 2048x1024
        inference, H200: two configs 0.5% apart this way, 8% apart with shared outputs as
        in the benchmark; bench/NOTES.md attempt 40)."""
        v = self.variant
        if self.forward:
            return {
                "out": self._empty3(), "h_out": self._empty3() if v.residual else None,
                "mean": torch.empty((self.m, self.g), device=self.device) if self.saves_stats and not v.rms else None,
                "rstd": torch.empty((self.m, self.g), device=self.device) if self.saves_stats else None,
            }  # fmt: skip
        return {"dx": self._empty3(), "dz": self._empty3() if v.gate != "none" else None}

    def _fwd_args(self, s: dict) -> tuple:
        v = self.variant
        return (
            s["x"], s["residual"], s["z"], self.weight, self.bias, s["out"], s["h_out"],
            s["mean"], s["rstd"], EPS, 0.0, v.rms, v.gate, v.casting,
        )  # fmt: skip

    def _bwd_args(self, s: dict, part: torch.Tensor | None, coef: torch.Tensor | None, exchange: int = 0, config: dict | None = None) -> tuple:
        """``norm_bwd``'s arguments on input set ``s`` for ``config``: its dW/dB targets are
        the partials ``part``, or with none dW and dB themselves (kernels.launch's own
        helpers: the tuner times the buffer layout the runtime uses)."""
        targets = launch._grad_targets(part, *self.param_grads, self.g, self.k)
        return launch._bwd_args(
            self.variant, s["dy"], s["x"], s["z"], self.weight, self.bias, s["mean"], s["rstd"],
            coef, s["dh"], s["dx"], s["dz"], *targets, 0.0, exchange, launch.bwd_choices(config, s["x"]),
        )  # fmt: skip

    def is_split(self, config: dict) -> bool:
        """A backward config whose channel tile is narrower than the row: the split schedule
        (``norm_bwd_coef`` computes the row coefficients first), as kernels.launch decides."""
        sizes = config["block_sizes"]
        return not self.forward and len(sizes) == 4 and launch._bwd_schedule(config, self.k, self.device)[0]

    def exchange_tiles(self, config: dict) -> int:
        """Channel tiles per row of an exchange backward config (0: another schedule)."""
        return 0 if self.forward else launch._exchange_tiles(config, self.k, self.device)

    def _coef(self, config: dict) -> torch.Tensor | None:
        return launch._coef(self.is_split(config), self.m, self.g, self.device, self.exchange_tiles(config))

    @property
    def n_params(self) -> int:
        """Parameters with a gradient: weight (always here), bias (LayerNorm)."""
        return 1 + (self.bias is not None)

    def partial_rows(self, config: dict) -> int:
        return -(-self.m // int(config["block_sizes"][0]))

    def _partials(self, config: dict | None = None) -> torch.Tensor | None:
        """The [P, n_params, G, K] fp32 dW/dB partials for ``config`` (kernels.launch's layout),
        None where it has one partial row (it writes dW and dB itself); without a config
        M rows, enough for any m_block, zeroed."""
        if config is None:
            return launch._partials(self.m, self.n_params, self.g, self.k, self.device).zero_()
        rows = self.partial_rows(config)
        return None if launch._direct(rows) else launch._partials(rows, self.n_params, self.g, self.k, self.device)

    def kernel_args(self) -> tuple:
        """Arguments of the Helion kernel on input set 0 that suit every config (bwd: M partial rows)."""
        if self.forward:
            return self._fwd_args(self.sets[0])
        return self._bwd_args(self.sets[0], self._partials(), None)

    # ------------------------------------------------------------- configs

    def heuristic_config(self) -> dict:
        sms = launch._num_sms(self.device)
        if self.forward:
            return heuristics.fwd_config(self.m, self.k, self.g, sms, rms=self.variant.rms)
        return heuristics.bwd_config(self.m, self.k, self.g, sms)

    @property
    def offers_chunked(self) -> bool:
        """Whether the forward's space has ``norm_fwd_chunked``: LayerNorm only, whose
        two reductions cost Helion's reduction loop a third read of x (RMSNorm's one
        reduction loops in two reads already)."""
        return self.forward and not self.variant.rms

    @property
    def offers_params_first(self) -> bool:
        """Whether the forward's space has ``params_first``: where ``norm_fwd`` would
        otherwise load the weight and bias after the statistics."""
        return self.forward and not launch.params_first({}, self._fwd_args(self.sets[0]))

    @property
    def offers_read_only(self) -> int:
        """The element size of the row the two-pass forward's second pass reads, where its
        space has ``read_only`` (0 where not): on CUDA, with the tensors it reads
        contiguous and 16-byte aligned (``kernels.launch.aligned16``)."""
        if not self.offers_chunked or self.device.type != "cuda":
            return 0
        read = launch.read_again(self._fwd_args(self.sets[0]))
        return read[0].element_size() if launch.aligned16(read) else 0

    @property
    def offers_trim(self) -> bool:
        """Whether the backward's space has ``trim``: a row that is not a power of two, so
        a channel tile spanning it has dead lanes."""
        return not self.forward and self.k & (self.k - 1) != 0

    @property
    def offers_widen(self) -> bool:
        """Whether the backward's space has ``widen``: bf16 on CUDA (the bit moves are PTX)."""
        return not self.forward and self.device.type == "cuda" and self.sets[0]["x"].dtype == torch.bfloat16

    @property
    def offers_recast(self) -> bool:
        """Whether the space has ``recast``: a 16-bit row on CUDA whose u is the row or its
        residual sum (``kernels.launch.can_recast``); for the backward, with no gate."""
        if not self.forward:
            return launch.can_recast(self.sets[0]["x"], "none") and self.variant.gate == "none"
        args = self._fwd_args(self.sets[0])
        return launch.can_recast(args[0], args[12])

    def bound(self, config: dict | None = None) -> helion.runtime.kernel.BoundKernel:
        """The Helion kernel that runs ``config``, bound to this workload's arguments.
        Without a config, the one whose config_spec the space is built from: ``norm_fwd``,
        or the backward at the heuristic's schedule."""
        s = self.sets[0]
        if self.forward:
            if config is None:
                return launch._kernels(False)["fwd"].bind(launch.fwd_kernel_args({"block_sizes": [1, 1]}, self._fwd_args(s)))
            name = launch.fwd_kernel_name(config)
            return launch._kernels(False)[name].bind(launch.fwd_kernel_args(config, self._fwd_args(s)))
        config = config or self.heuristic_config()
        kernel = launch._kernels(False)["bwd"]
        return kernel.bind(self._bwd_args(s, self._partials(config), self._coef(config), self.exchange_tiles(config), config))

    def other_loads(self) -> int:
        """Loads of the kernel's other schedule (the split backward, the chunked forward):
        the space's eviction list must cover its binding too."""
        if self.forward:
            if not self.offers_chunked:
                return 0
            bound = self.bound({"block_sizes": [1024, 1, 1]})  # any chunk: the loads are the same
            return bound.config_spec.load_eviction_policies.length
        kernel = launch._kernels(False)["bwd"]
        coef = launch._coef(True, self.m, self.g, self.device)
        bound = kernel.bind(self._bwd_args(self.sets[0], self._partials(self.heuristic_config()), coef))
        return bound.config_spec.load_eviction_policies.length

    def runner(self, config: dict) -> Callable[[int], object]:
        """Compile ``config``; returns run(i) that runs it on input set i (bwd: and reduces dW/dB,
        unless the kernel writes them itself)."""
        try:
            bound = self.bound(config)
            compiled = bound.compile_config(launch._fit(config, bound))
        except TrialError:  # a timeout
            raise
        except Exception as e:  # Helion/Triton raise many types for a bad config
            raise TrialError(f"compile: {type(e).__name__}: {e}") from e
        if self.forward:
            args = [launch.fwd_kernel_args(config, self._fwd_args(s)) for s in self.sets]
            return lambda i: compiled(*args[i])
        part, coef, exchange = self._partials(config), self._coef(config), self.exchange_tiles(config)
        args = [self._bwd_args(s, part, coef, exchange, config) for s in self.sets]
        v = self.variant

        def run_bwd(i: int) -> tuple:
            if exchange:  # its counters start at zero on every call, as kernels.launch allocates them
                coef.zero_()
            elif coef is not None:
                s = self.sets[i]
                launch._launch_coef(
                    v, s["dy"], s["x"], s["z"], self.weight, self.bias, s["mean"], s["rstd"], coef, 0.0
                )
            compiled(*args[i])
            if part is None:
                return self.param_grads
            return launch._reduce_params(part, self.weight, self.bias)

        return run_bwd

    # ------------------------------------------------------------- checking

    def _reference(self, s: dict) -> dict[str, torch.Tensor]:
        """float64 results on input set 0."""
        v, n = self.variant, self.task.n

        def flat(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.reshape(self.m, n).double()

        w = self.weight.reshape(n).double()
        b = None if self.bias is None else self.bias.reshape(n).double()
        if self.forward:
            y, h = torch_norm(v, flat(s["x"]), flat(s["residual"]), flat(s["z"]), w, b, self.g)
            ref = {"out": y}
            if self.saves_stats:
                mean, rstd = _stats(v, h, self.g)
                ref["rstd"] = rstd.double()
                if mean is not None:
                    ref["mean"] = mean.double()
            if v.residual:
                ref["h_out"] = h
            return ref
        leaves = [t.requires_grad_() for t in (flat(s["x"]), flat(s["z"]), w, b) if t is not None]
        x, z = leaves[0], (leaves[1] if s["z"] is not None else None)
        y, _ = torch_norm(v, x, None, z, w, b, self.g)
        grads = dict(zip(["dx", "dz", "dw", "db"] if z is not None else ["dx", "dw", "db"],
                         torch.autograd.grad(y, leaves, flat(s["dy"]))))  # fmt: skip
        if s["dh"] is not None:
            grads["dx"] = grads["dx"] + flat(s["dh"])
        return grads

    def check(self, run: Callable[[int], object]) -> float:
        """Run once on set 0 with NaN-filled outputs; the worst relative error, or TrialError."""
        s = self.sets[0]
        names = ("out", "h_out", "mean", "rstd") if self.forward else ("dx", "dz")
        for t in [s[name] for name in names] + list(self.param_grads):
            if t is not None:
                t.fill_(float("nan"))
        try:
            result = run(0)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        except TrialError:  # a timeout
            raise
        except Exception as e:
            raise TrialError(f"launch: {type(e).__name__}: {e}") from e
        got = {name: s[name] for name in names if s[name] is not None}
        if not self.forward:
            got["dw"], got["db"] = result
        worst = 0.0
        for name, want in self.reference.items():
            if got.get(name) is None:
                raise TrialError(f"wrong: {name} was not computed")
            err = _rel_error(got[name].reshape(want.shape), want)
            if not err <= TOLERANCE[self.dtype]:
                raise TrialError(
                    f"wrong: {name} off by {err:.3g} of its max (allowed {TOLERANCE[self.dtype]:g})"
                )
            worst = max(worst, err)
        return worst

    # ------------------------------------------------------------- baseline

    @property
    def torch_label(self) -> str:
        v = self.variant
        plain = v.gate == "none" and not v.residual and not v.grouped
        return "torch" if plain else "torch composite"

    def torch_runner(self) -> Callable[[int], object]:
        """run(i): torch's own norm on set i (fwd), or its autograd backward (bwd)."""
        v, n = self.variant, self.task.n
        w = self.weight.reshape(n)
        b = None if self.bias is None else self.bias.reshape(n)

        def flat(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.reshape(self.m, n)

        if self.forward:
            ins = [(flat(s["x"]), flat(s["residual"]), flat(s["z"])) for s in self.sets]
            return lambda i: torch_norm(v, *ins[i], w, b, self.g)
        wl = w.detach().requires_grad_()
        bl = None if b is None else b.detach().requires_grad_()
        graphs = []
        for s in self.sets:
            leaves = [t.detach().requires_grad_() for t in (flat(s["x"]), flat(s["z"])) if t is not None]
            z = leaves[1] if s["z"] is not None else None
            y, _ = torch_norm(v, leaves[0], None, z, wl, bl, self.g)
            leaves += [t for t in (wl, bl) if t is not None]
            graphs.append((y, leaves, flat(s["dy"]), flat(s["dh"])))

        def run_bwd(i: int) -> object:
            y, leaves, dy, dh = graphs[i]
            grads = torch.autograd.grad(y, leaves, dy, retain_graph=True)
            return grads if dh is None else grads[0] + dh

        return run_bwd

    # ---------------------------------------------------------------- bytes

    def output_bytes(self) -> int:
        """Bytes of the forward's [M, N] outputs (the normalized rows, and the residual sum)."""
        return (1 + self.variant.residual) * self.m * self.task.n * self.dtype.itemsize

    def model_bytes(self) -> int:
        """TritonBench's byte model: fwd 2x, bwd 3x the bytes of x."""
        return (2 if self.forward else 3) * self.m * self.task.n * self.dtype.itemsize

    def exact_bytes(self, config: dict) -> int:
        """Bytes this kernel (bwd: plus the dW/dB partial reduce) must read and write."""
        v, mn, es = self.variant, self.m * self.task.n, self.dtype.itemsize
        params = (1 + (self.bias is not None)) * self.task.n * es
        # The training forward writes the statistics and the backward reads them.
        stats = (1 + (not v.rms)) * self.m * self.g * 4 if self.task.mode != cache.INFER else 0
        gated = v.gate != "none"
        if self.forward:
            return mn * es * (2 + 2 * v.residual + gated) + params + stats
        tensors = 3 + 2 * gated + v.residual  # dy, x, dx (+ z, dz) (+ dh)
        rows = self.partial_rows(config)
        if launch._direct(rows):  # the bwd kernel writes dW/dB in the parameters' dtype
            partials, reduce = self.n_params * self.task.n * es, 0
        else:  # it writes the fp32 partials; the reduce reads them and writes dW/dB
            partials = rows * self.n_params * self.task.n * 4
            reduce = self.n_params * self.task.n * (4 * rows + es)
        if self.is_split(config):  # norm_bwd_coef reads x, dy (, z) again; writes 2 fp32 per row
            reduce += mn * es * (2 + gated) + 2 * 2 * self.m * self.g * 4
        return mn * es * tensors + params + stats + partials + reduce
