"""The attempts resource: create, find, update, list, latest, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from ..deps import Authorized, SettingsDep, StoreDep, attempt_or_404
from ..launch import recorded_command
from ..references import resolve_path
from ..schemas import AttemptCreate, AttemptPage, AttemptPublic, AttemptUpdate
from ..schemas.attempts import Kind, SortKey, Status

router = APIRouter(prefix="/attempts", tags=["attempts"])

KeyPath = Annotated[str, Path(description="The attempt's id (digits) or unique name.", max_length=128)]
NOT_FOUND = {404: {"description": "No attempt with this id or name."}}
UNAUTHORIZED = {401: {"description": "Missing or wrong bearer token."}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AttemptPublic,
    dependencies=[Authorized],
    responses={409: {"description": "The name is taken."}, **UNAUTHORIZED},
)
def create_attempt(body: AttemptCreate, store: StoreDep, settings: SettingsDep) -> AttemptPublic:
    """Record an attempt (e.g. one run elsewhere). The service does not run it: use POST /train or /test for that.

    Its command is resolved like a request's (paths under the allowed roots); it owns no output
    folder, so it can be neither resumed nor tested by name.
    """
    command = recorded_command(body.kind, body.name, body.command.model_dump(exclude_none=True), settings)
    return AttemptPublic.of(store.create_attempt(body.name, body.kind, command, status=body.status))


@router.get("", response_model=AttemptPage)
def list_attempts(
    store: StoreDep,
    status_: Annotated[Status | None, Query(alias="status", description="Only attempts with this status.")] = None,
    kind: Annotated[Kind | None, Query(description="Only train or only test attempts.")] = None,
    q: Annotated[str | None, Query(max_length=128, description="Only attempts whose name contains this text.")] = None,
    sort: Annotated[SortKey, Query(description="Sort key; a leading '-' sorts descending.")] = "-created_at",
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AttemptPage:
    items, total = store.list_attempts(
        status=status_, kind=kind, name_contains=q, sort=sort, offset=offset, limit=limit
    )
    return AttemptPage(items=[AttemptPublic.of(a) for a in items], total=total, offset=offset, limit=limit)


@router.get("/latest", response_model=AttemptPublic, responses={404: {"description": "No attempt yet."}})
def latest_attempt(store: StoreDep) -> AttemptPublic:
    """The most recently created attempt."""
    record = store.latest_attempt()
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No attempt has been recorded yet.")
    return AttemptPublic.of(record)


@router.get("/{key}", response_model=AttemptPublic, responses=NOT_FOUND)
def get_attempt(key: KeyPath, store: StoreDep) -> AttemptPublic:
    return AttemptPublic.of(attempt_or_404(store, key))


@router.patch(
    "/{key}",
    response_model=AttemptPublic,
    dependencies=[Authorized],
    responses={**NOT_FOUND, **UNAUTHORIZED, 409: {"description": "A status change its life does not allow."}},
)
def update_attempt(key: KeyPath, body: AttemptUpdate, store: StoreDep, settings: SettingsDep) -> AttemptPublic:
    record = attempt_or_404(store, key)
    fields = body.fields()
    if "artefacts" in fields:
        roots = settings.resolved_roots()
        fields["artefacts"] = {
            name: resolve_path(path, roots, ("body", "artefacts", name)) for name, path in fields["artefacts"].items()
        }
    if not fields:
        return AttemptPublic.of(record)
    # The store keeps started_at/finished_at in step with the status.
    return AttemptPublic.of(store.update_attempt(record.id, **fields))


@router.post(
    "/{key}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AttemptPublic,
    dependencies=[Authorized],
    responses={**NOT_FOUND, **UNAUTHORIZED, 409: {"description": "The attempt has already finished."}},
)
def cancel_attempt(key: KeyPath, store: StoreDep) -> AttemptPublic:
    """Cancel a queued attempt at once, or ask a running one to stop after its current step."""
    record = attempt_or_404(store, key)
    if record.status in ("completed", "failed", "cancelled"):
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"Attempt {record.name!r} is already {record.status}.")
    # A queued attempt is cancelled at once (its job, when a worker takes it, does not start); a
    # running one stops after its current step, when the training callback sees the request.
    store.request_cancel(record.id)
    return AttemptPublic.of(store.get_attempt(record.id))
