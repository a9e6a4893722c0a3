"""Dependencies injected into the routes: settings, the attempt store, the job queue, the token check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .queue import JobQueue
from .settings import ServiceSettings

_bearer = HTTPBearer(
    auto_error=False, description="The service's token (KSHOT_TOKEN); required to change or start anything."
)


def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def get_store(request: Request):
    return request.app.state.store


def get_queue(request: Request) -> JobQueue:
    return request.app.state.queue


def require_token(
    settings: Annotated[ServiceSettings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Every request that changes or starts something carries ``Authorization: Bearer <token>``.

    Without a configured token the service only ever listens on loopback (see ``check_bind``), so
    the check passes there.
    """
    expected = settings.token_value()
    if expected is None:
        return
    given = credentials.credentials if credentials else ""
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="Missing or wrong bearer token: send 'Authorization: Bearer <KSHOT_TOKEN>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )


def attempt_or_404(store, key: str):
    """The attempt with id ``key`` (all digits) or name ``key``."""
    from ..tracking.errors import AttemptNotFound

    by_id = key.isascii() and key.isdigit()
    if by_id:
        # Ids beyond a 64-bit integer exist nowhere; asking the database would overflow its driver.
        record = store.get_attempt(int(key)) if len(key) < 19 else None
    else:
        record = store.get_attempt(key)
    if record is None:
        raise AttemptNotFound(f"No attempt with {'id' if by_id else 'name'} {key!r}.")
    return record


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
StoreDep = Annotated[object, Depends(get_store)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]
Authorized = Depends(require_token)
