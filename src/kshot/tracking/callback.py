"""TrackingCallback: records a MetaTrainer run into its attempt, and stops it when a cancel is asked."""

from __future__ import annotations

from typing import Any

from ..training.callbacks import TrainerCallback
from .store import AttemptStore


class TrackingCallback(TrainerCallback):
    """Writes every step's losses and every evaluation; sets the final status and metrics at the end.

    ``heartbeat``: the lease this process holds on the attempt (``heartbeat.Heartbeat``); when it
    was lost (the attempt was ended or resumed elsewhere) the run stops with LeaseLost before it
    writes anything more.
    """

    def __init__(self, store: AttemptStore, attempt_id: int, heartbeat=None):
        self.store = store
        self.attempt_id = attempt_id
        self.heartbeat = heartbeat
        self.cancelled = False

    def _check(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.check()

    def on_train_begin(self, trainer) -> None:
        self._check()
        # A resumed run repeats the steps after its checkpoint: drop their earlier records.
        self.store.truncate_steps(self.attempt_id, trainer.start_step)
        if self.heartbeat is None:  # used on its own, with a MetaTrainer of the caller's
            self.store.update_attempt(self.attempt_id, status="running", total_steps=trainer.params.meta_steps)
        else:  # claimed by the runner (running, leased) before anything loaded: only the total is new
            self.store.update_attempt(self.attempt_id, total_steps=trainer.params.meta_steps)

    def on_step_end(self, trainer, step: int, metrics: dict[str, float]) -> None:
        self._check()
        self.store.add_step(self.attempt_id, step, metrics)
        if self.store.cancel_requested(self.attempt_id):
            self.cancelled = True
            trainer.control.should_stop = True

    def on_evaluate(self, trainer, step: int, split: str, results: dict[str, Any]) -> None:
        self._check()
        self.store.add_evaluation(self.attempt_id, step, split, results)

    def on_save(self, trainer, step: int, path: str, kind: str) -> None:
        self._check()
        key = "best_model" if kind == "best model" else kind.replace(" ", "_")
        artefacts = self.store.get_attempt(self.attempt_id).artefacts
        if artefacts.get(key) != path:
            self.store.update_attempt(self.attempt_id, artefacts={**artefacts, key: path})

    def on_train_end(self, trainer, result) -> None:
        self._check()
        metrics = final_metrics(result)
        if self.cancelled:
            status = "cancelled"
        else:
            status = "pruned" if trainer.control.stop_reason == "pruned" else "completed"
        if self.heartbeat is not None:
            self.heartbeat.stop()  # the attempt is about to end: no beat must find it finished
        self.store.finish_attempt(self.attempt_id, status, metrics=metrics)


def final_metrics(result) -> dict[str, Any]:
    """Mean test accuracy/macro-F1 (else the best validation's), with the run's timing and best step."""
    metrics: dict[str, Any] = {
        "steps": result.steps,
        "best_step": result.best_step,
        "best_metric": result.best_metric,
        "train_seconds": result.train_seconds,
    }
    if result.test:
        metrics.update(result.test.get("mean", {}), split="test")
    elif result.validation:
        best = next((v for v in result.validation if v.get("step") == result.best_step), result.validation[-1])
        metrics.update(best.get("mean", {}), split="validation")
    return metrics
