"""Which training calls take the C++ route end to end? (bench/NOTES.md attempt 85)

A repeated CUDA training call replays its forward and backward launches in C++
(``kernels.native``); a backward the C++ plan cannot hold calls back into Python on every
call, which cost the exchange backward 40-80 us of host time a call at 2048x32768 until
attempt 85. Here, for each shape, three fwd+bwd calls through the public API, then: whether
the call has a native handle and how many backward records it holds (0: the backward runs
the Python route on every call), and the backward config's schedule.

    python bench/prototypes/native_route_probe.py [--shapes MxN,...] [--dtypes bf16,fp16,fp32]
"""

import torch

from probe_common import ProbeRun  # run from the repo root or this folder

import kernels
from kernels import launch, native

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
SHAPES = "4096x1024,4096x4096,4096x8192,4096x16384,8192x4096,32768x4096,2048x32768,2048x16384,4096x10240,4096x13824"


def route(op: str, dtype: torch.dtype, m: int, n: int) -> str:
    launch.fast_plans.clear()
    w = torch.randn(n, device="cuda", dtype=dtype, requires_grad=True)
    b = torch.randn(n, device="cuda", dtype=dtype, requires_grad=True)
    for _ in range(3):
        x = torch.randn(m, n, device="cuda", dtype=dtype, requires_grad=True)
        out = kernels.rms_norm(x, w) if op == "rms_norm" else kernels.layer_norm(x, w, b)
        torch.autograd.grad(out, [x, w] if op == "rms_norm" else [x, w, b], torch.randn_like(out))
    torch.cuda.synchronize()
    (call,) = launch.fast_plans.values()
    config = launch.choose_config(op, "bwd", m, n, 1, dtype, x.device)
    split, exchange = launch._bwd_schedule(config, n, x.device)
    schedule = "exchange" if exchange else ("split" if split else "fused")
    records = native.backward_records(call.native) if call.native is not None else None
    return f"native={call.native is not None} backward_records={records} schedule={schedule}"


def main() -> None:
    probe = ProbeRun()
    shapes = [tuple(map(int, s.split("x"))) for s in (probe.option("--shapes") or SHAPES).split(",")]
    dtypes = (probe.option("--dtypes") or "bf16,fp16,fp32").split(",")
    for op in ("layer_norm", "rms_norm"):
        for dt in dtypes:
            for m, n in shapes:
                if probe.out_of_time():
                    return
                print(f"{op:<10} {dt} {m}x{n:<6} {route(op, DTYPES[dt], m, n)}", flush=True)


if __name__ == "__main__":
    main()
