"""tuning.timing: kernel time from CUDA-graph replays (GPU), eager fallback, timing in turns,
the flushed clock and a study's final ranked by both."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tuning import timing


@pytest.mark.gpu
def test_gpu_timing_is_kernel_time_and_falls_back_when_not_capturable() -> None:
    """Graph timing of a copy over rotating sets: positive, and not above the eager
    (do_bench) figure, which adds launch gaps; a call that syncs cannot be captured and
    is timed eagerly instead."""
    device = torch.device("cuda", 0)
    sets = 4
    src = [torch.randn(8 << 20, device=device) for _ in range(sets)]  # 32 MiB each
    dst = [torch.empty_like(s) for s in src]
    spec = timing.Timing(warmup_ms=5.0, rep_ms=20.0)

    def copy(i: int) -> None:
        dst[i].copy_(src[i])

    graph_ms = timing.time_ms(copy, sets, device, spec)
    eager_ms = timing._do_bench_ms(copy, sets, spec)
    assert 0 < graph_ms <= 1.1 * eager_ms
    torch.testing.assert_close(dst[3], src[3])

    def copy_and_sync(i: int) -> None:
        copy(i)
        torch.cuda.synchronize()

    assert timing.time_ms(copy_and_sync, sets, device, spec) > 0
    copy(0)  # the device is still usable after the failed capture
    torch.cuda.synchronize()
    # and so is the default generator, which the failed capture had left capturing
    assert torch.randn(8, device=device).isfinite().all()


@pytest.mark.gpu
@pytest.mark.parametrize(("kernel", "mode"), [("rms_norm", "infer"), ("add_rms_norm", "fwd"), ("gated_rms_norm", "bwd")])
def test_tuner_rotation_reads_twice_the_l2_per_cycle(kernel: str, mode: str) -> None:
    """The tuner's input sets, like the benchmark's, rotate at least twice the L2 of
    *reads* per cycle: an 8 MB input cycled through 8 sets (64 MB, one L2) left part of
    it cached from the previous cycle, and ranked configs unlike the benchmark."""
    from tuning.workload import Task, Workload

    device = torch.device("cuda", 0)
    wl = Workload(Task(kernel, mode, 4096, 1024, "bfloat16"), device)
    per_set = {"x", "residual", "z"} if mode != "bwd" else {"dy", "x", "z", "dh"}
    read = sum(t.numel() * t.element_size() for k, t in wl.sets[0].items() if k in per_set and t is not None)
    assert read == wl._read_bytes()
    assert len(wl.sets) * read >= 2 * timing.l2_bytes(device)


def test_interleaved_rounds_take_turns_and_keep_each_calls_median() -> None:
    """Round r starts at call r (so no call is always first after another's batch), and
    each call's figure is the median of its own rounds."""
    order: list[int] = []
    values = {0: iter([5.0, 1.0, 3.0]), 1: iter([9.0, 7.0, 8.0]), 2: iter([2.0, 2.0, 100.0])}

    def measure(i: int):  # noqa: ANN202
        def one() -> float:
            order.append(i)
            return next(values[i])

        return one

    assert timing._in_turns([measure(i) for i in range(3)], 3) == [3.0, 8.0, 2.0]
    assert order == [0, 1, 2, 1, 2, 0, 2, 0, 1]


def test_interleaved_timing_on_cpu_ranks_the_heavier_call_slower() -> None:
    """Every call is timed in every round, results in the order given."""
    small, large = torch.randn(8, 8), torch.randn(256, 256)
    calls = [0, 0]

    def light(i: int) -> None:
        calls[0] += 1
        small @ small

    def heavy(i: int) -> None:
        calls[1] += 1
        for _ in range(4):
            large @ large

    spec = timing.Timing(cpu_budget_s=0.03, cpu_min_calls=2, cpu_max_calls=8)
    light_ms, heavy_ms = timing.interleaved_ms([light, heavy], 2, torch.device("cpu"), spec, rounds=3)
    assert 0 < light_ms < heavy_ms
    assert min(calls) >= 1 + 3 * 2, "a warm-up call, then at least cpu_min_calls per round"
    assert timing.interleaved_ms([], 2, torch.device("cpu")) == []


def test_clocks_rank_by_the_geometric_mean_of_the_clocks_they_have() -> None:
    assert timing.Clocks(2.0, 8.0).score == pytest.approx(4.0)
    assert timing.Clocks(3.0).score == 3.0, "no flushed clock (CPU): the graph clock alone"
    assert timing.Clocks(1.0, 9.0).score < timing.Clocks(2.0, 8.0).score
    assert timing.Clocks(1.0, 2.0).valid and timing.Clocks(1.0).valid
    assert not timing.Clocks(1.0, float("nan")).valid and not timing.Clocks(0.0, 1.0).valid


def test_interleaved_clocks_on_cpu_have_no_flushed_clock() -> None:
    small, large = torch.randn(8, 8), torch.randn(256, 256)
    spec = timing.Timing(cpu_budget_s=0.03, cpu_min_calls=2, cpu_max_calls=8)
    light, heavy = timing.interleaved_clocks(
        [lambda i: small @ small, lambda i: [large @ large for _ in range(4)]], 2, torch.device("cpu"), spec, rounds=3
    )
    assert light.flushed_ms is None and heavy.flushed_ms is None
    assert 0 < light.score < heavy.score


@pytest.mark.gpu
def test_gpu_flushed_clock_reads_from_memory_where_the_graph_clock_reads_the_l2() -> None:
    """One 16 MiB input, no rotation: replayed in a graph it stays in the L2; the flushed
    clock zeroes a scratch buffer before every call, so each call reads it from HBM and
    waits behind the flush. Both clocks come back for every run, in the order given."""
    device = torch.device("cuda", 0)
    x = torch.randn(4 << 20, device=device)
    out = torch.empty((), device=device)
    big = torch.randn(4 * (4 << 20), device=device)
    big_out = torch.empty((), device=device)

    def read(i: int) -> None:
        torch.sum(x, dim=0, out=out)

    def read_4x(i: int) -> None:
        torch.sum(big, dim=0, out=big_out)

    spec = timing.Timing(warmup_ms=5.0, rep_ms=20.0)
    small, large = timing.interleaved_clocks([read, read_4x], 1, device, spec)
    assert small.flushed_ms > 1.2 * small.graph_ms
    assert large.flushed_ms > small.flushed_ms and large.graph_ms > small.graph_ms
    torch.testing.assert_close(out, x.sum(), rtol=1e-4, atol=1e-2)


@pytest.mark.gpu
def test_gpu_interleaved_timing_ranks_copies_by_size_and_falls_back() -> None:
    """Graph timing in turns of a copy and a 4x larger one: about 4x apart, in the order
    given; a call that syncs is timed eagerly among captured ones."""
    device = torch.device("cuda", 0)
    sets = 2
    gen = torch.Generator(device=device).manual_seed(0)
    src = [torch.randn(16 << 20, device=device, generator=gen) for _ in range(sets)]  # 64 MiB each
    dst = [torch.empty_like(s) for s in src]
    quarter = (4 << 20)

    def copy_all(i: int) -> None:
        dst[i].copy_(src[i])

    def copy_quarter(i: int) -> None:
        dst[i][:quarter].copy_(src[i][:quarter])

    def copy_and_sync(i: int) -> None:
        copy_all(i)
        torch.cuda.synchronize()

    spec = timing.Timing(warmup_ms=5.0, rep_ms=20.0)
    quarter_ms, all_ms, synced_ms = timing.interleaved_ms([copy_quarter, copy_all, copy_and_sync], sets, device, spec)
    assert 2.5 < all_ms / quarter_ms < 6
    assert synced_ms > 0.9 * all_ms
    torch.testing.assert_close(dst[1], src[1])
    assert torch.randn(8, device=device).isfinite().all()  # the failed capture left no trace


@pytest.mark.gpu
def test_gpu_study_ranks_its_final_by_both_clocks_and_caches_both(tmp_path: Path) -> None:
    """A CUDA study's final times every finalist by the graph clock and the flushed one;
    its cache entry keeps both and the ranking rule in its versions, so a later sweep
    compares entries by the same geometric mean."""
    from tuning import cache, tuner
    from tuning.workload import Task

    options = tuner.TuneOptions(n_trials=3, refine_rounds=1, out_dir=tmp_path, cache_path=tmp_path / "c.json")
    result = tuner.tune(Task("rms_norm", "infer", 1024, 2048, "bfloat16"), torch.device("cuda", 0), options)
    assert result.config is not None and result.error is None
    assert result.ms > 0 and result.flushed_ms > 0
    (entry,) = cache.load_entries(tmp_path / "c.json").values()
    assert entry["flushed_ms"] == result.flushed_ms and entry["versions"]["rank"] == timing.RANK
    assert cache.entry_score(entry) == pytest.approx(timing.Clocks(result.ms, result.flushed_ms).score)
