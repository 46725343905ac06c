"""What PTX cache modifiers on loads and stores buy the shipped configs (bench/NOTES.md attempt 46).

Helion 1.4 writes a config's ``load_cache_modifiers`` (Triton's "", ".cg") and
``store_cache_modifiers`` ("", ".cs", ".wt") into the generated ``tl.load``/``tl.store``
on any backend, but offers them in its config spec only on AMD CDNA, so the tuner has
never tried them. ``.cs`` ("cache streaming") marks a store's lines evict-first: the
outputs of a norm are read by nobody in this kernel, and on the two-pass forward they
compete in the L2 with the x that the second pass re-reads. ``.cg`` caches a load in
the L2 only, not the L1; ptxas rejects it beside an eviction hint ("Modifier
'.evict_last' cannot be combined with modifier '.cg'"), so that variant drops the
config's tunable hints, and a kernel with hard-coded ones (the two-pass forward) fails it.

For each (kernel, mode, shape): the shipped config, and the same config with every
store ``.cs``, every load ``.cg``, and both; timed the tuner's way (CUDA graph over
rotating sets, kernel time) in turns, each checked against the float64 reference.

    python bench/prototypes/cache_modifier_probe.py [--modes infer,bwd] [--kernels layer_norm,rms_norm]
        [--shapes 4096x8192,2048x32768] [--dtype bfloat16]
"""

from statistics import geometric_mean
import sys

import torch

from kernels import launch
from tuning import timing
from tuning.workload import Task, TrialError, Workload

SHAPES = [(4096, 1024), (4096, 4096), (8192, 4096), (32768, 4096), (4096, 8192), (4096, 16384), (2048, 32768)]
# Longer than any kernel's load/store count: Helion uses the first entries in program order.
VARIANTS = {
    "st.cs": {"store_cache_modifiers": [".cs"] * 8},
    "ld.cg": {"load_cache_modifiers": [".cg"] * 16, "load_eviction_policies": None},
    "both": {"store_cache_modifiers": [".cs"] * 8, "load_cache_modifiers": [".cg"] * 16, "load_eviction_policies": None},
}


def _runner(wl: Workload, config: dict):  # noqa: ANN202
    """run(i) for ``config``, or None where it does not compile or is wrong."""
    config = {k: v for k, v in config.items() if v is not None}
    try:
        run = wl.runner(config)
        wl.check(run)  # raises TrialError past the tuner's tolerance
        return run
    except TrialError as e:
        print(f"  failed: {str(e).splitlines()[-2:]}", flush=True)
        return None


def _arg(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main() -> None:
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # CPU: a smoke test (TRITON_INTERPRET=1)
    dtype = _arg("--dtype", "bfloat16")
    modes = _arg("--modes", "infer,bwd").split(",")
    kernels = _arg("--kernels", "layer_norm,rms_norm").split(",")
    shapes = [tuple(map(int, s.split("x"))) for s in _arg("--shapes", "").split(",") if s] or SHAPES
    if dev.type != "cuda":
        shapes = [(64, 512)]
    ratios: dict[str, list[float]] = {}
    for mode in modes:
        for kernel in kernels:
            for m, n in shapes:
                wl = Workload(Task(kernel, mode, m, n, dtype), dev)
                shipped = launch.choose_config(kernel, mode, m, n, 1, getattr(torch, dtype), dev)
                configs = [shipped] + [shipped | extra for extra in VARIANTS.values()]
                code = wl.bound(configs[1]).to_triton_code(launch._fit(configs[1], wl.bound(configs[1])))
                assert "cache_modifier='.cs'" in code, "store modifier not emitted"
                runs = [_runner(wl, c) for c in configs]
                ok = [r for r in runs if r is not None]
                ms = iter(timing.interleaved_ms(ok, len(wl.sets), dev))
                g = [wl.model_bytes() / next(ms) / 1e6 if r is not None else float("nan") for r in runs]
                cells = "  ".join(f"{name} {gb:5.0f} ({gb / g[0]:.3f}x)" for name, gb in zip(VARIANTS, g[1:]))
                for name, gb in zip(VARIANTS, g[1:]):
                    if gb == gb:
                        ratios.setdefault(f"{kernel} {mode} {name}", []).append(gb / g[0])
                print(
                    f"{kernel:10s} {mode:5s} {dtype} {m}x{n}: shipped {g[0]:5.0f}  {cells}"
                    f"  {shipped}",
                    flush=True,
                )
    for key, r in ratios.items():
        print(f"geomean {key}/shipped: {geometric_mean(r):.3f}", flush=True)


if __name__ == "__main__":
    main()
