"""An attempt's metrics: per-step training losses, per-task evaluations, and a live event stream."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from ..deps import SettingsDep, StoreDep, attempt_or_404
from ..references import InvalidReference
from ..schemas import AttemptPublic, EvaluationPublic, StepPublic
from .attempts import NOT_FOUND, KeyPath

router = APIRouter(prefix="/attempts", tags=["metrics"])

FINISHED = ("completed", "failed", "cancelled")


@router.get("/{key}/steps", response_model=list[StepPublic], responses=NOT_FOUND)
def read_steps(
    key: KeyPath,
    store: StoreDep,
    after: Annotated[int | None, Query(ge=0, le=10**9, description="Only steps after this one.")] = None,
) -> list[StepPublic]:
    """Training metrics (loss, query_loss, ...) of every outer step, in step order."""
    record = attempt_or_404(store, key)
    return [StepPublic.of(s) for s in store.steps(record.id, after_step=after)]


@router.get("/{key}/evaluations", response_model=list[EvaluationPublic], responses=NOT_FOUND)
def read_evaluations(key: KeyPath, store: StoreDep) -> list[EvaluationPublic]:
    """Per-task accuracy and macro-F1 of every evaluation (validation during training, test at the end)."""
    record = attempt_or_404(store, key)
    return [EvaluationPublic.of(e) for e in store.evaluations(record.id)]


@router.get(
    "/{key}/events",
    responses={
        **NOT_FOUND,
        200: {
            "description": "Server-sent events: step, evaluation, status; the stream ends with 'end'.",
            "content": {"text/event-stream": {}},
        },
    },
)
async def follow(
    key: KeyPath,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    after: Annotated[int | None, Query(ge=0, le=10**9, description="Send only steps after this one.")] = None,
    last_event_id: Annotated[str | None, Header(max_length=32, include_in_schema=False)] = None,
):
    """Follow an attempt live: every stored step and evaluation as it arrives, status changes, then 'end'.

    Each step event's id is its step, so a reconnecting EventSource resumes where it stopped.
    """
    from sse_starlette import EventSourceResponse

    if last_event_id is not None:
        # An EventSource sends back the id it was given: a step number. Anything else is refused here,
        # before it reaches the database (a 20-digit id overflowed the driver).
        digits = last_event_id.isascii() and last_event_id.isdigit() and len(last_event_id) <= 10
        if not digits or int(last_event_id) > 10**9:
            raise InvalidReference(("header", "last-event-id"), "Last-Event-ID must be a step number (0 to 10**9).")
    record = await run_in_threadpool(attempt_or_404, store, key)
    if last_event_id is not None:
        after = max(after or 0, int(last_event_id))
    return EventSourceResponse(_events(request, store, record.id, after, settings.events_poll_seconds))


async def _events(request: Request, store, attempt_id: int, after: int | None, poll: float):
    sent_evaluations: set[tuple] = set()
    last_status = None
    while not await request.is_disconnected():
        # Status first, then metrics: once the status reads finished, every step is already stored.
        attempt = await run_in_threadpool(store.get_attempt, attempt_id)
        if attempt is None:
            yield {"event": "end", "data": json.dumps({"status": "deleted"})}
            return
        for step in await run_in_threadpool(store.steps, attempt_id, after):
            after = step.step
            yield {"event": "step", "id": str(step.step), "data": StepPublic.of(step).model_dump_json()}
        for evaluation in await run_in_threadpool(store.evaluations, attempt_id):
            ident = (evaluation.step, evaluation.split, evaluation.task)
            if ident not in sent_evaluations:
                sent_evaluations.add(ident)
                yield {"event": "evaluation", "data": EvaluationPublic.of(evaluation).model_dump_json()}
        if attempt.status != last_status:
            last_status = attempt.status
            yield {"event": "status", "data": AttemptPublic.of(attempt).model_dump_json()}
        if attempt.status in FINISHED:
            yield {"event": "end", "data": json.dumps({"status": attempt.status})}
            return
        await asyncio.sleep(poll)
