"""The new-classes benchmark's settings and baseline names: torch-free, so the CLI checks its options first."""

from __future__ import annotations

from typing import Any

SETTINGS: dict[str, dict[str, Any]] = {
    "5-way 1-shot": {"eval_way": 5, "eval_shots": 1, "eval_queries": 5, "eval_episodes": 600},
    "5-way 5-shot": {"eval_way": 5, "eval_shots": 5, "eval_queries": 5, "eval_episodes": 600},
    "all-way 1-shot": {"eval_way": "all", "eval_shots": 1, "eval_queries": 5, "eval_episodes": 100},
    "all-way 5-shot": {"eval_way": "all", "eval_shots": 5, "eval_queries": 5, "eval_episodes": 100},
}

BASELINES = ("frozen_prototypes", "logistic_regression", "setfit")
"""What ``--baselines`` accepts: the methods of :mod:`kshot.benchmark.baselines` (a test keeps the two equal)."""
