"""Callbacks: logging, the progress bar and (elsewhere) attempt tracking hang off the loop here."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("kshot.training")


@dataclass
class TrainerControl:
    """Set ``should_stop`` from a callback to end training after the current step (with a checkpoint).

    ``stop_reason``: why, for the callbacks that record the run ("pruned": a search gave up on it).
    """

    should_stop: bool = False
    stop_reason: str | None = None


class TrainerCallback:
    """Override any hook; every hook runs on the main process only."""

    def on_train_begin(self, trainer) -> None: ...

    def on_step_end(self, trainer, step: int, metrics: dict[str, float]) -> None: ...

    def on_evaluate(self, trainer, step: int, split: str, results: dict[str, Any]) -> None: ...

    def on_save(self, trainer, step: int, path: str, kind: str) -> None: ...

    def on_train_end(self, trainer, result) -> None: ...


class CallbackList:
    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def __getattr__(self, hook):
        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)

        return call


class LoggingCallback(TrainerCallback):
    def __init__(self, every: int = 10):
        self.every = every

    def on_train_begin(self, trainer) -> None:
        p = trainer.params
        logger.info(
            "Meta-training %s on %d tasks for %d steps"
            " (meta_batch_size=%d, k_support=%d, k_query=%d, inner_steps=%d), from step %d.",
            p.algorithm,
            len(trainer.tasks.train),
            p.meta_steps,
            p.meta_batch_size,
            p.k_support,
            p.k_query,
            p.inner_steps,
            trainer.start_step,
        )

    def on_step_end(self, trainer, step, metrics) -> None:
        if step % self.every == 0 or step == trainer.params.meta_steps:
            logger.info("step %d: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if not math.isnan(v)))

    def on_evaluate(self, trainer, step, split, results) -> None:
        mean = results.get("mean", {})
        if mean:
            logger.info(
                "step %d %s: accuracy=%.2f macro_f1=%.3f", step, split, 100 * mean["accuracy"], mean["macro_f1"]
            )

    def on_save(self, trainer, step, path, kind) -> None:
        logger.info("step %d: saved %s to %s", step, kind, path)


class ProgressCallback(TrainerCallback):
    def __init__(self):
        self.bar = None

    def on_train_begin(self, trainer) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=trainer.params.meta_steps,
            initial=trainer.start_step,
            desc="meta-training",
            unit="step",
            dynamic_ncols=True,
        )

    def on_step_end(self, trainer, step, metrics) -> None:
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in metrics.items()}, refresh=False)
        self.bar.update(1)

    def on_train_end(self, trainer, result) -> None:
        if self.bar is not None:
            self.bar.close()
