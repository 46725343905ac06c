"""The config cache: round trip, concurrent writers, bad files, nearest-shape lookup, cost."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import timeit
from pathlib import Path

import pytest
import torch

from tuning import cache

CPU = torch.device("cpu")
GPU = "cpu"  # CPU devices file their configs under the model name "cpu"
REPO = Path(__file__).resolve().parents[1]

VERSIONS = {"torch": "t", "triton": "tr", "helion": "h", "kernels": "k"}


def entry(kernel: str, mode: str, m: int, n: int, ms: float = 1.0, *, dtype: str = "float32",
          rows: int = 4, date: str = "2026-01-01T00:00:00Z", versions: dict | None = None) -> dict:  # fmt: skip
    # bwd: [m_block, group tile, channel tile (the whole row: fused), inner rows]
    sizes = [rows, 1] if mode != "bwd" else [rows, 1, 1 << (n - 1).bit_length(), min(rows, 2)]
    return {
        "kernel": kernel, "mode": mode, "dtype": dtype, "m": m, "n": n,
        "config": {"block_sizes": sizes, "num_warps": 4, "num_stages": 1, "reduction_loops": [None]},
        "ms": ms, "gbps": 1.0, "trials": 3, "date": date, "versions": versions or VERSIONS,
    }  # fmt: skip


def keyed(*entries: dict) -> dict[str, dict]:
    return {cache.entry_key(e["kernel"], e["mode"], e["dtype"], e["m"], e["n"]): e for e in entries}


@pytest.fixture(autouse=True)
def clean_cache_state(monkeypatch: pytest.MonkeyPatch):
    """No user cache from the environment; forget paths and memos after each test."""
    monkeypatch.delenv(cache.ENV_VAR, raising=False)
    cache.set_cache_path(None)
    yield
    cache.set_cache_path(None)


# ----------------------------------------------------------------------- round trip


def test_round_trip_and_format(tmp_path: Path) -> None:
    path = tmp_path / "cpu.json"
    written = keyed(entry("rms_norm", "fwd", 8, 64), entry("rms_norm", "bwd", 8, 64, rows=8))
    cache.write_entries(path, GPU, "cpu", written)
    doc = json.loads(path.read_text())
    assert doc["schema"] == cache.SCHEMA and doc["version"] == cache.SCHEMA_VERSION and doc["gpu"] == GPU
    assert doc["entries"] == written
    assert cache.load_entries(path, GPU) == written
    cache.set_cache_path(path)
    assert (
        cache.lookup("rms_norm", "fwd", 8, 64, torch.float32, CPU)
        == written["rms_norm/fwd/float32/8x64"]["config"]
    )
    assert cache.lookup("rms_norm", "bwd", 8, 64, torch.float32, CPU)["block_sizes"] == [8, 1, 64, 2]
    assert not list(tmp_path.glob(".cpu.json.*.tmp")), "no temp file left behind"


def test_env_var_file_or_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache.write_entries(tmp_path / "cpu.json", GPU, "cpu", keyed(entry("layer_norm", "fwd", 16, 128)))
    for value in (tmp_path, tmp_path / "cpu.json"):
        monkeypatch.setenv(cache.ENV_VAR, str(value))
        cache.clear_memo()
        assert cache.lookup("layer_norm", "fwd", 16, 128, torch.float32, CPU) is not None, value


def test_cpu_without_a_user_cache_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing ships for CPUs: even a cpu.json beside the shipped caches is not read."""
    cache.write_entries(tmp_path / "cpu.json", GPU, "cpu", keyed(entry("layer_norm", "fwd", 16, 128)))
    monkeypatch.setattr(cache, "SHIPPED_DIR", tmp_path)
    cache.clear_memo()
    assert cache.lookup("layer_norm", "fwd", 16, 128, torch.float32, CPU) is None


def test_gpu_names_normalize() -> None:
    assert cache.normalize_gpu_name("NVIDIA H200") == "nvidia_h200"
    assert cache.normalize_gpu_name("NVIDIA H100 80GB HBM3") == "nvidia_h100_80gb_hbm3"
    assert cache.shipped_path("nvidia_h200").name == "nvidia_h200.json"
    assert cache.gpu_model(CPU) == "cpu"


# ---------------------------------------------------------------------------- merge


def test_preferred_entry() -> None:
    fast, slow = (
        entry("rms_norm", "fwd", 8, 64, ms=1.0),
        entry("rms_norm", "fwd", 8, 64, ms=2.0, date="2027-01-01T00:00:00Z"),
    )
    assert cache.preferred_entry(fast, slow) is fast, "same software: the faster wins"
    assert cache.preferred_entry(slow, fast) is fast
    newer = entry(
        "rms_norm", "fwd", 8, 64, ms=5.0, date="2027-01-01T00:00:00Z", versions={**VERSIONS, "triton": "new"}
    )
    assert cache.preferred_entry(fast, newer) is newer, "other software: the newer wins"
    # Entries timed by both clocks compare by their geometric mean: a config faster by the
    # graph clock but slower after a flush loses when its mean is higher.
    graph_fast = {**fast, "ms": 1.0, "flushed_ms": 4.0}  # mean 2.0
    flush_fast = {**slow, "ms": 1.1, "flushed_ms": 3.0}  # mean 1.82
    assert cache.entry_score(graph_fast) == pytest.approx(2.0)
    assert cache.preferred_entry(graph_fast, flush_fast) is flush_fast
    assert cache.preferred_entry(flush_fast, graph_fast) is flush_fast
    assert cache.entry_score({**fast, "flushed_ms": None}) is None
    assert cache.entry_score(fast) == fast["ms"]
    merged = cache.merge_entries(keyed(fast), keyed(entry("rms_norm", "bwd", 8, 64)))
    assert len(merged) == 2


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from tuning import cache
    path, tag, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.001)
    base = {base!r}
    for i in range(40):
        e = dict(base, kernel="k_" + tag, m=i + 1)
        cache.write_entries(path, "cpu", "cpu", {{cache.entry_key(e["kernel"], "fwd", "float32", i + 1, 64): e}})
        shared = dict(base, m=1000, ms=float(sys.argv[4]) + i)
        cache.write_entries(path, "cpu", "cpu", {{cache.entry_key("shared", "fwd", "float32", 1000, 64): shared}})
    """
)


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path, go = tmp_path / "cpu.json", tmp_path / "go"
    base = entry("shared", "fwd", 1, 64)
    script = WRITER.format(repo=str(REPO), base=base)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), tag, str(go), ms])
        for tag, ms in (("a", "10"), ("b", "3"))
    ]
    time.sleep(0.5)
    go.touch()
    assert all(p.wait(timeout=120) == 0 for p in procs)
    entries = json.loads(path.read_text())["entries"]
    for tag in ("a", "b"):
        assert {k for k in entries if k.startswith(f"k_{tag}/")} == {
            f"k_{tag}/fwd/float32/{i + 1}x64" for i in range(40)
        }
    assert entries["shared/fwd/float32/1000x64"]["ms"] == 3.0, "the fastest of all writes is kept"
    assert len(entries) == 81


# ------------------------------------------------------------------------ bad files


BAD_FILES = {
    "corrupt": "{not json",
    "foreign": json.dumps({"hello": "world"}),
    "other version": json.dumps({"schema": cache.SCHEMA, "version": 99, "gpu": GPU, "entries": {}}),
    "other gpu": json.dumps({"schema": cache.SCHEMA, "version": 1, "gpu": "nvidia_h200", "entries": {}}),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_file_is_reported_ignored_and_never_overwritten(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "cpu.json"
    path.write_text(BAD_FILES[kind])
    before = path.read_bytes()
    with pytest.warns(cache.CacheFileWarning):
        assert cache.load_entries(path, GPU) == {}
    with pytest.raises(cache.CacheFileError):
        cache.write_entries(path, GPU, "cpu", keyed(entry("rms_norm", "fwd", 8, 64)))
    cache.set_cache_path(path)
    with pytest.warns(cache.CacheFileWarning):
        assert cache.lookup("rms_norm", "fwd", 8, 64, torch.float32, CPU) is None
    assert path.read_bytes() == before


def test_malformed_entry_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "cpu.json"
    good = entry("rms_norm", "fwd", 8, 64)
    doc = {"schema": cache.SCHEMA, "version": 1, "gpu": GPU, "entries": {"bad": {"m": "x"}, **keyed(good)}}
    path.write_text(json.dumps(doc))
    with pytest.warns(cache.CacheFileWarning, match="malformed"):
        assert list(cache.load_entries(path, GPU).values()) == [good]


def test_sweep_refuses_a_bad_cache_before_tuning(tmp_path: Path) -> None:
    from tuning import sweep

    path = tmp_path / "cpu.json"
    path.write_text("{not json")
    with pytest.raises(SystemExit, match="refusing to overwrite"):
        sweep.main(
            [
                "--kernels",
                "rms_norm",
                "--shapes",
                "8x64",
                "--cache",
                str(path),
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert path.read_text() == "{not json"


# --------------------------------------------------------------------------- lookup


@pytest.fixture
def tuned(tmp_path: Path) -> Path:
    path = tmp_path / "cpu.json"
    entries = keyed(
        entry("rms_norm", "fwd", 4096, 1024, rows=8),
        entry("rms_norm", "fwd", 4096, 4096, rows=2),
        entry("rms_norm", "fwd", 8192, 4096, rows=4),
        entry("rms_norm", "fwd", 2048, 32768, rows=1),
        entry("rms_norm", "bwd", 4096, 4096, rows=64),
    )
    cache.write_entries(path, GPU, "cpu", entries)
    cache.set_cache_path(path)
    return path


def rows(mode: str, m: int, n: int, dtype: torch.dtype = torch.float32) -> int | None:
    config = cache.lookup("rms_norm", mode, m, n, dtype, CPU)
    return None if config is None else config["block_sizes"][0]


def test_nearest_shape(tuned: Path) -> None:
    assert rows("fwd", 4096, 4096) == 2, "exact"
    assert rows("fwd", 6000, 4096) == 4, "same N, M nearer 8192 than 4096 in log2"
    assert rows("fwd", 5000, 4096) == 2, "same N, M nearer 4096"
    assert rows("fwd", 100, 4096) == 2, "same N beats any other N; rows within next_pow2(M)"
    assert rows("fwd", 3, 4096) == 2, "rows capped at next_pow2(3) = 4"
    assert rows("fwd", 1, 4096) == 1
    assert rows("fwd", 4096, 3000) == 4, (
        "N within 2x: 4096's config, rows scaled by 4096/3000 up to a power of two"
    )
    assert rows("fwd", 4096, 100_000) is None, "no tuned N within 2x: the heuristic decides"
    assert rows("fwd", 4096, 4096, torch.bfloat16) is None, "other dtype"
    assert cache.lookup("layer_norm", "fwd", 4096, 4096, torch.float32, CPU) is None, "other kernel"
    bwd = cache.lookup("rms_norm", "bwd", 16, 4096, torch.float32, CPU)
    assert bwd["block_sizes"] == [16, 1, 4096, 2], "m_block capped at next_pow2(M), inner <= m_block"
    bwd = cache.lookup("rms_norm", "bwd", 4096, 2048, torch.float32, CPU)
    assert bwd["block_sizes"] == [64, 1, 2048, 4], "a whole-row tile stays whole (fused); inner scaled"


def test_fit_config() -> None:
    fwd = {"block_sizes": [4, 1], "reduction_loops": [4096], "num_warps": 8}
    assert cache.fit_config(fwd, "fwd", 4096, 4096, 8192)["reduction_loops"] == [None], "chunk covers the row"
    assert cache.fit_config(fwd, "fwd", 4096, 16384, 8192)["reduction_loops"] == [4096]
    assert cache.fit_config(fwd, "fwd", 4096, 16384, 8192)["block_sizes"] == [2, 1]
    bwd = {"block_sizes": [256, 1, 1024, 8], "num_warps": 8}
    assert cache.fit_config(bwd, "bwd", 64, 2048, 1024)["block_sizes"] == [64, 1, 2048, 4], (
        "fused stays fused"
    )
    split = {"block_sizes": [32, 1, 4096, 1], "num_warps": 8}
    assert cache.fit_config(split, "bwd", 2048, 16384, 32768)["block_sizes"] == [32, 1, 4096, 1], (
        "split stays split"
    )
    assert cache.fit_config(split, "bwd", 2048, 4000, 8192)["block_sizes"] == [32, 1, 4096, 1], (
        "tile capped at the row"
    )
    assert fwd == {"block_sizes": [4, 1], "reduction_loops": [4096], "num_warps": 8}, "input untouched"
    two_pass = {"block_sizes": [4096, 2, 1], "num_warps": 16}
    assert cache.fit_config(two_pass, "fwd", 4096, 32768, 16384)["block_sizes"] == [4096, 2, 1]
    assert cache.fit_config(two_pass, "fwd", 1, 9000, 16384)["block_sizes"] == [4096, 1, 1], "rows <= M"
    whole = cache.fit_config(two_pass, "fwd", 4096, 4096, 16384)
    assert whole["block_sizes"] == [2, 1] and whole["reduction_loops"] == [None], "one chunk: whole row"
    # A program compiled per shape is not carried to another shape.
    static = {**two_pass, "static": True}
    assert "static" not in cache.fit_config(static, "fwd", 4096, 16384, 16384), "another M"
    assert "static" not in cache.fit_config(static, "fwd", 4096, 8192, 16384), "another N"
    assert static["static"], "input untouched"


def test_static_configs_survive_exact_lookups_only(tmp_path: Path) -> None:
    """A "static" entry (compiled for its exact shape) is served as static for that shape,
    for the other 16-bit dtype and for the inference forward of that shape, and without
    "static" for any other shape it is the nearest entry of."""
    config = {"block_sizes": [2, 1], "num_warps": 4, "static": True}
    entry = {"kernel": "rms_norm", "mode": "fwd", "dtype": "bfloat16", "m": 4096, "n": 4096, "config": config,
             "ms": 1.0, "gbps": 1.0, "trials": 1, "date": "2026-11-22T00:00:00Z", "versions": {}}  # fmt: skip
    gpu = cache.gpu_model(CPU)
    cache.write_entries(tmp_path / f"{gpu}.json", gpu, gpu, {cache.entry_key("rms_norm", "fwd", "bfloat16", 4096, 4096): entry})
    cache.set_cache_path(tmp_path)
    try:
        for mode, dtype in (("fwd", torch.bfloat16), ("fwd", torch.float16), ("infer", torch.bfloat16)):
            assert cache.lookup("rms_norm", mode, 4096, 4096, dtype, CPU) == config, (mode, dtype)
        for m, n in ((4095, 4096), (8192, 4096), (4096, 5000)):
            near = cache.lookup("rms_norm", "fwd", m, n, torch.bfloat16, CPU)
            assert near is not None and "static" not in near, (m, n)
    finally:
        cache.set_cache_path(None)


def test_lookup_is_a_dict_access(tuned: Path) -> None:
    args = ("rms_norm", "fwd", 4096, 4096, torch.bfloat16, CPU)
    cache.lookup(*args)
    per_call = min(timeit.repeat(lambda: cache.lookup(*args), number=20000, repeat=5)) / 20000
    assert per_call < 2e-6, f"{per_call * 1e6:.2f} us per memoized lookup"


def test_runtime_imports_no_optuna() -> None:
    code = "import sys, kernels, tuning.cache; sys.exit('optuna' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_launch_uses_the_cached_config(tuned: Path) -> None:
    from kernels import launch

    config = launch.choose_config("rms_norm", "fwd", 4096, 4096, 1, torch.float32, CPU)
    assert config == cache.lookup("rms_norm", "fwd", 4096, 4096, torch.float32, CPU)
    assert config["block_sizes"] == [2, 1]


def test_fp16_borrows_bf16_entries_exact_first(tmp_path: Path) -> None:
    path = tmp_path / "cpu.json"
    bf16 = entry("rms_norm", "fwd", 4096, 4096, rows=2, dtype="bfloat16")
    cache.write_entries(path, GPU, "cpu", keyed(bf16))
    cache.set_cache_path(path)
    assert rows("fwd", 4096, 4096, torch.float16) == 2, "same width: bf16's config"
    assert rows("fwd", 8192, 4096, torch.float16) == 2, "and its nearest shapes"
    assert rows("fwd", 4096, 4096, torch.float32) is None, "fp32 moves twice the bytes: heuristic"
    fp16 = entry("rms_norm", "fwd", 8192, 4096, rows=4, dtype="float16")
    cache.write_entries(path, GPU, "cpu", keyed(fp16))
    cache.clear_memo()
    assert rows("fwd", 8192, 4096, torch.float16) == 4, "fp16's own exact entry wins"
    assert rows("fwd", 4096, 4096, torch.float16) == 2, "bf16's exact entry beats fp16's nearest"
    assert rows("fwd", 2048, 4096, torch.float16) == 2, "no exact entry: the nearer shape, bf16's here"
    assert rows("fwd", 16384, 4096, torch.float16) == 4, "the nearer shape, fp16's own here"
    assert rows("fwd", 4096, 4096, torch.bfloat16) == 2
    # At equal distance the problem's own dtype wins.
    cache.write_entries(path, GPU, "cpu", keyed(entry("rms_norm", "fwd", 4096, 4096, rows=8, dtype="float16")))
    cache.clear_memo()
    assert rows("fwd", 2048, 4096, torch.float16) == 8 and rows("fwd", 2048, 4096, torch.bfloat16) == 2


def test_inference_lookup_falls_back_to_the_training_forward(tmp_path: Path) -> None:
    path = tmp_path / "cpu.json"
    cache.write_entries(path, GPU, "cpu", keyed(
        entry("rms_norm", "fwd", 4096, 4096, rows=2, dtype="bfloat16"),
        entry("rms_norm", "fwd", 8192, 4096, rows=4, dtype="bfloat16"),
        entry("rms_norm", "infer", 8192, 4096, rows=8, dtype="bfloat16"),
        entry("rms_norm", "fwd", 2048, 4096, rows=16, dtype="float16"),
    ))  # fmt: skip
    cache.set_cache_path(path)
    assert rows("infer", 8192, 4096, torch.bfloat16) == 8, "its own exact entry"
    assert rows("fwd", 8192, 4096, torch.bfloat16) == 4, "training keeps its own"
    assert rows("infer", 4096, 4096, torch.bfloat16) == 2, "the training forward's exact entry beats inference's nearest"
    assert rows("infer", 6000, 4096, torch.bfloat16) == 4, "no exact entry of either: the training forward's lookup"
    assert rows("infer", 8192, 4096, torch.float16) == 8, "the other 16-bit dtype's exact inference entry"
    assert rows("infer", 2048, 4096, torch.float16) == 16, "fp16's own training entry"
    assert rows("infer", 8192, 4096, torch.float32) is None, "nothing for fp32: the heuristic"


def test_a_16bit_study_is_seeded_with_the_other_dtypes_exact_config(tmp_path: Path) -> None:
    """Re-tuning an fp16 shape that has its own entry still tries bf16's config for it."""
    from tuning import tuner
    from tuning.workload import Task

    path = tmp_path / "cpu.json"
    own = entry("rms_norm", "fwd", 4096, 4096, rows=4, dtype="float16")
    other = entry("rms_norm", "fwd", 4096, 4096, rows=2, dtype="bfloat16")
    cache.write_entries(path, GPU, "cpu", keyed(own, other))
    options = tuner.TuneOptions(cache_path=path)
    seeds = tuner._cached_seeds(Task("rms_norm", "fwd", 4096, 4096, "float16"), GPU, options)
    assert seeds["cached"]["block_sizes"][0] == 4
    assert seeds["sibling"]["block_sizes"][0] == 2
    fp32 = tuner._cached_seeds(Task("rms_norm", "fwd", 4096, 4096, "float32"), GPU, options)
    assert fp32 == {"cached": None, "sibling": None, "inference": None}
    # An inference study starts from the training forward's config too, even once it has
    # its own, and a training study from the inference forward's.
    infer = entry("rms_norm", "infer", 4096, 4096, rows=8, dtype="float16")
    cache.write_entries(path, GPU, "cpu", keyed(infer))
    seeds = tuner._cached_seeds(Task("rms_norm", "infer", 4096, 4096, "float16"), GPU, options)
    assert [seeds[k]["block_sizes"][0] for k in ("cached", "training")] == [8, 4]
    assert "inference" not in seeds
    seeds = tuner._cached_seeds(Task("rms_norm", "fwd", 4096, 4096, "float16"), GPU, options)
    assert [seeds[k]["block_sizes"][0] for k in ("cached", "inference")] == [4, 8]
    assert "training" not in seeds
