"""Does software pipelining of the kernels' device loops pay (bench/NOTES.md attempt 30)?

Triton pipelines a loop's loads (cp.async into shared memory, prefetching the next
iterations while this one computes) only for loads that feed a dot, or, for any load,
when the loop itself carries ``num_stages`` (``tl.range(..., num_stages=S)``); the
kernel-wide ``num_stages`` the tuner sets does not do it for a norm. Helion exposes the
per-loop value as the config's ``range_num_stages``, but drops the choice from the
config spec of every kernel that reads a name it also writes (a workaround for
triton-lang/triton#8259), and every kernel here does (``return out``, ``x is not None``
checks of outputs). This probe lifts that guard in its own process only, and times the
shipped config of each case against the same config with the inner loop pipelined:

  bwd    the backward's loop over a program's m_block rows (one iteration = `inner`
         rows of x and dy); 1 and 2 rows per step
  infer  the forward's reduction loop / the two-pass kernel's chunk loops, where the
         shipped config has a loop

Every config is checked against the float64 reference (tuning.workload's check) before
it is timed with the tuner's timing (CUDA graph over rotating sets, kernel time).

    python bench/prototypes/range_stages_probe.py [--fwd] [--bwd]
"""
import sys

import torch
from helion._compiler.compile_environment import CompileEnvironment

from kernels import launch
from tuning import timing
from tuning.workload import Task, Workload

# The probe's one liberty: keep range_num_stages in the config spec (see the docstring).
CompileEnvironment._disable_range_num_stages_for_aliasing = lambda self: None

BWD = [("layer_norm", (4096, 1024)), ("layer_norm", (4096, 4096)), ("layer_norm", (8192, 4096)),
       ("layer_norm", (4096, 8192)), ("layer_norm", (32768, 4096)), ("layer_norm", (4096, 16384)),
       ("rms_norm", (4096, 4096)), ("rms_norm", (8192, 4096)), ("rms_norm", (4096, 8192)),
       ("layer_norm", (2048, 32768))]  # fmt: skip
FWD = [("layer_norm", (4096, 16384)), ("layer_norm", (2048, 32768)), ("layer_norm", (4096, 14336)),
       ("rms_norm", (4096, 16384)), ("rms_norm", (2048, 32768)), ("rms_norm", (4096, 10240))]  # fmt: skip
STAGES = (2, 3, 4)


def gbps(wl: Workload, config: dict) -> float:
    run = wl.runner(config)
    wl.check(run)
    return max(wl.model_bytes() / timing.time_ms(run, len(wl.sets), wl.device) / 1e6 for _ in range(2))


def variants(wl: Workload, shipped: dict) -> list[tuple[str, dict]]:
    n_loops = len(wl.bound(shipped).config_spec.range_num_stages)
    out = [("shipped", shipped)]
    if not wl.forward:
        inners = sorted({shipped["block_sizes"][3], 1, 2})
        for inner in inners:
            for s in (0, *STAGES):
                if inner == shipped["block_sizes"][3] and s == 0:
                    continue
                bs = list(shipped["block_sizes"])
                bs[3] = inner
                cfg = {**shipped, "block_sizes": bs, "range_num_stages": [0] * (n_loops - 1) + [s]}
                out.append((f"inner{inner} rs{s}", cfg))
    elif n_loops:
        for s in STAGES:
            out.append((f"rs{s}", {**shipped, "range_num_stages": [s] * n_loops}))
    return out


def main() -> None:
    dev = torch.device("cuda")
    cases = ([(k, "bwd", s) for k, s in BWD] if "--bwd" in sys.argv or "--fwd" not in sys.argv else [])
    cases += [(k, "infer", s) for k, s in FWD] if "--fwd" in sys.argv else []
    for kernel, mode, (m, n) in cases:
        wl = Workload(Task(kernel, mode, m, n, "bfloat16", 1), dev)
        shipped = launch.choose_config(kernel, mode, m, n, 1, torch.bfloat16, dev)
        rows = []
        for name, cfg in variants(wl, shipped):
            try:
                rows.append((gbps(wl, cfg), name))
            except Exception as e:  # noqa: BLE001
                rows.append((0.0, f"{name} FAIL {str(e).splitlines()[0][:70]}"))
        base = rows[0][0]
        print(f"== {kernel} {mode} bf16 {m}x{n}  shipped {base:.0f} GB/s  {shipped}", flush=True)
        for g, name in sorted(rows, key=lambda r: -r[0]):
            print(f"    {g:6.0f} {g / base if base else 0:5.3f}x  {name}", flush=True)


if __name__ == "__main__":
    main()
