"""``kshot benchmark``: meta-train several algorithms under one budget and compare them."""

from .report import format_markdown, plot_accuracy_vs_time
from .runner import BenchmarkSpec, run_benchmark

__all__ = ["BenchmarkSpec", "format_markdown", "plot_accuracy_vs_time", "run_benchmark"]
