"""tritonbench_ops without a GPU: inputs, references, byte model, plot, and the CLI's
message when TritonBench is missing. Tests that run TritonBench itself are marked gpu.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tritonbench_ops import byte_model, harness, inputs, report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
HAS_TRITONBENCH = importlib.util.find_spec("tritonbench") is not None


def run_python(args: list[str], **env_overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_overrides}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )


# ------------------------------------------------------------------------------ inputs


def test_parse_shapes():
    assert inputs.parse_shapes("4096x1024, 8192X4096") == [(4096, 1024), (8192, 4096)]


@pytest.mark.parametrize("text", ["4096", "4096x", "x4096", "0x8", "4x0", "ax3", "4096x1024,"])
def test_parse_shapes_rejects_malformed(text):
    with pytest.raises(ValueError, match="shape"):
        inputs.parse_shapes(text)


def test_default_shapes_follow_tritonbench():
    rms = [(2048, 2**i) for i in range(10, 16)]
    for op in ("rms_norm", "gated_rms_norm", "add_rms_norm"):
        assert list(inputs.DEFAULT_SHAPES[op]) == rms
    layer = inputs.DEFAULT_SHAPES["layer_norm"]
    assert len(layer) == 30 and layer[0] == (4096, 1024) and layer[-1] == (4096, 15872)


def _tensors(args):
    return [a for a in args if isinstance(a, torch.Tensor)]


@pytest.mark.parametrize("op, n_tensors", [
    ("layer_norm", 3), ("rms_norm", 2), ("gated_rms_norm", 3), ("add_rms_norm", 3),
])
def test_inputs_are_leaves_that_need_grad(op, n_tensors):
    args = inputs.INPUT_BUILDERS[op](6, 12, torch.bfloat16, "cpu")
    tensors = _tensors(args)
    assert len(tensors) == n_tensors
    for t in tensors:
        assert t.dtype == torch.bfloat16 and t.is_leaf and t.requires_grad
        assert t.shape in ((6, 12), (12,))
    assert tensors[0].shape == (6, 12)


@pytest.mark.parametrize("op", sorted(inputs.INPUT_BUILDERS))
def test_inputs_depend_on_the_seed_only(op):
    build = inputs.INPUT_BUILDERS[op]
    a, b = build(4, 8, torch.float32, "cpu"), build(4, 8, torch.float32, "cpu")
    c = build(4, 8, torch.float32, "cpu", seed=1)
    for ta, tb, tc in zip(_tensors(a), _tensors(b), _tensors(c)):
        assert torch.equal(ta, tb)
        assert not torch.equal(ta, tc)


def test_gated_inputs_check_the_group_size():
    assert inputs.gated_rms_norm_inputs(2, 12, torch.float32, "cpu", group_size=4)[3] == 4
    assert inputs.gated_rms_norm_inputs(2, 12, torch.float32, "cpu")[3] == 12
    with pytest.raises(ValueError, match="does not divide"):
        inputs.gated_rms_norm_inputs(2, 12, torch.float32, "cpu", group_size=5)


def _gated64(x, z, w, group_size, norm_before_gate, eps):
    """Row by row, group by group, in float64."""
    x, z, w = x.double(), z.double(), w.double()
    gate = z * torch.sigmoid(z)
    u = x if norm_before_gate else x * gate
    out = torch.empty_like(u)
    for start in range(0, u.shape[-1], group_size):
        part = u[:, start:start + group_size]
        rms = torch.sqrt(part.pow(2).mean(-1, keepdim=True) + eps)
        out[:, start:start + group_size] = part / rms
    out = out * w
    return out * gate if norm_before_gate else out


@pytest.mark.parametrize("norm_before_gate", [True, False])
@pytest.mark.parametrize("group_size", [4, 12])
def test_gated_reference(group_size, norm_before_gate):
    x, z, w, gs, nbg, eps = inputs.gated_rms_norm_inputs(
        3, 12, torch.float32, "cpu", group_size=group_size, norm_before_gate=norm_before_gate
    )
    got = inputs.gated_rms_norm(x, z, w, gs, nbg, eps)
    want = _gated64(x, z, w, gs, nbg, eps)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)


def test_add_rms_norm_reference():
    x, residual, w, eps = inputs.add_rms_norm_inputs(3, 16, torch.float32, "cpu")
    out, h = inputs.add_rms_norm(x, residual, w, eps)
    torch.testing.assert_close(h, x + residual)
    h64 = h.double()
    want = h64 / torch.sqrt(h64.pow(2).mean(-1, keepdim=True) + eps) * w.double()
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-6)


def test_gemma_reference_scales_by_one_plus_w():
    _, x, w = inputs.rms_norm_inputs(3, 16, torch.float32, "cpu")
    torch.testing.assert_close(inputs.gemma_rms_norm(x, w), inputs.llama_rms_norm(x, w + 1.0))


# -------------------------------------------------------------------------- byte model


def test_tritonbench_multiples():
    got = [byte_model.tritonbench_bytes(mode, 10, 2) for mode in ("fwd", "bwd", "fwd_bwd")]
    assert got == [40, 60, 100]


# M=4, N=8, 2-byte elements: an activation is 64 bytes, a parameter 16, a statistic 16
# (4 rows x fp32), or 32 with two groups per row.
@pytest.mark.parametrize("kind, mode, groups, expected", [
    # read x, w, b; write y, mean, rstd
    (byte_model.LAYER_NORM, "fwd", 1, 64 + 16 + 16 + 64 + 16 + 16),
    # read dy, x, w, mean, rstd; write dx, dw, db
    (byte_model.LAYER_NORM, "bwd", 1, 64 + 64 + 16 + 16 + 16 + 64 + 16 + 16),
    # read x, w; write y, rstd
    (byte_model.RMS_NORM, "fwd", 1, 64 + 16 + 64 + 16),
    # read dy, x, w, rstd; write dx, dw
    (byte_model.RMS_NORM, "bwd", 1, 64 + 64 + 16 + 16 + 64 + 16),
    # read x, z, w; write y, rstd per group
    (byte_model.GATED_RMS_NORM, "fwd", 2, 64 * 3 + 16 + 32),
    # read dy, x, z, w, rstd; write dx, dz, dw
    (byte_model.GATED_RMS_NORM, "bwd", 2, 64 * 3 + 16 + 32 + 64 * 2 + 16),
    # read x, residual, w; write out, h, rstd
    (byte_model.ADD_RMS_NORM, "fwd", 1, 64 * 2 + 16 + 64 * 2 + 16),
    # read d_out, d_h, h, w, rstd; write dx (= d_residual), dw
    (byte_model.ADD_RMS_NORM, "bwd", 1, 64 * 3 + 16 + 16 + 64 + 16),
])
def test_exact_bytes(kind, mode, groups, expected):
    assert byte_model.exact_bytes(kind, mode, 4, 8, 2, groups) == expected


def test_inference_forward_saves_no_statistics():
    # read x, w, b; write y
    assert byte_model.exact_bytes(byte_model.LAYER_NORM, "fwd", 4, 8, 2, save_stats=False) == 160


@pytest.mark.parametrize("kind", sorted(byte_model.KINDS))
def test_fwd_bwd_is_fwd_plus_bwd(kind):
    k = byte_model.KINDS[kind]
    parts = [byte_model.exact_bytes(k, mode, 64, 96, 2) for mode in ("fwd", "bwd", "fwd_bwd")]
    assert parts[0] + parts[1] == parts[2]


@pytest.mark.parametrize("mode", byte_model.MODES)
@pytest.mark.parametrize("kind", ["layer_norm", "rms_norm"])
def test_plain_norms_agree_with_tritonbench_within_a_percent(kind, mode):
    m, n = 4096, 4096
    exact = byte_model.exact_bytes(byte_model.KINDS[kind], mode, m, n, 2)
    model = byte_model.tritonbench_bytes(mode, m * n, 2)
    assert model <= exact < 1.01 * model


def test_gbps_and_roof():
    assert byte_model.gbps(10**9, 1.0) == pytest.approx(1000.0)
    assert byte_model.gbps(3 * 10**6, 0.001) == pytest.approx(3000.0)
    assert byte_model.COPY_ROOF_GBPS == 4248.0
    assert byte_model.pct_of_roof(2124.0) == pytest.approx(50.0)


def test_byte_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        byte_model.tritonbench_bytes("fwd_no_grad", 1, 2)
    with pytest.raises(ValueError, match="mode"):
        byte_model.exact_bytes(byte_model.RMS_NORM, "forward", 1, 1, 2)
    with pytest.raises(ValueError, match="latency"):
        byte_model.gbps(100, 0.0)


# ------------------------------------------------------------------------------ report


def test_shape_label():
    assert report.shape_label((2048, 4096)) == "2048x4096"
    assert report.shape_label(4096) == "4096"


def test_plot_gbps_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    records = [
        {"x": (2048, 1024), "provider": "tilenorm", "gbps": 1500.0},
        {"x": (2048, 1024), "provider": "eager", "gbps": 900.0},
        {"x": (2048, 2048), "provider": "tilenorm", "gbps": 2500.0},
        {"x": (2048, 2048), "provider": "eager", "gbps": None},  # a failed provider
        {"x": [4096, 256], "provider": "eager", "gbps": 700.0},  # some x values are lists
    ]
    path = report.plot_gbps(records, tmp_path / "plot.png", "rms_norm fwd bf16")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


DESIGN_RECORD_FIELDS = ("op", "mode", "dtype", "M", "N", "provider", "us", "graph_us", "gbps",
                        "graph_gbps", "dw")


@pytest.mark.parametrize("cudagraph", [False, True])
def test_results_document_follows_the_design_schema(cudagraph):
    records = [
        {"x": (2048, 4096), "provider": "tilenorm", "latency_ms": 0.05, "gbps": 1600.0,
         "exact_gbps": 1610.0, "pct_roof": 37.9, "accuracy": True, "error": None},
        {"x": (2048, 4096), "provider": "liger", "latency_ms": None, "gbps": None,
         "exact_gbps": None, "pct_roof": None, "accuracy": None, "error": "CUDA OOM"},
        {"x": (2048, 4096), "provider": "wrong", "latency_ms": 0.04, "gbps": 2000.0,
         "exact_gbps": 2010.0, "pct_roof": 47.3, "accuracy": False, "error": None},
    ]
    doc = report.results_document(
        records, op="rms_norm", mode="fwd_bwd", dtype="bfloat16", cudagraph=cudagraph,
        gpu="NVIDIA H200", date="2026-11-21", commit="abc1234", versions={"torch": "2.11"},
        settings={},
    )
    assert {"gpu", "date", "commit", "versions", "records"} <= set(doc)
    ours, failed, wrong = doc["records"]
    for record in doc["records"]:
        assert set(DESIGN_RECORD_FIELDS) <= set(record)
    assert (ours["op"], ours["mode"], ours["dtype"], ours["M"], ours["N"]) == (
        "rms_norm", "fwd_bwd", "bf16", 2048, 4096)
    timed, untimed = ("graph_us", "us") if cudagraph else ("us", "graph_us")
    assert ours[timed] == pytest.approx(50.0) and ours[untimed] is None
    assert ours["graph_gbps" if cudagraph else "gbps"] == 1600.0
    # 1600 GB/s for 50 us: 80 MB, the bytes TritonBench's model counts.
    assert ours["tb_bytes"] == 80_000_000 and ours["dw"] is True
    assert (ours["ok"], failed["ok"], wrong["ok"]) == (True, False, False)
    assert failed["error"] == "CUDA OOM"


@pytest.mark.parametrize("device, cudagraph, noted", [
    ("cuda", False, True), ("cuda:1", False, True), ("cuda", True, False), ("cpu", False, False),
])
def test_launch_timed_gpu_runs_say_their_rows_include_host_time(device, cudagraph, noted):
    note = harness.timing_note(device, cudagraph)
    assert (note is not None) == noted
    if noted:
        assert "--cudagraph" in note and "host time" in note


# ------------------------------------------------------------ without TritonBench


def test_runner_flags_are_taken_out_of_tritonbench_argv():
    own, rest = harness.parse_own_args(["--op", "rms_norm", "--commit", "abc1234", "--no-plot", "--cudagraph"])
    assert (own.commit, own.no_plot) == ("abc1234", True)
    assert rest == ["--op", "rms_norm", "--cudagraph"]
    assert harness.parse_own_args(["--op", "rms_norm"])[0].commit is None


def test_light_modules_import_without_tritonbench():
    code = (
        "import sys; sys.modules['tritonbench'] = None\n"
        "import tritonbench_ops\n"
        "from tritonbench_ops import byte_model, inputs, report, harness, unsloth_style\n"
        "print('imported')"
    )
    proc = run_python(["-c", code], TRITON_INTERPRET=os.environ.get("TRITON_INTERPRET", "0"))
    assert proc.returncode == 0, proc.stderr
    assert "imported" in proc.stdout


def _assert_install_help(message: str):
    assert "cannot be imported" in message
    assert 'pip install "tilenorm[bench]"' in message
    assert "git clone https://github.com/meta-pytorch/tritonbench" in message
    assert "PYTHONPATH=" in message and "python -m tritonbench_ops --op rms_norm" in message


def test_main_names_both_install_commands_when_tritonbench_is_missing(monkeypatch):
    # Hide TritonBench even where it is installed: a None entry makes its import fail.
    for name in [m for m in sys.modules if m == "tritonbench" or m.startswith("tritonbench.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "tritonbench", None)
    with pytest.raises(SystemExit) as exit_info:
        harness.main(["--op", "rms_norm", "--mode", "fwd_bwd"])
    _assert_install_help(str(exit_info.value.code))


@pytest.mark.skipif(HAS_TRITONBENCH, reason="TritonBench is installed here")
def test_cli_exits_with_the_install_commands():
    proc = run_python(["-m", "tritonbench_ops", "--op", "rms_norm", "--precision", "bf16"])
    assert proc.returncode != 0
    _assert_install_help(proc.stderr)


# ------------------------------------------------------------------ with TritonBench

# Small shapes on the CPU (the Triton kernels run interpreted); real ones on a GPU.
E2E_SHAPES = "4096x1024,2048x4096" if DEVICE == "cuda" else "8x64,5x100"


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRITONBENCH, reason="needs TritonBench on PYTHONPATH")
@pytest.mark.skipif(DEVICE != "cuda", reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("op", ["layer_norm", "rms_norm"])
def test_cli_times_fwd_bwd_inside_cuda_graphs(tmp_path, op):
    # TritonBench's own fwd_bwd step backpropagated a forward taken before the capture,
    # on the legacy stream, and every provider failed to capture.
    argv = ["-m", "tritonbench_ops", "--op", op, "--mode", "fwd_bwd", "--precision", "bf16",
            "--cudagraph", "--shapes", E2E_SHAPES, "--warmup", "2", "--iter", "5",
            "--output-dir", str(tmp_path), "--no-plot"]
    proc = run_python(argv)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (json_path,) = tmp_path.glob(f"{op}_fwd_bwd_bfloat16_*.json")
    doc = json.loads(json_path.read_text())
    assert doc["settings"]["cudagraph"] is True
    providers = {r["provider"] for r in doc["records"]}
    assert {"tilenorm", "unsloth_style", "inductor_static"} < providers, providers
    for record in doc["records"]:
        assert record["ok"] and record["accuracy"] is not False, record
        assert record["us"] is None and record["graph_us"] > 0, record


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRITONBENCH, reason="needs TritonBench on PYTHONPATH")
@pytest.mark.parametrize("op, ours", [
    ("layer_norm", ["tilenorm", "unsloth_style", "inductor_static"]),
    ("rms_norm", ["tilenorm", "unsloth_style", "inductor_static"]),
    ("gated_rms_norm", ["eager", "tilenorm", "inductor_static"]),
    ("add_rms_norm", ["eager", "tilenorm", "inductor_static"]),
])
def test_cli_runs_each_operator_and_writes_csv_and_png(tmp_path, op, ours):
    # A subprocess: TritonBench patches torch.manual_seed process-wide.
    argv = ["-m", "tritonbench_ops", "--op", op, "--mode", "fwd_bwd", "--precision", "bf16",
            "--device", DEVICE, "--shapes", E2E_SHAPES, "--warmup", "2", "--iter", "5",
            "--output-dir", str(tmp_path), "--commit", "c0ffee1"]
    if DEVICE == "cpu" and op == "layer_norm":
        argv += ["--skip", "triton_layer_norm"]  # the tutorial kernel allocates on CUDA
    proc = run_python(argv)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (csv_path,) = tmp_path.glob(f"{op}_fwd_bwd_bfloat16_*.csv")
    assert len(list(tmp_path.glob(f"{op}_fwd_bwd_bfloat16_*.png"))) == 1
    (json_path,) = tmp_path.glob(f"{op}_fwd_bwd_bfloat16_*.json")
    doc = json.loads(json_path.read_text())
    assert doc["commit"] == "c0ffee1"
    providers = {r["provider"] for r in doc["records"]}
    assert set(ours) <= providers
    for record in doc["records"]:
        assert set(DESIGN_RECORD_FIELDS) <= set(record)
        assert record["ok"] and record["us"] > 0 and record["dw"] is True, record
    with open(csv_path) as f:
        header, *rows = list(csv.reader(f, delimiter=";"))
    rows = [r for r in rows if r[0] != "average"]
    assert len(rows) == len(E2E_SHAPES.split(","))
    for provider in ours:
        assert f"{provider}-gbps" in header, header
    for i, column in enumerate(header):
        values = [row[i] for row in rows]
        if column.endswith("-accuracy"):
            assert values == ["1.0"] * len(rows), f"{column}: {values}"
        if column.endswith(("-gbps", "-exact_gbps", "-pct_roof")):
            assert all(float(v) > 0 for v in values), f"{column}: {values}"
