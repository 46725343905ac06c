"""The results file: one JSON per run, DESIGN.md's schema plus a few extra fields.

``{"gpu", "date", "commit", "versions": {...}, "records": [...], "settings": {...}}``;
each record has ``op, mode, dtype, M, N, provider, us, graph_us, gbps, graph_gbps, dw``
and, beside them, ``tb_bytes, exact_bytes, exact_gbps, ok, error, max_err`` (and
``graph_error`` when only the graph timing failed). ``dw`` is null in fwd mode (no
gradient asked for), false for a fwd+bwd that skips dW/dB.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess
import tempfile
from pathlib import Path

import torch

from .byte_model import exact_bytes, gbps, tritonbench_bytes

REQUIRED_TOP = ("gpu", "date", "commit", "versions", "records")
REQUIRED_RECORD = (
    "op",
    "mode",
    "dtype",
    "M",
    "N",
    "provider",
    "us",
    "graph_us",
    "gbps",
    "graph_gbps",
    "dw",
)

ELEM_SIZE = {"bf16": 2, "fp16": 2, "fp32": 4}

_DISTRIBUTIONS = {
    "triton": "triton",
    "helion": "helion",
    "liger": "liger-kernel",
    "transformers": "transformers",
    "tilenorm": "tilenorm",
}


# ------------------------------------------------------------------------- records


def make_record(op: str, mode: str, dtype: str, m: int, n: int, provider: str, **extra) -> dict:
    """A record with every schema field; timings None until measured."""
    record = {
        "op": op, "mode": mode, "dtype": dtype, "M": m, "N": n, "provider": provider,
        "us": None, "graph_us": None, "gbps": None, "graph_gbps": None, "dw": None,
        "tb_bytes": tritonbench_bytes(mode, m, n, ELEM_SIZE[dtype]),
        "exact_bytes": exact_bytes(op, mode, m, n, ELEM_SIZE[dtype]),
        "exact_gbps": None, "ok": False, "error": None, "max_err": None, "fatal": False,
    }  # fmt: skip
    record.update(extra)
    return record


def set_times(record: dict, us: float | None, graph_us: float | None) -> dict:
    """Fill the timings and the GB/s derived from them."""
    record["us"], record["graph_us"] = us, graph_us
    record["gbps"] = gbps(record["tb_bytes"], us)
    record["graph_gbps"] = gbps(record["tb_bytes"], graph_us)
    record["exact_gbps"] = gbps(record["exact_bytes"], us)
    return record


def check_schema(doc: dict) -> None:
    """Raise ValueError when ``doc`` lacks a field DESIGN.md's schema requires."""
    missing = [k for k in REQUIRED_TOP if k not in doc]
    if missing:
        raise ValueError(f"results file lacks {missing}")
    if not isinstance(doc["versions"], dict) or not isinstance(doc["records"], list):
        raise ValueError("results file: 'versions' must be an object and 'records' a list")  # noqa: TRY004
    for i, record in enumerate(doc["records"]):
        missing = [k for k in REQUIRED_RECORD if k not in record]
        if missing:
            raise ValueError(f"record {i} lacks {missing}")
        if record["dw"] not in (True, False, None):
            raise ValueError(f"record {i}: dw must be true, false or null")


# ------------------------------------------------------------------------ run info


def versions() -> dict:
    found = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    for key, dist in _DISTRIBUTIONS.items():
        try:
            found[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[key] = None
    return found


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def git_commit(repo: Path) -> str:
    """Short commit of ``repo`` (``-dirty`` when tracked files changed); "unknown" without git."""
    try:
        head = _git(repo, "rev-parse", "--short=7", "HEAD")
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine() or "cpu"


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def new_doc(gpu: str, commit: str, settings: dict, date: str | None = None) -> dict:
    return {
        "gpu": gpu,
        "date": date or today(),
        "commit": commit,
        "versions": versions(),
        "settings": settings,
        "records": [],
    }


# ------------------------------------------------------------------------- writing


def slug(text: str) -> str:
    """``"NVIDIA H200"`` -> ``"h200"``: lower case, vendor dropped, [a-z0-9-] only."""
    text = re.sub(r"^nvidia\s+", "", text.strip().lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown"


def output_path(out_dir: Path, date: str, gpu: str, commit: str) -> Path:
    """``<date>_<gpu>_<shortcommit>.json``, with ``-2``, ``-3``... when that file exists."""
    stem = f"{date}_{slug(gpu)}_{slug(commit)}"
    path = out_dir / f"{stem}.json"
    counter = 2
    while path.exists():
        path = out_dir / f"{stem}-{counter}.json"
        counter += 1
    return path


def write_json(path: Path, doc: dict) -> None:
    """Write atomically (temp file + rename): a killed run leaves the last complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_finite(doc), f, indent=1, default=str, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _finite(value):
    """NaN/inf -> None, recursively: the file stays standard JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def load_json(path: Path) -> dict:
    with open(path) as f:
        doc = json.load(f)
    check_schema(doc)
    return doc
