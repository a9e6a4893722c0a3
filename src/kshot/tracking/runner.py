"""Running an attempt: training or testing as its command says, recorded in the store from start to end.

The CLI calls ``train_attempt`` / ``evaluate_attempt`` (errors propagate to the user); service workers
call ``run_training_attempt`` / ``run_test_attempt``, which record a failure and return.
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
    """Mark the attempt failed with the error text if the block raises, then re-raise."""
    try:
        yield
    except BaseException as err:
        store.finish_attempt(attempt_id, "failed", error=error_text(err))
        raise


def error_text(err: BaseException) -> str:
    if isinstance(err, (KeyboardInterrupt, SystemExit)):
        return "interrupted"
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
):
    """Meta-train, recording into the attempt; on an error the attempt is marked failed and the error re-raised.

    Returns the TrainResult, or None when the attempt was cancelled before it started.
    """
    from ..training import MetaTrainer

    if accelerator is not None and not accelerator.is_main_process:
        # Under `accelerate launch` the main process alone writes the attempt.
        return MetaTrainer(config, params, callbacks=callbacks, accelerator=accelerator).train(resume=resume)
    with recording_failure(store, attempt_id):
        if store.start_attempt(attempt_id, total_steps=params.meta_steps, resume=resume) is None:
            logger.info("Attempt %s was cancelled before it started.", attempt_id)
            return None
        tracking = TrackingCallback(store, attempt_id)
        trainer = MetaTrainer(config, params, callbacks=[tracking, *(callbacks or [])], accelerator=accelerator)
        return trainer.train(resume=resume)


def evaluate_attempt(
    store: AttemptStore,
    attempt_id: int,
    model: str | Path,
    config: KshotConfig,
    params_overrides: dict[str, Any] | None = None,
    accelerator=None,
) -> dict[str, Any] | None:
    """Few-shot evaluation of a saved model, recorded as the attempt's test results (step 0); None if cancelled first."""
    from ..training import evaluate_model

    with recording_failure(store, attempt_id):
        if store.start_attempt(attempt_id) is None:
            logger.info("Attempt %s was cancelled before it started.", attempt_id)
            return None
        results = evaluate_model(model, config, params_overrides, accelerator=accelerator)
        store.add_evaluation(attempt_id, 0, "test", results)
        # Evaluation cannot stop half-way; a cancel asked meanwhile still keeps the results.
        status = "cancelled" if store.cancel_requested(attempt_id) else "completed"
        store.finish_attempt(attempt_id, status, metrics={**results.get("mean", {}), "split": "test"})
        return results


def run_training_attempt(store: AttemptStore, attempt_id: int, *, resume: bool = False) -> None:
    """Train as the attempt's command says; any error ends the attempt 'failed' with its text (nothing raised)."""
    attempt = _runnable(store, attempt_id, "train", resume)
    if attempt is None:
        return
    try:
        with recording_failure(store, attempt_id):
            config, params = configs_from_command(attempt.command)
        train_attempt(store, attempt_id, config, params, resume=resume)
    except Exception as err:
        logger.warning("Attempt %s failed: %s", attempt.name, err)


def run_test_attempt(store: AttemptStore, attempt_id: int) -> None:
    """Evaluate the attempt's ``command["model"]`` on its config's test tasks; errors end it 'failed'."""
    attempt = _runnable(store, attempt_id, "test")
    if attempt is None:
        return
    try:
        with recording_failure(store, attempt_id):
            model = attempt.command.get("model")
            if not isinstance(model, str) or not model:
                raise ConfigError("The attempt's command has no 'model' (the folder of a saved model) to test.")
            config = KshotConfig.from_dict(attempt.command.get("config") or {})
        evaluate_attempt(store, attempt_id, model, config, attempt.command.get("params") or {})
    except Exception as err:
        logger.warning("Attempt %s failed: %s", attempt.name, err)


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
