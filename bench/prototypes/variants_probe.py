"""Is a shipped entry one config key away from a faster one? (bench/NOTES.md attempt 76)

A local search walks one parameter at a time from its incumbent, so a study that never
sampled a persistent grid on a row where it pays leaves it there: attempt 76's sweep found
the fused LayerNorm backward of bf16 4096x11264 +14% faster on a persistent grid, the same
config otherwise. Here each shipped entry of the given keys is timed, in one process, in
turns (tuner timing, best of 2), against itself with each ``--vary`` applied (config keys
set, or removed by the value ``null``); each variant at least ``--min-gain`` times faster
than the shipped config (``--sibling``: the other 16-bit dtype's config of that key is
one more variant) goes, its best one, into a candidate cache (``--out``: the shipped
file with those entries replaced, source "probe"), which ``cache_ab_probe.py`` then times
again in a second process.

    python bench/prototypes/variants_probe.py --keys layer_norm/bwd/float16/4096x11264,... \\
        --vary '{"pid_type": "persistent_blocked"}' --vary '{"widen": true}' \\
        [--sibling] [--min-gain 1.01] [--out CANDIDATE.json] [--budget SECONDS]
"""

import datetime
import json
import re
import sys

from probe_common import SIBLING, ProbeRun, compare_on, shipped_entries, shipped_tasks  # run from the repo root or this folder

from tuning.tuner import versions

SHIPPED_PATH = "tuning/configs/nvidia_h200.json"


def varied(config: dict, change: dict) -> dict:
    """``config`` with ``change``'s keys set (None: removed)."""
    out = {**config, **change}
    return {k: v for k, v in out.items() if v is not None}


def variants(config: dict, changes: list[dict], sibling: dict | None = None) -> dict[str, dict]:
    """The shipped config, the ``sibling`` config (the other 16-bit dtype's entry) and
    each change that makes a different config, by name."""
    out = {"shipped": config}
    if sibling is not None and sibling != config:
        out["sibling"] = sibling
    for change in changes:
        candidate = varied(config, change)
        if candidate not in out.values():
            out[",".join(f"{k}={v}" for k, v in change.items())] = candidate
    return out


def write_candidates(path: str, picked: dict[str, dict]) -> None:
    """The shipped cache file with the ``picked`` entries replaced, one entry a line as shipped."""
    lines = []
    for line in open(SHIPPED_PATH).read().splitlines():
        found = re.match(r'  "([^"]+)": (\{.*\}),?$', line)
        if found and found.group(1) in picked:
            line = f'  "{found.group(1)}": {json.dumps(picked[found.group(1)], sort_keys=True)}' + ("," if line.endswith(",") else "")
        lines.append(line)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main() -> None:
    probe = ProbeRun()
    keys = probe.option("--keys").split(",")
    changes = [json.loads(sys.argv[i + 1]) for i, a in enumerate(sys.argv) if a == "--vary"]
    min_gain = float(probe.option("--min-gain") or 1.01)
    out = probe.option("--out")
    entries = shipped_entries()
    picked = {}
    for key, task in shipped_tasks(probe, entries, keys):
        kernel, mode, dtype, shape = key.split("/")
        twin = entries.get(f"{kernel}/{mode}/{SIBLING.get(dtype)}/{shape}") if "--sibling" in sys.argv else None
        configs = variants(entries[key]["config"], changes, twin and twin["config"])
        best = compare_on(probe, task, configs, key)
        name = max(best, key=best.get, default="shipped")
        if name != "shipped" and best[name] >= min_gain * best.get("shipped", float("inf")):
            e = dict(entries[key])
            if "gbps_exact" in e:
                e["gbps_exact"] *= best[name] / e["gbps"]
            e.update(config=configs[name], gbps=best[name], ms=e["ms"] * e["gbps"] / best[name], source="probe", versions=versions())
            e["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            picked[key] = e
    if out and picked:
        write_candidates(out, picked)
        print(f"{len(picked)} candidates in {out}: {', '.join(picked)}", flush=True)


if __name__ == "__main__":
    main()
