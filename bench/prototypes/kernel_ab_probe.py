"""Does a change to the kernels' source pay on the shipped configs? (bench/NOTES.md attempt 77)

Each shipped entry of the given keys is timed, in one process, in turns (tuner timing,
best of ``--rounds``, default 3), on the current ``kernels/norm_kernels.py`` and on a
baseline copy of it (``--base PATH``), at the same config. The baseline's kernels are
built from that file (``make_kernels``) and swapped in while its runner binds, so both
programs see the same inputs, launch code and partial-sum reduce.

    git show COMMIT:kernels/norm_kernels.py > /tmp/base_kernels.py
    python bench/prototypes/kernel_ab_probe.py --base /tmp/base_kernels.py \\
        --keys layer_norm/bwd/bfloat16/4096x8704,... | --match 'layer_norm/bwd/.*/4096x' [--budget SECONDS]

``--new PATH`` times another copy in place of the current source (two candidates
against each other).

``--check-only`` checks both against float64 instead (also on the CPU, under Triton's
interpreter).
"""

import importlib.util
import inspect
import re
import statistics
import sys

from probe_common import ProbeRun, best_gbps, runner_registers, shipped_entries, shipped_tasks  # run from the repo root or this folder

from kernels import launch
from tuning.workload import Workload


class _Arity:
    """A kernel that takes the current launch code's arguments and passes on the first
    ``n``: a baseline older than a trailing compile-time choice (``trim``) runs as that
    choice's default, which is how it ran before the choice existed."""

    def __init__(self, inner, n: int) -> None:  # noqa: ANN001
        self.inner, self.n = inner, n

    def bind(self, args: tuple) -> "_Arity":
        return _Arity(self.inner.bind(tuple(args)[: self.n]), self.n)

    def compile_config(self, config):  # noqa: ANN001, ANN201
        compiled = self.inner.compile_config(config)
        return lambda *args: compiled(*args[: self.n])

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.inner, name)


def baseline_kernels(path: str, name: str = "baseline_norm_kernels") -> dict:
    """``make_kernels(False)`` of the norm_kernels source at ``path``, each taking the
    current kernels' arguments."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the generated code imports its source module by name
    spec.loader.exec_module(module)
    return {name: _Arity(k, len(inspect.signature(k.fn).parameters)) for name, k in module.make_kernels(False).items()}


def runner_on(wl: Workload, config: dict, kernels: dict | None):  # noqa: ANN201
    """``wl.runner(config)`` bound to ``kernels`` (None: the current ones)."""
    if kernels is None:
        return wl.runner(config)
    current = launch._kernels
    launch._kernels = lambda ref: kernels
    try:
        return wl.runner(config)
    finally:
        launch._kernels = current


def main() -> None:
    probe = ProbeRun()
    entries = shipped_entries()
    if probe.option("--keys"):
        keys = probe.option("--keys").split(",")
    else:
        keys = sorted(k for k in entries if re.search(probe.option("--match") or "$^", k))
    base = baseline_kernels(probe.option("--base"))
    new = baseline_kernels(probe.option("--new"), "new_norm_kernels") if probe.option("--new") else None
    rounds = int(probe.option("--rounds") or 3)
    ratios = []
    for key, task in shipped_tasks(probe, entries, keys):
        config = entries[key]["config"]
        wl = Workload(task, probe.device)
        runs = {}
        for name, kernels in (("base", base), ("new", new)):
            run = runner_on(wl, config, kernels)
            err = wl.check(run)
            runs[name] = run
            if probe.check_only:
                print(f"{key} {name}: worst relative error {err:.2g}", flush=True)
        if not probe.check_only:
            best = best_gbps(wl, runs, rounds)
            ratio = best["new"] / best["base"]
            ratios.append(ratio)
            regs = "/".join(runner_registers(runs[n]) for n in ("base", "new"))
            print(f"{key:44s} base {best['base']:6.0f}  new {best['new']:6.0f} GB/s  {ratio:.3f}x  regs {regs}", flush=True)
        del wl, runs
    if ratios:
        print(f"geomean {statistics.geometric_mean(ratios):.3f}x over {len(ratios)} entries, min {min(ratios):.3f}x, max {max(ratios):.3f}x")


if __name__ == "__main__":
    main()
