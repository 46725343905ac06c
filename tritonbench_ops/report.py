"""Result records and the GB/s-by-shape plot (matplotlib, imported on use)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

from tritonbench_ops.byte_model import COPY_ROOF_GBPS

RECORD_METRICS = ("gbps", "exact_gbps", "pct_roof")
AXIS_LABELS = {
    "gbps": "GB/s (TritonBench byte model)",
    "exact_gbps": "GB/s (exact bytes)",
    "pct_roof": "% of copy roof",
}


def _number(value: Any) -> float | None:
    """A metric as a float: TritonBench's own metrics may be Latency objects (take p50)."""
    if hasattr(value, "p50"):
        value = value.p50
    return float(value) if isinstance(value, (int, float)) else None


def records_from_result(result) -> list[dict[str, Any]]:
    """Flatten a TritonBench ``BenchmarkOperatorResult`` into one dict per (shape, provider)."""
    records = []
    for x_val, by_provider in result.result:
        for provider, metrics in by_provider.items():
            extra = metrics.extra_metrics or {}
            records.append(
                {
                    "x": x_val,
                    "provider": provider,
                    "latency_ms": _number(metrics.latency),
                    **{name: _number(extra.get(name)) for name in RECORD_METRICS},
                    "accuracy": metrics.accuracy,
                    "error": metrics.error_msg,
                }
            )
    return records


def shape_label(x_val: Any) -> str:
    """(2048, 4096) -> '2048x4096'; anything else as text."""
    if isinstance(x_val, (tuple, list)):
        return "x".join(str(v) for v in x_val)
    return str(x_val)


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def plot_gbps(
    records: list[dict[str, Any]],
    path: str | Path,
    title: str,
    metric: str = "gbps",
    roof_gbps: float | None = COPY_ROOF_GBPS,
) -> Path:
    """One line per provider, ``metric`` over the shapes in run order; the roof dashed.

    Pass ``roof_gbps=None`` where the H200 roof means nothing (other GPUs, CPU runs).
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    # Keyed by label: some operators' x values are lists, which cannot be dict keys.
    shapes = _unique(shape_label(r["x"]) for r in records)
    providers = _unique(r["provider"] for r in records)
    value = {(shape_label(r["x"]), r["provider"]): r.get(metric) for r in records}

    fig = Figure(figsize=(max(6.0, 0.7 * len(shapes) + 3.0), 4.5))
    ax = fig.subplots()
    positions = range(len(shapes))
    for provider in providers:
        ys = [value.get((s, provider)) for s in shapes]
        ax.plot(positions, [math.nan if y is None else y for y in ys], marker="o", label=provider)
    if roof_gbps:
        ax.axhline(roof_gbps, linestyle="--", color="gray", label=f"H200 copy roof {roof_gbps:.0f}")
    ax.set_xticks(list(positions), shapes, rotation=45, ha="right")
    ax.set_xlabel("shape (M x N)")
    ax.set_ylabel(AXIS_LABELS.get(metric, metric))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


# ------------------------------------------------------ DESIGN.md's results schema

DTYPE_NAMES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def _bytes_moved(rate_gbps: float | None, latency_ms: float | None) -> int | None:
    if rate_gbps is None or latency_ms is None:
        return None
    return round(rate_gbps * latency_ms * 1e6)


def design_record(record: dict[str, Any], op: str, mode: str, dtype: str, cudagraph: bool) -> dict:
    """One TritonBench record in the schema of ``bench/results`` (DESIGN.md).

    A run times either eager launches or CUDA graphs (``--cudagraph``): the other pair
    of fields stays null. Every provider of these operators computes dW (and dB) in
    its backward, so ``dw`` is true in backward modes and null in forward ones.
    """
    m, n = record["x"] if isinstance(record["x"], (tuple, list)) else (None, None)
    latency_ms, rate = record.get("latency_ms"), record.get("gbps")
    us = None if latency_ms is None else latency_ms * 1e3
    error = record.get("error")
    return {
        "op": op, "mode": mode, "dtype": DTYPE_NAMES.get(dtype, dtype), "M": m, "N": n,
        "provider": record["provider"],
        "us": None if cudagraph else us, "graph_us": us if cudagraph else None,
        "gbps": None if cudagraph else rate, "graph_gbps": rate if cudagraph else None,
        "dw": True if mode in ("bwd", "fwd_bwd") else None,
        "tb_bytes": _bytes_moved(rate, latency_ms),
        "exact_bytes": _bytes_moved(record.get("exact_gbps"), latency_ms),
        "exact_gbps": None if cudagraph else record.get("exact_gbps"),
        "pct_roof": None if cudagraph else record.get("pct_roof"),
        "ok": error is None and latency_ms is not None and record.get("accuracy") is not False,
        "accuracy": record.get("accuracy"),
        "error": error,
        "source": "tritonbench",
    }  # fmt: skip


def results_document(
    records: list[dict[str, Any]], *, op: str, mode: str, dtype: str, cudagraph: bool,
    gpu: str, date: str, commit: str, versions: dict[str, str], settings: dict[str, Any],
) -> dict[str, Any]:
    """``{"gpu", "date", "commit", "versions", "records", "settings"}`` for one run."""
    return {
        "gpu": gpu, "date": date, "commit": commit, "versions": versions,
        "records": [design_record(r, op, mode, dtype, cudagraph) for r in records],
        "settings": settings,
    }  # fmt: skip
