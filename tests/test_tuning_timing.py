"""tuning.timing: kernel time from CUDA-graph replays (GPU), eager fallback, timing in turns."""

from __future__ import annotations

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
