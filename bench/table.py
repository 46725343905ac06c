"""Render the README results table from results JSON (one run; several are merged).

    python -m bench.table bench/results/X.json [--readme README.md] [--shapes default]
    python -m bench.table --manifest [--readme README.md] [--check]

Per op, mode and shape: tilenorm's GB/s (eager and CUDA graph), the best peer and its
GB/s, tilenorm / best peer, tilenorm's share of the copy roof, and a marker where a
peer beats us; then the host-overhead table. With ``--readme`` the text between
``<!-- results:start -->`` and ``<!-- results:end -->`` is replaced (nothing else).
``--shapes`` keeps the rows of a shape preset (``bench.shapes.PRESETS``) or an ``MxN`` list,
so that a run over several shape sets can feed each table its own rows.

``--manifest`` rebuilds every table of the README from the result files a manifest
(``bench/readme_tables.json``) names for it: each block, between ``<!-- NAME:start -->``
and ``<!-- NAME:end -->``, lists its sources in order (a later run's record replaces an
earlier one's for the same row and provider) with optional filters (``shapes``,
``dtypes``, ``ops``, ``modes``) per source and per block. ``--check`` changes nothing and
fails where a table differs from what its sources give: every number in the README comes
from a committed run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable instead of bench/
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.byte_model import COPY_ROOF_GBPS, HOST_SUFFIX, base_op, gbps
from bench.results import load_json
from bench.shapes import PRESETS, parse_shapes, preset_shapes


def markers(name: str) -> tuple[str, str]:
    """The comment lines that enclose README block ``name``."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


MANIFEST = Path(__file__).resolve().parent / "readme_tables.json"
OURS = "tilenorm"
BEHIND = "**behind**"
BEHIND_GRAPH = "behind (graph)"
FAILED = "**failed**"
MODE_NAMES = {"fwd": "fwd", "fwd_bwd": "fwd+bwd", "bwd": "bwd"}
VERSION_KEYS = ("torch", "triton", "helion", "liger", "cuda", "python")

LEGEND = (
    "GB/s by TritonBench's byte model (fwd 2x, fwd+bwd 5x the bytes of x) over the median time. "
    "*eager*: L2 flushed before each call, inputs rotated, launch included (runs since 5a0a286: the "
    "median of 5 rounds taken in turn across the providers); *graph*: CUDA-graph "
    "replay over inputs rotated past the L2 (kernel only). fwd = inference (no grad); fwd+bwd = "
    "dx plus dW (and dB). Best peer: the fastest of torch eager, inductor (compiled per shape), "
    "Liger, Unsloth-style, by eager GB/s; in fwd+bwd only peers that compute dW/dB count. "
    f"ratio = tilenorm / best peer. % roof: exact bytes moved / eager time vs the {COPY_ROOF_GBPS:.0f} "
    "GB/s copy roof."
)


# --------------------------------------------------------------------------- helpers


def group_records(records: list[dict]) -> dict[tuple, dict[str, dict]]:
    """(op, mode, dtype, M, N) -> {provider: record}, in the order the run met them."""
    groups: dict[tuple, dict[str, dict]] = {}
    for r in records:
        key = (r["op"], r["mode"], r["dtype"], r["M"], r["N"])
        groups.setdefault(key, {})[r["provider"]] = r
    return groups


def eligible_peers(group: dict[str, dict], mode: str) -> list[dict]:
    """Peers that ran, matched the reference and (fwd+bwd) computed dW/dB. A run of the
    TritonBench harness under ``--cudagraph`` has graph times only."""
    return [
        r
        for name, r in group.items()
        if name != OURS
        and r["ok"]
        and (r["gbps"] is not None or r.get("graph_gbps") is not None)
        and (mode != "fwd_bwd" or r["dw"] is True)
    ]


def best(records: list[dict], key: str) -> dict | None:
    timed = [r for r in records if r.get(key) is not None]
    return max(timed, key=lambda r: r[key]) if timed else None


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or not theirs:
        return None
    return ours / theirs


def roof_percent(record: dict) -> float | None:
    """Exact bytes over the eager time, as a percentage of the copy roof."""
    rate = gbps(record["exact_bytes"], record["us"]) if record.get("exact_bytes") else None
    return None if rate is None else 100.0 * rate / COPY_ROOF_GBPS


def fmt(value: float | None, spec: str = ".0f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------ kernel table


def marker(eager_ratio: float | None, graph_ratio: float | None) -> str:
    if eager_ratio is not None and eager_ratio < 1.0:
        return BEHIND
    if graph_ratio is not None and graph_ratio < 1.0:
        return BEHIND_GRAPH
    return ""


def no_dw_note(group: dict[str, dict], ours: dict) -> str:
    """Peers that skip dW/dB but are faster than us: shown apart, never the best peer."""
    faster = [
        r for name, r in group.items()
        if name != OURS and r["ok"] and r["dw"] is False and r["gbps"] and r["gbps"] > (ours.get("gbps") or 0)
    ]  # fmt: skip
    return "; ".join(f"{r['provider']} (no dW) {r['gbps']:.0f}" for r in faster)


def kernel_row(key: tuple, group: dict[str, dict], with_dtype: bool) -> list[str]:
    op, mode, dtype, m, n = key
    ours = group.get(OURS)
    peers = eligible_peers(group, mode)
    peer, graph_peer = best(peers, "gbps"), best(peers, "graph_gbps")
    row = [op, MODE_NAMES.get(mode, mode)] + ([dtype] if with_dtype else []) + [f"{m}x{n}"]
    # No eager times (a graph-only run): name the best graph peer, whose ratio is shown.
    named = peer or graph_peer
    peer_cells = [named["provider"], fmt(named["gbps"])] if named else ["-", "-"]
    if ours is None or not ours["ok"]:
        return (
            row
            + ["FAILED" if ours else "-", "-"]
            + peer_cells
            + ["-", "-", "-", FAILED if ours else ""]
        )
    eager_ratio = ratio(ours["gbps"], peer and peer["gbps"])
    graph_ratio = ratio(ours["graph_gbps"], graph_peer and graph_peer["graph_gbps"])
    note = "; ".join(filter(None, [marker(eager_ratio, graph_ratio), no_dw_note(group, ours)]))
    return row + [
        fmt(ours["gbps"]),
        fmt(ours["graph_gbps"]),
        *peer_cells,
        fmt(eager_ratio, ".2f", "x"),
        fmt(graph_ratio, ".2f", "x"),
        fmt(roof_percent(ours), ".0f", "%"),
        note,
    ]


def kernel_table(records: list[dict]) -> str:
    kernel = [r for r in records if not r["op"].endswith(HOST_SUFFIX)]
    if not kernel:
        return ""
    with_dtype = len({r["dtype"] for r in kernel}) > 1
    headers = ["op", "mode"] + (["dtype"] if with_dtype else []) + [
        "M x N", "tilenorm GB/s", "graph GB/s", "best peer", "peer GB/s", "ratio", "graph ratio", "% roof", "",
    ]  # fmt: skip
    rows = [kernel_row(key, group, with_dtype) for key, group in group_records(kernel).items()]
    return markdown(headers, rows)


# ------------------------------------------------------------------------ decode table

TRITON_PEERS = ("inductor", "liger", "unsloth_style", "triton_tutorial")


def decode_table(records: list[dict]) -> str:
    """Issue 6's small-input target, per row: tilenorm's kernel time (CUDA graph) against the
    fastest Triton peer's (inductor, Liger, Unsloth-style, the Triton tutorial), and its
    eager time (launch included) against torch's; the ratios are peer / tilenorm, > 1 when
    tilenorm is faster, marked where it is not."""
    headers = ["op", "mode", "M x N", "tilenorm graph us", "best Triton peer", "peer graph us", "graph ratio",
               "tilenorm eager us", "torch eager us", "eager ratio", ""]  # fmt: skip
    rows = []
    for (op, mode, _dtype, m, n), group in group_records(records).items():
        ours = group.get(OURS)
        if ours is None or not ours["ok"]:
            continue
        peers = [r for r in eligible_peers(group, mode) if r["provider"] in TRITON_PEERS and r.get("graph_us")]
        peer = min(peers, key=lambda r: r["graph_us"], default=None)
        torch_ = group.get("torch") if group.get("torch", {}).get("ok") else None
        graph = None if peer is None else peer["graph_us"] / ours["graph_us"]
        eager = None if torch_ is None else torch_["us"] / ours["us"]
        behind = [name for name, r in (("graph", graph), ("eager", eager)) if r is not None and r < 1.0]
        rows.append([
            op, MODE_NAMES.get(mode, mode), f"{m}x{n}", fmt(ours["graph_us"], ".2f"),
            "-" if peer is None else peer["provider"], "-" if peer is None else fmt(peer["graph_us"], ".2f"),
            fmt(graph, ".2f", "x"), fmt(ours["us"], ".1f"), "-" if torch_ is None else fmt(torch_["us"], ".1f"),
            fmt(eager, ".2f", "x"), f"**behind** ({', '.join(behind)})" if behind else "",
        ])  # fmt: skip
    return markdown(headers, rows)


# -------------------------------------------------------------------------- host table


def host_table(records: list[dict]) -> str:
    host = [r for r in records if r["op"].endswith(HOST_SUFFIX)]
    if not host:
        return ""
    providers = [OURS] + sorted({r["provider"] for r in host} - {OURS})
    cells: dict[tuple, dict[str, str]] = {}
    for r in host:
        value = fmt(r["us"], ".1f") if r["ok"] else "FAILED"
        cells.setdefault((base_op(r["op"]), r["mode"], r["M"], r["N"]), {})[r["provider"]] = value
    headers = ["op", "mode", "M x N"] + [f"{p} us" for p in providers]
    rows = [
        [op, MODE_NAMES.get(mode, mode), f"{m}x{n}"] + [by_provider.get(p, "-") for p in providers]
        for (op, mode, m, n), by_provider in cells.items()
    ]
    return markdown(headers, rows)


# ------------------------------------------------------------------------------ page


def header_line(doc: dict) -> str:
    versions = doc.get("versions", {})
    parts = [f"{k} {versions[k]}" for k in VERSION_KEYS if versions.get(k)]
    return f"{doc['gpu']}, {doc['date']}, commit `{doc['commit']}`: " + ", ".join(parts) + "."


def run_notes(doc: dict) -> list[str]:
    settings = doc.get("settings", {})
    notes = [
        f"Not run: {name} ({why[:80]})."
        for name, why in (settings.get("skipped_providers") or {}).items()
    ]
    if settings.get("stopped_early"):
        notes.append(
            f"Stopped early: {settings.get('units_done')}/{settings.get('units_planned')} units ran."
        )
    return notes


def run_line(doc: dict, name: str | None) -> str:
    """One bullet per run of a multi-run table: what it covered, how much of it ran."""
    settings = doc.get("settings", {})
    if settings.get("harness") == "tritonbench":
        timing = "CUDA graphs" if settings.get("cudagraph") else "eager launches"
        first = doc["records"][0] if doc["records"] else {"op": "?", "mode": "?"}
        shapes = len({(r["M"], r["N"]) for r in doc["records"]})
        what = f"TritonBench harness, {first['op']} {MODE_NAMES.get(first['mode'], first['mode'])}"
        return f"- {what}, {timing}, {shapes} shapes" + (f" (`{name}`)." if name else ".")
    ops = settings.get("ops") or []
    what = ", ".join(settings.get("dtypes") or []) or "?"
    what += ", every op" if len(ops) >= 4 else ", " + ", ".join(ops) if ops else ""
    if "units_done" in settings:
        ran = f"{settings['units_done']} of {settings.get('units_planned', '?')} units"
    else:  # a run killed before its summary: what its records hold
        units = len({(r["op"], r["mode"], r["dtype"], r["M"], r["N"]) for r in doc["records"]})
        ran = f"{units} units (the run ended before recording its plan)"
    return f"- {what}: {ran}" + (f" (`{name}`)." if name else ".")


def render(docs: dict | list[dict], names: list[str] | None = None) -> str:
    """The README block: header (one line per distinct GPU/date/commit/versions, one
    bullet per run when there are several), kernel table, host table."""
    docs = [docs] if isinstance(docs, dict) else docs
    records = [r for doc in docs for r in doc["records"]]
    headers = list(dict.fromkeys(header_line(doc) for doc in docs))
    if len(docs) > 1:
        names = names or [None] * len(docs)
        headers += [run_line(doc, name) for doc, name in zip(docs, names)]
    parts = headers + [""] + [n for doc in docs for n in run_notes(doc)]
    kernels, host = kernel_table(records), host_table(records)
    if kernels:
        parts += ["", LEGEND, "", kernels]
    if host:
        parts += ["", "Host time per call (us; eager, back-to-back, no L2 flush):", "", host]
    return "\n".join(parts).replace("\n\n\n", "\n\n").strip("\n")


# ---------------------------------------------------------------------------- README


def replace_block(text: str, block: str, name: str = "results") -> str:
    """``text`` with the part between block ``name``'s markers replaced by ``block``."""
    mark_start, mark_end = markers(name)
    start, end = text.find(mark_start), text.find(mark_end)
    if start < 0 or end < 0 or end < start:
        raise ValueError(f"README needs {mark_start} followed by {mark_end}")
    return text[: start + len(mark_start)] + "\n" + block.strip("\n") + "\n" + text[end:]


def update_readme(path: Path, block: str) -> None:
    path.write_text(replace_block(path.read_text(), block))


def keep_shapes(doc: dict, spec: str) -> dict:
    """``doc`` with only the records of ``spec``'s shapes: a preset's per op, or ``MxN,...``.
    Host-overhead records are not of a shape set and stay."""
    if spec in PRESETS:
        keep = lambda r: (r["M"], r["N"]) in preset_shapes(spec, base_op(r["op"]))  # noqa: E731
    else:
        wanted = set(parse_shapes(spec))
        keep = lambda r: (r["M"], r["N"]) in wanted  # noqa: E731
    return {**doc, "records": [r for r in doc["records"] if r["op"].endswith(HOST_SUFFIX) or keep(r)]}


# -------------------------------------------------------------------------- manifest

RECORD_FILTERS = (("dtypes", "dtype"), ("ops", "op"), ("modes", "mode"))
BLOCK_KINDS = ("results", "kernel", "decode")


def select(doc: dict, spec: dict) -> dict:
    """``doc`` with the records ``spec``'s filters keep: ``shapes`` (as ``--shapes``),
    ``dtypes``, ``ops``, ``modes`` (lists of record values); a filter not given keeps all."""
    if spec.get("shapes"):
        doc = keep_shapes(doc, spec["shapes"])
    filters = [(field, set(spec[key])) for key, field in RECORD_FILTERS if key in spec]
    return {**doc, "records": [r for r in doc["records"] if all(r[field] in values for field, values in filters)]}


def render_block(block: dict, root: Path) -> str:
    """One manifest block: its sources (paths relative to ``root``) loaded in order, each
    filtered by its own and the block's filters, rendered as the block's ``kind``: the
    full results block, a kernel table, or a decode table."""
    kind = block.get("kind", "results")
    if kind not in BLOCK_KINDS:
        raise ValueError(f"block kind must be one of {', '.join(BLOCK_KINDS)}, not {kind!r}")
    names = [source["file"] for source in block["sources"]]
    docs = [select(select(load_json(root / source["file"]), source), block) for source in block["sources"]]
    records = [r for doc in docs for r in doc["records"]]
    if kind == "results":
        return render(docs, names)
    return kernel_table(records) if kind == "kernel" else decode_table(records)


def apply_manifest(text: str, manifest: dict, root: Path) -> tuple[str, list[str]]:
    """``text`` with every block of ``manifest`` rebuilt, and the names of those that changed."""
    changed = []
    for name, block in manifest.items():
        new = replace_block(text, render_block(block, root), name)
        if new != text:
            changed.append(name)
        text = new
    return text, changed


def run_manifest(manifest_path: Path, readme: Path, check: bool) -> int:
    """Rebuild (or, with ``check``, compare) the README's blocks from the manifest."""
    manifest = json.loads(manifest_path.read_text())
    try:
        text, changed = apply_manifest(readme.read_text(), manifest, readme.parent)
    except (ValueError, OSError) as e:
        raise SystemExit(f"{readme}: {e}") from None
    if check:
        for name in changed:
            print(f"{readme}: block {name!r} differs from its sources in {manifest_path}")
        return 1 if changed else 0
    readme.write_text(text)
    print(f"updated {readme}: {', '.join(changed) or 'no block changed'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.table", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="*", type=Path, help="results JSON file(s) from bench.run")
    p.add_argument("--manifest", nargs="?", type=Path, const=MANIFEST, default=None,
                   help=f"rebuild every README block from the runs this manifest names (default {MANIFEST.name})")
    p.add_argument("--check", action="store_true", help="with --manifest: change nothing, fail where a block differs")
    p.add_argument("--readme", type=Path, default=None, help="README to update between the markers")
    p.add_argument("--decode", action="store_true", help="print the small-input table (graph vs Triton peers, eager vs torch)")
    p.add_argument("--shapes", default=None, help=f"only rows of these shapes: a preset ({', '.join(PRESETS)}) or MxN,...")
    args = p.parse_args(argv)
    if args.manifest is not None:
        if args.results or args.shapes or args.decode:
            p.error("--manifest takes its runs and filters from the manifest: no result files, --shapes or --decode")
        return run_manifest(args.manifest, args.readme or Path("README.md"), args.check)
    if not args.results:
        p.error("give results JSON files, or --manifest")
    if args.check:
        p.error("--check compares the README with a manifest: use it with --manifest")
    docs = [load_json(path) for path in args.results]
    if args.shapes:
        docs = [keep_shapes(doc, args.shapes) for doc in docs]
    if args.decode:
        print(decode_table([r for doc in docs for r in doc["records"]]))
        return 0
    block = render(docs, [path.as_posix() for path in args.results])
    if args.readme is None:
        print(block)
        return 0
    try:
        update_readme(args.readme, block)
    except ValueError as e:
        raise SystemExit(f"{args.readme}: {e}") from None
    print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
