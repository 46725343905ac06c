"""tuning.timing on a GPU: kernel time from CUDA-graph replays, eager fallback."""

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
