"""bench/: byte model, results JSON, README table, marker replacement, and a CPU smoke run.

Expected values are computed here from first principles (tensor by tensor, time over
bytes), not by calling the code under test a second time.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench import byte_model, results, table
from bench.ops import OP_SPECS, make_params, make_set, reference_results, relative_error
from bench.providers import ProviderMissing, Registry
from bench.run import (
    Budget,
    Settings,
    Unit,
    interleave_eager,
    main,
    measure_kernel,
    run_unit,
    usable_providers,
)
from bench.shapes import (
    DEFAULT_SHAPES,
    TRITONBENCH_LAYER_NORM,
    TRITONBENCH_RMS_NORM,
    parse_shapes,
    preset_shapes,
)

BF16 = 2

# ------------------------------------------------------------------------ byte model


def test_tritonbench_bytes_are_multiples_of_x():
    x_bytes = 4096 * 1024 * BF16
    assert byte_model.tritonbench_bytes("fwd", 4096, 1024, BF16) == 2 * x_bytes
    assert byte_model.tritonbench_bytes("bwd", 4096, 1024, BF16) == 3 * x_bytes
    assert byte_model.tritonbench_bytes("fwd_bwd", 4096, 1024, BF16) == 5 * x_bytes


def test_exact_bytes_layer_norm():
    m, n = 4, 8
    act, vec, stats = m * n * BF16, n * BF16, m * 4
    # fwd (inference): read x, w, b; write y
    assert byte_model.exact_bytes("layer_norm", "fwd", m, n, BF16) == act + vec + vec + act
    # fwd: x, w, b -> y, mean, rstd; bwd: dy, x, w, mean, rstd -> dx, dw, db
    fwd = act + 2 * vec + act + 2 * stats
    bwd = act + act + vec + 2 * stats + act + 2 * vec
    assert byte_model.exact_bytes("layer_norm", "fwd_bwd", m, n, BF16) == fwd + bwd


def test_exact_bytes_rms_family():
    m, n = 3, 16
    act, vec, rstd = m * n * BF16, n * BF16, m * 4
    assert byte_model.exact_bytes("rms_norm", "fwd", m, n, BF16) == 2 * act + vec
    # x, w -> y, rstd | dy, x, w, rstd -> dx, dw
    assert byte_model.exact_bytes("rms_norm", "fwd_bwd", m, n, BF16) == (2 * act + vec + rstd) + (
        3 * act + 2 * vec + rstd
    )
    # gated: x, z, w -> y | dy, x, z, w, rstd -> dx, dz, dw
    assert byte_model.exact_bytes("gated_rms_norm", "fwd", m, n, BF16) == 3 * act + vec
    assert byte_model.exact_bytes("gated_rms_norm", "fwd_bwd", m, n, BF16) == (
        3 * act + vec + rstd
    ) + (5 * act + 2 * vec + rstd)
    # add: x, r, w -> y, h | dy, dh, h, w, rstd -> dx (= d residual)
    assert byte_model.exact_bytes("add_rms_norm", "fwd", m, n, BF16) == 4 * act + vec
    assert byte_model.exact_bytes("add_rms_norm", "fwd_bwd", m, n, BF16) == (
        4 * act + vec + rstd
    ) + (4 * act + 2 * vec + rstd)


def test_exact_bytes_fp32_and_host_ops():
    assert byte_model.exact_bytes("rms_norm", "fwd", 2, 4, 4) == 2 * 2 * 4 * 4 + 4 * 4
    assert byte_model.exact_bytes(
        "rms_norm_host", "fwd_bwd", 8, 4096, BF16
    ) == byte_model.exact_bytes("rms_norm", "fwd_bwd", 8, 4096, BF16)


def test_gbps():
    assert byte_model.gbps(1e9, 1e6) == pytest.approx(1.0)  # 1 GB in 1 s
    assert byte_model.gbps(8 * 2**20, 4.0) == pytest.approx(8 * 2**20 / 4e-6 / 1e9)
    assert byte_model.gbps(100, None) is None
    assert byte_model.gbps(100, 0.0) is None


# ---------------------------------------------------------------------------- shapes


def test_parse_shapes():
    assert parse_shapes("4096x1024, 8X16,") == ((4096, 1024), (8, 16))
    for bad in ("4096", "ax2", "0x4", ""):
        with pytest.raises(ValueError):
            parse_shapes(bad)


def test_presets():
    assert preset_shapes("default", "rms_norm") == DEFAULT_SHAPES
    assert len(DEFAULT_SHAPES) == 7 and DEFAULT_SHAPES[-1] == (2048, 32768)
    assert TRITONBENCH_LAYER_NORM[0] == (4096, 1024) and TRITONBENCH_LAYER_NORM[-1] == (4096, 15872)
    assert all(b[1] - a[1] == 512 for a, b in itertools.pairwise(TRITONBENCH_LAYER_NORM))
    assert [n for _, n in TRITONBENCH_RMS_NORM] == [1024, 2048, 4096, 8192, 16384, 32768]
    assert preset_shapes("tritonbench", "layer_norm") == TRITONBENCH_LAYER_NORM
    assert preset_shapes("tritonbench", "add_rms_norm") == TRITONBENCH_RMS_NORM
    decode = preset_shapes("decode", "layer_norm")
    assert {m for m, _ in decode} == {1, 8, 32, 128} and all(n >= 4096 for _, n in decode)
    with pytest.raises(ValueError):
        preset_shapes("nope", "rms_norm")


# ---------------------------------------------------------------------- results JSON


def test_record_times_and_gbps():
    record = results.make_record("rms_norm", "fwd", "bf16", 4096, 1024, "tilenorm")
    assert record["us"] is None and record["ok"] is False
    results.set_times(record, 10.0, 8.0)
    tb = 2 * 4096 * 1024 * BF16
    exact = 2 * 4096 * 1024 * BF16 + 1024 * BF16
    assert record["gbps"] == pytest.approx(tb / 10e-6 / 1e9)
    assert record["graph_gbps"] == pytest.approx(tb / 8e-6 / 1e9)
    assert record["exact_bytes"] == exact
    assert record["exact_gbps"] == pytest.approx(exact / 10e-6 / 1e9)


def _doc(records: list[dict]) -> dict:
    return {
        "gpu": "NVIDIA H200",
        "date": "2026-11-21",
        "commit": "abc1234",
        "versions": {
            "torch": "2.11.0+cu130",
            "triton": "3.6.0",
            "helion": "1.4.0",
            "python": "3.12.3",
        },
        "settings": {},
        "records": records,
    }


def test_schema_check():
    record = results.set_times(
        results.make_record("layer_norm", "fwd_bwd", "bf16", 8, 16, "torch", dw=True), 5.0, 4.0
    )
    results.check_schema(_doc([record]))
    for key in ("gpu", "date", "commit", "versions", "records"):
        doc = _doc([record])
        del doc[key]
        with pytest.raises(ValueError, match=key):
            results.check_schema(doc)
    broken = dict(record)
    del broken["graph_gbps"]
    with pytest.raises(ValueError, match="graph_gbps"):
        results.check_schema(_doc([broken]))
    with pytest.raises(ValueError, match="dw"):
        results.check_schema(_doc([dict(record, dw="yes")]))


def test_write_and_load_json(tmp_path):
    record = results.make_record("rms_norm", "fwd", "bf16", 8, 16, "tilenorm", max_err=math.inf)
    results.set_times(record, float("nan"), 2.0)
    path = tmp_path / "r" / "run.json"
    results.write_json(path, _doc([record]))
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]  # no temp file left
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text  # standard JSON
    loaded = results.load_json(path)
    assert loaded["records"][0]["max_err"] is None and loaded["records"][0]["us"] is None
    assert loaded["records"][0]["graph_us"] == 2.0
    assert loaded["gpu"] == "NVIDIA H200"


def test_output_path(tmp_path):
    first = results.output_path(tmp_path, "2026-11-21", "NVIDIA H200", "abc1234")
    assert first.name == "2026-11-21_h200_abc1234.json"
    first.write_text("{}")
    assert (
        results.output_path(tmp_path, "2026-11-21", "NVIDIA H200", "abc1234").name
        == "2026-11-21_h200_abc1234-2.json"
    )
    assert results.slug("NVIDIA H100 80GB HBM3") == "h100-80gb-hbm3"


def test_versions_has_the_required_keys():
    found = results.versions()
    for key in ("torch", "triton", "helion", "python", "cuda", "liger"):
        assert key in found
    assert found["torch"] == torch.__version__


# ------------------------------------------------------------------------- the table


def _timed(op, mode, m, n, provider, us, graph_us=None, dw=None, ok=True, error=None) -> dict:
    record = results.make_record(op, mode, "bf16", m, n, provider, dw=dw, error=error)
    record["ok"] = ok
    return results.set_times(record, us if ok else None, graph_us if ok else None)


def _row(text: str, *lead: str) -> list[str]:
    """The cells of the markdown row that starts with ``lead``."""
    prefix = "| " + " | ".join(lead) + " |"
    rows = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, (prefix, text)
    return [c.strip() for c in rows[0].strip("|").split("|")]


@pytest.fixture
def synthetic_doc() -> dict:
    m, n = 4096, 4096
    records = [
        # fwd: inductor beats us in eager, we win in graph; liger failed (not a peer)
        _timed("layer_norm", "fwd", m, n, "tilenorm", 25.0, graph_us=20.0),
        _timed("layer_norm", "fwd", m, n, "torch", 30.0, graph_us=28.0),
        _timed("layer_norm", "fwd", m, n, "inductor", 20.0, graph_us=22.0),
        _timed("layer_norm", "fwd", m, n, "liger", 1.0, ok=False, error="mismatch"),
        # fwd+bwd: the fastest peer skips dW, so torch is the best peer
        _timed("layer_norm", "fwd_bwd", m, n, "tilenorm", 100.0, graph_us=90.0, dw=True),
        _timed("layer_norm", "fwd_bwd", m, n, "torch", 120.0, graph_us=80.0, dw=True),
        _timed("layer_norm", "fwd_bwd", m, n, "unsloth_style", 60.0, graph_us=50.0, dw=False),
        # tilenorm failed here
        _timed("rms_norm", "fwd", 8192, 4096, "tilenorm", 1.0, ok=False, error="boom"),
        _timed("rms_norm", "fwd", 8192, 4096, "torch", 40.0, graph_us=38.0),
        # host overhead
        _timed("rms_norm_host", "fwd", 1, 4096, "tilenorm", 12.5),
        _timed("rms_norm_host", "fwd", 1, 4096, "torch", 8.0),
        _timed("rms_norm_host", "fwd_bwd", 1, 4096, "tilenorm", 40.3, dw=True),
        _timed("rms_norm_host", "fwd_bwd", 1, 4096, "torch", 75.0, dw=True),
    ]
    doc = _doc(records)
    doc["settings"] = {"skipped_providers": {"liger": "No module named 'liger_kernel'"}}
    return doc


def test_two_runs_of_one_commit_get_one_header_and_a_line_each(synthetic_doc):
    other = _doc([_timed("rms_norm", "fwd", 4096, 1024, "tilenorm", 5.0, graph_us=4.0)])
    synthetic_doc["settings"].update(dtypes=["bf16"], ops=["layer_norm", "rms_norm", "gated_rms_norm", "add_rms_norm"], units_done=3, units_planned=3)
    other["settings"] = {"dtypes": ["fp16", "fp32"], "ops": ["rms_norm"], "units_done": 1, "units_planned": 2}
    lines = table.render([synthetic_doc, other], ["a.json", "b.json"]).splitlines()
    assert lines[0] == table.header_line(other) == table.header_line(synthetic_doc)
    assert lines[1] == "- bf16, every op: 3 of 3 units (`a.json`)."
    assert lines[2] == "- fp16, fp32, rms_norm: 1 of 2 units (`b.json`)."
    assert lines[3] == ""


def test_a_run_killed_before_its_summary_counts_the_units_its_records_hold(synthetic_doc):
    cut = _doc([_timed("rms_norm", "fwd", 4096, n, "tilenorm", 5.0, graph_us=4.0) for n in (1024, 2048)])
    cut["settings"] = {"dtypes": ["fp16"], "ops": ["rms_norm"]}
    lines = table.render([synthetic_doc, cut], ["a.json", "b.json"]).splitlines()
    assert lines[2] == "- fp16, rms_norm: 2 units (the run ended before recording its plan) (`b.json`)."


def test_table_fwd_row_behind(synthetic_doc):
    text = table.render(synthetic_doc)
    cells = _row(text, "layer_norm", "fwd", "4096x4096")
    tb = 2 * 4096 * 4096 * BF16
    exact = 2 * 4096 * 4096 * BF16 + 2 * 4096 * BF16
    assert cells[3] == f"{tb / 25e-6 / 1e9:.0f}"  # tilenorm eager GB/s
    assert cells[4] == f"{tb / 20e-6 / 1e9:.0f}"  # tilenorm graph GB/s
    assert cells[5] == "inductor" and cells[6] == f"{tb / 20e-6 / 1e9:.0f}"
    assert cells[7] == f"{20.0 / 25.0:.2f}x"  # same bytes: GB/s ratio = inverse time ratio
    assert cells[8] == f"{22.0 / 20.0:.2f}x"  # best graph peer: inductor (22 us) vs torch (28 us)
    assert cells[9] == f"{100 * exact / 25e-6 / 1e9 / 4248:.0f}%"
    assert cells[10] == "**behind**"


def test_decode_table_compares_graph_time_with_triton_peers_and_eager_with_torch(synthetic_doc):
    text = table.decode_table(synthetic_doc["records"])
    fwd = _row(text, "layer_norm", "fwd", "4096x4096")
    # torch's 28 us graph time is no Triton peer's; inductor (22 us) is the fastest that is.
    assert fwd[3:7] == ["20.00", "inductor", "22.00", f"{22 / 20:.2f}x"]
    assert fwd[7:10] == ["25.0", "30.0", f"{30 / 25:.2f}x"] and fwd[10] == ""
    both = _row(text, "layer_norm", "fwd+bwd", "4096x4096")
    assert both[4:7] == ["-", "-", "-"], "Unsloth-style's backward skips dW: no peer"
    assert both[9:] == [f"{120 / 100:.2f}x", ""]
    assert "rms_norm | fwd | 8192x4096" not in text, "a failed tilenorm row is left out"
    slow = [_timed("rms_norm", "fwd", 8, 4096, p, us, graph_us=g) for p, us, g in
            (("tilenorm", 6.0, 2.0), ("torch", 5.0, 4.0), ("liger", 7.0, 1.5))]  # fmt: skip
    assert _row(table.decode_table(slow), "rms_norm", "fwd", "8x4096")[10] == "**behind** (graph, eager)"


def test_table_fwd_bwd_ignores_peers_without_dw(synthetic_doc):
    cells = _row(table.render(synthetic_doc), "layer_norm", "fwd+bwd", "4096x4096")
    assert cells[5] == "torch"
    assert cells[7] == f"{120.0 / 100.0:.2f}x"
    assert cells[8] == f"{80.0 / 90.0:.2f}x"
    assert cells[10].startswith("behind (graph)")
    assert "unsloth_style (no dW)" in cells[10]


def test_table_of_a_graph_only_harness_run():
    # What `python -m tritonbench_ops --cudagraph` writes: graph times, no eager ones.
    records = [_timed("rms_norm", "fwd_bwd", 2048, 4096, p, None, graph_us=g, dw=True)
               for p, g in (("tilenorm", 30.0), ("liger_rms", 45.0), ("inductor_rms", 40.0))]
    doc = _doc(records)
    doc["settings"] = {"harness": "tritonbench", "cudagraph": True}
    text = table.render([doc, doc], ["a.json", "b.json"])
    assert "- TritonBench harness, rms_norm fwd+bwd, CUDA graphs, 1 shapes (`a.json`)." in text
    cells = _row(text, "rms_norm", "fwd+bwd", "2048x4096")
    assert cells[3] == "-" and cells[5] == "inductor_rms" and cells[6] == "-"
    assert cells[8] == f"{40.0 / 30.0:.2f}x"


def test_table_failed_tilenorm_and_header(synthetic_doc):
    text = table.render(synthetic_doc)
    cells = _row(text, "rms_norm", "fwd", "8192x4096")
    assert cells[3] == "FAILED" and cells[-1] == "**failed**"
    first = text.splitlines()[0]
    for part in (
        "NVIDIA H200",
        "2026-11-21",
        "abc1234",
        "torch 2.11.0+cu130",
        "triton 3.6.0",
        "helion 1.4.0",
    ):
        assert part in first
    assert "Not run: liger" in text
    assert "dtype" not in text.split("| op |")[1].splitlines()[0]  # one dtype: no dtype column


def test_table_host_section(synthetic_doc):
    text = table.render(synthetic_doc)
    assert "Host time per call" in text
    assert _row(text, "rms_norm", "fwd", "1x4096")[3:] == ["12.5", "8.0"]
    assert _row(text, "rms_norm", "fwd+bwd", "1x4096")[3:] == ["40.3", "75.0"]


def test_table_cli_prints(tmp_path, synthetic_doc, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(synthetic_doc))
    assert table.main([str(path)]) == 0
    assert "| layer_norm | fwd | 4096x4096 |" in capsys.readouterr().out


def test_table_cli_keeps_the_shapes_asked_for(tmp_path, synthetic_doc, capsys):
    """A run over the GPU_HOST and TritonBench shapes feeds each table its own rows; host
    rows are no shape set's and stay."""
    synthetic_doc["records"] += [_timed("layer_norm", "fwd", 4096, 1536, p, 9.0, graph_us=8.0) for p in ("tilenorm", "torch")]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(synthetic_doc))
    assert table.main([str(path), "--shapes", "default"]) == 0
    out = capsys.readouterr().out
    assert "| layer_norm | fwd | 4096x4096 |" in out and "4096x1536" not in out and "Host time" in out
    assert table.main([str(path), "--shapes", "tritonbench"]) == 0
    out = capsys.readouterr().out
    assert "| layer_norm | fwd | 4096x1536 |" in out and "4096x4096 |" in out and "8192x4096" not in out
    assert table.main([str(path), "--shapes", "4096x1536"]) == 0
    assert "4096x4096" not in capsys.readouterr().out


# ------------------------------------------------------------------- README markers


def test_replace_block_keeps_everything_else():
    text = "# T\n\nintro\n<!-- results:start -->\nold\ntable\n<!-- results:end -->\n\n## After\n"
    new = table.replace_block(text, "NEW\n")
    assert new == "# T\n\nintro\n<!-- results:start -->\nNEW\n<!-- results:end -->\n\n## After\n"
    assert table.replace_block(new, "NEW") == new  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "no markers",
        "<!-- results:start --> only start",
        "<!-- results:end -->\n<!-- results:start -->",
    ],
)
def test_replace_block_needs_both_markers_in_order(text):
    with pytest.raises(ValueError):
        table.replace_block(text, "x")


def test_readme_update_via_cli(tmp_path, synthetic_doc):
    results_path, readme = tmp_path / "run.json", tmp_path / "README.md"
    results_path.write_text(json.dumps(synthetic_doc))
    readme.write_text("head\n<!-- results:start -->\n<!-- results:end -->\ntail\n")
    assert table.main([str(results_path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("head\n<!-- results:start -->\nNVIDIA H200")
    assert text.endswith("<!-- results:end -->\ntail\n")
    assert "| layer_norm | fwd | 4096x4096 |" in text
    readme.write_text("no markers here\n")
    with pytest.raises(SystemExit):
        table.main([str(results_path), "--readme", str(readme)])
    assert readme.read_text() == "no markers here\n"  # left untouched


# ------------------------------------------------------------------- README manifest

REPO = Path(__file__).resolve().parent.parent


def test_every_readme_table_is_built_from_committed_runs():
    """The README's tables are exactly what bench/readme_tables.json's result files give:
    a number typed in by hand, or a run the manifest does not name, fails this."""
    manifest, readme = REPO / "bench" / "readme_tables.json", REPO / "README.md"
    assert table.main(["--manifest", str(manifest), "--readme", str(readme), "--check"]) == 0
    assert set(json.loads(manifest.read_text())) == {"results", "tritonbench", "decode", "decode-gated-add"}


def test_select_applies_each_filter():
    records = [
        dict(_timed("layer_norm", "fwd", 4096, 1536, "tilenorm", 9.0), dtype="fp16"),
        _timed("layer_norm", "fwd_bwd", 4096, 1536, "tilenorm", 9.0, dw=True),
        _timed("rms_norm", "fwd", 4096, 4096, "tilenorm", 9.0),
        _timed("rms_norm_host", "fwd", 1, 4096, "tilenorm", 9.0),
    ]
    doc = _doc(records)
    kept = lambda spec: [(r["op"], r["mode"], r["dtype"], r["N"]) for r in table.select(doc, spec)["records"]]  # noqa: E731
    assert len(kept({})) == 4
    assert kept({"dtypes": ["fp16"]}) == [("layer_norm", "fwd", "fp16", 1536)]
    assert kept({"modes": ["fwd_bwd"]}) == [("layer_norm", "fwd_bwd", "bf16", 1536)]
    assert kept({"ops": ["rms_norm"], "modes": ["fwd"]}) == [("rms_norm", "fwd", "bf16", 4096)]
    # a shape filter keeps host rows, as --shapes does
    assert kept({"shapes": "4096x4096"}) == [("rms_norm", "fwd", "bf16", 4096), ("rms_norm_host", "fwd", "bf16", 4096)]


def test_manifest_rebuilds_each_block_and_check_catches_an_edit(tmp_path, synthetic_doc, capsys):
    later = _doc([_timed("layer_norm", "fwd", 4096, 4096, "tilenorm", 15.0, graph_us=12.0),
                  _timed("layer_norm", "fwd_bwd", 4096, 4096, "tilenorm", 1.0, graph_us=1.0, dw=True)])
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "a.json").write_text(json.dumps(synthetic_doc))
    (tmp_path / "runs" / "b.json").write_text(json.dumps(later))
    manifest = tmp_path / "tables.json"
    manifest.write_text(json.dumps({
        "results": {"sources": [{"file": "runs/a.json"}]},
        "fwd": {"kind": "kernel", "modes": ["fwd"], "sources": [{"file": "runs/a.json"}, {"file": "runs/b.json", "ops": ["layer_norm"]}]},
    }))
    readme = tmp_path / "README.md"
    empty = "# R\n<!-- results:start -->\n<!-- results:end -->\ntext\n<!-- fwd:start -->\n<!-- fwd:end -->\nend\n"
    readme.write_text(empty)
    args = ["--manifest", str(manifest), "--readme", str(readme)]
    assert table.main(args + ["--check"]) == 1  # empty blocks differ from their sources
    assert readme.read_text() == empty
    assert table.main(args) == 0
    text = readme.read_text()
    results_block = text[: text.index("<!-- results:end -->")]
    fwd_block = text[text.index("<!-- fwd:start -->") :]
    assert float(_row(results_block, "layer_norm", "fwd", "4096x4096")[3]) == pytest.approx(synthetic_doc["records"][0]["gbps"], abs=1)
    # the later run's record replaces the earlier one's; the mode filter drops fwd+bwd
    ours = _row(fwd_block, "layer_norm", "fwd", "4096x4096")
    assert float(ours[3]) == pytest.approx(later["records"][0]["gbps"], abs=1)
    assert "fwd+bwd" not in fwd_block and "rms_norm | fwd | 8192x4096" in fwd_block
    assert text.endswith("<!-- fwd:end -->\nend\n") and "\ntext\n" in text
    assert table.main(args + ["--check"]) == 0
    readme.write_text(text.replace(ours[3], "9999"))
    assert table.main(args + ["--check"]) == 1
    assert "block 'fwd' differs" in capsys.readouterr().out
    for mixed in (args + [str(tmp_path / "runs" / "a.json")], args + ["--shapes", "default"], ["--check", str(tmp_path / "runs" / "a.json")]):
        with pytest.raises(SystemExit):  # what the manifest decides is not taken from the command line
            table.main(mixed)


# ------------------------------------------------------------------- checks and runs


def test_reference_matches_torch_in_fp32():
    spec = OP_SPECS["add_rms_norm"]
    w, b = make_params(spec, 32, torch.float32, "cpu", grad=False)
    s = make_set(spec, 4, 32, torch.float32, "cpu", False, w, b, seed=3)
    (out, h), grads = reference_results("add_rms_norm", s)
    want_h = s.x + s.extra
    want = F.rms_norm(want_h, (32,), w, 1e-6)
    assert grads == []
    assert relative_error(h, want_h) < 1e-6 and relative_error(out, want) < 1e-5


def _fake_registry() -> Registry:
    def good(x, extra, w, b):
        return (F.rms_norm(x, x.shape[-1:], w, 1e-6),)

    def wrong(x, extra, w, b):
        return (x * 1.0,)

    def broken(x, extra, w, b):
        raise RuntimeError("boom")

    def no_dw(x, extra, w, b):
        return (F.rms_norm(x, x.shape[-1:], w.detach(), 1e-6),)

    impls = {"good": good, "wrong": wrong, "broken": broken, "no_dw": no_dw}
    loaders = {name: (lambda fn=fn: {"rms_norm": fn}) for name, fn in impls.items()}
    loaders["other_op_only"] = lambda: {"layer_norm": good}
    return Registry(loaders, per_shape=set())


def test_run_unit_records_failures_and_moves_on():
    settings = Settings("cpu", warmup_ms=1, rep_ms=1, rotate_bytes=5 * 4096, max_sets=3)
    registry = _fake_registry()
    unit = Unit("rms_norm", "fwd_bwd", "fp32", 8, 64)
    records = run_unit(unit, registry.names, registry, settings, measure_kernel, rotate=True)
    by = {r["provider"]: r for r in records}
    assert set(by) == {"good", "wrong", "broken", "no_dw"}  # other_op_only has no rms_norm
    assert by["good"]["ok"] and by["good"]["dw"] is True and by["good"]["us"] > 0
    assert by["good"]["graph_us"] is None  # no CUDA graph on CPU
    assert (
        by["good"]["n_sets"] == 3
    )  # x + dy = 2 * 8*64*4 B per set: 5 sets to cover 5 * 4096 B, capped at 3
    assert (
        not by["wrong"]["ok"] and "mismatch" in by["wrong"]["error"] and by["wrong"]["us"] is None
    )
    assert not by["broken"]["ok"] and "boom" in by["broken"]["error"]
    assert by["no_dw"]["ok"] and by["no_dw"]["dw"] is False


def test_eager_samples_alternate_between_providers_and_take_the_median():
    """Rounds go A, B, A, B, ...; each provider's time is the median of its own samples;
    a provider failing in a later round keeps the error and gets no time."""
    order = []

    def sampler(name, times):
        it = iter(times)

        def sample(first):
            order.append((name, first))
            value = next(it)
            if value is None:
                raise RuntimeError("out of memory")
            return value

        return sample

    a = results.make_record("rms_norm", "fwd", "bf16", 8, 64, "a")
    b = results.make_record("rms_norm", "fwd", "bf16", 8, 64, "b")
    c = results.make_record("rms_norm", "fwd", "bf16", 8, 64, "c")
    for r in (a, b, c):
        results.set_times(r, None, 5.0)
    samplers = [(a, sampler("a", [9.0, 1.0, 2.0])), (b, sampler("b", [4.0, 8.0, 6.0])), (c, sampler("c", [3.0, None, 1.0]))]
    interleave_eager(samplers, rounds=3)
    assert order == [
        ("a", True), ("b", True), ("c", True), ("a", False), ("b", False), ("c", False), ("a", False), ("b", False)
    ]
    assert a["us"] == 2.0 and a["eager_samples_us"] == [9.0, 1.0, 2.0] and a["graph_us"] == 5.0
    assert b["us"] == 6.0
    assert a["gbps"] == pytest.approx(a["tb_bytes"] / 2e-6 / 1e9)
    assert c["us"] is None and "out of memory" in c["error"]


def test_a_broken_device_stops_the_unit():
    def sticky(x, extra, w, b):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    registry = Registry(
        {
            "sticky": lambda: {"rms_norm": sticky},
            "good": lambda: {"rms_norm": lambda x, e, w, b: (F.rms_norm(x, x.shape[-1:], w),)},
        },
        per_shape=set(),
    )
    settings = Settings("cpu", warmup_ms=1, rep_ms=1, rotate_bytes=1, max_sets=1)
    unit = Unit("rms_norm", "fwd", "fp32", 4, 8)
    records = run_unit(unit, registry.names, registry, settings, measure_kernel, rotate=True)
    assert [r["provider"] for r in records] == ["sticky"]  # nothing runs after a sticky error
    assert records[0]["fatal"] and "illegal memory access" in records[0]["error"]


def test_missing_optional_provider_is_skipped_with_its_reason():
    def missing():
        raise ProviderMissing("liger_kernel: No module named 'liger_kernel'")

    registry = Registry({"tilenorm": dict, "torch": dict, "liger": missing})
    usable, skipped = usable_providers(("liger", "torch", "tilenorm"), registry)
    assert usable == ["tilenorm", "torch"]  # canonical order
    assert "No module named" in skipped["liger"]


def test_budget_stops_before_a_unit_that_would_not_fit():
    budget = Budget(10.0)
    assert budget.allows("kernel")
    budget.start -= 7.0
    budget.record("kernel", 2.0)
    assert budget.allows("kernel")  # 7 + 2 <= 10
    assert not budget.allows("kernel", reserve_s=2.0)
    budget.record("kernel", 4.0)
    assert not budget.allows("kernel")
    assert Budget(None).allows("kernel")


def test_zero_budget_writes_an_empty_run(tmp_path, capsys):
    assert (
        main(
            ["--device", "cpu", "--time-budget", "0", "--out", str(tmp_path), "--commit", "abc1234"]
        )
        == 0
    )
    (path,) = tmp_path.glob("*.json")
    assert path.name.endswith("_abc1234.json")
    doc = results.load_json(path)
    assert doc["records"] == [] and doc["settings"]["stopped_early"] is True
    assert "wrote" in capsys.readouterr().out


def test_cpu_smoke_run(tmp_path):
    argv = [
        "--device", "cpu", "--ops", "rms_norm,add_rms_norm", "--shapes", "8x64",
        "--providers", "tilenorm,torch", "--no-host", "--rep-ms", "2", "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(argv) == 0
    (path,) = tmp_path.glob("*.json")
    doc = results.load_json(path)
    assert len(doc["records"]) == 2 * 2 * 2
    assert all(r["ok"] for r in doc["records"]), [r["error"] for r in doc["records"]]
    assert all(r["dw"] is (r["mode"] == "fwd_bwd" or None) for r in doc["records"])


@pytest.mark.gpu
def test_gpu_quick_run(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    argv = [
        "--ops", "rms_norm", "--shapes", "4096x1024", "--providers", "tilenorm,torch",
        "--no-host", "--quick", "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(argv) == 0
    doc = results.load_json(next(tmp_path.glob("*.json")))
    assert all(r["ok"] and r["graph_us"] for r in doc["records"]), doc["records"]


def test_cpu_host_section_takes_rounds_in_turn(tmp_path):
    """The host section times each provider in rounds taken in turn: every record holds
    one sample per round, and its time is their median."""
    argv = [
        "--device", "cpu", "--ops", "rms_norm", "--providers", "tilenorm,torch", "--host-only",
        "--quick", "--out", str(tmp_path),
    ]  # fmt: skip
    assert main(argv) == 0
    doc = results.load_json(next(tmp_path.glob("*.json")))
    host = [r for r in doc["records"] if r["op"].endswith("_host")]
    assert {r["provider"] for r in host} == {"tilenorm", "torch"} and len(host) == 2 * 2 * 2
    for r in host:
        assert r["ok"], r["error"]
        assert len(r["eager_samples_us"]) == 5 and all(v > 0 for v in r["eager_samples_us"])
        assert r["us"] == pytest.approx(statistics.median(r["eager_samples_us"]), rel=1e-2)
