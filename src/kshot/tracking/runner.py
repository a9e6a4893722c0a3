"""Running an attempt: training or testing as its command says, recorded in the store from start to end.

The CLI calls ``train_attempt`` / ``evaluate_attempt`` (errors propagate to the user); service workers
call ``run_training_attempt`` / ``run_test_attempt``, which record a failure and return.

Either way the process claims the attempt (``store.start_attempt``, one conditional update) and
holds its lease while it runs: a heartbeat thread renews it (see ``heartbeat``), so that a process
that dies without a word leaves an attempt any reconciliation can tell is gone.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import KshotConfig, Params
from ..errors import ConfigError, KshotError
from .callback import TrackingCallback
from .errors import AttemptError, AttemptNotFound
from .heartbeat import Heartbeat, LeaseLost, lease_timing
from .records import AttemptRecord
from .store import AttemptStore

logger = logging.getLogger(__name__)
MAX_ERROR_CHARS = 8000


def new_attempt_name(kind: str) -> str:
    """E.g. ``train-20260131-142501-3f9a``: sortable by time, unique in practice."""
    return f"{kind}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def train_command(config: KshotConfig, params: Params) -> dict[str, Any]:
    return {"config": config.to_dict(), "params": params.to_dict()}


def eval_command(
    model: str | Path, config: KshotConfig, params_overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"model": str(model), "config": config.to_dict(), "params": dict(params_overrides or {})}


def configs_from_command(command: dict[str, Any]) -> tuple[KshotConfig, Params]:
    try:
        config = KshotConfig.from_dict(command.get("config") or {})
        params = Params.from_dict(command.get("params") or {})
    except ConfigError as err:
        raise ConfigError(f"The attempt's command: {err}") from None
    return config, params


@contextlib.contextmanager
def recording_failure(store: AttemptStore, attempt_id: int):
    """Mark the attempt failed with the error text if the block raises, then re-raise.

    Not when this process lost the attempt (LeaseLost): it is someone else's to write by then.
    """
    try:
        yield
    except LeaseLost:
        raise
    except BaseException as err:
        store.finish_attempt(attempt_id, "failed", error=error_text(err, store.get_attempt(attempt_id)))
        raise


class Lease:
    """How a run holds its attempt: heartbeat every ``every`` s, lease ``lease`` s (default: the environment's).

    ``kill_when_lost``: a worker's job process kills itself when it lost the attempt and does not stop.
    """

    def __init__(self, every: float | None = None, lease: float | None = None, *, kill_when_lost: bool = False):
        default_every, default_lease = lease_timing()
        self.every = default_every if every is None else every
        self.lease = default_lease if lease is None else lease
        self.kill_when_lost = kill_when_lost

    def hold(self, store: AttemptStore, attempt_id: int) -> Heartbeat:
        return Heartbeat(store, attempt_id, self.every, self.lease, kill_when_lost=self.kill_when_lost)


def interrupted_text(attempt: AttemptRecord | None) -> str:
    """The error of an attempt stopped by Ctrl-C or a signal, and how to go on: a trial is failed in its study
    (the study runs a new one), a training run resumes from its checkpoint, a test starts again."""
    if attempt is not None and attempt.study:
        again = f"run `kshot tune --study {attempt.study}` again: the study goes on with a new trial"
    elif attempt is None or attempt.kind == "train":
        again = "resume to continue from the last checkpoint"
    else:
        again = "start the test again"
    return f"interrupted: the run was stopped (Ctrl-C or a signal); {again}"


def error_text(err: BaseException, attempt: AttemptRecord | None = None) -> str:
    """What an attempt that raised ``err`` says: what happened and, where it helps, what to do."""
    if isinstance(err, (KeyboardInterrupt, SystemExit)):
        return interrupted_text(attempt)
    if isinstance(err, KshotError):
        return f"{type(err).__name__}: {err}"
    # An unexpected error: keep the traceback, it is what someone will need to fix it.
    return "".join(traceback.format_exception(err))[-MAX_ERROR_CHARS:]


def train_attempt(
    store: AttemptStore,
    attempt_id: int,
    config: KshotConfig,
    params: Params,
    *,
    resume: bool = False,
    accelerator=None,
    callbacks: list | None = None,
    lease: Lease | None = None,
):
    """Meta-train, recording into the attempt; on an error the attempt is marked failed and the error re-raised.

    Returns the TrainResult, or None when the attempt was cancelled before it started.
    """
    from ..training import MetaTrainer

    if accelerator is not None and not accelerator.is_main_process:
        # Under `accelerate launch` the main process alone writes the attempt.
        return MetaTrainer(config, params, callbacks=callbacks, accelerator=accelerator).train(resume=resume)
    lease = lease or Lease()
    with recording_failure(store, attempt_id):
        if store.start_attempt(attempt_id, total_steps=params.meta_steps, resume=resume, lease=lease.lease) is None:
            logger.info("Attempt %s was cancelled before it started.", attempt_id)
            return None
    return train_claimed(store, attempt_id, config, params, resume, lease, accelerator, callbacks)


def train_claimed(store, attempt_id, config, params, resume, lease: Lease, accelerator=None, callbacks=None):
    """Train an attempt this process has claimed, holding its lease until the run ends."""
    from ..training import MetaTrainer

    with recording_failure(store, attempt_id), lease.hold(store, attempt_id) as heartbeat:
        tracking = TrackingCallback(store, attempt_id, heartbeat=heartbeat)
        trainer = MetaTrainer(config, params, callbacks=[tracking, *(callbacks or [])], accelerator=accelerator)
        return trainer.train(resume=resume)


def evaluate_attempt(
    store: AttemptStore,
    attempt_id: int,
    model: str | Path,
    config: KshotConfig,
    params_overrides: dict[str, Any] | None = None,
    accelerator=None,
    lease: Lease | None = None,
) -> dict[str, Any] | None:
    """Few-shot evaluation of a saved model, recorded as the attempt's test results (step 0).

    Returns None when the attempt was cancelled before it started.
    """
    _import_before_claim("evaluate_saved")
    lease = lease or Lease()
    with recording_failure(store, attempt_id):
        if store.start_attempt(attempt_id, lease=lease.lease) is None:
            logger.info("Attempt %s was cancelled before it started.", attempt_id)
            return None
    return _evaluate_claimed(store, attempt_id, model, config, params_overrides, lease, accelerator)


def _evaluate_claimed(store, attempt_id, model, config, params_overrides, lease: Lease, accelerator=None):
    from ..training import evaluate_model

    with recording_failure(store, attempt_id), lease.hold(store, attempt_id) as heartbeat:
        results = evaluate_model(model, config, params_overrides, accelerator=accelerator)
        heartbeat.check()
        store.add_evaluation(attempt_id, 0, "test", results)
        # Evaluation cannot stop half-way; a cancel asked meanwhile still keeps the results.
        status = "cancelled" if store.cancel_requested(attempt_id) else "completed"
        heartbeat.check()
        heartbeat.stop()
        store.finish_attempt(attempt_id, status, metrics={**results.get("mean", {}), "split": "test"})
        return results


def run_training_attempt(
    store: AttemptStore,
    attempt_id: int,
    *,
    resume: bool = False,
    expect: tuple[str, ...] | None = None,
    lease: Lease | None = None,
) -> bool:
    """Train as the attempt's command says; any error ends the attempt 'failed' with its text (nothing raised).

    ``expect``: the statuses this process may claim it from (a worker: only queued, so that a job
    delivered twice runs once). Returns whether this process claimed (and so ran) the attempt.
    """
    attempt = _runnable(store, attempt_id, "train", resume)
    if attempt is None:
        return False
    _import_before_claim("trainer")
    lease = lease or Lease()
    try:
        if store.start_attempt(attempt_id, resume=resume, expect=expect, lease=lease.lease) is None:
            logger.info("Attempt %s was not started here: it is %s.", attempt.name, _status(store, attempt_id))
            return False
        with recording_failure(store, attempt_id):
            config, params = configs_from_command(attempt.command)
        train_claimed(store, attempt_id, config, params, resume, lease)
    except Exception as err:
        logger.warning("Attempt %s failed: %s", attempt.name, err)
    return True


def run_test_attempt(
    store: AttemptStore, attempt_id: int, *, expect: tuple[str, ...] | None = None, lease: Lease | None = None
) -> bool:
    """Evaluate the attempt's ``command["model"]`` on its config's test tasks; errors end it 'failed'.

    Returns whether this process claimed (and so ran) the attempt; ``expect`` as for training.
    """
    attempt = _runnable(store, attempt_id, "test")
    if attempt is None:
        return False
    _import_before_claim("evaluate_saved")
    lease = lease or Lease()
    try:
        if store.start_attempt(attempt_id, expect=expect, lease=lease.lease) is None:
            logger.info("Attempt %s was not started here: it is %s.", attempt.name, _status(store, attempt_id))
            return False
        with recording_failure(store, attempt_id):
            model = attempt.command.get("model")
            if not isinstance(model, str) or not model:
                raise ConfigError("The attempt's command has no 'model' (the folder of a saved model) to test.")
            config = KshotConfig.from_dict(attempt.command.get("config") or {})
        _evaluate_claimed(store, attempt_id, model, config, attempt.command.get("params") or {}, lease)
    except Exception as err:
        logger.warning("Attempt %s failed: %s", attempt.name, err)
    return True


def _import_before_claim(module: str) -> None:
    """Import torch and transformers before the lease starts: a long import holds the interpreter
    lock for seconds at a time, and with it the heartbeat thread."""
    import importlib

    importlib.import_module(f"kshot.training.{module}")


def _status(store: AttemptStore, attempt_id: int) -> str:
    attempt = store.get_attempt(attempt_id)
    return attempt.status if attempt is not None else "deleted"


def _runnable(store: AttemptStore, attempt_id: int, kind: str, resume: bool = False) -> AttemptRecord | None:
    attempt = store.get_attempt(attempt_id)
    if attempt is None:
        raise AttemptNotFound(f"No attempt with id {attempt_id}.")
    if attempt.kind != kind:
        raise AttemptError(f"Attempt '{attempt.name}' is a {attempt.kind} attempt, not a {kind} attempt.")
    if attempt.status == "cancelled" and not resume:
        logger.info("Attempt %s was cancelled before it started.", attempt.name)
        return None
    return attempt
