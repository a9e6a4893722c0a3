"""One benchmark entry, in its own process so that its peak memory is its own.

python -m kshot.benchmark.worker SPEC.json RESULT.json
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from ..config import KshotConfig, Params
from ..training import MetaTrainer, TrainerCallback, evaluate_tasks
from ..training.setup import build_tasks


class TimeBudget(TrainerCallback):
    """Stops meta-training once the wall-clock budget is spent (checked after every outer step)."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.t0 = time.perf_counter()

    def on_train_begin(self, trainer) -> None:
        self.t0 = time.perf_counter()

    def on_step_end(self, trainer, step, metrics) -> None:
        if self.seconds is not None and time.perf_counter() - self.t0 >= self.seconds:
            trainer.control.should_stop = True


def peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux: the peak of this process only, which is why each entry runs alone.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_entry(spec: dict) -> dict:
    config = KshotConfig.from_dict(spec["config"])
    params = Params.from_dict({**spec["params"], "test_after_train": False})
    trainer = MetaTrainer(config, params, callbacks=[TimeBudget(spec.get("budget_seconds"))])
    t0 = time.perf_counter()
    result = trainer.train()
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    test = trainer.test()
    eval_seconds = time.perf_counter() - t1
    extra = {}
    for name, raw in spec.get("extra", {}).items():
        extra_tasks = build_tasks(KshotConfig.from_dict(raw), params, trainer.tokenizer, with_training=False).test
        trainer.algorithm.load_state_dict(trainer.best_state)
        extra[name] = evaluate_tasks(
            trainer.algorithm,
            extra_tasks,
            params.eval_inner_steps,
            params.eval_batch_size,
            params.seed,
            trainer.accelerator,
        )
    return {
        "algorithm": params.algorithm,
        "steps": result.steps,
        "best_step": result.best_step,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "peak_rss_mib": peak_rss_mib(),
        "test": test,
        "extra": extra,
        "params": params.to_dict(),
    }


def main(argv: list[str] | None = None) -> None:
    spec_path, out_path = (argv or sys.argv[1:])[:2]
    spec = json.loads(Path(spec_path).read_text())
    from ..cli.logs import setup_logging

    setup_logging(spec["config"].get("logging", {}).get("log_dir", "logs"), "INFO")
    result = run_entry(spec)
    tmp = Path(out_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out_path)


if __name__ == "__main__":
    main()
