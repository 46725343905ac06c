"""``python -m tuning.sweep`` end to end on tiny shapes through Triton's interpreter, resumed twice.

Each sweep runs as a subprocess with TRITON_INTERPRET=1 in its environment (it must be
set before triton is imported) and the embedded Optuna journal in its output folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from tuning import cache

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
SHAPE = "4x32"


def sweep_cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "tuning.sweep", "--kernels", "rms_norm", "--dtypes", "fp32",
        "--shapes", SHAPE, "--out", str(out), "--cache", str(out / "cpu.json"), "--seed", "0", *extra,
    ]  # fmt: skip


def sweep_env() -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO))
    env.pop(cache.ENV_VAR, None)
    return env


def run_sweep(out: Path, *extra: str) -> dict[str, dict]:
    """Run a sweep to completion; its results by mode."""
    proc = subprocess.run(
        sweep_cmd(out, *extra), cwd=REPO, env=sweep_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "x heur" in proc.stdout, "the final table is printed"
    results = json.loads((out / "results.json").read_text())["results"]
    return {r["task"]["mode"]: r for r in results}


def evaluated(out: Path, mode: str) -> list[optuna.trial.FrozenTrial]:
    from tuning.tuner import make_storage, study_name
    from tuning.workload import Task

    storage = make_storage(None, out)
    name = study_name(Task("rms_norm", mode, 4, 32, "float32"), "cpu")
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return []
    return [
        t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("evaluated") and t.state.is_finished()
    ]


@pytest.fixture
def restore_cache_state():
    from kernels import launch

    previous = launch.get_cpu_backend()
    yield
    cache.set_cache_path(None)
    launch.clear_compiled()
    launch.set_cpu_backend(previous)


def test_sweep_tunes_caches_and_continues(tmp_path: Path, restore_cache_state) -> None:
    out = tmp_path / "out"
    first = run_sweep(out, "--trials", "2", "--refine", "0", "--workers", "1")  # every mode by default
    assert set(first) == {"fwd", "infer", "bwd"}
    for mode, r in first.items():
        assert r["error"] is None, r["error"]
        assert r["trials"] == 2 and r["run_trials"] == 2, mode
        assert r["config"] and r["ms"] > 0 and r["gbps"] > 0 and r["torch_ms"] > 0 and r["heuristic_ms"] > 0
    assert (out / "gbps_by_shape.png").stat().st_size > 0 and (
        out / "optimization_history.png"
    ).stat().st_size > 0
    assert (out / "optuna.journal").exists()

    # Run again with a higher target: the same studies continue, nothing is re-measured;
    # then the local search (on by default) measures the best trial's unmeasured neighbours.
    second = run_sweep(out, "--modes", "fwd", "infer", "bwd", "--trials", "3", "--workers", "0")
    for mode, r in second.items():
        assert r["run_trials"] == 1 + r["refined"] and r["trials"] == 3 + r["refined"], mode
        assert r["refined"] > 0, mode
        assert r["history"][:2] == first[mode]["history"], "earlier trials are kept, not redone"

    # The cache holds both results and the kernels pick them up.
    entries = json.loads((out / "cpu.json").read_text())["entries"]
    assert set(entries) == {f"rms_norm/{mode}/float32/{SHAPE}" for mode in ("fwd", "infer", "bwd")}
    cache.set_cache_path(out / "cpu.json")
    from kernels import launch, rms_norm
    from tuning.sweep import MODES

    assert MODES == cache.MODES
    for mode in MODES:
        assert (
            launch.choose_config("rms_norm", mode, 4, 32, 1, torch.float32, CPU)
            == entries[f"rms_norm/{mode}/float32/{SHAPE}"]["config"]
        )
    launch.clear_compiled()
    launch.set_cpu_backend("triton")
    x = torch.randn(4, 32, requires_grad=True)
    w = torch.randn(32, requires_grad=True)
    y = rms_norm(x, w)
    y.sum().backward()
    xr, wr = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    torch.nn.functional.rms_norm(xr, (32,), wr, 1e-6).sum().backward()
    torch.testing.assert_close(x.grad.double(), xr.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(w.grad.double(), wr.grad, rtol=1e-4, atol=1e-4)


def test_sweep_resumes_after_being_killed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        sweep_cmd(out, "--modes", "fwd", "--trials", "40", "--workers", "0"),
        cwd=REPO, env=sweep_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 300
        while len(evaluated(out, "fwd")) < 2:
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            assert time.time() < deadline, "no trials recorded"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = evaluated(out, "fwd")
    assert not (out / "results.json").exists(), "killed mid-study"

    target = len(before) + 1
    r = run_sweep(out, "--modes", "fwd", "--trials", str(target), "--refine", "0", "--workers", "0")["fwd"]
    assert r["error"] is None, r["error"]
    assert r["trials"] == target and r["run_trials"] == 1, "the study continued where it was killed"
    assert [n for n, _ in r["history"][: len(before)]] == [t.number for t in before]
    assert r["config"] is not None
