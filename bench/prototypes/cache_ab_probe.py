"""Does a sweep's new cache beat the shipped one where they differ? (bench/NOTES.md attempt 65)

A sweep run on a different lent machine measures every config 1-3% apart from the figures
stored in the cache, so a changed entry's own GB/s says little about whether its config is
faster. Here, for every entry whose config differs between two cache files, both configs
are timed in one process, in turns (tuner timing: CUDA graph, inputs rotated past the L2,
best of 2 rounds), on the same inputs.

A new 16-bit entry without a shipped one is timed against the shipped entry of the other
16-bit dtype, which its lookup took before.

    python bench/prototypes/cache_ab_probe.py SHIPPED.json NEW.json [--budget SECONDS]
"""

import json
import sys

from probe_common import SIBLING, ProbeRun, compare_on  # run from the repo root or this folder

from tuning.workload import Task


def main() -> None:
    probe = ProbeRun()
    old_path, new_path = sys.argv[1:3]
    old = json.load(open(old_path))["entries"]
    new = json.load(open(new_path))["entries"]
    for key in sorted(new):
        if probe.out_of_time():
            break
        kernel, mode, dtype, shape = key.split("/")
        # A new 16-bit entry replaces what its lookup took before: the other 16-bit dtype's.
        sibling = f"{kernel}/{mode}/{SIBLING.get(dtype)}/{shape}"
        was = old[key] if key in old else old.get(sibling)
        if was is None or was["config"] == new[key]["config"]:
            continue
        m, n = map(int, shape.split("x"))
        compare_on(probe, Task(kernel, mode, m, n, dtype, 1), {"shipped": was["config"], "new": new[key]["config"]}, key)


if __name__ == "__main__":
    main()
