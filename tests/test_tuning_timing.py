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
