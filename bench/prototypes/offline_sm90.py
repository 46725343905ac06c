"""Compile a backward config for sm_90 on a CPU-only machine and read what ptxas says:
registers, spills, cp.async prefetches (the row loop pipelined) and shared-memory loads
(layout conversions). No GPU needed, so a config's register cost can be checked before
device time is spent on it (bench/NOTES.md attempts 56-57).

The GPU host runs triton 3.6, whose layouts differ from later versions' (attempt 57's
spilling LayerNorm exchange compiled clean under 3.9), so put triton 3.6 first:

    pip download --no-deps --only-binary=:all: --python-version 3.11 -d /tmp/t36whl triton==3.6.0
    pip install --no-deps --target /tmp/t36 /tmp/t36whl/*.whl
    PYTHONPATH=/tmp/t36:$PWD python bench/prototypes/offline_sm90.py OP M N 'CONFIG' [--save PREFIX] [--dtype float16] [--widen]
    PYTHONPATH=/tmp/t36:$PWD python bench/prototypes/offline_sm90.py --survey

    PYTHONPATH=/tmp/t36:$PWD python bench/prototypes/offline_sm90.py --forward OP MODE M N 'CONFIG' [PILOT] [--save PREFIX] [--dtype float16]

OP is layer_norm or rms_norm, CONFIG a backward config as JSON (with --forward, a
forward config, whole-row or chunked; MODE fwd or infer; PILOT a chunked config's pilot width). An exchange config is
generated with its T channel tiles per row (the CPU's own route runs one). ``--save``
keeps the generated Triton, PTX and TTGIR. ``--survey``: attempt 57's table, LayerNorm
and RMSNorm exchange configs at the widths of issue 6.

Result (attempt 61): LayerNorm's training forward, [8192, 1, 1] on 32 warps at 2048x32768
with a 16-value pilot: 46 registers, 4 KB of shared memory and 2052 st.shared before the
pilot was kept 3-D; 32, 128 bytes and 4 after, as the inference forward.

Result (2026-11-23, triton 3.6 from the CPU, attempt 57): before the collected sums were
reduced to scalars, LayerNorm's exchange at 2048-channel tiles, one row a step, 4 warps
took 255 registers, 632 bytes of spills and 791 shared-memory loads (its dx arithmetic in
the slots' layout); after, 94 registers, no spills, 27. RMSNorm's shipped bf16 config
compiled to the same instructions before and after.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile

import torch

from probe_common import exchange_config, with_pilot  # run from the repo root or this folder

from kernels import launch
from tuning.cache import RECAST, WIDEN
from tuning.workload import Task, Workload

# The arguments Triton specializes to 1 at launch on the GPU (unit strides), so the
# offline compile vectorizes like the real one; the rest are 16-byte aligned there.
UNIT_ARGS = re.compile(r"(dx|dy|x|dz|z|dh|out|h_out|residual|weight|bias|dw_part|db_part)_stride_2$|(weight|bias|mean|rstd|mean_out|rstd_out)_stride_1$")
BF16_ARGS = {"weight", "x", "dy", "dx", "z", "dz", "dh", "bias", "out", "h_out", "residual"}
SCALAR_ARGS = {"m": "i32", "offset": "fp32", "eps": "fp32"}
H200_SMS = 132  # a persistent grid's _NUM_SM, a compile-time constant of its program


def generated_source(op: str, m: int, n: int, config: dict, dtype: str = "bfloat16") -> str:
    """Helion's Triton for the backward at ``config``; an exchange config with its T tiles;
    bf16 converted by bit moves where the config says ``widen`` (as on CUDA) or ``--widen``."""
    launch.bwd_widen = lambda config, x: "--widen" in sys.argv or bool(config.get(WIDEN))
    launch.bwd_recast = lambda config, x: bool(config.get(RECAST)) and dtype != "float32"
    wl = Workload(Task(op, "bwd", m, n, dtype, 1), torch.device("cpu"), n_sets=1)
    tiles = -(-n // config["block_sizes"][2]) if config.get("exchange") else 0
    split = bool(config["block_sizes"][2] < n) and not tiles
    coef = launch._coef(split, m, 1, wl.device, tiles)
    bound = launch._kernels(False)["bwd"].bind(wl._bwd_args(wl.sets[0], wl._partials(config), coef, tiles, config))
    return bound.to_triton_code(launch._fit(config, bound))


def forward_source(op: str, mode: str, m: int, n: int, config: dict, pilot: int | None = None, dtype: str = "bfloat16") -> str:
    """Helion's Triton for the forward (``mode`` "fwd": training, "infer") at ``config``;
    ``pilot`` overrides a chunked config's pilot width (kernels.launch picks it otherwise).
    A config's ``read_only`` or ``recast`` and ``widen`` are taken as the GPU would (launch says
    no to both on the CPU; ``--no-widen``: Triton's own bf16 conversions)."""
    wl = Workload(Task(op, mode, m, n, dtype, 1), torch.device("cpu"), n_sets=1)
    call = wl._fwd_args(wl.sets[0])
    args = launch.fwd_kernel_args(config, call)
    if pilot is not None:
        args = with_pilot(config, args, pilot)
    if config.get("read_only" if len(config["block_sizes"]) == 3 else "recast"):
        args = (*args[:-2], True, args[-1])
    widen = "--no-widen" not in sys.argv  # launch passes True on CUDA
    args = (*args[: len(call)], widen, *args[len(call) + 1 :])  # the first argument after the call's
    bound = launch._kernels(False)[launch.fwd_kernel_name(config)].bind(args)
    return bound.to_triton_code(launch._fit(config, bound))


def host_constants(source: str, fn) -> dict[str, int]:  # noqa: ANN001
    """Values of the program's other ``tl.constexpr`` parameters: a persistent grid's
    _NUM_SM, and what the host function assigns before the launch (a whole-row
    forward's _RDIM_SIZE_*)."""
    out = {}
    for param in fn.params:
        if not param.is_constexpr:
            continue
        if param.name == "_NUM_SM":
            out[param.name] = H200_SMS
        elif found := re.search(rf"^\s*{param.name} = (\d+)$", source, re.MULTILINE):
            out[param.name] = int(found.group(1))
    return out


def compile_sm90(source: str, warps: int, save: str | None = None, maxnreg: int | None = None, dtype: str = "bfloat16") -> dict:
    """ptxas's registers and spill bytes, and counts from the PTX, of the source's kernel."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "generated.py")
        with open(path, "w") as f:
            f.write(source)
        spec = importlib.util.spec_from_file_location("generated", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        fn = next(v for k, v in vars(module).items() if k.startswith("_helion_"))
        unit = [a for a in fn.arg_names if UNIT_ARGS.search(a)]
        constants = {**dict.fromkeys(unit, 1), **host_constants(source, fn)}
        signature = {
            a: "constexpr" if a in constants else SCALAR_ARGS.get(a, ("*fp16" if dtype == "float16" else "*bf16") if a in BF16_ARGS else "*fp32" if "_stride_" not in a else "i32")
            for a in fn.arg_names
        }  # fmt: skip
        aligned = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(fn.arg_names) if a not in constants and a not in SCALAR_ARGS}
        kernel = triton.compile(
            ASTSource(fn, signature, constants, aligned),
            target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": 1, **({"maxnreg": maxnreg} if maxnreg else {})},
        )  # fmt: skip
        ptx = kernel.asm["ptx"]
        shared = kernel.metadata.shared
        ptx_path = os.path.join(tmp, "k.ptx")
        with open(ptx_path, "w") as f:
            f.write(ptx)
        ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
        cubin = os.path.join(tmp, "k.cubin")
        info = subprocess.run([ptxas, "-v", "--gpu-name", "sm_90a", ptx_path, "-o", cubin], capture_output=True, text=True).stderr
        sass = subprocess.run([os.path.join(os.path.dirname(ptxas), "cuobjdump"), "-sass", cubin], capture_output=True, text=True).stdout
        if save:
            with open(save + ".sass", "w") as f:
                f.write(sass)
        if save:
            for suffix, text in ((".py", source), (".ptx", ptx), (".ttgir", kernel.asm["ttgir"])):
                with open(save + suffix, "w") as f:
                    f.write(text)
    regs = re.search(r"Used (\d+) registers", info)
    spills = re.search(r"(\d+) bytes spill stores", info)
    return {
        "regs": int(regs.group(1)) if regs else None, "spill_bytes": int(spills.group(1)) if spills else None,
        "cp_async": ptx.count("cp.async.cg") + ptx.count("cp.async.ca"), "ld_shared": ptx.count("ld.shared"),
        "smem_bytes": shared, "sass": len(re.findall(r"^\s+/\*[0-9a-f]{4}\*/", sass, re.MULTILINE)),
    }  # fmt: skip


def survey() -> None:
    for op, n in (("layer_norm", 8704), ("layer_norm", 16384), ("layer_norm", 32768), ("rms_norm", 32768)):
        for tile, rows, warps in ((1024, 1, 4), (2048, 1, 4), (2048, 1, 8), (2048, 2, 8), (4096, 1, 8), (4096, 1, 16), (4096, 2, 16)):
            config = exchange_config(tile, rows, warps, stages=2, m_block=32)
            got = compile_sm90(generated_source(op, 64, n, config), warps)
            print(f"{op:10s} N={n:5d} tile {tile:4d} x {rows} rows, {warps:2d} warps: {got}", flush=True)


def main() -> None:
    if "--survey" in sys.argv:
        survey()
        return
    save = sys.argv[sys.argv.index("--save") + 1] if "--save" in sys.argv else None
    if "--forward" in sys.argv:  # --forward OP MODE M N 'CONFIG' [PILOT]
        i = sys.argv.index("--forward")
        op, mode, m, n, config = sys.argv[i + 1], sys.argv[i + 2], int(sys.argv[i + 3]), int(sys.argv[i + 4]), json.loads(sys.argv[i + 5])
        pilot = int(sys.argv[i + 6]) if len(sys.argv) > i + 6 and sys.argv[i + 6].isdigit() else None
        dtype = sys.argv[sys.argv.index("--dtype") + 1] if "--dtype" in sys.argv else "bfloat16"
        source = forward_source(op, mode, m, n, config, pilot, dtype)
        print(compile_sm90(source, config.get("num_warps", 4), save, config.get("maxnreg"), dtype))
        return
    else:
        op, m, n, config = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
        dtype = sys.argv[sys.argv.index("--dtype") + 1] if "--dtype" in sys.argv else "bfloat16"
        source = generated_source(op, m, n, config, dtype)
    print(compile_sm90(source, config.get("num_warps", 4), save, config.get("maxnreg"), dtype))


if __name__ == "__main__":
    main()
