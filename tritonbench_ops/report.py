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
                    "latency_ms": metrics.latency.p50 if metrics.latency is not None else None,
                    **{name: extra.get(name) for name in RECORD_METRICS},
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

    shapes = _unique(r["x"] for r in records)
    providers = _unique(r["provider"] for r in records)
    value = {(r["x"], r["provider"]): r.get(metric) for r in records}

    fig = Figure(figsize=(max(6.0, 0.7 * len(shapes) + 3.0), 4.5))
    ax = fig.subplots()
    positions = range(len(shapes))
    for provider in providers:
        ys = [value.get((s, provider)) for s in shapes]
        ax.plot(positions, [math.nan if y is None else y for y in ys], marker="o", label=provider)
    if roof_gbps:
        ax.axhline(roof_gbps, linestyle="--", color="gray", label=f"H200 copy roof {roof_gbps:.0f}")
    ax.set_xticks(list(positions), [shape_label(s) for s in shapes], rotation=45, ha="right")
    ax.set_xlabel("shape (M x N)")
    ax.set_ylabel(AXIS_LABELS.get(metric, metric))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
