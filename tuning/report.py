"""What a sweep prints and saves: the results table and PNG plots (matplotlib, if installed)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .space import describe

COPY_ROOF_GBPS = 4248.0  # H200 device-to-device copy (GPU_HOST.md): a memory-bound norm's roof

COLUMNS = (
    "kernel",
    "mode",
    "dtype",
    "shape",
    "config",
    "GB/s",
    "flushed",
    "% roof",
    "x heur",
    "x torch",
    "trials",
    "from",
)


def _fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "-"
    if spec == "gbps":  # CPU runs of the interpreter measure fractions of a GB/s
        spec = ".0f" if value >= 10 else ".3g"
    return format(value, spec)


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if not num or not den else num / den


def table_rows(results: list[dict], roof_gbps: float | None) -> list[tuple[str, ...]]:
    """One row per study: best config, GB/s (TritonBench bytes) by the graph clock and by
    the flushed one (CUDA), % of the copy roof, speedups."""
    rows = []
    for r in sorted(
        results,
        key=lambda r: (
            r["task"]["kernel"],
            r["task"]["mode"],
            r["task"]["dtype"],
            r["task"]["m"] * r["task"]["n"],
        ),
    ):
        t = r["task"]
        config = (
            describe(r["config"], t["mode"]) if r.get("config") else f"none ({r.get('error') or 'no result'})"
        )
        roof = _ratio(r.get("gbps"), roof_gbps)
        torch_x = _ratio(r.get("torch_ms"), r.get("ms"))
        flushed = _ratio(r.get("model_bytes"), r.get("flushed_ms"))
        rows.append((
            t["kernel"], t["mode"], t["dtype"], f"{t['m']}x{t['n']}", config,
            _fmt(r.get("gbps"), "gbps"), _fmt(flushed and flushed / 1e6, "gbps"), _fmt(roof and 100 * roof, ".0f"),
            _fmt(_ratio(r.get("heuristic_ms"), r.get("ms")), ".2f"),
            _fmt(torch_x, ".2f") + ("" if r.get("torch_label", "torch") == "torch" else "*"),
            f"{r.get('trials', 0)}/{r.get('failed', 0)}f", r.get("source") or "-",
        ))  # fmt: skip
    return rows


def format_table(results: list[dict], roof_gbps: float | None) -> str:
    rows = [COLUMNS, *table_rows(results, roof_gbps)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [
        "GB/s: TritonBench byte model (fwd 2x, bwd 3x the bytes of x), kernel time (CUDA graph, inputs rotated past the L2);"
        " bwd includes the dW/dB partial reduce.",
        "flushed: GB/s of the median call right after an L2 flush (CUDA); the final ranks by the geometric mean of the two.",
        "x heur / x torch: speedup over the built-in heuristic config / torch measured in the same run"
        " (* torch composite).",
        "trials: configs evaluated in the study (all runs) / of them failed.",
    ]
    return "\n".join(lines + [""] + notes)


def print_table(results: list[dict], roof_gbps: float | None) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        Console = None
    if Console is None or not Console().is_terminal:  # a log file gets the plain table
        print(format_table(results, roof_gbps))
        return
    table = Table(title="tilenorm tuning results")
    for name in COLUMNS:
        table.add_column(
            name, justify="right" if name not in ("kernel", "mode", "dtype", "config", "from") else "left"
        )
    for row in table_rows(results, roof_gbps):
        table.add_row(*row)
    Console().print(table)
    print(format_table([], roof_gbps).split("\n\n", 1)[1])


# ---------------------------------------------------------------------------- plots


def _groups(results: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in results:
        t = r["task"]
        groups[(t["kernel"], t["mode"], t["dtype"])].append(r)
    for rs in groups.values():
        rs.sort(key=lambda r: (r["task"]["n"], r["task"]["m"]))
    return groups


def _subplots(n: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(2, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 3.8 * rows), squeeze=False)
    return plt, fig, [ax for row in axes for ax in row]


def plot_gbps(results: list[dict], path: Path, roof_gbps: float | None) -> Path | None:
    """GB/s by shape: tuned, heuristic and torch, one panel per kernel/mode/dtype."""
    groups = _groups([r for r in results if r.get("gbps")])
    if not groups:
        return None
    plt, fig, axes = _subplots(len(groups))
    for ax, ((kernel, mode, dtype), rs) in zip(axes, sorted(groups.items())):
        labels = [f"{r['task']['m']}x{r['task']['n']}" for r in rs]
        xs = range(len(rs))
        for key, name, style in (
            ("gbps", "tuned", "o-"),
            ("heuristic_gbps", "heuristic", "s--"),
            ("torch_gbps", "torch", "^:"),
        ):
            ax.plot(xs, [r.get(key) or float("nan") for r in rs], style, label=name)
        if roof_gbps:
            ax.axhline(roof_gbps, color="gray", lw=0.8, label="copy roof")
        ax.set_xticks(list(xs), labels, rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{kernel} {mode} {dtype}")
        ax.set_ylabel("GB/s (TritonBench bytes)")
        ax.legend(fontsize=7)
    return _save_figure(plt, fig, axes[len(groups) :], path)


def _save_figure(plt, fig, unused_axes, path: Path) -> Path:  # noqa: ANN001
    for ax in unused_axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _best_so_far_gbps(r: dict) -> list[float]:
    """GB/s of the best config found after each evaluated trial (model bytes are fixed per study)."""
    model_bytes = r.get("model_bytes")
    best, out = float("inf"), []
    for _, ms in r.get("history", []):
        if ms is not None:
            best = min(best, ms)
        out.append(model_bytes / best / 1e6 if model_bytes and best < float("inf") else float("nan"))
    return out


def plot_history(results: list[dict], path: Path) -> Path | None:
    """Optuna optimization history: best-so-far GB/s per evaluated trial, one line per shape."""
    groups = _groups([r for r in results if r.get("history")])
    if not groups:
        return None
    plt, fig, axes = _subplots(len(groups))
    for ax, ((kernel, mode, dtype), rs) in zip(axes, sorted(groups.items())):
        for r in rs:
            ys = _best_so_far_gbps(r)
            ax.plot(range(1, len(ys) + 1), ys, marker=".", label=f"{r['task']['m']}x{r['task']['n']}")
        ax.set_title(f"{kernel} {mode} {dtype}: best so far")
        ax.set_xlabel("evaluated trial")
        ax.set_ylabel("GB/s")
        ax.legend(fontsize=6, ncol=2)
    return _save_figure(plt, fig, axes[len(groups) :], path)


def save_plots(results: list[dict], out_dir: Path, roof_gbps: float | None) -> list[Path]:
    """The two PNGs in ``out_dir``; none (with a note) if matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    made = [
        plot_gbps(results, out_dir / "gbps_by_shape.png", roof_gbps),
        plot_history(results, out_dir / "optimization_history.png"),
    ]
    return [p for p in made if p is not None]
