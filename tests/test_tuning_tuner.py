"""The tuner's trial loop: failures fail one trial only, duplicates are not re-measured, wrong is wrong."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from tuning import timing, tuner
from tuning.space import SearchSpace
from tuning.workload import EPS, Task, TrialError, Workload

CPU = torch.device("cpu")


@pytest.fixture(scope="module", autouse=True)
def triton_on_cpu():
    from kernels import launch

    previous = launch.get_cpu_backend()
    launch.set_cpu_backend("triton")
    yield
    launch.set_cpu_backend(previous)


def _study(tmp_path: Path) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        storage=tuner.make_storage(None, tmp_path), study_name="t", direction="minimize"
    )


def test_failing_configs_fail_their_trial_and_the_study_goes_on(tmp_path: Path) -> None:
    wl = Workload(Task("rms_norm", "fwd", 4, 32, "float32"), CPU)
    # A CUDA space offers persistent grids, which Helion cannot launch on a CPU device
    # ("TODO: implement for other devices"): a real failure.
    space = SearchSpace.from_spec("fwd", 4, 32, wl.bound().config_spec, "cuda")
    persistent = {"rows_log2": 1, "warps_log2": 0, "eviction": "", "pid_type": "persistent_blocked",
                  "sm_mult_log2": 0, "static": False, "stages": 1}  # fmt: skip
    flat = {"rows_log2": 2, "warps_log2": 0, "eviction": "", "pid_type": "flat", "static": False}
    study = _study(tmp_path)
    for point in (persistent, persistent, flat):
        study.enqueue_trial(point, user_attrs={"seed": "test"})
    options = tuner.TuneOptions(n_trials=2, out_dir=tmp_path)
    assert tuner._run_trials(study, space, wl, options) == 2
    t0, t1, t2 = study.get_trials()
    assert t0.state == TrialState.FAIL and t0.user_attrs["evaluated"] and "TODO" in t0.user_attrs["error"]
    assert t1.state == TrialState.FAIL and t1.user_attrs.get("duplicate"), (
        "a known failure is not re-measured"
    )
    assert "evaluated" not in t1.user_attrs
    assert (
        t2.state == TrialState.COMPLETE and t2.value > 0 and t2.user_attrs["config"]["block_sizes"] == [4, 1]
    )
    assert tuner._best_configs(study) == [t2.user_attrs["config"]], "failed trials are never finalists"


def _add_trial(study: optuna.Study, config: dict, ms: float) -> None:
    """A completed trial that measured ``config`` at ``ms`` (a stand-in for a sampled one)."""
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=ms,
                                              user_attrs={"config": config, "evaluated": True}))  # fmt: skip


def test_local_search_measures_the_neighbours_of_the_fastest_configs_once(tmp_path: Path) -> None:
    wl = Workload(Task("rms_norm", "fwd", 8, 256, "float32"), CPU)
    space = SearchSpace.from_spec("fwd", 8, 256, wl.bound().config_spec, "cpu")
    key = lambda point: tuner.config_key(space.to_config(point))  # noqa: E731
    study = _study(tmp_path)
    best, second, third = (
        {"rows_log2": r, "warps_log2": 1, "eviction": "", "pid_type": "flat", "static": False} for r in (1, 3, 2)
    )
    # Nothing real is this fast: the starting points stay the fastest, one round only.
    for point, ms in ((third, 2e-3), (best, 1e-9), (second, 2e-9)):
        _add_trial(study, space.to_config(point), ms)
    options = tuner.TuneOptions(out_dir=tmp_path, refine_rounds=3)
    evaluated = tuner._refine(study, space, wl, options, stop=float("inf"))
    refined = [t for t in study.get_trials() if "refine" in t.user_attrs]
    want = {key(p) for p in space.neighbours(best) + space.neighbours(second)} - {key(third)}
    assert tuner.REFINE_FROM == 2 and evaluated == len(refined) == len(want) >= 4
    assert {tuner.config_key(t.user_attrs["config"]) for t in refined} == want
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["refine"] == 1 for t in refined)
    assert tuner._refine(study, space, wl, options, stop=float("inf")) == 0, "nothing new around the same best"

    # A slow start: the search moves to the fastest configs and goes on from them.
    study = _study(tmp_path / "slow")
    _add_trial(study, space.to_config(best), 1e3)
    evaluated = tuner._refine(study, space, wl, options, stop=float("inf"))
    trials = study.get_trials()
    rounds = [t.user_attrs["refine"] for t in trials if "refine" in t.user_attrs]
    assert evaluated == len(rounds) and rounds == sorted(rounds) and rounds[0] == 1
    for r in set(rounds) - {1}:
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("refine", 0) < r]
        starts = sorted(done, key=lambda t: t.value)[: tuner.REFINE_FROM]
        near = {key(p) for t in starts for p in space.neighbours(space.from_config(t.user_attrs["config"]))}
        assert all(tuner.config_key(t.user_attrs["config"]) in near for t in trials if t.user_attrs.get("refine") == r)
    assert tuner._refine(study, space, wl, tuner.TuneOptions(out_dir=tmp_path, refine_rounds=0), float("inf")) == 0


def test_hint_siblings_of_the_fastest_configs_are_measured_once(tmp_path: Path) -> None:
    """Every eviction policy of each of the FINALISTS fastest configs is measured (the
    final ranks them by both clocks), nothing else; a second call finds nothing new."""
    wl = Workload(Task("rms_norm", "fwd", 8, 256, "float32"), CPU)
    space = SearchSpace.from_spec("fwd", 8, 256, wl.bound().config_spec, "cpu")
    evictions = next(p for p in space.params if p.name == "eviction").choices
    study = _study(tmp_path)
    points = [{"rows_log2": r, "warps_log2": 1, "eviction": "", "pid_type": "flat", "static": False} for r in range(4)]
    for point, ms in zip(points, (1e-9, 2e-9, 3e-9, 1.0)):  # the slowest is outside the finalists
        _add_trial(study, space.to_config(point), ms)
    evaluated = tuner._measure_hint_siblings(study, space, wl, tuner.TuneOptions(out_dir=tmp_path), float("inf"))
    measured = [t.user_attrs["config"] for t in study.get_trials() if t.user_attrs.get("hint_sibling")]
    want = {tuner.config_key(space.to_config(p | {"eviction": e})) for p in points[:3] for e in evictions if e}
    assert len(evictions) == 3 and tuner.FINALISTS == 3 and evaluated == len(measured) == len(want) == 6
    assert {tuner.config_key(c) for c in measured} == want
    assert tuner._measure_hint_siblings(study, space, wl, tuner.TuneOptions(out_dir=tmp_path), float("inf")) == 0


def test_a_trial_past_its_timeout_fails(tmp_path: Path) -> None:
    wl = Workload(Task("rms_norm", "fwd", 4, 32, "float32"), CPU)
    with pytest.raises(tuner.TrialTimeout):
        tuner.measure(wl, wl.heuristic_config(), tuner.TuneOptions(trial_timeout_s=1e-3), timing.TRIAL_TIMING)
    # The alarm is gone afterwards: a normal measurement still works.
    assert tuner.measure(wl, wl.heuristic_config(), tuner.TuneOptions(), timing.TRIAL_TIMING).ms > 0


@pytest.mark.parametrize(("kernel", "mode"), [("add_rms_norm", "fwd"), ("layer_norm", "infer"), ("gated_rms_norm", "bwd")])
def test_input_sets_rotate_inputs_and_share_outputs(kernel: str, mode: str) -> None:
    """Each set has inputs of its own and writes the same output buffers, as the
    benchmark's calls do; a run on set 1 writes the right values there too."""
    wl = Workload(Task(kernel, mode, 4, 32, "float32"), CPU, n_sets=3)
    inputs = ("x", "residual", "z") if mode != "bwd" else ("dy", "x", "z", "dh")
    outputs = ("out", "h_out", "mean", "rstd") if mode != "bwd" else ("dx", "dz")
    a, b = wl.sets[0], wl.sets[1]
    assert [n for n in inputs if a[n] is not None and a[n].data_ptr() == b[n].data_ptr()] == []
    assert all(a[n] is b[n] for n in outputs)
    assert [n for n in outputs if a[n] is not None], "some output is shared"
    run = wl.runner(wl.heuristic_config())
    run(1)
    if mode != "bwd":
        h = b["x"] + b["residual"] if b["residual"] is not None else b["x"]
        want = torch.nn.functional.rms_norm(h.view(4, 32), (32,), wl.weight.view(-1), EPS) if wl.variant.rms else (
            torch.nn.functional.layer_norm(h.view(4, 32), (32,), wl.weight.view(-1), wl.bias.view(-1), EPS))
        torch.testing.assert_close(b["out"].view(4, 32), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["fwd", "infer", "bwd"])
def test_wrong_outputs_are_rejected(mode: str) -> None:
    wl = Workload(Task("layer_norm", mode, 4, 32, "float32"), CPU)
    assert (wl.sets[0].get("rstd") is None) == (mode == "infer"), "inference saves no statistics"
    with pytest.raises(TrialError, match="wrong"):
        wl.check(lambda i: None if mode != "bwd" else (torch.zeros(32), torch.zeros(32)))  # writes no dx
    run = wl.runner(wl.heuristic_config())
    assert wl.check(run) < 1e-4

    def wrong_dw(i: int) -> tuple:
        dw, db = run(i)
        return dw * 1.01, db

    if mode == "bwd":
        with pytest.raises(TrialError, match="dw"):
            wl.check(wrong_dw)


def test_byte_counts() -> None:
    fwd = Workload(Task("layer_norm", "fwd", 4, 32, "bfloat16"), CPU)
    assert fwd.model_bytes() == 2 * 4 * 32 * 2
    # x, y; weight, bias; fp32 mean and rstd per row.
    assert fwd.exact_bytes(fwd.heuristic_config()) == 2 * 4 * 32 * 2 + 2 * 32 * 2 + 2 * 4 * 4
    infer = Workload(Task("layer_norm", "infer", 4, 32, "bfloat16"), CPU)
    assert infer.model_bytes() == fwd.model_bytes()
    assert infer.exact_bytes(infer.heuristic_config()) == 2 * 4 * 32 * 2 + 2 * 32 * 2, "no statistics"
    bwd = Workload(Task("rms_norm", "bwd", 8, 32, "bfloat16"), CPU)
    config = {"block_sizes": [4, 1, 32, 1]}
    # dy, x, dx; weight; rstd; 2 fp32 partial rows written, read back and reduced to a bf16 [N].
    assert bwd.exact_bytes(config) == 3 * 8 * 32 * 2 + 32 * 2 + 8 * 4 + 2 * 32 * 4 + (2 * 32 * 4 + 32 * 2)
    # One program over all 8 rows: it writes dW (bf16) itself, nothing to reduce.
    assert bwd.exact_bytes({"block_sizes": [8, 1, 32, 1]}) == 3 * 8 * 32 * 2 + 32 * 2 + 8 * 4 + 32 * 2



def test_finalists_are_the_fastest_distinct_configs_and_a_failing_one_is_skipped(tmp_path: Path) -> None:
    study = _study(tmp_path)
    dist = {"x": optuna.distributions.IntDistribution(0, 9)}
    configs = [{"block_sizes": [r, 1], "num_warps": 4} for r in (1, 2, 4, 8)]
    # (config index, ms): config 2 twice (its faster time ranks it), config 3 slowest.
    for i, (c, ms) in enumerate([(0, 3.0), (2, 2.5), (1, 2.0), (2, 1.0), (3, 9.0)]):
        study.add_trial(optuna.trial.create_trial(params={"x": i}, distributions=dist, value=ms,
                                                  user_attrs={"config": configs[c], "evaluated": True}))  # fmt: skip
    assert tuner._best_configs(study) == [configs[2], configs[1], configs[0]]
    assert tuner._best_configs(study, 2) == [configs[2], configs[1]]
    # The cache's incumbent is a finalist however its trial ranked.
    study.add_trial(optuna.trial.create_trial(params={"x": 5}, distributions=dist, value=9.5,
                                              user_attrs={"config": configs[0] | {"num_warps": 8}, "seed": "training"}))  # fmt: skip
    assert tuner._best_configs(study, 2) == [configs[2], configs[1], configs[0] | {"num_warps": 8}]
    # The config the kernels look up today is a finalist when no trial measured it (a
    # study out of budget before its seeds), and only then.
    cached = {"block_sizes": [16, 1], "num_warps": 2}
    assert tuner._best_configs(_study(tmp_path / "empty"), incumbent=cached) == [cached]
    assert tuner._best_configs(study, 2, incumbent=cached)[-1] == cached
    assert tuner._best_configs(study, 2, incumbent=configs[3]) == tuner._best_configs(study, 2), (
        "measured (and slow): no finalist"
    )
    # A fast config's siblings that differ only in cache hints follow it, however slow
    # their trials were; a hinted sibling of a config outside the fastest does not.
    evict_last = configs[2] | {"load_eviction_policies": ["last", "last"]}
    streamed = configs[2] | {"store_cache_modifiers": [".cs"]}
    second_first = configs[1] | {"load_eviction_policies": ["first", "first"]}
    siblings = [(evict_last, 8.0), (configs[3] | {"load_eviction_policies": ["last"]}, 7.0), (streamed, 8.5),
                (second_first, 9.9)]  # fmt: skip
    for i, (c, ms) in enumerate(siblings):
        study.add_trial(optuna.trial.create_trial(params={"x": 6 + i}, distributions=dist, value=ms,
                                                  user_attrs={"config": c, "evaluated": True}))  # fmt: skip
    assert tuner._best_configs(study, 2)[:5] == [configs[2], evict_last, streamed, configs[1], second_first]
    assert len(tuner._best_configs(study, 2)) == 6, "two fastest, their three siblings, the incumbent"

    wl = Workload(Task("rms_norm", "fwd", 4, 32, "float32"), CPU)
    result = tuner.TuneResult(task=wl.task, gpu="cpu", study="t", heuristic_config=wl.heuristic_config())
    broken = {"block_sizes": [2, 1], "num_warps": 4, "pid_type": "persistent_blocked"}  # no CPU launch
    tuner._final(wl, result, [broken, configs[1]], tuner.TuneOptions())
    assert "tuned config failed" in result.error
    assert result.config in (configs[1], wl.heuristic_config()) and result.ms > 0
    assert result.heuristic_ms > 0 and result.torch_ms > 0
    assert result.flushed_ms is None, "no L2 to flush on CPU: the graph clock ranks alone"
    assert "flushed_ms" not in tuner.cache_entry(result, tuner.versions())


def test_recast_seeds_where_the_space_offers_it(tmp_path: Path) -> None:
    """Where the forward's space offers ``recast`` (a 16-bit row on CUDA; built here as
    the CUDA space), each study measures its incumbent recast and the whole row on 8
    warps recast, both points of the space."""
    from tuning.cache import RECAST

    options = tuner.TuneOptions(out_dir=tmp_path, cached_seed=False)
    task = Task("layer_norm", "infer", 64, 1024, "bfloat16")
    wl = Workload(task, CPU)
    space = SearchSpace.from_spec("fwd", 64, 1024, wl.bound().config_spec, "cuda", wl.other_loads(), recast=True)
    seeds = tuner.seed_configs(task, "cpu", wl, space, options)
    assert seeds["recast"] == {**seeds["static"], RECAST: True}
    assert seeds["whole_row_recast"] == {**tuner.WHOLE_ROW_RECAST, RECAST: True}
    assert all(space.from_config(seeds[name]) is not None for name in ("recast", "whole_row_recast"))


def test_studies_seed_their_incumbent_on_a_per_axis_grid(tmp_path: Path) -> None:
    """Where the space offers pid_type "xyz", the incumbent (here the heuristic) is also
    measured on it; the seed runs and matches the reference. A backward of a real row has
    no such seed: Helion does not offer xyz there."""
    options = tuner.TuneOptions(out_dir=tmp_path, cached_seed=False)
    task = Task("rms_norm", "infer", 40, 96, "float32")
    wl = Workload(task, CPU)
    space = SearchSpace.from_spec("fwd", 40, 96, wl.bound().config_spec, "cpu", wl.other_loads(), params_first=wl.offers_params_first)
    seeds = tuner.seed_configs(task, "cpu", wl, space, options)
    per_axis = seeds["per_axis"]
    assert per_axis == {**seeds["heuristic"], "pid_type": "xyz"}
    assert space.from_config(per_axis) is not None, "the seed is a point of the space"
    assert wl.check(wl.runner(per_axis)) < 1e-4
    # The incumbent compiled for the exact shape, too; and (an fp32 RMSNorm weight is
    # loaded after the statistics by default) with its weight loaded first.
    assert seeds["static"] == {**per_axis, "static": True}
    assert wl.check(wl.runner(seeds["static"])) < 1e-4
    assert seeds["params_first"] == {**seeds["static"], "params_first": True}
    assert wl.check(wl.runner(seeds["params_first"])) < 1e-4
    assert seeds["recast"] is None and seeds["whole_row_recast"] is None, "no recast on the CPU"
    task = Task("rms_norm", "bwd", 64, 8192, "float32")
    wl = Workload(task, CPU)
    space = SearchSpace.from_spec("bwd", 64, 8192, wl.bound().config_spec, "cpu", wl.other_loads())
    assert tuner.seed_configs(task, "cpu", wl, space, options)["per_axis"] is None


def test_decode_backward_studies_seed_one_program_that_writes_dw_db_itself(tmp_path: Path) -> None:
    """At decode sizes a backward study also measures every row in one program per
    channel tile (up to ONE_PROGRAM_INNER rows a step), which writes dW/dB without a
    reduce: the whole row where the space cannot split it, else ONE_PROGRAM_TILE-channel
    tiles after the row coefficients. The seed is a point of the space, runs and matches
    the reference. Past DIRECT_SPLIT_MAX_M rows there is none."""
    options = tuner.TuneOptions(out_dir=tmp_path, cached_seed=False)
    cases = ((12, 96, (16, 128, 8)), (40, 96, (64, 128, 8)), (6, 1536, (8, tuner.ONE_PROGRAM_TILE, 8)),
             (1, 96, None), (tuner.DIRECT_SPLIT_MAX_M + 1, 1536, None))  # fmt: skip
    for m, n, want in cases:
        task = Task("layer_norm", "bwd", m, n, "bfloat16")
        wl = Workload(task, CPU)
        space = SearchSpace.from_spec("bwd", m, n, wl.bound().config_spec, "cpu", wl.other_loads())
        one = tuner.seed_configs(task, "cpu", wl, space, options)["one_program"]
        if want is None:  # M = 1: every config is one program already
            assert one is None, m
            continue
        sizes = one["block_sizes"]
        assert (sizes[0], sizes[space.tile_index], sizes[space.inner_index]) == want
        assert wl.is_split(one) == (n > 128) and (one["num_warps"] == tuner.ONE_PROGRAM_WARPS) == wl.is_split(one)
        assert space.from_config(one) is not None, "the seed is a point of the space"
        assert wl.partial_rows(one) == 1 and wl._partials(one) is None
        wl.check(wl.runner(one))  # raises TrialError if dx, dW or dB is wrong


def _layer_norm_backward_seeds(tmp_path: Path, dtype: str) -> tuple:
    """(workload, space, seeds) of a LayerNorm backward study of a ragged 40x96 input on
    the CPU, with no cached config."""
    task = Task("layer_norm", "bwd", 40, 96, dtype)
    wl = Workload(task, CPU)
    space = SearchSpace.from_spec("bwd", 40, 96, wl.bound().config_spec, "cpu", wl.other_loads())
    options = tuner.TuneOptions(out_dir=tmp_path, cached_seed=False)
    return wl, space, tuner.seed_configs(task, "cpu", wl, space, options)


def test_backward_studies_seed_both_likely_schedules_pipelined(tmp_path: Path) -> None:
    """The heuristic's backward schedule and the cached one each get a pipelined seed
    (rs=3 on the row loop), and each seed runs and matches the reference."""
    wl, space, seeds = _layer_norm_backward_seeds(tmp_path, "float32")
    heuristic, piped = seeds["heuristic"], seeds["pipelined_heuristic"]
    assert seeds["pipelined"] is None, "no cached config here to pipeline"
    assert piped["block_sizes"] == heuristic["block_sizes"]
    assert piped["range_num_stages"][space.row_range] == tuner.PIPELINED_ROW_STAGES
    assert not any(heuristic.get("range_num_stages") or [])
    assert space.from_config(piped) is not None, "the seed is a point of the space"
    assert wl.check(wl.runner(piped)) < 1e-4


def test_fused_backward_studies_seed_the_channel_tile_first(tmp_path: Path) -> None:
    """A fused backward's study also measures its incumbent with the channel tile first in
    the grid (``tile_first``); the seed is the same config plus that loop order, a point
    of the space, and its program takes the tile's index modulo the one tile a row has
    (a constant), where the default grid divides the program id by the row tiles' count
    (a runtime value). It runs and matches the reference on a ragged row."""
    import helion

    from kernels import launch

    wl, space, seeds = _layer_norm_backward_seeds(tmp_path, "bfloat16")
    heuristic, first = seeds["heuristic"], seeds["tile_first"]
    assert "loop_orders" not in heuristic
    assert first == {**heuristic, "loop_orders": [[2, 1, 0]]}
    assert space.from_config(first) == {**space.from_config(heuristic), "tile_first": True}
    codes = {}
    for name, config in (("default", heuristic), ("first", first)):
        bound = wl.bound(config)
        codes[name] = bound.to_triton_code(launch._fit(config, bound))
    channel = "indices_2 = (offset_2 + tl.arange(0, _BLOCK_SIZE_2))"
    assert channel in codes["default"] and channel in codes["first"]
    assert "offset_2 = pid_2 * _BLOCK_SIZE_2" in codes["default"]
    assert "pid_2 = tl.program_id(0) // (num_blocks_0 * num_blocks_1)" in codes["default"]
    assert "num_blocks_0 = tl.cdiv(96, _BLOCK_SIZE_2)" in codes["first"]
    assert "offset_2 = pid_0 * _BLOCK_SIZE_2" in codes["first"]
    assert isinstance(launch._fit(first, wl.bound(first)), helion.Config)
    assert wl.check(wl.runner(first)) < 0.05


def test_ragged_backward_studies_seed_the_incumbent_trimmed(tmp_path: Path) -> None:
    """A backward study of a row that is not a power of two also measures its incumbent
    with the padded tile's dead lanes trimmed: the seed is the same config plus the key,
    a point of the space; a power-of-two row's space has no such seed."""
    from tuning.cache import TRIM

    task = Task("layer_norm", "bwd", 40, 96, "float16")
    wl = Workload(task, CPU)
    space = SearchSpace.from_spec("bwd", 40, 96, wl.bound().config_spec, "cpu", wl.other_loads(), trim=wl.offers_trim)
    seeds = tuner.seed_configs(task, "cpu", wl, space, tuner.TuneOptions(out_dir=tmp_path, cached_seed=False))
    assert seeds["trim"] == {**seeds["heuristic"], TRIM: True}
    assert space.from_config(seeds["trim"]) == {**space.from_config(seeds["heuristic"]), "trim": True}
    even = Task("layer_norm", "bwd", 40, 128, "float16")
    wl = Workload(even, CPU)
    plain = SearchSpace.from_spec("bwd", 40, 128, wl.bound().config_spec, "cpu", wl.other_loads(), trim=wl.offers_trim)
    assert tuner.seed_configs(even, "cpu", wl, plain, tuner.TuneOptions(out_dir=tmp_path, cached_seed=False))["trim"] is None


def test_fused_backward_studies_seed_the_incumbent_recast(tmp_path: Path) -> None:
    """A 16-bit backward study on CUDA also measures its incumbent holding x, dy and the
    weight in 16 bits across the row sums (``recast``): the seed is the same config plus
    the key, a point of the space; a space without the choice has no such seed."""
    from tuning.cache import RECAST

    _assert_cuda_backward_seed(tmp_path, Task("layer_norm", "bwd", 40, 96, "float16"), "recast", RECAST)


def _assert_cuda_backward_seed(tmp_path: Path, task: Task, name: str, key: str) -> None:
    """A CUDA backward study whose space offers the choice ``name`` also measures its
    incumbent with it: the seed is the same config plus ``key``, a point of the space; a
    space without the choice has no such seed."""
    wl = Workload(task, CPU)
    space = SearchSpace.from_spec("bwd", task.m, task.n, wl.bound().config_spec, "cuda", wl.other_loads(), **{name: True})
    seeds = tuner.seed_configs(task, "cuda", wl, space, tuner.TuneOptions(out_dir=tmp_path, cached_seed=False))
    assert seeds[name] == {**seeds["heuristic"], key: True}
    assert space.from_config(seeds[name]) == {**space.from_config(seeds["heuristic"]), name: True}
    plain = SearchSpace.from_spec("bwd", task.m, task.n, wl.bound().config_spec, "cuda", wl.other_loads())
    assert tuner.seed_configs(task, "cuda", wl, plain, tuner.TuneOptions(out_dir=tmp_path, cached_seed=False))[name] is None


def test_bf16_backward_studies_seed_the_incumbent_widened(tmp_path: Path) -> None:
    """A bf16 backward study on CUDA also measures its incumbent converting bf16 by bit moves
    (``widen``): the seed is the same config plus the key, a point of the space. The CPU's
    space (Triton's interpreter runs no PTX) and fp16's do not offer it."""
    from tuning.cache import WIDEN

    task = Task("layer_norm", "bwd", 40, 96, "bfloat16")
    assert not Workload(task, CPU).offers_widen, "the CPU runs no PTX"
    _assert_cuda_backward_seed(tmp_path, task, "widen", WIDEN)

