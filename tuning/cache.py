"""Config cache lookup (placeholder until the tuning service lands: always a miss)."""

from __future__ import annotations

import torch


def lookup(kernel: str, mode: str, m: int, n: int, dtype: torch.dtype, device: torch.device) -> dict | None:
    """The tuned Helion config (as a dict) for this kernel/mode/shape/dtype on ``device``'s GPU model, or None."""
    return None
