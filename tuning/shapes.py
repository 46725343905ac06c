"""The shape sets every tool shares (sweep, benchmark, TritonBench operators) and the
``MxN`` parser. No dependencies: the runtime path, bench/ and tritonbench_ops import it."""

from __future__ import annotations

import re

# The table of shared/GPU_HOST.md, in its order.
GPU_HOST = ((4096, 1024), (4096, 4096), (4096, 8192), (4096, 16384), (8192, 4096), (32768, 4096), (2048, 32768))

# TritonBench's own inputs: layer_norm M = 4096, N = 1024 .. 15872 in steps of 512;
# rms_norm M = 2048, H = 1024 .. 32768 in powers of two.
TRITONBENCH_LAYER_NORM = tuple((4096, 512 * i) for i in range(2, 32))
TRITONBENCH_RMS_NORM = tuple((2048, 2**i) for i in range(10, 16))

# Hidden sizes of common LLMs (Llama/Qwen/Mistral/Gemma 1B-70B), at a 4096- and a
# 16384-token batch.
LLM = tuple((m, n) for m in (4096, 16384) for n in (2048, 2560, 3072, 3584, 4096, 5120, 8192))

# Decode-sized inputs (issue 6's M = 1..128): a handful of tokens at common hidden sizes.
# Configs tuned at M = 4096 fit them badly (one program walking all 32 rows of a backward,
# 4 warps on a single row), so they are tuned and benchmarked as shapes of their own.
DECODE = tuple((m, n) for n in (4096, 8192) for m in (1, 8, 32, 128))

_SHAPE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_shape(token: str) -> tuple[int, int]:
    """``"4096x1024"`` -> ``(4096, 1024)``; ValueError naming the token otherwise."""
    match = _SHAPE.match(token)
    if match is None:
        raise ValueError(f"shape {token!r} is not MxN (e.g. 4096x1024)")
    m, n = int(match.group(1)), int(match.group(2))
    if m < 1 or n < 1:
        raise ValueError(f"shape {token!r}: M and N must be positive")
    return m, n


def parse_shapes(text: str) -> tuple[tuple[int, int], ...]:
    """``"4096x1024,8192x4096"`` -> ``((4096, 1024), (8192, 4096))``; empty items skipped."""
    shapes = tuple(parse_shape(item) for item in text.split(",") if item.strip())
    if not shapes:
        raise ValueError(f"no shapes in {text!r}")
    return shapes
