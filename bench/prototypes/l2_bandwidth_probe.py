"""How much faster the L2 serves a re-read than HBM does (bench/NOTES.md attempt 46).

A fused backward for rows too wide to hold would read x and dy once from HBM and again
from the L2, and keep its dW/dB partial row in the L2 (read-modify-write per row step):
per row two to three times the HBM bytes go through the L2. Whether that can beat the
split schedule depends on the L2's bandwidth over HBM's, measured here on one GPU:
a device-to-device copy (read + write) and a sum (read) of buffers from 4 MB to 1 GiB,
each timed as 20 back-to-back calls in one CUDA graph on the same buffer, so every
size under the L2 is served from it after the first call.

    python bench/prototypes/l2_bandwidth_probe.py
"""

import torch

SIZES_MB = [4, 8, 16, 24, 32, 48, 64, 128, 1024]
CALLS = 20


def _graph_us(fn) -> float:  # noqa: ANN001
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(CALLS):
            fn()
    best = float("inf")
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) * 1e3 / CALLS)
    return best


def main() -> None:
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, best of 10 graph replays of {CALLS} calls")
    for mb in SIZES_MB:
        n = mb * 2**20 // 2
        x = torch.randn(n, device="cuda", dtype=torch.bfloat16)
        y = torch.empty_like(x)
        acc = torch.empty((), device="cuda", dtype=torch.float32)
        copy_us = _graph_us(lambda: y.copy_(x))
        sum_us = _graph_us(lambda: torch.sum(x, dim=0, dtype=torch.float32, out=acc))
        nbytes = x.numel() * x.element_size()
        print(
            f"{mb:5d} MB: copy {copy_us:8.1f} us {2 * nbytes / copy_us / 1e3:6.0f} GB/s (read + write)   "
            f"sum {sum_us:8.1f} us {nbytes / sum_us / 1e3:6.0f} GB/s (read)",
            flush=True,
        )


if __name__ == "__main__":
    main()
