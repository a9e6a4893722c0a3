"""The dashboard (one HTML page and its script, no build step) and the health check."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse

from ..deps import QueueDep, StoreDep

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/health", responses={503: {"description": "The store or the queue does not answer."}})
def health(store: StoreDep, queue: QueueDep) -> dict:
    """Readiness: the store answers and the queue is reachable."""
    try:
        _, total = store.list_attempts(limit=1)
        pending = queue.pending()
    except Exception as err:  # any driver's error (sqlite3, psycopg, redis) means "not ready"
        return JSONResponse({"status": "unavailable", "error": f"{type(err).__name__}: {err}"}, status_code=503)
    return {"status": "ok", "attempts": total, "queued_jobs": pending}
