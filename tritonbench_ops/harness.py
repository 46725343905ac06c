"""``python -m tritonbench_ops``: tilenorm's operators through TritonBench's own harness.

    python -m tritonbench_ops --op rms_norm --mode fwd_bwd --precision bf16 \\
        [any TritonBench flag] [--shapes 4096x4096,8192x4096] [--no-plot] [--commit SHA]

TritonBench finds operators only inside its own package and names each one after its
module path (``tritonbench.operators.<name>``). So this module loads each of ours under
such a name (``layer_norm`` and ``rms_norm`` extend the upstream operators, as
``tritonbench.operators.<name>.tilenorm``; ``gated_rms_norm`` and ``add_rms_norm`` are
new), then does what TritonBench's ``run.py`` does for one operator: parse its flags,
build the operator, run it, print the table. Operators other than ours are passed to
TritonBench's own loader unchanged.

Per operator and run it writes into ``--output-dir`` (default
``bench/results/tritonbench/``): a CSV in TritonBench's format, a JSON in DESIGN.md's
results schema (``python -m bench.table`` reads it) and a GB/s-by-shape PNG.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_OUTPUT_DIR = Path("bench/results/tritonbench")

# operator -> (the module name TritonBench must see, our file in this package)
OUR_OPERATORS = {
    "layer_norm": ("tritonbench.operators.layer_norm.tilenorm", "operator_layer_norm"),
    "rms_norm": ("tritonbench.operators.rms_norm.tilenorm", "operator_rms_norm"),
    "gated_rms_norm": ("tritonbench.operators.gated_rms_norm", "operator_gated_rms_norm"),
    "add_rms_norm": ("tritonbench.operators.add_rms_norm", "operator_add_rms_norm"),
}

INSTALL_HELP = """\
tritonbench_ops needs TritonBench, which cannot be imported here:
    {error}
Install it in one of two ways:
    pip install "tilenorm[bench]"
or run it from a source checkout (it is not on PyPI):
    git clone https://github.com/meta-pytorch/tritonbench
    PYTHONPATH=$PWD/tritonbench python -m tritonbench_ops {argv}
(TritonBench itself also needs: psutil, tabulate.)"""


def require_tritonbench(argv: list[str]) -> None:
    """Import TritonBench's harness, or exit with the commands that install it."""
    try:
        importlib.import_module("tritonbench.utils.triton_op")
    except ImportError as error:
        raise SystemExit(INSTALL_HELP.format(error=error, argv=" ".join(argv))) from None


def parse_own_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Flags of this runner; everything else goes to TritonBench and the operator."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument("--commit", default=None,
                        help="commit to record in the JSON (default: git of this checkout; a copied "
                             "tree's .git may not be the code that ran)")
    own, rest = parser.parse_known_args(argv)
    return own, rest


def _device_of(argv: list[str]) -> str:
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--device", "-d", default="cuda")
    return peek.parse_known_args(argv)[0].device


def use_interpreter_on_cpu(argv: list[str]) -> None:
    """On ``--device cpu``, run Triton kernels in Triton's interpreter.

    Must precede the loading of any module that defines ``triton.jit`` kernels: the
    choice between compiled and interpreted is made when a kernel is defined.
    """
    if _device_of(argv) == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")


def load_operator(op_name: str):
    """The Operator class for ``op_name``: ours where we have one, else TritonBench's."""
    if op_name not in OUR_OPERATORS:
        from tritonbench.operators import load_opbench_by_name

        return load_opbench_by_name(op_name)
    alias, file_stem = OUR_OPERATORS[op_name]
    if alias not in sys.modules:
        # The upstream operator (or the operators package) first, so that its
        # providers are registered before ours are added.
        importlib.import_module(alias.rpartition(".")[0])
        spec = importlib.util.spec_from_file_location(
            alias, Path(__file__).with_name(f"{file_stem}.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[alias] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[alias]
            raise
    return sys.modules[alias].Operator


def list_backends(op_name: str) -> str:
    from tritonbench.utils.triton_op import BASELINE_BENCHMARKS, REGISTERED_BENCHMARKS

    load_operator(op_name)
    lines = [f"{op_name}:"]
    for name, backend in REGISTERED_BENCHMARKS.get(op_name, {}).items():
        flags = [f for f, on in (("baseline", BASELINE_BENCHMARKS.get(op_name) == name),
                                 ("disabled", not backend.enabled)) if on]
        lines.append(f"  {name}" + (f" ({', '.join(flags)})" if flags else ""))
    return "\n".join(lines)


def run_operator(op_name: str, tb_args: argparse.Namespace, extra_args: list[str]):
    """Build and run one operator as TritonBench's run.py does; return the operator."""
    args = copy.copy(tb_args)
    args.op = op_name
    operator = load_operator(op_name)(tb_args=args, extra_args=extra_args)
    operator.run(args.warmup, args.iter)
    return operator


def _dtype_name(operator) -> str:
    dtype = getattr(operator, "input_dtype", None) or operator.dtype
    return str(dtype).replace("torch.", "") if dtype is not None else "default"


def _git_commit() -> str:
    """Short commit of the checkout this package runs from; "unknown" outside git."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def _versions() -> dict[str, str]:
    import torch
    import triton

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "triton": triton.__version__}
    for name, dist in (("helion", "helion"), ("liger", "liger-kernel"),
                       ("tritonbench", "tritonbench"), ("tilenorm", "tilenorm")):
        try:
            versions[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass  # not installed, or (TritonBench) run from a source tree
    return versions


def _gpu_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return platform.processor() or "cpu"


def results_json(operator, records, tb_args, commit: str | None = None) -> dict:
    """The run in DESIGN.md's results schema, readable by ``python -m bench.table``."""
    from tritonbench_ops import report

    settings = {"harness": "tritonbench", "warmup_ms": tb_args.warmup, "rep_ms": tb_args.iter,
                "cudagraph": bool(tb_args.cudagraph), "argv": sys.argv[1:]}
    return report.results_document(
        records, op=operator.name, mode=operator.mode.value, dtype=_dtype_name(operator),
        cudagraph=bool(tb_args.cudagraph), gpu=_gpu_name(str(operator.device)),
        date=time.strftime("%Y-%m-%d"), commit=commit or _git_commit(), versions=_versions(),
        settings=settings,
    )


def write_outputs(operator, tb_args, output_dir: Path, plot: bool, commit: str | None = None) -> list[Path]:
    """CSV, JSON (and PNG) for one operator run, plus TritonBench's --output/--output-json."""
    from tritonbench_ops import report

    result = operator.output
    records = report.records_from_result(result)
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem = f"{operator.name}_{operator.mode.value}_{_dtype_name(operator)}_{stamp}"
    written = [output_dir / f"{stem}.csv", output_dir / f"{stem}.json"]
    with open(written[0], "w", newline="") as f:
        result.write_csv_to_file(f)
    with open(written[1], "w") as f:
        json.dump(results_json(operator, records, tb_args, commit), f, indent=1)
    if plot:
        title = f"{operator.name} {operator.mode.value} {_dtype_name(operator)}"
        # The roof was measured on the H200; on a CPU run it would only flatten the plot.
        roof = report.COPY_ROOF_GBPS if str(operator.device).startswith("cuda") else None
        written.append(report.plot_gbps(records, output_dir / f"{stem}.png", title, roof_gbps=roof))
    if tb_args.output:
        with open(tb_args.output, "w", newline="") as f:
            result.write_csv_to_file(f)
        written.append(Path(tb_args.output))
    if tb_args.output_json:
        with open(tb_args.output_json, "w") as f:
            result.write_json_to_file(f)
        written.append(Path(tb_args.output_json))
    return written


def timing_note(device: str, cudagraph: bool) -> str | None:
    """What a GPU run's rows measure, when that is not the kernels alone.

    TritonBench's default timing launches each call from Python between L2 flushes; on
    the lent H200 host every Triton-based provider's row then varied by 30-200% from
    run to run while torch's single kernel held within 1% (bench/NOTES.md, Next 7).
    """
    if cudagraph or not device.startswith("cuda"):
        return None
    return (
        "[tritonbench_ops] note: each call was timed as a Python launch between L2 flushes, so "
        "these rows include host time and move with the host's load; pass --cudagraph to time "
        "the kernels alone"
    )


def _print_result(result, tb_args) -> None:
    if tb_args.skip_print:
        return
    if tb_args.csv:
        result.write_csv_to_file(sys.stdout)
    else:
        print(result)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, rest = parse_own_args(argv)
    use_interpreter_on_cpu(rest)
    require_tritonbench(argv)
    from tritonbench.utils.parser import get_parser

    tb_args, extra_args = get_parser(rest).parse_known_args(rest)
    ops = tb_args.op.split(",") if tb_args.op else list(OUR_OPERATORS)
    if tb_args.list_backends:
        print("\n".join(list_backends(op) for op in ops))
        return 0
    output_dir = Path(tb_args.output_dir) if tb_args.output_dir else DEFAULT_OUTPUT_DIR
    for op_name in ops:
        operator = run_operator(op_name, tb_args, extra_args)
        _print_result(operator.output, tb_args)
        for path in write_outputs(operator, tb_args, output_dir, plot=not own.no_plot, commit=own.commit):
            print(f"[tritonbench_ops] wrote {path}")
    note = timing_note(str(tb_args.device), bool(tb_args.cudagraph))
    if note:
        print(note)
    return 0
