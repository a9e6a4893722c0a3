"""The jobs resource: start training or testing in a worker; 202 with the queued attempt at once."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, status

from ...tracking.errors import AttemptExists
from ..deps import Authorized, QueueDep, SettingsDep, StoreDep, attempt_or_404
from ..launch import AttemptNotReady, check_stored_command, default_name, resume, submit, test_command, train_command
from ..references import InvalidReference, claim_output_dir, release_output_dir
from ..schemas import AttemptPublic, TestRequest, TrainRequest
from .attempts import KeyPath

router = APIRouter(tags=["jobs"], dependencies=[Authorized])

RESPONSES = {
    401: {"description": "Missing or wrong bearer token."},
    409: {"description": "The name is taken (or, for a test, the training attempt has not completed)."},
    503: {"description": "The job queue is unavailable; the attempt is marked failed."},
}


@router.post("/train", status_code=status.HTTP_202_ACCEPTED, response_model=AttemptPublic, responses=RESPONSES)
def start_training(body: TrainRequest, store: StoreDep, queue: QueueDep, settings: SettingsDep) -> AttemptPublic:
    """Queue a meta-training run; follow it with GET /attempts/{id}/events."""
    name = _free_name(store, body.name or default_name("train"))
    return AttemptPublic.of(_submit_owned(store, queue, "train", name, train_command(body, name, settings)))


@router.post("/test", status_code=status.HTTP_202_ACCEPTED, response_model=AttemptPublic, responses=RESPONSES)
def start_test(body: TestRequest, store: StoreDep, queue: QueueDep, settings: SettingsDep) -> AttemptPublic:
    """Queue a few-shot evaluation of a saved model (or of a completed training attempt's model)."""
    name = _free_name(store, body.name or default_name("test"))
    return AttemptPublic.of(_submit_owned(store, queue, "test", name, test_command(body, name, settings, store)))


@router.post(
    "/attempts/{key}/resume",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AttemptPublic,
    responses={
        **RESPONSES,
        404: {"description": "No attempt with this id or name."},
        409: {"description": "Not a failed or cancelled training attempt."},
    },
)
def resume_training(key: KeyPath, store: StoreDep, queue: QueueDep, settings: SettingsDep) -> AttemptPublic:
    """Queue a failed (e.g. interrupted) or cancelled training again; it continues from its last checkpoint."""
    record = attempt_or_404(store, key)
    try:
        if record.kind == "train" and record.status in ("failed", "cancelled"):
            # The stored command is resolved again: it must still name allowed data and the folder it owns.
            check_stored_command(record, settings)
    except InvalidReference as err:
        raise AttemptNotReady(f"Attempt {record.name!r} cannot be resumed: {err.message}") from None
    return AttemptPublic.of(resume(store, queue, record))


def _free_name(store, name: str) -> str:
    # A taken name is a 409 before anything else is looked at (the store checks again when it creates).
    if store.get_attempt(name) is not None:
        raise AttemptExists(f"An attempt named '{name}' exists already; choose another name.")
    return name


def _submit_owned(store, queue, kind: str, name: str, command: dict):
    """Create the attempt's output folder (marked as its own), then store and queue the attempt."""
    out = Path(command["config"]["output_dir"])
    claim_output_dir(out, name)
    try:
        return submit(store, queue, kind, name, command)
    except AttemptExists:
        release_output_dir(out)  # the name is taken: the folder was never this attempt's
        raise
