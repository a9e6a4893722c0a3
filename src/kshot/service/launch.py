"""From a validated train/test request to a stored, queued attempt with a fully resolved command.

A command is resolved wherever it enters: a request (``train_command``, ``test_command``,
``recorded_command``) and a stored attempt about to run or resume (``check_stored_command``, in the
API before a resume and in the worker before every job). Each read path must lie under the roots,
each hub id is ``owner/name``, and each write path lies in the output folder the attempt owns.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from ..config import KshotConfig, Params
from ..errors import ConfigError
from .queue import JobQueue, error_text, mark_failed
from .references import (
    CACHE_FOLDER,
    InvalidReference,
    inside_dir,
    new_output_dir,
    output_root,
    owned_output_dir,
    registry_entry,
    registry_paths,
    resolve_data,
    resolve_model,
    resolve_path,
)
from .schemas import TestRequest, TrainRequest
from .settings import ServiceSettings

BODY = ("body",)


class QueueUnavailable(RuntimeError):
    """The job queue refused the job (e.g. Redis is down); the attempt is marked failed."""


class AttemptNotReady(RuntimeError):
    """The attempt is not in a state for what was asked (409): e.g. a test of an unfinished training."""


def default_name(kind: str) -> str:
    return f"{kind}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _resolved_config(raw: dict[str, Any], name: str, settings: ServiceSettings, *, stored: bool) -> dict[str, Any]:
    """The full config (defaults filled in) with every read path checked and every write path placed.

    ``stored``: the config of an existing attempt, whose output folder it must own; otherwise a new
    request's, whose output folder must be new.
    """
    config = KshotConfig.from_dict(raw).to_dict()
    raw_data, raw_logging = raw.get("data") or {}, raw.get("logging") or {}
    loc = BODY + ("config",)
    resolve_data(config["data"], settings, loc + ("data", "path"))
    config["model"]["name_or_path"] = resolve_model(
        config["model"]["name_or_path"], settings, loc + ("model", "name_or_path")
    )
    if stored:
        out = owned_output_dir(raw.get("output_dir"), name, settings, loc + ("output_dir",))
    else:
        out = new_output_dir(raw.get("output_dir"), name, settings, loc + ("output_dir",))
    config["output_dir"] = str(out)
    # The tokenization cache is shared (keyed by content) or the attempt's own; logs are the attempt's own.
    cache = output_root(settings) / CACHE_FOLDER
    config["data"]["cache_dir"] = inside_dir(
        raw_data.get("cache_dir"), cache, [cache, out], loc + ("data", "cache_dir"), "shared cache or output_dir"
    )
    config["logging"]["log_dir"] = inside_dir(
        raw_logging.get("log_dir"), out / "logs", [out], loc + ("logging", "log_dir"), "attempt's output_dir"
    )
    # A worker's log is a file, not a terminal: no progress bar unless asked for.
    config["logging"]["progress_bar"] = bool(raw_logging.get("progress_bar", False))
    return config


def _resolved_params(raw: dict[str, Any], settings: ServiceSettings, *, overrides: bool) -> dict[str, Any]:
    """Params checked in full; ``lopt_path`` (the one path among them) resolved under the roots.

    ``overrides``: a test's param overrides, kept as overrides (the model's saved params are the base).
    """
    try:
        full = Params.from_dict(raw).to_dict()
    except ConfigError as err:
        raise InvalidReference(BODY + ("params",), str(err)) from None
    params = dict(raw) if overrides else full
    if full.get("lopt_path") is not None:
        params["lopt_path"] = resolve_path(full["lopt_path"], settings.resolved_roots(), BODY + ("params", "lopt_path"))
    return params


def train_command(request: TrainRequest, name: str, settings: ServiceSettings) -> dict[str, Any]:
    return {
        "config": _resolved_config(request.config, name, settings, stored=False),
        "params": _resolved_params(request.params, settings, overrides=False),
    }


def test_command(request: TestRequest, name: str, settings: ServiceSettings, store) -> dict[str, Any]:
    if request.attempt is not None:
        model = _trained_model(request.attempt, store, settings)
    elif request.model in settings.models:
        model = registry_entry(settings.models[request.model])
    else:
        model = resolve_path(request.model, settings.resolved_roots(), BODY + ("model",))
    # Only the overrides are kept: the model's own saved params are the base (kshot evaluate does the same).
    return {
        "model": model,
        "config": _resolved_config(request.config, name, settings, stored=False),
        "params": _resolved_params(request.params, settings, overrides=True),
    }


def recorded_command(kind: str, name: str, command: dict[str, Any], settings: ServiceSettings) -> dict[str, Any]:
    """The command of an attempt recorded by POST /attempts, resolved like a request's (its folder is not claimed).

    An empty command stays empty. A recorded attempt owns no output folder, so it can never be resumed.
    """
    resolved: dict[str, Any] = {}
    if command.get("config"):
        resolved["config"] = _resolved_config(command["config"], name, settings, stored=False)
    if command.get("params"):
        resolved["params"] = _resolved_params(command["params"], settings, overrides=True)  # as recorded
    if command.get("model") is not None:
        resolved["model"] = _stored_model(command["model"], settings)
    return resolved


def check_stored_command(attempt, settings: ServiceSettings) -> dict[str, Any]:
    """Resolve a stored attempt's command again before it runs or resumes; raises InvalidReference.

    The store is not trusted more than a request: a row written by an older version, by hand or by
    an attacker with database access must not reach a path outside the roots or a folder it does not own.
    """
    command = attempt.command or {}
    if not command.get("config"):
        raise InvalidReference(BODY + ("command",), f"Attempt {attempt.name!r} has no config to run.")
    resolved = {
        "config": _resolved_config(command["config"], attempt.name, settings, stored=True),
        "params": _resolved_params(command.get("params") or {}, settings, overrides=attempt.kind == "test"),
    }
    if attempt.kind == "test":
        resolved["model"] = _stored_model(command.get("model"), settings)
    return resolved


def _stored_model(value: Any, settings: ServiceSettings) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidReference(BODY + ("command", "model"), "A test attempt's command names no model folder.")
    return resolve_path(value, settings.resolved_roots() + registry_paths(settings), BODY + ("command", "model"))


def _trained_model(key: str | int, store, settings: ServiceSettings) -> str:
    attempt = store.get_attempt(key)
    if attempt is None:
        what = "id" if isinstance(key, int) else "name"
        raise InvalidReference(BODY + ("attempt",), f"No attempt with {what} {key!r}.")
    if attempt.kind != "train":
        raise InvalidReference(
            BODY + ("attempt",), f"Attempt {attempt.name!r} is a {attempt.kind} attempt; name a training attempt."
        )
    if attempt.status != "completed":
        raise AttemptNotReady(
            f"Attempt {attempt.name!r} is {attempt.status}; only a completed training attempt has a model to test."
        )
    # The model lies in the folder the attempt owns, wherever its artefacts say it is.
    out = owned_output_dir(
        (attempt.command.get("config") or {}).get("output_dir"), attempt.name, settings, BODY + ("attempt",)
    )
    best = attempt.artefacts.get("best_model") or str(out)
    return resolve_path(best, [out], BODY + ("attempt",), what=f"folder of attempt {attempt.name!r}")


def submit(store, queue: JobQueue, kind: str, name: str, command: dict[str, Any], *, study: str | None = None):
    """Store the attempt (queued) and enqueue its job; returns the attempt record.

    Two steps, in two systems: a process killed between them leaves the attempt queued with no
    job. Reconciliation (``JobQueue.reconcile``) queues such an attempt again once it has waited
    ``queued_grace_seconds`` with no message naming it, and the worker's claim (queued → running,
    one conditional update) makes the extra message harmless if the first was not lost after all.
    """
    attempt = store.create_attempt(name, kind, command, job=True, study=study)
    _enqueue(store, queue, attempt, resume=False)
    return attempt


def resume(store, queue: JobQueue, attempt):
    """Queue a failed or cancelled training again, to continue from its last checkpoint."""
    if attempt.kind != "train":
        raise AttemptNotReady(
            f"Attempt {attempt.name!r} is a {attempt.kind} attempt; only training resumes from a checkpoint."
        )
    if attempt.study is not None:
        raise AttemptNotReady(
            f"Attempt {attempt.name!r} is a trial of study {attempt.study!r}; a trial is not resumed (its study "
            "has failed it). Queue more trials with POST /tune to continue the study."
        )
    if attempt.status == "running":
        # Its worker may be gone with the lease expired, and no reconciliation has run since: end it now.
        attempt = next(iter(store.reap_expired(attempt.id)), attempt)
    if attempt.status not in ("failed", "cancelled"):
        still = (
            " (a run whose worker is gone is marked failed once its lease expires; resume it then)"
            if attempt.status == "running"
            else ""
        )
        raise AttemptNotReady(
            f"Attempt {attempt.name!r} is {attempt.status}; only a failed or cancelled training can be resumed{still}."
        )
    queued = store.queue_again(attempt.id, ("failed", "cancelled"))
    if queued is None:  # changed meanwhile, e.g. resumed by another request
        current = store.get_attempt(attempt.id)
        raise AttemptNotReady(f"Attempt {attempt.name!r} is {current.status if current else 'deleted'} now.")
    _enqueue(store, queue, queued, resume=True)
    return queued


def _enqueue(store, queue: JobQueue, attempt, resume: bool) -> None:
    try:
        queue.enqueue(attempt, resume=resume)
    except Exception as err:  # the queue's client raises its own family (redis, sqlite3)
        mark_failed(store, attempt.id, f"Could not queue the job: {error_text(err)}")
        raise QueueUnavailable(
            f"The job queue is unavailable ({type(err).__name__}: {err}); attempt {attempt.name!r} was marked failed."
        ) from err
