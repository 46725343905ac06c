"""The search space: every point maps to a config that Helion's own config spec accepts unchanged."""

from __future__ import annotations

import contextlib
import random

import helion
import optuna
import pytest
import torch

from tuning import cache
from tuning.space import SPACE_KEYS, IntParam, SearchSpace, canonical, describe
from tuning.workload import Task, Workload

CPU = torch.device("cpu")

# (kernel, M, N, groups): narrow and wide rows (the latter offer chunked reductions),
# M below a block size, every flavour of loads (bias, gate, residual, groups).
PROBLEMS = [
    ("layer_norm", 8, 64, 1),
    ("rms_norm", 3, 128, 1),
    ("rms_norm", 64, 8192, 1),
    ("gated_rms_norm_grouped", 16, 256, 4),
    ("add_layer_norm", 32, 4096, 1),
]


@pytest.fixture(scope="module")
def spaces() -> dict:
    """(kernel, mode, M, N, device type) -> (space, bound kernel)."""
    out = {}
    for kernel, m, n, g in PROBLEMS:
        for mode in ("fwd", "bwd"):
            wl = Workload(Task(kernel, mode, m, n, "float32", g), CPU, n_sets=1)
            bound = wl.bound()
            for device_type in ("cpu", "cuda"):  # cuda adds persistent pid types
                space = SearchSpace.from_spec(
                    mode, m, wl.k, bound.config_spec, device_type, wl.other_loads(), chunked=wl.offers_chunked
                )
                out[(kernel, mode, m, n, device_type)] = (space, bound, wl)
    return out


def _kernel_of(bound, wl, config: dict):  # noqa: ANN001, ANN202
    """The bound kernel that runs ``config``: the two-pass forward has its own spec."""
    return wl.bound(config) if len(config["block_sizes"]) == 3 else bound


def _normalized(bound, config: dict) -> dict:
    """Helion's normalization of ``config``; our keys (``cache.OUR_KEYS``: they pick the
    kernel or its compile-time arguments rather than configure it) pass through."""
    ours = {name: v for name, v in config.items() if name in cache.OUR_KEYS}
    c = helion.Config(**cache.helion_fields(config))
    bound.config_spec.normalize(c)
    return {**dict(c.config), **ours}


@contextlib.contextmanager
def _triton_backend():  # noqa: ANN202
    """CPU calls run the generated Triton code (Triton's interpreter) inside the block."""
    from kernels import launch

    previous = launch.get_cpu_backend()
    launch.set_cpu_backend("triton")
    try:
        yield
    finally:
        launch.set_cpu_backend(previous)


def _assert_normalizes_unchanged(bound, config: dict) -> None:
    """Helion accepts the config and changes none of the fields the space decides."""
    normalized = _normalized(bound, config)
    assert canonical(normalized, SPACE_KEYS) == canonical(config), (config, normalized)


def test_every_valid_point_normalizes_unchanged(spaces: dict) -> None:
    rng = random.Random(0)
    for key, (space, bound, wl) in spaces.items():
        points = list(space.points())
        assert points, key
        for point in rng.sample(points, min(len(points), 60)):
            config = space.to_config(point)
            _assert_normalizes_unchanged(_kernel_of(bound, wl, config), config)


def test_optuna_sampled_points_normalize(spaces: dict) -> None:
    """What a sampler proposes (valid or not) is a config Helion can normalize."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for key, (space, bound, wl) in spaces.items():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        valid = 0
        for _ in range(40):
            trial = study.ask()
            point = space.suggest(trial)
            config = space.to_config(point)
            _normalized(_kernel_of(bound, wl, config), config)  # must not raise
            if space.invalid_reason(point) is None:
                valid += 1
                _assert_normalizes_unchanged(_kernel_of(bound, wl, config), config)
            study.tell(trial, 1.0)
        assert valid > 0, key


def test_space_shape_of_parameters(spaces: dict) -> None:
    fwd_wide = spaces[("rms_norm", "fwd", 64, 8192, "cpu")][0]
    assert "chunk_log2" in fwd_wide.by_name, "wide rows offer a chunked reduction"
    assert "chunk_log2" not in spaces[("layer_norm", "fwd", 8, 64, "cpu")][0].by_name
    # The interpreter runs flat and per-axis grids; a persistent grid needs the SM count.
    assert set(fwd_wide.by_name["pid_type"].choices) == {"flat", "xyz"}
    assert "sm_mult_log2" not in fwd_wide.by_name
    bwd_small = spaces[("layer_norm", "bwd", 8, 64, "cpu")][0]
    assert set(bwd_small.by_name["pid_type"].choices) == {"flat", "xyz"}
    cuda_space = spaces[("rms_norm", "fwd", 64, 8192, "cuda")][0]
    assert set(cuda_space.by_name["pid_type"].choices) == {
        "flat",
        "xyz",
        "persistent_blocked",
        "persistent_interleaved",
    }
    assert "sm_mult_log2" in cuda_space.by_name
    bwd = spaces[("layer_norm", "bwd", 8, 64, "cpu")][0]
    assert {"m_block_log2", "inner_log2"} <= set(bwd.by_name)
    assert "chunk_log2" not in bwd.by_name, "the backward has no reduction loop"
    assert "tile_k_log2" not in bwd.by_name, "narrow rows: fused backward only"
    point = {"m_block_log2": 3, "inner_log2": 1, "warps_log2": 1, "stages": 1}
    assert bwd.to_config(point)["block_sizes"] == [8, 1, 64, 2], "[m_block, group, whole row, inner]"
    wide = spaces[("rms_norm", "bwd", 64, 8192, "cpu")][0]
    assert wide.to_config({**point, "tile_k_log2": 11})["block_sizes"] == [8, 1, 2048, 2], "split"
    # The row loop's pipelining: its entry of range_num_stages, every other loop's left 0.
    for key, (space, _, _) in spaces.items():
        if key[1] == "bwd":
            assert "row_stages" in space.by_name, f"{key}: Helion dropped range_num_stages from norm_bwd's spec"
            assert "tile_first" in space.by_name, f"{key}: Helion dropped loop_orders from norm_bwd's spec"
    piped = bwd.to_config({**point, "row_stages": 3})
    assert piped["range_num_stages"][bwd.row_range] == 3 and sum(piped["range_num_stages"]) == 3
    assert bwd.from_config(piped) == {**point, "row_stages": 3, "eviction": "", "pid_type": "flat", "tile_first": False}
    assert "range_num_stages" not in bwd.to_config({**point, "row_stages": 0})
    assert bwd.from_config({**piped, "range_num_stages": [3] * bwd.n_ranges}) is None, "only the row loop's"
    assert wide.to_config({**point, "tile_k_log2": 13})["block_sizes"] == [8, 1, 8192, 2], "fused"
    # Chunked configs carry the chunk; the top exponent means the whole row.
    assert fwd_wide.to_config({"rows_log2": 0, "chunk_log2": 11, "warps_log2": 3, "stages": 2})[
        "reduction_loops"
    ] == [2048]
    assert fwd_wide.to_config({"rows_log2": 0, "chunk_log2": 13, "warps_log2": 3})["reduction_loops"] == [
        None
    ]
    # LayerNorm's chunked rows may take the two-pass kernel instead: [chunk, rows, group].
    assert "two_pass" not in fwd_wide.by_name, "RMSNorm loops in two reads already"
    ln_wide = spaces[("add_layer_norm", "fwd", 32, 4096, "cpu")][0]
    two_pass = {"rows_log2": 1, "chunk_log2": 11, "two_pass": True, "warps_log2": 3, "stages": 2}
    config = ln_wide.to_config(two_pass)
    assert config["block_sizes"] == [2048, 2, 1] and "reduction_loops" not in config
    assert ln_wide.from_config(config) == {**two_pass, "eviction": "", "pid_type": "flat", "static": False}
    assert ln_wide.to_config({**two_pass, "two_pass": False})["reduction_loops"] == [2048]
    whole = {"rows_log2": 1, "chunk_log2": 12, "warps_log2": 3}
    assert ln_wide.from_config(ln_wide.to_config(whole)) == {**whole, "eviction": "", "pid_type": "flat", "static": False}, (
        "no two_pass without a chunk"
    )
    assert fwd_wide.from_config(config) is None, "a two-pass config is no point of RMSNorm's space"
    # One eviction policy for all loads is one point, however many loads the config
    # listed (a training forward's config seeds the inference study: fewer loads).
    last = ln_wide.to_config({**whole, "eviction": "last"})
    for n in (ln_wide.n_loads - 1, ln_wide.n_loads + 3):
        point = ln_wide.from_config({**last, "load_eviction_policies": ["last"] * n})
        assert point == {**whole, "eviction": "last", "pid_type": "flat", "static": False}
    assert ln_wide.from_config({**last, "load_eviction_policies": ["last", "first"]}) is None
    # Compiled for the exact shape: a forward choice (our config key, not Helion's); the
    # backward has none.
    for key, (space, _, _) in spaces.items():
        assert ("static" in space.by_name) == (key[1] == "fwd"), key
    fixed = ln_wide.to_config({**two_pass, "static": True})
    assert fixed == {**config, "static": True}
    assert ln_wide.from_config(fixed) == {**two_pass, "eviction": "", "pid_type": "flat", "static": True}
    assert "static" not in ln_wide.to_config({**two_pass, "static": False})
    start = {**whole, "eviction": "", "pid_type": "flat", "static": False}
    assert {**start, "static": True} in ln_wide.neighbours(start), "the local search flips it"


def test_training_forward_keeps_its_input_in_cache() -> None:
    """The training forward is not offered the "first" eviction policy (its backward reads
    x again), and a cached config with it is no point of that space; the inference forward
    and the backward keep every policy Helion offers."""
    wl = Workload(Task("rms_norm", "fwd", 16, 256, "float32"), CPU, n_sets=1)
    spec = wl.bound().config_spec
    offered = set(spec.load_eviction_policies.inner.choices)
    assert "first" in offered
    training = SearchSpace.from_spec("fwd", 16, 256, spec, "cuda", training=True)
    inference = SearchSpace.from_spec("fwd", 16, 256, spec, "cuda")
    assert set(training.by_name["eviction"].choices) == offered - {"first"}
    assert set(inference.by_name["eviction"].choices) == offered
    point = {**inference.from_config(wl.heuristic_config()), "eviction": "first"}
    config = inference.to_config(point)
    assert inference.from_config(config) == point
    assert training.from_config(config) is None
    assert training.from_config({**config, "load_eviction_policies": ["last"] * training.n_loads}) is not None


def test_streaming_stores_only_where_the_output_outgrows_the_l2() -> None:
    """``stream`` (every store of the forward ``.cs``, evict-first in the L2) is offered to a
    forward when the tuner says its output is larger than the L2, never to a backward; one
    modifier for every store is one point whatever the list's length; the config runs
    correctly with the modifier in its generated stores; another shape's lookup drops it."""
    from kernels import launch
    from tuning.space import MAX_FWD_STORES

    wl = Workload(Task("add_rms_norm", "infer", 16, 256, "float32"), CPU, n_sets=1)
    spec = wl.bound().config_spec
    assert "stream" not in SearchSpace.from_spec("fwd", 16, 256, spec, "cuda").by_name
    bwd = Workload(Task("add_rms_norm", "bwd", 16, 256, "float32"), CPU, n_sets=1)
    assert "stream" not in SearchSpace.from_spec("bwd", 16, 256, bwd.bound().config_spec, "cuda", streaming=True).by_name
    space = SearchSpace.from_spec("fwd", 16, 256, spec, "cuda", streaming=True)
    point = {**space.from_config(wl.heuristic_config()), "stream": True}
    config = space.to_config(point)
    assert config["store_cache_modifiers"] == [".cs"] * MAX_FWD_STORES
    assert space.from_config(config) == point
    assert space.from_config({**config, "store_cache_modifiers": [".cs", ".cs"]}) == point
    assert space.from_config({**config, "store_cache_modifiers": [".wt"]}) is None
    assert {**point, "stream": False} in space.neighbours(point)
    _assert_normalizes_unchanged(wl.bound(), config)
    assert describe(config, "infer").endswith("st=cs")
    code = wl.bound().to_triton_code(launch._fit(config, wl.bound()))
    stores = [line for line in code.splitlines() if "tl.store(" in line]
    assert len(stores) == 2 and all("cache_modifier='.cs'" in line for line in stores), stores  # out and h
    with _triton_backend():
        assert wl.check(wl.runner(config)) < 1e-4
    assert "store_cache_modifiers" not in cache.fit_config(config, "infer", 32, 256, 256)


def test_params_first_where_the_forward_loads_weight_and_bias_late() -> None:
    """``params_first`` is offered to the forwards whose kernel loads the weight and bias
    after the statistics (LayerNorm; not a 16-bit RMSNorm weight, already loaded first),
    never to a backward; only to the whole-row kernel; the config round-trips, Helion
    never sees the key, and the tuner's run of it matches the reference."""
    from tuning.cache import PARAMS_FIRST

    assert not Workload(Task("rms_norm", "infer", 16, 256, "bfloat16"), CPU, n_sets=1).offers_params_first
    assert Workload(Task("rms_norm", "infer", 16, 256, "float32"), CPU, n_sets=1).offers_params_first
    assert not Workload(Task("layer_norm", "bwd", 16, 256, "bfloat16"), CPU, n_sets=1).offers_params_first
    wl = Workload(Task("layer_norm", "fwd", 16, 8192, "bfloat16"), CPU, n_sets=1)
    assert wl.offers_params_first
    space = SearchSpace.from_spec("fwd", 16, 8192, wl.bound().config_spec, "cpu", chunked=True, params_first=True)
    point = {**space.from_config(wl.heuristic_config()), "params_first": True}
    config = space.to_config(point)
    assert config[PARAMS_FIRST] is True and space.from_config(config) == point
    assert {**point, "params_first": False} in space.neighbours(point)
    assert describe(config, "fwd").endswith("wb-first")
    assert PARAMS_FIRST not in cache.helion_fields(config)
    _assert_normalizes_unchanged(wl.bound(), config)
    two_pass = space.to_config({**point, "chunk_log2": 10, "two_pass": True})
    assert len(two_pass["block_sizes"]) == 3 and PARAMS_FIRST not in two_pass, "norm_fwd_chunked has no such argument"
    with _triton_backend():
        assert wl.check(wl.runner(config)) < 1e-2


def test_recast_where_the_forward_can_hold_its_row_in_16_bits() -> None:
    """``recast`` is offered where ``launch.can_recast`` holds (a 16-bit row on CUDA, not
    gated before the norm: never on the CPU, whose interpreter runs no PTX), to the
    whole-row kernel only (not a looped row, not the two-pass kernel); the config
    round-trips, a step of the local search, and Helion never sees the key."""
    from tuning.cache import RECAST

    assert not Workload(Task("layer_norm", "infer", 16, 256, "bfloat16"), CPU, n_sets=1).offers_recast
    assert not Workload(Task("layer_norm", "bwd", 16, 256, "bfloat16"), CPU, n_sets=1).offers_recast
    wl = Workload(Task("layer_norm", "infer", 16, 8192, "bfloat16"), CPU, n_sets=1)
    space = SearchSpace.from_spec("fwd", 16, 8192, wl.bound().config_spec, "cuda", chunked=True, recast=True)
    whole = {"block_sizes": [1, 1], "num_warps": 8, "num_stages": 1, "reduction_loops": [None]}
    point = {**space.from_config(whole), "recast": True}
    config = space.to_config(point)
    assert config == {**whole, RECAST: True} and space.from_config(config) == point
    assert {**point, "recast": False} in space.neighbours(point)
    assert describe(config, "fwd").endswith("recast")
    assert RECAST not in cache.helion_fields(config)
    looped = space.to_config({**point, "chunk_log2": 11})
    assert looped["reduction_loops"] == [2048] and RECAST not in looped, "a looped row is not held"
    assert RECAST not in space.to_config({**point, "chunk_log2": 11, "two_pass": True})
    assert "recast" not in SearchSpace.from_spec("fwd", 16, 8192, wl.bound().config_spec, "cuda").by_name


def test_read_only_where_the_two_pass_forward_reads_16_bytes_a_thread() -> None:
    """``read_only`` is offered to the static two-pass forward on CUDA only (the CPU's
    interpreter runs no PTX; a dynamic program may lay its runs out narrower): a chunk whose runs are under 16 bytes a thread is no valid point, the
    config round-trips and is a step of the local search, a whole or looped row never
    takes it, and Helion never sees the key."""
    from tuning.cache import READ_ONLY, STATIC

    assert not Workload(Task("layer_norm", "infer", 16, 8192, "bfloat16"), CPU, n_sets=1).offers_read_only
    wl = Workload(Task("layer_norm", "infer", 16, 8192, "bfloat16"), CPU, n_sets=1)
    space = SearchSpace.from_spec("fwd", 16, 8192, wl.bound().config_spec, "cuda", chunked=True, read_only=2)
    two_pass = {"block_sizes": [2048, 1, 1], "num_warps": 8, "num_stages": 1, STATIC: True}
    point = {**space.from_config(two_pass), "read_only": True}
    dynamic = space.from_config({**two_pass, STATIC: False})
    assert "read_only" not in dynamic and READ_ONLY not in space.to_config({**dynamic, "read_only": True}), "static only"
    config = space.to_config(point)
    assert config == {**two_pass, READ_ONLY: True} and space.from_config(config) == point
    assert {**point, "read_only": False} in space.neighbours(point)
    assert describe(config, "fwd").endswith("nc")
    assert READ_ONLY not in cache.helion_fields(config)
    assert "16 bytes" in space.invalid_reason({**point, "warps_log2": 4}), "2048 bf16 lanes on 16 warps: 8 bytes a thread"
    assert space.invalid_reason({**point, "chunk_log2": 12, "warps_log2": 4}) is None
    whole = space.from_config({"block_sizes": [1, 1], "num_warps": 8, "num_stages": 1, "reduction_loops": [None]})
    assert READ_ONLY not in space.to_config({**whole, "read_only": True}) and "read_only" not in whole
    assert "read_only" not in SearchSpace.from_spec("fwd", 16, 8192, wl.bound().config_spec, "cuda", chunked=True).by_name
    assert "read_only" not in SearchSpace.from_spec("fwd", 16, 8192, wl.bound().config_spec, "cuda", read_only=2).by_name


def _assert_backward_flag(space: SearchSpace, name: str, key: str, fused: dict | None = None) -> dict:
    """A boolean backward choice of ours in ``space``: a fused config (by default a 512-wide
    row's) with it set round-trips to the config key ``key``, unsetting it is a step of the
    local search, ``describe`` names it and Helion never sees it. Returns the point."""
    fused = fused or {"block_sizes": [16, 1, 512, 2], "num_warps": 4, "num_stages": 1}
    point = {**space.from_config(fused), name: True}
    config = space.to_config(point)
    assert config == {**fused, key: True} and space.from_config(config) == point
    assert {**point, name: False} in space.neighbours(point)
    assert describe(config, "bwd").endswith(name)
    assert key not in cache.helion_fields(config)
    return point


def test_widen_is_a_backward_choice() -> None:
    """``widen`` (bf16 converted by bit moves) is offered to backward spaces built with it
    (a bf16 workload on CUDA: ``Workload.offers_widen``), never to a forward; the config
    round-trips, is a step of the local search, and Helion never sees the key."""
    from tuning.cache import WIDEN

    wl = Workload(Task("rms_norm", "bwd", 16, 512, "bfloat16"), CPU, n_sets=1)
    assert not wl.offers_widen and not Workload(Task("rms_norm", "infer", 16, 512, "bfloat16"), CPU, n_sets=1).offers_widen
    space = SearchSpace.from_spec("bwd", 16, 512, wl.bound().config_spec, "cuda", widen=True)
    _assert_backward_flag(space, "widen", WIDEN)
    assert "widen" not in SearchSpace.from_spec("bwd", 16, 512, wl.bound().config_spec, "cuda").by_name
    fwd = Workload(Task("rms_norm", "infer", 16, 512, "bfloat16"), CPU, n_sets=1)
    assert "widen" not in SearchSpace.from_spec("fwd", 16, 512, fwd.bound().config_spec, "cuda", widen=True).by_name


def test_trim_is_a_backward_choice_for_ragged_rows() -> None:
    """``trim`` (the fused tile's dead lanes pinned to zeros) is offered to backward spaces
    of rows that are not a power of two (``Workload.offers_trim``, on any device), never to
    a forward; the config round-trips, is a step of the local search, and Helion never
    sees the key."""
    from tuning.cache import TRIM

    wl = Workload(Task("layer_norm", "bwd", 16, 320, "float16"), CPU, n_sets=1)
    assert wl.offers_trim
    assert not Workload(Task("layer_norm", "bwd", 16, 512, "float16"), CPU, n_sets=1).offers_trim
    assert not Workload(Task("layer_norm", "infer", 16, 320, "float16"), CPU, n_sets=1).offers_trim
    space = SearchSpace.from_spec("bwd", 16, 320, wl.bound().config_spec, "cpu", trim=wl.offers_trim)
    _assert_backward_flag(space, "trim", TRIM)
    assert "trim" not in SearchSpace.from_spec("bwd", 16, 320, wl.bound().config_spec, "cpu").by_name
    fwd = Workload(Task("layer_norm", "infer", 16, 320, "float16"), CPU, n_sets=1)
    assert "trim" not in SearchSpace.from_spec("fwd", 16, 320, fwd.bound().config_spec, "cpu", trim=True).by_name


def test_recast_is_a_fused_backward_choice() -> None:
    """``recast`` (x, dy and the weight held in 16 bits across the row sums) is offered to
    backward spaces built with it (a 16-bit ungated workload on CUDA), to the fused
    schedule only: a channel tile narrower than the row drops it; the config round-trips,
    is a step of the local search, and Helion never sees the key."""
    from tuning.cache import RECAST

    wl = Workload(Task("layer_norm", "bwd", 16, 8192, "float16"), CPU, n_sets=1)
    assert not wl.offers_recast, "the CPU runs no PTX"
    space = SearchSpace.from_spec("bwd", 16, 8192, wl.bound().config_spec, "cuda", recast=True)
    point = _assert_backward_flag(space, "recast", RECAST, {"block_sizes": [16, 1, 8192, 2], "num_warps": 8, "num_stages": 1})
    split = space.to_config({**point, "tile_k_log2": 11})
    assert split["block_sizes"][2] == 2048 and RECAST not in split, "the split schedule holds no row"
    assert "recast" not in SearchSpace.from_spec("bwd", 16, 8192, wl.bound().config_spec, "cuda").by_name


def test_invalid_points_are_pruned(spaces: dict) -> None:
    bwd = spaces[("layer_norm", "bwd", 8, 64, "cpu")][0]
    assert "inner" in bwd.invalid_reason({"m_block_log2": 1, "inner_log2": 2, "warps_log2": 0, "stages": 1})
    assert bwd.invalid_reason({"m_block_log2": 2, "inner_log2": 1, "warps_log2": 0, "stages": 1}) is None
    assert "outside" in bwd.invalid_reason(
        {"m_block_log2": 9, "inner_log2": 0, "warps_log2": 0, "stages": 1}
    ), "block past M"
    fwd = spaces[("rms_norm", "fwd", 64, 8192, "cpu")][0]
    assert "spill" in fwd.invalid_reason({"rows_log2": 2, "chunk_log2": 13, "warps_log2": 0})
    assert "threads" in spaces[("layer_norm", "fwd", 8, 64, "cpu")][0].invalid_reason(
        {"rows_log2": 0, "warps_log2": 5}
    )
    for key, (space, _, _) in spaces.items():
        for point in space.points():
            if space.mode == "bwd":
                assert point["inner_log2"] <= point["m_block_log2"], key
            sizes = space.to_config(point)["block_sizes"]
            rows = sizes[1] if len(sizes) == 3 else sizes[0]  # the two-pass forward: [chunk, rows, 1]
            assert rows <= 1 << (space.m - 1).bit_length(), key


def _items(point: dict) -> tuple:
    return tuple(sorted(point.items(), key=str))


def test_neighbours_are_the_valid_points_one_step_away(spaces: dict) -> None:
    """The tuner's local search: each numeric parameter one step up or down, a yes/no one
    flipped, a named choice switched; parameters the step deactivates drop out, ones it
    activates start plain."""
    ln_wide = spaces[("add_layer_norm", "fwd", 32, 4096, "cpu")][0]
    whole = {"rows_log2": 1, "chunk_log2": 12, "warps_log2": 3, "eviction": "", "pid_type": "flat", "static": False}
    got = ln_wide.neighbours(whole)
    expected = [
        {**whole, "rows_log2": 0},
        {**whole, "rows_log2": 2},
        {**whole, "chunk_log2": 11, "two_pass": False, "stages": 1},  # now looped: stages matter
        {**whole, "warps_log2": 2},
        {**whole, "warps_log2": 4},
        {**whole, "eviction": "first"},
        {**whole, "eviction": "last"},
        {**whole, "pid_type": "xyz"},
        {**whole, "static": True},
    ]
    assert sorted(map(_items, got)) == sorted(map(_items, expected))
    looped = {"rows_log2": 0, "chunk_log2": 11, "two_pass": True, "warps_log2": 3, "eviction": "", "stages": 2,
              "pid_type": "flat", "static": False}  # fmt: skip
    got = ln_wide.neighbours(looped)
    assert {**looped, "two_pass": False} in got and {**looped, "stages": 1} in got and {**looped, "stages": 3} in got
    assert {k: v for k, v in looped.items() if k not in ("two_pass", "stages")} | {"chunk_log2": 12} in got, (
        "the whole row: no two-pass, no stages"
    )
    for key, (space, _, _) in spaces.items():
        for point in list(space.points())[::7]:
            near = space.neighbours(point)
            assert point not in near and len(set(map(_items, near))) == len(near), key
            for other in near:
                assert space.invalid_reason(other) is None, (key, other)
                both = [n for n in point if n in other and point[n] != other[n]]
                assert len(both) == 1, (key, point, other)  # and what that one change (de)activates
                if isinstance(space.by_name[both[0]], IntParam):
                    assert abs(point[both[0]] - other[both[0]]) == 1, (key, point, other)


def test_heuristic_configs_are_points_of_the_space(spaces: dict) -> None:
    """The warm start: the built-in heuristic maps to a point and back unchanged."""
    for key, (space, _, wl) in spaces.items():
        if key[2] < 8:
            continue  # a tiny M gets heuristic blocks wider than M, which the space excludes
        heuristic = wl.heuristic_config()
        point = space.from_config(heuristic)
        assert point is not None, (key, heuristic)
        assert canonical(space.to_config(point)) == canonical(heuristic), key


def test_sampled_configs_compile_and_compute_correctly(spaces: dict) -> None:
    """A few valid points of each mode really run (Triton's interpreter) and pass the reference check."""
    from kernels import launch

    with _triton_backend():
        rng = random.Random(2)
        for key in (("layer_norm", "fwd", 8, 64, "cpu"), ("layer_norm", "bwd", 8, 64, "cpu")):
            space, _, wl = spaces[key]
            for point in rng.sample(list(space.points()), 2):
                run = wl.runner(space.to_config(point))
                assert wl.check(run) < 1e-4
        # The split backward (channel tiles narrower than the row) runs norm_bwd_coef first.
        space, _, wl = spaces[("rms_norm", "bwd", 64, 8192, "cpu")]
        split = {"m_block_log2": 5, "tile_k_log2": 12, "inner_log2": 2, "warps_log2": 3, "stages": 1}
        config = space.to_config(split)
        assert wl.is_split(config) and space.invalid_reason(split) is None
        assert wl.check(wl.runner(config)) < 1e-4
        # Pipelined row loops, fused and split.
        for pipelined in ({**split, "row_stages": 3}, {**split, "tile_k_log2": 13, "inner_log2": 0, "row_stages": 2}):
            assert space.invalid_reason(pipelined) is None
            assert wl.check(wl.runner(space.to_config(pipelined))) < 1e-4
        # The two-pass forward (norm_fwd_chunked) of a LayerNorm with a residual.
        space, _, wl = spaces[("add_layer_norm", "fwd", 32, 4096, "cpu")]
        two_pass = {"rows_log2": 2, "chunk_log2": 10, "two_pass": True, "warps_log2": 2, "stages": 1}
        assert space.invalid_reason(two_pass) is None
        assert wl.check(wl.runner(space.to_config(two_pass))) < 1e-4
        # Per-axis grids ("xyz"): the two-pass forward, and group tiles on y (forward and
        # backward). Helion offers xyz only where the grid's size hints multiply to fewer
        # than 65535 programs: never for the backward of a real row (M x G x K).
        xyz = space.to_config({**two_pass, "pid_type": "xyz"})
        assert space.from_config(xyz) == {**two_pass, "pid_type": "xyz", "eviction": "", "static": False}
        assert wl.check(wl.runner(xyz)) < 1e-4
        # Compiled for the exact shape, both forwards (the tuner times what launch runs).
        for point in (two_pass, {"rows_log2": 1, "warps_log2": 2}):
            static = space.to_config({**point, "static": True})
            assert launch.fwd_kernel_name(static).endswith("_static")
            assert wl.check(wl.runner(static)) < 1e-4
        assert "pid_type" not in spaces[("rms_norm", "bwd", 64, 8192, "cpu")][0].by_name
        for mode in ("fwd", "bwd"):
            space, _, wl = spaces[("gated_rms_norm_grouped", mode, 16, 256, "cpu")]
            point = next(p for p in space.points() if p.get("pid_type") == "xyz")
            assert wl.check(wl.runner(space.to_config(point))) < 1e-4


@pytest.mark.parametrize("k", [4608, 5000, 8192, 8704, 9728, 12288, 12800, 15872, 16384, 32768, 40000])
def test_two_pass_seed_wastes_little_of_the_row(k: int) -> None:
    """The two-pass seed's chunk: a power of two of 512-4096 lanes, at least two chunks per
    row, and a masked tail of at most 1/16 of the row unless no wider chunk has one."""
    from kernels import heuristics

    config = heuristics.two_pass_config(k)
    lanes = config["block_sizes"][0]
    assert config["block_sizes"][1:] == [1, 1] and lanes & (lanes - 1) == 0 and 512 <= lanes <= 4096
    assert 2 * lanes <= k and (lanes <= 2048 or k > 8192)
    assert (-k % lanes) * 16 <= k or lanes == 512
    wider = lanes * 2
    assert wider > 4096 or 2 * wider > k or (-k % wider) * 16 > k or (k <= 8192 and wider > 2048), "the widest that fits"
    assert config["num_warps"] == max(4, min(16, lanes // 256))


@pytest.mark.parametrize(("m", "k"), [(4096, 1024), (4096, 9728), (4096, 16384), (2048, 32768), (1, 40000), (3, 7)])
def test_backward_heuristic_holds_rows_up_to_16384_channels_whole(m: int, k: int) -> None:
    """The heuristic backward runs the fused schedule (one channel tile spanning the
    padded row) below 32768 channels and the split one (4096-channel tiles) from there,
    with P = ceil(M / m_block) partial rows never past M rounded up."""
    from kernels import heuristics

    config = heuristics.bwd_config(m, k, 1, 132)
    m_block, groups, tile, inner = config["block_sizes"]
    padded = heuristics.next_pow2(k)
    assert groups == 1 and tile == (padded if padded < 32768 else heuristics.SPLIT_TILE)
    assert inner <= m_block <= max(inner, heuristics.next_pow2(m))
    assert 4 <= config["num_warps"] <= 16


def test_config_labels_name_the_grid() -> None:
    base = {"block_sizes": [2, 1], "reduction_loops": [None], "num_warps": 8, "num_stages": 1}
    assert describe(base, "infer") == "rows=2 loop=- w=8 s=1"
    assert describe({**base, "pid_type": "xyz"}, "infer") == "rows=2 loop=- w=8 s=1 xyz"
    persistent = {**base, "pid_type": "persistent_blocked", "num_sm_multiplier": 4}
    assert describe(persistent, "fwd") == "rows=2 loop=- w=8 s=1 p-blockedx4"
    fused = {"block_sizes": [32, 1, 16384, 1], "num_warps": 8, "num_stages": 1, "range_num_stages": [0, 3]}
    assert describe({**fused, "loop_orders": [[2, 1, 0]]}, "bwd") == "mb=32 tile=16384 in=1 w=8 s=1 rs=3 k-first"
    exchange = {**fused, "block_sizes": [64, 1, 2048, 1], "loop_orders": [[2, 1, 0]], "exchange": True}
    assert describe(exchange, "bwd") == "mb=64 tile=2048 in=1 w=8 s=1 rs=3 exchange"


def test_exchange_backward_points() -> None:
    """The exchange schedule: offered where the split one is (rows padded to 8192
    channels or more) only when the channel tile is narrower than the row, written as
    our key plus the channel-tile-first loop order, parsed back, pipelined or not, and
    never with a persistent grid."""
    from tuning.space import CHANNEL_TILE_FIRST, SearchSpace

    def space(k: int) -> SearchSpace:
        return SearchSpace(
            "bwd", 2048, k, n_block_sizes=4, n_reduction_loops=0, n_loads=5, evictions=("", "last"),
            pid_types=("flat", "xyz", "persistent_blocked"), inner_index=3, tile_index=2,
            n_ranges=2, row_range=1, exchange=True,
        )  # fmt: skip

    assert "exchange" not in space(4096).by_name, "narrower rows: the fused schedule only"
    assert "exchange" in space(4608).by_name and "exchange" in space(8704).by_name
    wide = space(32768)
    point = {"m_block_log2": 6, "tile_k_log2": 11, "exchange": True, "inner_log2": 1, "row_stages": 0,
             "warps_log2": 1, "eviction": "", "pid_type": "flat", "stages": 1}  # fmt: skip
    assert wide.invalid_reason(point) is None
    config = wide.to_config(point)
    assert config["exchange"] is True and config["loop_orders"] == CHANNEL_TILE_FIRST
    assert config["block_sizes"] == [64, 1, 2048, 2]
    assert wide.from_config(config) == point
    assert wide.from_config({k: v for k, v in config.items() if k != "loop_orders"}) is None
    assert wide.invalid_reason({**point, "pid_type": "persistent_blocked", "sm_mult_log2": 0})
    from tuning.tuner import _exchange

    for k in (8704, 32768):  # the tuner's exchange seed is a point of the space
        seed = _exchange(space(k))
        assert seed is not None and seed["exchange"] is True and space(k).from_config(seed) is not None
    pipelined = {**point, "row_stages": 3}  # the flagged sums are read by atomics and inline asm, never prefetched
    assert wide.invalid_reason(pipelined) is None
    assert wide.from_config(wide.to_config(pipelined)) == pipelined
    whole_row = {**point, "tile_k_log2": 15}
    whole_row.pop("exchange")
    assert not wide._active("exchange", whole_row), "a whole-row tile has nothing to exchange"


def test_channel_tile_first_points() -> None:
    """``tile_first``: offered to the fused backward (one channel tile spans the row) on
    any device, written as the channel-tile-first loop order and parsed back; a cached
    config without a loop order is the point without it; a split backward is not offered
    the order on its own (only as the exchange's)."""
    from tuning.space import CHANNEL_TILE_FIRST, SearchSpace

    def space(k: int) -> SearchSpace:
        return SearchSpace(
            "bwd", 4096, k, n_block_sizes=4, n_reduction_loops=0, n_loads=7, evictions=("", "last"),
            pid_types=("flat", "persistent_blocked"), inner_index=3, tile_index=2,
            n_ranges=2, row_range=1, exchange=True, tile_first=True,
        )  # fmt: skip

    for k in (1024, 8704, 12288):
        wide = space(k)
        assert "tile_first" in wide.by_name
        point = {"m_block_log2": 5, "tile_k_log2": 14, "tile_first": True, "inner_log2": 0, "row_stages": 0,
                 "warps_log2": 3, "eviction": "", "pid_type": "flat", "stages": 1}  # fmt: skip
        if k < 8192:  # no split below 8192 channels: the tile is always the whole row
            point.pop("tile_k_log2")
            point["warps_log2"] = 2
        assert wide.invalid_reason(point) is None, wide.invalid_reason(point)
        config = wide.to_config(point)
        assert config["loop_orders"] == CHANNEL_TILE_FIRST and "exchange" not in config
        assert wide.from_config(config) == point
        plain = {name: v for name, v in config.items() if name != "loop_orders"}
        assert wide.from_config(plain) == {**point, "tile_first": False}
        persistent = {**point, "pid_type": "persistent_blocked", "sm_mult_log2": 1}
        assert wide.from_config(wide.to_config(persistent)) == persistent
    split = {"m_block_log2": 5, "tile_k_log2": 11, "exchange": False, "inner_log2": 0, "row_stages": 0,
             "warps_log2": 2, "eviction": "", "pid_type": "flat", "stages": 1}  # fmt: skip
    wide = space(12288)
    assert not wide._active("tile_first", split), "a split row's tiles are not the whole row"
    assert "loop_orders" not in wide.to_config(split)
    assert wide.from_config({**wide.to_config(split), "loop_orders": CHANNEL_TILE_FIRST}) is None
    fwd = SearchSpace("fwd", 4096, 8192, n_block_sizes=2, n_reduction_loops=1, n_loads=3, evictions=("",),
                      pid_types=("flat",), tile_first=True)  # fmt: skip
    assert "tile_first" not in fwd.by_name, "the forward has no channel tile"
