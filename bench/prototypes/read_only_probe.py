"""Where else do read-only loads pay? (bench/NOTES.md attempt 74)

Attempt 73 gave the two-pass forward's second pass read-only loads and swept them only
for bf16 LayerNorm inference at 4096x10752-15872. Here, for each LayerNorm forward entry
of the given mode and dtypes, the shipped config is timed in turns (tuner timing) against:
- ``shipped+ro``: the shipped config with ``read_only`` (and ``static``), where it is a
  two-pass config whose chunk gives each thread 16 bytes;
- ``sibling``: the other 16-bit dtype's entry of the same shape;
- ``c4096w16``, ``c4096w8``, ``c8192w16``: two-pass static read-only configs of those
  chunks and warps (``c4096w16`` is the tuner's seed ``TWO_PASS_READ_ONLY``).
A candidate equal to one already listed is skipped.

    python bench/prototypes/read_only_probe.py --mode infer --dtypes bfloat16,float16 \
        --shapes 4096x8192,4096x10752 [--budget SECONDS] [--check-only]
"""

from probe_common import SIBLING, ProbeRun, compare_on, shipped_entries, shipped_tasks  # run from the repo root or this folder

from tuning import cache
ELEMENT_SIZE = {"bfloat16": 2, "float16": 2, "float32": 4}


def two_pass(chunk: int, warps: int, stages: int = 1) -> dict:
    """A static two-pass forward config with read-only loads."""
    return {"block_sizes": [chunk, 1, 1], "num_warps": warps, "num_stages": stages, cache.STATIC: True, cache.READ_ONLY: True}


def fits(config: dict, dtype: str) -> bool:
    """Whether a two-pass config gives each thread at least 16 bytes of a chunk."""
    sizes = config["block_sizes"]
    return len(sizes) == 3 and sizes[0] * ELEMENT_SIZE[dtype] >= 16 * 32 * config.get("num_warps", 4)


def candidates(entries: dict, key: str, dtype: str) -> dict[str, dict]:
    """The configs to time for one entry, the shipped one first."""
    shipped = entries[key]["config"]
    found = {"shipped": shipped}
    if fits(shipped, dtype) and not shipped.get(cache.READ_ONLY):
        found["shipped+ro"] = {**shipped, cache.STATIC: True, cache.READ_ONLY: True}
    kernel, mode, _, shape = key.split("/")
    sibling = entries.get(f"{kernel}/{mode}/{SIBLING.get(dtype)}/{shape}")
    if sibling:
        found["sibling"] = sibling["config"]
    for name, config in (("c4096w16", two_pass(4096, 16)), ("c4096w8", two_pass(4096, 8)), ("c8192w16", two_pass(8192, 16))):
        if fits(config, dtype):
            found[name] = config
    unique: dict[str, dict] = {}
    for name, config in found.items():
        if config not in unique.values():
            unique[name] = config
    return unique


def main() -> None:
    probe = ProbeRun()
    mode = probe.option("--mode") or "infer"
    dtypes = (probe.option("--dtypes") or "bfloat16,float16").split(",")
    shapes = (probe.option("--shapes") or "4096x8192").split(",")
    entries = shipped_entries()
    keys = [f"layer_norm/{mode}/{dtype}/{shape}" for shape in shapes for dtype in dtypes]
    for key, task in shipped_tasks(probe, entries, keys):
        compare_on(probe, task, candidates(entries, key, task.dtype), key)


if __name__ == "__main__":
    main()
