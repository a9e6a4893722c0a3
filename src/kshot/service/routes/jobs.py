"""The jobs resource: start training or testing in a worker; 202 with the queued attempt at once."""

from __future__ import annotations

from fastapi import APIRouter, status

from ..deps import Authorized, QueueDep, SettingsDep, StoreDep, attempt_or_404
from ..launch import default_name, resume, submit, test_command, train_command
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
    name = body.name or default_name("train")
    return AttemptPublic.of(submit(store, queue, "train", name, train_command(body, name, settings)))


@router.post("/test", status_code=status.HTTP_202_ACCEPTED, response_model=AttemptPublic, responses=RESPONSES)
def start_test(body: TestRequest, store: StoreDep, queue: QueueDep, settings: SettingsDep) -> AttemptPublic:
    """Queue a few-shot evaluation of a saved model (or of a completed training attempt's model)."""
    name = body.name or default_name("test")
    return AttemptPublic.of(submit(store, queue, "test", name, test_command(body, name, settings, store)))


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
def resume_training(key: KeyPath, store: StoreDep, queue: QueueDep) -> AttemptPublic:
    """Queue a failed (e.g. interrupted) or cancelled training again; it continues from its last checkpoint."""
    return AttemptPublic.of(resume(store, queue, attempt_or_404(store, key)))
