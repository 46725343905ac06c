"""RMSNorm forward: where the last 1-2% to Unsloth-style's program goes (bench/NOTES.md
Next 8). Our shipped inference configs trail Unsloth-style and inductor by 1-2% by kernel
time on mid rows (bf16 4096x4096-8192, 2048x16384-32768) although the tuner's space
holds Unsloth-style's launch shape (one row per program, its warps), so the difference is
in the program, not the config.

    python bench/prototypes/rms_fwd_probe.py [--budget SECONDS] [--check-only] [--shapes MxN,...] [--asm DIR]

Per shape, timed A B A B by the tuner's timing (CUDA graph over inputs rotated past the
L2), best of two, GB/s by the forward byte model:

- ``unsloth``: Unsloth-style's kernel (``tritonbench_ops/unsloth_style.py``), as the
  benchmark launches it (it also stores rstd);
- ``ours``: the shipped config, the code Helion generates;
- ``ours@unsloth``: our kernel at Unsloth-style's launch shape (one row, its warps, no
  eviction hint);
- then the shipped config's generated Triton source with one difference to Unsloth-style's
  program removed at a time (text edits of that source, compiled as a module of their own):
  ``no_offset`` drops the fp32 ``+ offset`` on the weight (Gemma's 1 + w; 0 for Llama),
  ``sqrt_approx`` takes ``tl.sqrt`` for ``tl.sqrt_rn``, ``no_row_mask`` drops the row mask
  (M is a multiple of the rows per program in every shape here).

``--asm DIR`` writes the PTX and cubin of Unsloth-style's program and of ours (the shipped
config's generated source, unedited) per shape, to compare them instruction by instruction.

Each run is checked against the float64 reference first (``--check-only``: check and stop,
which also runs on the CPU under ``TRITON_INTERPRET=1``).
"""

import importlib.util
import re
import tempfile
from pathlib import Path

import torch
from probe_common import ProbeRun, best_gbps

from kernels import launch
from tritonbench_ops import unsloth_style
from tuning.workload import EPS, Task, TrialError, Workload

SHAPES = [(4096, 4096), (4096, 8192), (2048, 16384), (2048, 32768), (4096, 1024), (8192, 4096)]
EDITS = {
    "unedited": [],
    "sqrt_approx": [(r"tl\.sqrt_rn\(", "tl.sqrt(")],
    "no_row_mask": [(r", mask_0\[[^\]]*\](, other=0)?", "")],
    # Llama's scale in the input dtype (Unsloth-style's mul.bf16): a product of two bf16
    # values is exact in fp32, so this rounds exactly as the fp32 product does.
    "bf16_mul": [(r"(\w+) = tl\.cast\((\w+), tl\.float32\)\n\s+(\w+) = tl\.cast\((wv\w*), tl\.float32\)\n"
                  r"\s+(\w+) = \1 \* \3\n(\s+#.*\n)?\s+(\w+) = tl\.cast\(\5, tl\.bfloat16\)",
                  r"\7 = \2 * \4")],
}
WHOLE_ROW_WARPS = (8, 16, 32)  # one row per program, held whole: Unsloth-style's shape
_MODULES = Path(tempfile.mkdtemp(prefix="rms_fwd_probe_"))


def edited_runner(wl: Workload, config: dict, name: str):  # noqa: ANN201
    """run(i) of the shipped config's generated source after the text edits ``name``."""
    bound = wl.bound(config)
    code = bound.to_triton_code(launch._fit(config, bound))
    for pattern, repl in EDITS[name]:  # "unedited": none
        code, n = re.subn(pattern, repl, code)
        if n == 0:
            raise ValueError(f"{name}: {pattern!r} is not in the generated code")
    path = _MODULES / f"{name}_{abs(hash(code))}.py"
    path.write_text(code)  # triton.jit reads its kernel's source from a file
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = [launch.fwd_kernel_args(config, wl._fwd_args(s)) for s in wl.sets]
    run = lambda i: module.norm_fwd(*args[i])  # noqa: E731
    # the @triton.jit program (none under Triton's interpreter, which compiles nothing)
    run.jit = next((v for v in vars(module).values() if hasattr(v, "device_caches")), None)
    return run


def write_asm(jit, folder: Path, name: str) -> None:
    """The PTX and cubin of every program ``jit`` compiled (one per signature)."""
    folder.mkdir(parents=True, exist_ok=True)
    for cache in jit.device_caches.values():
        for i, kernel in enumerate(cache[0].values()):
            (folder / f"{name}_{i}.ptx").write_text(kernel.asm["ptx"])
            (folder / f"{name}_{i}.cubin").write_bytes(kernel.asm["cubin"])


def unsloth_runner(wl: Workload, **launch_options):  # noqa: ANN201, ANN003
    """Unsloth-style's forward kernel on the workload's input sets (Llama casting)."""
    m, n = wl.task.m, wl.task.n
    block, warps = unsloth_style.calculate_settings(n)
    rstd = torch.empty(m, dtype=torch.float32, device=wl.device)
    views = [(s["out"].view(m, n), s["x"].view(m, n)) for s in wl.sets]
    weight = wl.weight.view(n)

    def run(i: int) -> None:
        y, x = views[i]
        unsloth_style._rms_norm_fwd[(m,)](
            y, x, weight, rstd, y.stride(0), x.stride(0), n, EPS, GEMMA=False, BLOCK_SIZE=block, num_warps=warps,
            **launch_options,
        )

    return run


def unsloth_config(config: dict, n: int) -> dict:
    _, warps = unsloth_style.calculate_settings(n)
    out = {k: v for k, v in config.items() if k not in ("load_eviction_policies", "pid_type")}
    return {**out, "block_sizes": [1, *config["block_sizes"][1:]], "num_warps": warps}


def main() -> None:
    probe = ProbeRun()
    dev = probe.device
    shapes = SHAPES if dev.type == "cuda" else [(8, 256), (6, 1024)]
    if probe.option("--shapes"):
        shapes = [tuple(map(int, s.split("x"))) for s in probe.option("--shapes").split(",")]
    asm = Path(probe.option("--asm")) if probe.option("--asm") else None
    for m, n in shapes:
        if probe.out_of_time():
            return
        wl = Workload(Task("rms_norm", "infer", m, n, "bfloat16", 1), dev, n_sets=None if dev.type == "cuda" else 2)
        shipped = dict(launch.choose_config("rms_norm", "infer", m, n, 1, torch.bfloat16, dev))
        if dev.type != "cuda":
            shipped = {"block_sizes": [2, 1], "num_warps": 4, "num_stages": 1, "reduction_loops": [None]}
        runs = {"unsloth": unsloth_runner(wl), "unsloth/s1": unsloth_runner(wl, num_stages=1),
                "ours": wl.runner(shipped),
                "ours@unsloth": wl.runner(unsloth_config(shipped, n))}  # fmt: skip
        for warps in WHOLE_ROW_WARPS if dev.type == "cuda" else ():
            runs[f"whole/w{warps}"] = wl.runner({**shipped, "block_sizes": [1, 1], "num_warps": warps,
                                                 "reduction_loops": [None], "pid_type": "xyz"})  # fmt: skip
        for name in EDITS:
            try:
                runs[name] = edited_runner(wl, shipped, name)
            except ValueError as e:
                print(f"  {name}: not applicable ({e})", flush=True)
        errors = {}
        for name, run in list(runs.items()):
            try:  # the tuner's own check: raises past its tolerance against float64
                errors[name] = f"{wl.check(run):.2g}"
            except TrialError as e:
                errors[name] = f"WRONG ({e})"
                del runs[name]
        print(f"rms_norm infer {m}x{n} {shipped}\n  relative errors: "
              + ", ".join(f"{k} {v}" for k, v in errors.items()), flush=True)  # fmt: skip
        if probe.check_only:
            continue
        best = best_gbps(wl, runs, rounds=2)
        if asm is not None and runs["unedited"].jit is not None:
            write_asm(runs["unedited"].jit, asm, f"ours_{m}x{n}")
            write_asm(unsloth_style._rms_norm_fwd, asm, f"unsloth_{m}x{n}")
        base = best["ours"]
        print("  " + "  ".join(f"{k} {v:.0f} ({v / base:.3f})" for k, v in best.items()), flush=True)


if __name__ == "__main__":
    main()
