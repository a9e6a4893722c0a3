"""The dashboard (one HTML page and its script, no build step) and the health check."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ..deps import QueueDep, StoreDep

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/health")
def health(store: StoreDep, queue: QueueDep) -> dict:
    """Liveness: the store answers and the queue is reachable."""
    _, total = store.list_attempts(limit=1)
    return {"status": "ok", "attempts": total, "queued_jobs": queue.pending()}
