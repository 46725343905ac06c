"""Shared test setup.

Without ``-m gpu`` the suite runs on the CPU, where CPU tensors take two routes through
the same kernels: Helion's eager reference mode, and the generated Triton code under
Triton's interpreter. The interpreter must be switched on before Triton is imported,
hence the environment variable is set here, before any test module loads.
"""

from __future__ import annotations

import os


def pytest_configure(config) -> None:  # noqa: ANN001
    markexpr = config.getoption("-m") or ""
    if "gpu" in markexpr and "not gpu" not in markexpr:
        return
    os.environ.setdefault("TRITON_INTERPRET", "1")
