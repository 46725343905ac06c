"""Argument checks: a user mistake gets a ValueError/TypeError naming the argument,
never a Helion or Triton traceback from deep inside a compile."""

from __future__ import annotations

import math

import torch

SUPPORTED_DTYPES = frozenset((torch.float32, torch.float16, torch.bfloat16))
CASTINGS = ("llama", "gemma", "none")

# The checks run on every call, so the passing path is kept to a few attribute reads
# and comparisons; the messages are only built on failure.


def _tensor(fn: str, name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{fn}: {name} must be float32, float16 or bfloat16, got {t.dtype}"
        )
    return t


def _same_device(fn: str, name: str, t: torch.Tensor, device: torch.device) -> None:
    if t.device != device:
        raise ValueError(f"{fn}: {name} is on {t.device} but x is on {device}")


def _param(fn: str, name: str, t: torch.Tensor, x: torch.Tensor, device: torch.device) -> None:
    _tensor(fn, name, t)
    _same_device(fn, name, t, device)
    n = x.shape[-1]
    if t.shape != (n,):
        raise ValueError(
            f"{fn}: {name} must have shape ({n},) to match the last dim of x, "
            f"got {tuple(t.shape)}"
        )


def _like_x(fn: str, name: str, t: torch.Tensor, x: torch.Tensor, device: torch.device) -> None:
    _tensor(fn, name, t)
    _same_device(fn, name, t, device)
    if t.shape != x.shape:
        raise ValueError(
            f"{fn}: {name} must have the shape of x {tuple(x.shape)}, got {tuple(t.shape)}"
        )
    if t.dtype != x.dtype:
        raise TypeError(f"{fn}: {name} must have the dtype of x ({x.dtype}), got {t.dtype}")


def check_eps(fn: str, eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"{fn}: eps must be a float, got {type(eps).__name__}")
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"{fn}: eps must be a finite number > 0, got {eps}")
    return float(eps)


def check_groups(fn: str, group_size: object, n: int) -> int:
    """Number of groups G the last dim splits into (1 when group_size is None)."""
    if group_size is None:
        return 1
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"{fn}: group_size must be an int, got {type(group_size).__name__}")
    if group_size <= 0 or n % group_size != 0:
        raise ValueError(
            f"{fn}: group_size must be a positive divisor of the hidden size {n}, "
            f"got {group_size}"
        )
    return n // group_size


def check_casting(fn: str, casting: object) -> str:
    if casting not in CASTINGS:
        raise ValueError(f"{fn}: casting must be one of {CASTINGS}, got {casting!r}")
    return casting  # type: ignore[return-value]


def check_offset(fn: str, offset: object) -> float:
    if isinstance(offset, bool) or not isinstance(offset, (int, float)):
        raise TypeError(f"{fn}: offset must be a float, got {type(offset).__name__}")
    return float(offset)


def check_norm_args(
    fn: str,
    x: object,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    z: torch.Tensor | None,
    residual: torch.Tensor | None,
    eps: object,
    group_size: object,
) -> tuple[float, int]:
    """Validate every tensor argument; returns (eps, number of groups)."""
    x = _tensor(fn, "x", x)
    if x.dim() == 0:
        raise ValueError(f"{fn}: x must have at least one dimension, got a scalar")
    device = x.device
    if weight is not None:
        _param(fn, "weight", weight, x, device)
    if bias is not None:
        _param(fn, "bias", bias, x, device)
    if z is not None:
        _like_x(fn, "z", z, x, device)
    if residual is not None:
        _like_x(fn, "residual", residual, x, device)
    groups = 1 if group_size is None else check_groups(fn, group_size, x.shape[-1])
    return check_eps(fn, eps), groups
