"""The JSON config cache: tuned Helion configs per (kernel, mode, shape, dtype), one file per GPU model.

This module is on the runtime path (``kernels.launch`` calls :func:`lookup` once per
new variant/shape/dtype), so it imports nothing from Optuna and a repeated lookup is one
dict access.

File format (``SCHEMA``, ``SCHEMA_VERSION``)::

    {"schema": "tilenorm-config-cache", "version": 1,
     "gpu": "nvidia_h200", "gpu_name": "NVIDIA H200",
     "entries": {"layer_norm/fwd/bfloat16/4096x1024": {
         "kernel": "layer_norm", "mode": "fwd", "dtype": "bfloat16", "m": 4096, "n": 1024,
         "config": {...helion.Config fields...}, "ms": 0.0123, "gbps": 1364.2,
         "gbps_exact": 1370.0, "flushed_ms": 0.0151, "trials": 24, "date": "2026-11-22T10:00:00Z",
         "versions": {"torch": ..., "triton": ..., "helion": ..., "kernels": <source hash>,
                      "timing": ..., "rank": ...}}}}

``flushed_ms`` (CUDA entries tuned since stop 48) is the config's median call right after
an L2 flush; such an entry was picked by the geometric mean of ``ms`` and it.

Which file is read: the shipped ``tuning/configs/<gpu>.json`` always, overlaid (entry by
entry) by the user's cache when ``TILENORM_CACHE`` or :func:`set_cache_path` names one
(a ``.json`` file, or a directory holding ``<gpu>.json``). CPU devices consult only a
user cache: nothing ships for them, and the CPU tests set one up explicitly.

Modes (``MODES``): ``fwd`` is the training forward, which saves the statistics the
backward reads; ``infer`` the forward of a call without grad, which saves none; ``bwd``
the backward. The two forwards are one kernel compiled with and without the statistics
stores, and Triton schedules the two programs differently: the best config of one ran
10-17% slower on the other on the H200 (LayerNorm bf16 4096x12288, 2048x32768).

Lookup order: the exact (kernel, mode, dtype, MxN) entry (or the other 16-bit dtype's);
else the nearest tuned shape of the same kernel and mode, among the dtype's own entries
and, for fp16/bf16, the other's (see :func:`nearest_entry`), its config fitted to the
new shape (:func:`fit_config`); else None and the kernel uses its built-in heuristic.
An ``infer`` lookup without an exact entry of its own takes the ``fwd`` lookup's answer:
the training forward's config for the same shape is the better guess.

Writing (:func:`write_entries`) takes a file lock, re-reads the file, merges entry by
entry (:func:`preferred_entry`) and replaces the file atomically, so concurrent sweeps
lose nothing. A file that is corrupt, foreign or of another schema version is reported
(``CacheFileWarning`` on read, ``CacheFileError`` on write) and never overwritten.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
from pathlib import Path

import torch

SCHEMA = "tilenorm-config-cache"
SCHEMA_VERSION = 1
ENV_VAR = "TILENORM_CACHE"
SHIPPED_DIR = Path(__file__).resolve().parent / "configs"

# A config tuned for rows of width N is offered for other widths only within this
# factor: past it the best rows-per-program/warps change enough that the built-in
# heuristic is the better guess.
MAX_WIDTH_RATIO = 2.0

FWD, INFER, BWD = "fwd", "infer", "bwd"
MODES = (FWD, INFER, BWD)

# A forward config key of ours, not Helion's: compile the kernel for the exact shape of
# the call (see kernels.launch.fwd_kernel_name). Served only for the shape it was tuned for.
STATIC = "static"


# Config keys that hold only for the shape an entry was tuned for: STATIC (a program
# compiled for it) and streaming output stores (offered only where the output outgrows the
# L2, which another shape's may not). A nearest-shape lookup drops them.
SHAPE_BOUND_KEYS = (STATIC, "store_cache_modifiers")


# Config keys of ours that Helion does not know: STATIC picks the compiled kernel,
# PARAMS_FIRST a compile-time argument of the forward (``kernels.launch.params_first``).
PARAMS_FIRST = "params_first"
# EXCHANGE: a backward config whose channel tiles exchange their partial row sums
# (``norm_bwd``'s exchange schedule, ``kernels.launch._exchange_tiles``).
EXCHANGE = "exchange"
# RECAST: a forward config whose row is held in its 16-bit form between the passes
# (``kernels.launch.recast``).
RECAST = "recast"
# READ_ONLY: a two-pass forward config whose second pass reads by read-only loads
# (``kernels.launch.read_only``).
READ_ONLY = "read_only"
# WIDEN: a backward config that converts bf16 to fp32 by bit moves (``kernels.launch.bwd_widen``).
WIDEN = "widen"
# TRIM: a fused backward config whose padded tile's dead lanes are constant zeros
# (``kernels.launch.bwd_trim``).
TRIM = "trim"
OUR_KEYS = (STATIC, PARAMS_FIRST, EXCHANGE, RECAST, READ_ONLY, WIDEN, TRIM)


def helion_fields(config: dict) -> dict:
    """``config`` without OUR_KEYS: what ``helion.Config`` takes."""
    return {name: v for name, v in config.items() if name not in OUR_KEYS}


class CacheFileError(RuntimeError):
    """A cache file that cannot be used: unreadable, not JSON, foreign or another schema."""


class CacheFileWarning(RuntimeWarning):
    """A cache file was ignored (see the message for why)."""


# ------------------------------------------------------------------------------ names


def normalize_gpu_name(name: str) -> str:
    """'NVIDIA H200' -> 'nvidia_h200': the file stem a GPU model's cache is stored under."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "unknown"


_gpu_models: dict[torch.device, str] = {}


def gpu_model(device: torch.device) -> str:
    """Normalized model name of ``device`` ('cpu' for CPU devices); memoized."""
    model = _gpu_models.get(device)
    if model is None:
        if device.type == "cuda":
            model = normalize_gpu_name(torch.cuda.get_device_name(device))
        else:
            model = normalize_gpu_name(device.type)
        _gpu_models[device] = model
    return model


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def entry_key(kernel: str, mode: str, dtype: str, m: int, n: int) -> str:
    return f"{kernel}/{mode}/{dtype}/{m}x{n}"


def shipped_path(gpu: str) -> Path:
    return SHIPPED_DIR / f"{gpu}.json"


# ---------------------------------------------------------------------- reading files


def _check_document(doc: object, path: Path, gpu: str | None) -> dict:
    """The document if it is a cache of this schema (and of ``gpu`` when given)."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise CacheFileError(f"{path}: not a tilenorm config cache (no schema {SCHEMA!r})")
    if doc.get("version") != SCHEMA_VERSION:
        raise CacheFileError(
            f"{path}: schema version {doc.get('version')!r}, this tilenorm reads {SCHEMA_VERSION}"
        )
    if not isinstance(doc.get("entries"), dict):
        raise CacheFileError(f"{path}: 'entries' is not an object")
    if gpu is not None and doc.get("gpu") != gpu:
        raise CacheFileError(f"{path}: holds configs for GPU {doc.get('gpu')!r}, not {gpu!r}")
    return doc


def read_document(path: str | os.PathLike, gpu: str | None = None) -> dict | None:
    """The parsed cache file, None if it does not exist; CacheFileError if unusable."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CacheFileError(f"{path}: cannot read ({e})") from e
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise CacheFileError(f"{path}: not valid JSON ({e})") from e
    return _check_document(doc, path, gpu)


def _valid_entry(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    sizes_ok = all(isinstance(entry.get(k), int) and entry[k] > 0 for k in ("m", "n"))
    names_ok = all(isinstance(entry.get(k), str) for k in ("kernel", "mode", "dtype"))
    config = entry.get("config")
    return sizes_ok and names_ok and isinstance(config, dict) and isinstance(config.get("block_sizes"), list)


def load_entries(path: str | os.PathLike, gpu: str | None = None) -> dict[str, dict]:
    """Usable entries of a cache file; an unusable file or entry is warned about and skipped."""
    try:
        doc = read_document(path, gpu)
    except CacheFileError as e:
        warnings.warn(f"tilenorm config cache ignored: {e}", CacheFileWarning, stacklevel=2)
        return {}
    if doc is None:
        return {}
    entries = {}
    for key, entry in doc["entries"].items():
        if _valid_entry(entry):
            entries[key] = entry
        else:
            warnings.warn(
                f"tilenorm config cache {path}: malformed entry {key!r} skipped",
                CacheFileWarning,
                stacklevel=2,
            )
    return entries


# ----------------------------------------------------------------------------- writing


def preferred_entry(old: dict, new: dict) -> dict:
    """Which of two entries for one key to keep.

    Timings are comparable only when both were taken with the same torch, Triton, Helion,
    kernel source and timing rules: then the lower :func:`entry_score` wins (ties: the
    newer). Otherwise the newer wins, since the older stack's config may no longer be the
    best or even valid.
    """
    comparable = old.get("versions") == new.get("versions")
    old_score, new_score = entry_score(old), entry_score(new)
    if comparable and old_score is not None and new_score is not None and old_score != new_score:
        return old if old_score < new_score else new
    return new if str(new.get("date", "")) >= str(old.get("date", "")) else old


def score(ms: float, flushed_ms: float | None = None) -> float:
    """What the tuner ranks a config by: the geometric mean of its graph ``ms`` and its
    ``flushed_ms`` where it has both (``tuning.timing.Clocks``), else ``ms``."""
    return ms if flushed_ms is None else math.sqrt(ms * flushed_ms)


def entry_score(entry: dict) -> float | None:
    """An entry's :func:`score`; None when it has no usable time."""
    times = [entry.get("ms")]
    if "flushed_ms" in entry:
        times.append(entry["flushed_ms"])
    if not all(isinstance(t, (int, float)) and t > 0 and math.isfinite(t) for t in times):
        return None
    return score(*times)


def merge_entries(old: dict[str, dict], new: dict[str, dict]) -> dict[str, dict]:
    merged = dict(old)
    for key, entry in new.items():
        merged[key] = preferred_entry(merged[key], entry) if key in merged else entry
    return merged


def format_document(doc: dict) -> str:
    """JSON with one line per entry, sorted: a re-tuned shape is a one-line diff."""
    head = {k: v for k, v in doc.items() if k != "entries"}
    lines = ["{"] + [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in sorted(head.items())]
    entries = sorted(doc["entries"].items())
    lines.append(' "entries": {')
    for i, (key, entry) in enumerate(entries):
        comma = "," if i < len(entries) - 1 else ""
        lines.append(f"  {json.dumps(key)}: {json.dumps(entry, sort_keys=True)}{comma}")
    lines += [" }", "}", ""]
    return "\n".join(lines)


def _atomic_write_json(path: Path, doc: dict) -> None:
    """Write to a temp file in the same directory, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(format_document(doc))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_entries(
    path: str | os.PathLike, gpu: str, gpu_name: str, entries: dict[str, dict]
) -> dict[str, dict]:
    """Merge ``entries`` into the cache file at ``path`` under its lock; returns what is on disk.

    Raises CacheFileError, leaving the file untouched, if it exists but is not a cache of
    this schema for ``gpu``.
    """
    from filelock import FileLock  # writing only: keep the runtime import light

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        doc = read_document(path, gpu)
        on_disk = doc["entries"] if doc is not None else {}
        merged = merge_entries(on_disk, entries)
        out = {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "gpu": gpu,
            "gpu_name": (doc or {}).get("gpu_name", gpu_name),
            "entries": merged,
        }
        _atomic_write_json(path, out)
    clear_memo()
    return merged


# ------------------------------------------------------------------------------ lookup


def _next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def nearest_entry(entries: list[dict], m: int, n: int, prefer: str | None = None) -> dict | None:
    """The entry whose shape is nearest (M, N), among entries of one kernel and mode.

    Metric, compared lexicographically: first |log2(N'/N)| (the row width decides the
    config: same N beats any other), then |log2(M'/M)|, then an entry of dtype ``prefer``
    before another dtype's, then the smaller (M', N') for a deterministic tie-break.
    Entries whose N differs by more than MAX_WIDTH_RATIO are not candidates.
    """
    best, best_key = None, None
    limit = math.log2(MAX_WIDTH_RATIO) + 1e-9
    for entry in entries:
        dn = abs(math.log2(entry["n"] / n))
        if dn > limit:
            continue
        key = (dn, abs(math.log2(entry["m"] / m)), entry["dtype"] != prefer, entry["m"], entry["n"])
        if best_key is None or key < best_key:
            best, best_key = entry, key
    return best


def _scale_pow2(value: int, factor: float) -> int:
    return max(1, _next_pow2(max(1, round(value * factor))))


def fit_config(config: dict, mode: str, m: int, n: int, from_n: int) -> dict:
    """A config tuned at width ``from_n`` adapted to an (M, N) problem.

    Rows per program are scaled by from_n/n so a program keeps about as many values in
    registers, and capped at next_pow2(M); a reduction chunk that covers the whole new
    row becomes None (whole row in registers). Backward ([m_block, group, channel tile,
    inner]): a whole-row channel tile stays whole-row (the fused schedule) with inner
    rows scaled, a narrower one (the split schedule) stays as it is, capped at the row;
    inner stays <= m_block. The two-pass forward ([chunk, rows, group]) keeps its
    chunk while the new row needs at least two of them, else becomes whole-row. The
    SHAPE_BOUND_KEYS are dropped: a static config becomes the same config on the program
    that takes any M.
    """
    fitted = {name: v for name, v in config.items() if name not in SHAPE_BOUND_KEYS}
    sizes = list(config["block_sizes"])
    width_factor = from_n / n
    rows_cap = _next_pow2(m)
    if mode == "bwd" and len(sizes) >= 3:
        # [m_block, group tile, (channel tile,) inner]: inner is last.
        if len(sizes) == 4:
            whole_row = sizes[2] >= _next_pow2(from_n)
            sizes[2] = _next_pow2(n) if whole_row else min(sizes[2], _next_pow2(n))
            width_factor = _next_pow2(from_n) / _next_pow2(n) if whole_row else 1.0
        sizes[0] = min(sizes[0], rows_cap)
        sizes[-1] = min(_scale_pow2(sizes[-1], width_factor), sizes[0])
    elif len(sizes) == 3:
        # The two-pass forward, [chunk, rows, group]: rows stay, and a row that the
        # chunk would cover in one step (no loop left) is held whole instead.
        sizes[1] = min(sizes[1], rows_cap)
        if 2 * sizes[0] > _next_pow2(n):
            sizes = [sizes[1], 1]
            fitted["reduction_loops"] = [None]
    elif sizes:
        sizes[0] = min(_scale_pow2(sizes[0], width_factor), rows_cap)
    fitted["block_sizes"] = sizes
    loops = config.get("reduction_loops")
    if isinstance(loops, list):
        fitted["reduction_loops"] = [None if (c is None or c >= _next_pow2(n)) else c for c in loops]
    return fitted


SAME_WIDTH = {"float16": "bfloat16", "bfloat16": "float16"}


class Index:
    """Entries of one GPU model grouped for lookup: exact by key, nearest by (kernel, mode, dtype)."""

    def __init__(self, entries: dict[str, dict]) -> None:
        self.exact: dict[str, dict] = {}
        self.groups: dict[tuple[str, str, str], list[dict]] = {}
        for entry in entries.values():
            key = entry_key(entry["kernel"], entry["mode"], entry["dtype"], entry["m"], entry["n"])
            self.exact[key] = entry
            self.groups.setdefault((entry["kernel"], entry["mode"], entry["dtype"]), []).append(entry)

    def find(self, kernel: str, mode: str, dtype: str, m: int, n: int) -> dict | None:
        """The config for this problem, or None. In order: the exact entry; the exact
        entry of the other 16-bit dtype (fp16 <-> bf16); the nearest entry of either
        16-bit dtype (the problem's own on equal distance), fitted. An ``infer`` problem
        without either exact entry is looked up as ``fwd``.

        fp16 and bf16 move the same bytes and compute in fp32, so for one shape the
        other dtype's tuned config is a better guess than a config tuned for another
        shape (H200: fp16 RMSNorm fwd 2048x32768 ran 3659 GB/s on its own tuned config
        whose study had not tried bf16's, 4001 on bf16's); and a nearer shape of the
        other dtype beats a farther one of its own (an fp16 decode call, M = 8, takes
        bf16's M = 8 entry rather than fp16's M = 4096 one).
        """
        config = self.exact_config(kernel, mode, dtype, m, n)
        sibling = SAME_WIDTH.get(dtype)
        if config is None and sibling is not None:
            config = self.exact_config(kernel, mode, sibling, m, n)
        if config is None and mode == INFER:
            return self.find(kernel, FWD, dtype, m, n)
        if config is None:
            config = self._nearest(kernel, mode, (dtype, sibling), m, n)
        return config

    def exact_config(self, kernel: str, mode: str, dtype: str, m: int, n: int) -> dict | None:
        entry = self.exact.get(entry_key(kernel, mode, dtype, m, n))
        return None if entry is None else entry["config"]

    def _nearest(self, kernel: str, mode: str, dtypes: tuple[str, str | None], m: int, n: int) -> dict | None:
        candidates = [e for dtype in dtypes for e in self.groups.get((kernel, mode, dtype), [])]
        near = nearest_entry(candidates, m, n, prefer=dtypes[0])
        if near is None:
            return None
        return fit_config(near["config"], mode, m, n, near["n"])


_user_path: Path | None = None
_user_path_set = False
_indexes: dict[str, Index] = {}
_memo: dict[tuple, dict | None] = {}


def set_cache_path(path: str | os.PathLike | None) -> None:
    """Use this cache (a .json file or a directory of <gpu>.json) over TILENORM_CACHE; None: back to the env var.

    Configs already compiled by ``kernels.launch`` stay until ``kernels.launch.clear_compiled()``.
    """
    global _user_path, _user_path_set
    _user_path = None if path is None else Path(path)
    _user_path_set = path is not None
    clear_memo()


def user_cache_path(gpu: str) -> Path | None:
    """The user's cache file for ``gpu``: set_cache_path() first, else $TILENORM_CACHE, else None."""
    base = _user_path if _user_path_set else (Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else None)
    if base is None:
        return None
    return base if base.suffix == ".json" else base / f"{gpu}.json"


def clear_memo() -> None:
    """Forget loaded files and memoized lookups (after a write or a path change)."""
    _indexes.clear()
    _memo.clear()


def _index_for(gpu: str, is_cpu: bool) -> Index | None:
    index = _indexes.get(gpu)
    if index is None:
        user = user_cache_path(gpu)
        if is_cpu and user is None:
            return None
        entries = {} if is_cpu else load_entries(shipped_path(gpu), gpu)
        if user is not None:
            entries.update(load_entries(user, gpu))
        index = _indexes[gpu] = Index(entries)
    return index


def _lookup(kernel: str, mode: str, m: int, n: int, dtype: torch.dtype, device: torch.device) -> dict | None:
    index = _index_for(gpu_model(device), device.type == "cpu")
    if index is None or m <= 0 or n <= 0:
        return None
    return index.find(kernel, mode, dtype_name(dtype), m, n)


def lookup(kernel: str, mode: str, m: int, n: int, dtype: torch.dtype, device: torch.device) -> dict | None:
    """The tuned Helion config (as a dict) for this kernel/mode/shape/dtype on ``device``'s GPU model, or None.

    Memoized per argument tuple: the returned dict is shared, callers must not mutate it.
    """
    key = (kernel, mode, m, n, dtype, device)
    try:
        return _memo[key]
    except KeyError:
        pass
    result = _memo[key] = _lookup(kernel, mode, m, n, dtype, device)
    return result
