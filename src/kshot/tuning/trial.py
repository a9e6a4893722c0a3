"""One trial of a study: claim it, sample its params, meta-train it as an attempt, report, prune, tell."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import KshotConfig, Params
from ..errors import ConfigError
from ..tracking.heartbeat import LeaseLost
from ..tracking.runner import Lease, error_text, interrupted_text, train_claimed
from ..tracking.store import AttemptStore
from ..training.callbacks import TrainerCallback
from ..training.checkpoint import CHECKPOINT_DIR
from .study import StudySpec, trial_attempt_name

logger = logging.getLogger(__name__)


class PruningCallback(TrainerCallback):
    """Reports each periodic validation to the trial; stops the run (as pruned) when the pruner says so."""

    def __init__(self, trial, metric: str, spec: StudySpec):
        self.trial = trial
        self.metric = metric
        self.spec = spec  # how validations are reported (prune_by) and from which step they may prune
        self.last_value: float | None = None  # the last value reported: a pruned trial's score

    def on_train_begin(self, trainer) -> None:
        if not trainer.tasks.validation:
            raise ConfigError(
                "kshot tune scores trials on validation tasks, and this config has none: name some with "
                "data.validation_domains (or data.validation_classes), never the test tasks."
            )
        # The schedule its reports are fractions of (prune_by progress), for whoever reads the study back.
        self.trial.set_user_attr("meta_steps", trainer.params.meta_steps)

    def on_evaluate(self, trainer, step: int, split: str, results: dict[str, Any]) -> None:
        if split != "validation":
            return
        self.last_value = float(results["mean"][self.metric])
        meta_steps = trainer.params.meta_steps
        self.trial.report(self.last_value, self.spec.pruner_step(step, meta_steps))
        # At its last step a trial has spent its time: it completes, with its value, below a median or not.
        prunable = self.spec.prune_after < step < meta_steps
        if prunable and self.trial.should_prune():
            logger.info("Trial %d pruned at step %d.", self.trial.number, step)
            trainer.control.should_stop = True
            trainer.control.stop_reason = "pruned"


@dataclass
class TrialOutcome:
    number: int
    attempt: str
    state: str  # complete, pruned, failed
    value: float | None = None
    error: str | None = None


def trial_base_command(spec: StudySpec, study_name: str, attempt_name: str) -> dict[str, Any]:
    """The command a trial's attempt starts with: the fixed config and params, its own output folder.

    The folder is named after the attempt (not Optuna's trial number, known only later), so the
    service can create and own it when it queues the trial.
    """
    config = {**spec.config.to_dict(), "output_dir": str(Path(spec.config.output_dir) / attempt_name)}
    return {"config": config, "params": spec.params.to_dict(), "tune": {"study": study_name}}


def run_trial(
    store: AttemptStore, study, spec: StudySpec, slot: int, lease: Lease | None = None
) -> TrialOutcome | None:
    """Run the study's trial ``slot`` if no process has claimed it; None when another one has.

    The claim (one insert of a running, leased attempt) comes before Optuna's ``ask``: a trial slot
    is run by one process only, so processes sharing a study together run exactly its n_trials.
    """
    lease = lease or Lease()
    name = trial_attempt_name(study.study_name, slot)
    command = trial_base_command(spec, study.study_name, name)
    attempt = store.claim_trial(name, command, study.study_name, total_steps=spec.params.meta_steps, lease=lease.lease)
    if attempt is None:
        return None
    return run_claimed_trial(store, study, spec, attempt, lease)


def run_claimed_trial(store: AttemptStore, study, spec: StudySpec, attempt, lease: Lease) -> TrialOutcome:
    """Sample, meta-train and tell one trial whose attempt this process holds (running, leased).

    The attempt's own command is the base (config, fixed params): the service resolved it under its
    roots before the worker got here. Only the sampled params are added to it.
    """
    from optuna.trial import TrialState

    name, trial = attempt.name, None
    try:
        trial = study.ask(spec.space.distributions())
        trial.set_user_attr("attempt", name)
        sampled = dict(trial.params)
        params = Params.from_dict({**attempt.command["params"], **sampled})
        config = KshotConfig.from_dict(attempt.command["config"])
        command = {
            **attempt.command,
            "params": params.to_dict(),
            "tune": {"study": study.study_name, "trial": trial.number, "sampled": sampled},
        }
        store.update_attempt(attempt.id, trial=trial.number, command=command)
        logger.info("Trial %d (%s): %s", trial.number, name, _short(sampled))
        pruning = PruningCallback(trial, params.select_metric, spec)
        result = train_claimed(store, attempt.id, config, params, False, lease, callbacks=[pruning])
    except (KeyboardInterrupt, SystemExit, LeaseLost):
        if trial is not None:
            _tell(study, trial, TrialState.FAIL)
        if _running(store, attempt.id):  # interrupted before the runner held it
            store.finish_attempt(attempt.id, "failed", error=interrupted_text(attempt))
        raise
    except Exception as err:
        error = error_text(err)
        if trial is not None:
            _tell(study, trial, TrialState.FAIL)
        if _running(store, attempt.id):  # failed before the runner held it: say why on the attempt
            store.finish_attempt(attempt.id, "failed", error=error)
        return TrialOutcome(-1 if trial is None else trial.number, name, "failed", error=error)
    _drop_checkpoint(config.output_dir)
    status = store.get_attempt(attempt.id).status
    if result is None or status == "cancelled":
        _tell(study, trial, TrialState.FAIL)
        return TrialOutcome(trial.number, name, "failed", error="cancelled")
    if status == "pruned":
        _tell(study, trial, TrialState.PRUNED)
        return TrialOutcome(trial.number, name, "pruned", value=pruning.last_value)
    if result.best_metric is None:
        _tell(study, trial, TrialState.FAIL)
        return TrialOutcome(trial.number, name, "failed", error="no validation score")
    _tell(study, trial, None, float(result.best_metric))
    return TrialOutcome(trial.number, name, "complete", value=float(result.best_metric))


def _tell(study, trial, state, value: float | None = None) -> None:
    import optuna

    try:
        study.tell(trial, value, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # failed by a reconciliation that took this process for gone; its attempt says what happened


def _running(store: AttemptStore, attempt_id: int) -> bool:
    record = store.get_attempt(attempt_id)
    return record is not None and record.status == "running"


def _drop_checkpoint(output_dir: str) -> None:
    """A finished trial is never resumed: its checkpoint (the size of three models) goes, its best model stays."""
    shutil.rmtree(Path(output_dir) / CHECKPOINT_DIR, ignore_errors=True)


def _short(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def run_queued_trial(store: AttemptStore, attempt_id: int, *, lease: Lease, expect=("queued",)) -> bool:
    """A worker's job for a trial the service queued: claim its attempt, then sample and train it.

    Returns whether this process claimed the attempt (a job delivered twice runs once).
    """
    from .storage import optuna_storage
    from .study import open_study

    if store.start_attempt(attempt_id, expect=expect, lease=lease.lease) is None:
        return False
    attempt = store.get_attempt(attempt_id)
    try:
        study, spec = open_study(optuna_storage(store.url), attempt.study, None)
    except Exception as err:  # the study was deleted, or its stored spec is no longer valid
        store.finish_attempt(attempt_id, "failed", error=error_text(err))
        return True
    outcome = run_claimed_trial(store, study, spec, attempt, lease)
    logger.info("Trial %s: %s%s", attempt.name, outcome.state, "" if outcome.value is None else f" {outcome.value:.4f}")
    return True
