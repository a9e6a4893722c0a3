"""``kshot benchmark``: meta-train several algorithms under one budget and compare them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Imported on first use: the CLI checks a benchmark's options (benchmark.settings) before torch loads.
_EXPORTS = {
    "BenchmarkSpec": ".runner",
    "run_benchmark": ".runner",
    "format_markdown": ".report",
    "plot_accuracy_vs_time": ".report",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from .report import format_markdown, plot_accuracy_vs_time
    from .runner import BenchmarkSpec, run_benchmark


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'kshot.benchmark' has no attribute {name!r}")
