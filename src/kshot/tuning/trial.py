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
from ..tracking.runner import Lease, train_claimed
from ..tracking.store import AttemptStore
from ..training.callbacks import TrainerCallback
from ..training.checkpoint import CHECKPOINT_DIR
from .study import StudySpec, trial_attempt_name

logger = logging.getLogger(__name__)


class PruningCallback(TrainerCallback):
    """Reports each periodic validation to the trial; stops the run (as pruned) when the pruner says so."""

    def __init__(self, trial, metric: str):
        self.trial = trial
        self.metric = metric

    def on_train_begin(self, trainer) -> None:
        if not trainer.tasks.validation:
            raise ConfigError(
                "kshot tune scores trials on validation tasks, and this config has none: name some with "
                "data.validation_domains (or data.validation_classes), never the test tasks."
            )

    def on_evaluate(self, trainer, step: int, split: str, results: dict[str, Any]) -> None:
        if split != "validation":
            return
        self.trial.report(float(results["mean"][self.metric]), step)
        if self.trial.should_prune():
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


def trial_command(spec: StudySpec, study_name: str, number: int | None, sampled: dict[str, Any]):
    """(config, params, command) of one trial: the fixed ones, the sampled params, its own output folder."""
    params = Params.from_dict({**spec.params.to_dict(), **sampled})
    folder = Path(spec.config.output_dir) / study_name / ("pending" if number is None else f"trial-{number:04d}")
    config = KshotConfig.from_dict({**spec.config.to_dict(), "output_dir": str(folder)})
    command = {
        "config": config.to_dict(),
        "params": params.to_dict(),
        "tune": {"study": study_name, "trial": number, "sampled": sampled},
    }
    return config, params, command


def run_trial(
    store: AttemptStore, study, spec: StudySpec, slot: int, lease: Lease | None = None
) -> TrialOutcome | None:
    """Run the study's trial ``slot`` if no process has claimed it; None when another one has.

    The claim (one insert of a running, leased attempt) comes before Optuna's ``ask``: a trial slot
    is run by one process only, so processes sharing a study together run exactly its n_trials.
    """
    import optuna
    from optuna.trial import TrialState

    lease = lease or Lease()
    name = trial_attempt_name(study.study_name, slot)
    _, _, base_command = trial_command(spec, study.study_name, None, {})
    attempt = store.claim_trial(
        name, base_command, study.study_name, total_steps=spec.params.meta_steps, lease=lease.lease
    )
    if attempt is None:
        return None
    trial = None
    try:
        trial = study.ask(spec.space.distributions())
        trial.set_user_attr("attempt", name)
        config, params, command = trial_command(spec, study.study_name, trial.number, dict(trial.params))
        store.update_attempt(attempt.id, trial=trial.number, command=command)
        logger.info("Trial %d (%s): %s", trial.number, name, _short(trial.params))
        pruning = PruningCallback(trial, params.select_metric)
        result = train_claimed(store, attempt.id, config, params, False, lease, callbacks=[pruning])
    except (KeyboardInterrupt, SystemExit, LeaseLost):
        if trial is not None:
            study.tell(trial, state=TrialState.FAIL)
        else:
            store.finish_attempt(attempt.id, "failed", error="interrupted before its trial was sampled")
        raise
    except Exception as err:
        if trial is None:
            store.finish_attempt(attempt.id, "failed", error=f"{type(err).__name__}: {err}"[:8000])
            raise
        study.tell(trial, state=TrialState.FAIL)
        record = store.get_attempt(attempt.id)
        if record.status == "running":  # failed before the runner held it: say why on the attempt
            store.finish_attempt(attempt.id, "failed", error=f"{type(err).__name__}: {err}"[:8000])
        return TrialOutcome(trial.number, name, "failed", error=f"{type(err).__name__}: {err}")
    _drop_checkpoint(config.output_dir)
    if result is None or store.get_attempt(attempt.id).status == "cancelled":
        study.tell(trial, state=TrialState.FAIL)
        return TrialOutcome(trial.number, name, "failed", error="cancelled")
    if store.get_attempt(attempt.id).status == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
        return TrialOutcome(trial.number, name, "pruned", value=_last_report(trial))
    if result.best_metric is None:
        study.tell(trial, state=TrialState.FAIL)
        return TrialOutcome(trial.number, name, "failed", error="no validation score")
    try:
        study.tell(trial, float(result.best_metric))
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # failed by a reconciliation that thought this process gone; its attempt says what happened
    return TrialOutcome(trial.number, name, "complete", value=float(result.best_metric))


def _drop_checkpoint(output_dir: str) -> None:
    """A finished trial is never resumed: its checkpoint (the size of three models) goes, its best model stays."""
    shutil.rmtree(Path(output_dir) / CHECKPOINT_DIR, ignore_errors=True)


def _last_report(trial) -> float | None:
    reports = trial.storage.get_trial(trial._trial_id).intermediate_values
    return reports[max(reports)] if reports else None


def _short(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
