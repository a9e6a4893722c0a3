"""From a validated train/test request to a stored, queued attempt with a fully resolved command."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import KshotConfig, Params
from .queue import JobQueue, error_text, mark_failed
from .references import InvalidReference, resolve_data, resolve_model, resolve_path, resolve_write_dir
from .schemas import TestRequest, TrainRequest
from .settings import ServiceSettings

BODY = ("body",)


class QueueUnavailable(RuntimeError):
    """The job queue refused the job (e.g. Redis is down); the attempt is marked failed."""


def default_name(kind: str) -> str:
    return f"{kind}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _resolved_config(raw: dict[str, Any], name: str, settings: ServiceSettings) -> dict[str, Any]:
    """The full config (defaults filled in) with every read path checked and every write path placed."""
    config = KshotConfig.from_dict(raw).to_dict()
    raw_data, raw_logging = raw.get("data") or {}, raw.get("logging") or {}
    loc = BODY + ("config",)
    resolve_data(config["data"], settings, loc + ("data", "path"))
    config["model"]["name_or_path"] = resolve_model(
        config["model"]["name_or_path"], settings, loc + ("model", "name_or_path")
    )
    run_dir = Path(settings.output_root) / name
    config["output_dir"] = resolve_write_dir(raw.get("output_dir"), run_dir, settings, loc + ("output_dir",))
    config["data"]["cache_dir"] = resolve_write_dir(
        raw_data.get("cache_dir"), Path(settings.output_root) / ".cache", settings, loc + ("data", "cache_dir")
    )
    config["logging"]["log_dir"] = resolve_write_dir(
        raw_logging.get("log_dir"), Path(config["output_dir"]) / "logs", settings, loc + ("logging", "log_dir")
    )
    # A worker's log is a file, not a terminal: no progress bar unless asked for.
    config["logging"]["progress_bar"] = bool(raw_logging.get("progress_bar", False))
    return config


def train_command(request: TrainRequest, name: str, settings: ServiceSettings) -> dict[str, Any]:
    return {
        "config": _resolved_config(request.config, name, settings),
        "params": Params.from_dict(request.params).to_dict(),
    }


def test_command(request: TestRequest, name: str, settings: ServiceSettings, store) -> dict[str, Any]:
    if request.attempt is not None:
        model = _trained_model(request.attempt, store)
    elif request.model in settings.models:
        model = settings.models[request.model]
    else:
        model = resolve_path(request.model, settings.resolved_roots(), BODY + ("model",))
    # Only the overrides are kept: the model's own saved params are the base (kshot evaluate does the same).
    return {"model": model, "config": _resolved_config(request.config, name, settings), "params": dict(request.params)}


class AttemptNotReady(RuntimeError):
    """The training attempt named by a test request has no finished model yet (409)."""


def _trained_model(key: str | int, store) -> str:
    attempt = store.get_attempt(key)
    if attempt is None:
        raise InvalidReference(
            BODY + ("attempt",), f"No attempt with {'id' if isinstance(key, int) else 'name'} {key!r}."
        )
    if attempt.kind != "train":
        raise InvalidReference(
            BODY + ("attempt",), f"Attempt {attempt.name!r} is a {attempt.kind} attempt; name a training attempt."
        )
    if attempt.status != "completed":
        raise AttemptNotReady(
            f"Attempt {attempt.name!r} is {attempt.status}; only a completed training attempt has a model to test."
        )
    return attempt.artefacts.get("best_model") or attempt.command["config"]["output_dir"]


def submit(store, queue: JobQueue, kind: str, name: str, command: dict[str, Any]):
    """Store the attempt (queued) and enqueue its job; returns the attempt record."""
    attempt = store.create_attempt(name, kind, command)
    _enqueue(store, queue, attempt, resume=False)
    return attempt


def resume(store, queue: JobQueue, attempt):
    """Queue a failed or cancelled training again, to continue from its last checkpoint."""
    if attempt.kind != "train":
        raise AttemptNotReady(
            f"Attempt {attempt.name!r} is a {attempt.kind} attempt; only training resumes from a checkpoint."
        )
    if attempt.status not in ("failed", "cancelled"):
        raise AttemptNotReady(
            f"Attempt {attempt.name!r} is {attempt.status}; only a failed or cancelled training can be resumed."
        )
    attempt = store.update_attempt(attempt.id, status="queued", error=None, cancel_requested=False, finished_at=None)
    _enqueue(store, queue, attempt, resume=True)
    return attempt


def _enqueue(store, queue: JobQueue, attempt, resume: bool) -> None:
    try:
        if attempt.kind == "train":
            queue.enqueue_train(attempt.id, resume=resume)
        else:
            queue.enqueue_test(attempt.id)
    except Exception as err:  # the queue's client raises its own family (redis, sqlite3)
        mark_failed(store, attempt.id, f"Could not queue the job: {error_text(err)}")
        raise QueueUnavailable(
            f"The job queue is unavailable ({type(err).__name__}: {err}); attempt {attempt.name!r} was marked failed."
        ) from err
