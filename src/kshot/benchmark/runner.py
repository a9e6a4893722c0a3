"""Run every algorithm of a benchmark under the same budget, each in its own process."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..algorithms import available
from ..config import KshotConfig, Params
from ..config.algorithms import algorithm_spec
from ..errors import ConfigError, KshotError, unknown_choice

logger = logging.getLogger(__name__)


@dataclass
class BenchmarkSpec:
    """What to compare: algorithms × one config, one base params, per-algorithm params overrides."""

    config: KshotConfig
    params: Params
    algorithms: list[str]
    out_dir: Path
    budget_minutes: float | None = None
    budget_steps: int | None = None
    algorithm_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra_configs: dict[str, KshotConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.algorithms:
            if name not in available():
                raise ConfigError(unknown_choice("algorithm", name, available()))
        if self.budget_minutes is None and self.budget_steps is None:
            raise ConfigError(
                "Give a budget: --budget-minutes M (same wall clock for all) or --budget-steps N (same outer steps)."
            )

    def entry(self, algorithm: str) -> dict[str, Any]:
        params = {**self.params.to_dict(), **self.algorithm_params.get(algorithm, {})}
        # A step budget is the same for every algorithm that meta-trains, whatever its own file says
        # (configs/intent/protonet.yaml's meta_steps must not stretch it); finetune keeps its one no-op step.
        # With a time budget the clock stops training; meta_steps only bounds it (and shapes the lr schedule).
        if self.budget_steps is not None and algorithm_spec(algorithm).meta_trains:
            params["meta_steps"] = self.budget_steps
        params["algorithm"] = algorithm
        Params.from_dict(params)  # fail here, before any run starts, on a bad override
        config = self.config.to_dict()
        config["output_dir"] = str(self.out_dir / "models" / algorithm)
        config["logging"] = {**config["logging"], "progress_bar": False}
        return {
            "config": config,
            "params": params,
            "budget_seconds": None if self.budget_minutes is None else 60.0 * self.budget_minutes,
            "extra": {name: cfg.to_dict() for name, cfg in self.extra_configs.items()},
        }


def run_benchmark(spec: BenchmarkSpec) -> dict[str, Any]:
    """Run each algorithm in a fresh process; a failure is recorded and the others still run."""
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for algorithm in spec.algorithms:
        logger.info("benchmark: %s", algorithm)
        with tempfile.TemporaryDirectory() as tmp:
            spec_file, out_file = Path(tmp) / "spec.json", Path(tmp) / "result.json"
            spec_file.write_text(json.dumps(spec.entry(algorithm)))
            proc = subprocess.run(
                [sys.executable, "-m", "kshot.benchmark.worker", str(spec_file), str(out_file)],
                capture_output=True,
                text=True,
            )
            if proc.returncode == 0 and out_file.exists():
                results[algorithm] = json.loads(out_file.read_text())
            else:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
                logger.error("benchmark: %s failed: %s", algorithm, " | ".join(tail))
                results[algorithm] = {"algorithm": algorithm, "error": "\n".join(tail)}
        _write_json(
            spec.out_dir / "results.json",
            {"budget_minutes": spec.budget_minutes, "budget_steps": spec.budget_steps, "results": results},
        )
    if all("error" in r for r in results.values()):
        raise KshotError(f"Every benchmark run failed; see {spec.out_dir / 'results.json'}.")
    return results


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
