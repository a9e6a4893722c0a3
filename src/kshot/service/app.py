"""``create_app(settings)``: the FastAPI application; nothing is built until it is called."""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from .guard import RequestGuard, safe_text
from .settings import ServiceSettings

logger = logging.getLogger("kshot.service")
MAX_ERRORS = 10
MAX_MESSAGE_CHARS = 2000
MAX_LOC_PARTS = 8


class SafeJSONResponse(JSONResponse):
    """JSON that is always valid UTF-8: text the store cannot hold (lone surrogates) never makes a read fail."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            "utf-8", "replace"
        )


def bounded_errors(errors) -> list[dict]:
    """Validation errors without their input: the first few, each location and message cut short."""
    out = []
    for error in list(errors)[:MAX_ERRORS]:
        loc = [part if isinstance(part, int) else safe_text(str(part))[:64] for part in error.get("loc", ())]
        out.append(
            {
                "loc": loc[:MAX_LOC_PARTS],
                "msg": safe_text(str(error.get("msg", "")))[:400],
                "type": str(error.get("type", ""))[:64],
            }
        )
    return out


DESCRIPTION = """Store, launch and follow few-shot meta-learning attempts.

Reads are open; every request that changes or starts something needs `Authorization: Bearer <KSHOT_TOKEN>`.
Training and tests run in `kshot worker` processes; `POST /train` and `POST /test` answer 202 with the
queued attempt at once. The dashboard is at `/`."""


def create_app(settings: ServiceSettings | None = None, store=None) -> FastAPI:
    """Build the app. ``store`` (an ``AttemptStore``) defaults to one on ``settings.database_url``.

    At start-up, and every ``settings.reconcile_seconds`` while it serves, the app reconciles the
    store with the workers: attempts whose worker is gone (a dead process of this host, or a lease
    that expired, on any host) end failed, and attempts queued with no job are queued again.
    """
    from .queue import JobQueue, Reconciler, error_text
    from .routes import attempts, dashboard, jobs, metrics, studies
    from .routes.dashboard import STATIC

    settings = settings or ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from ..tracking import AttemptStore

        app.state.store = store or AttemptStore(settings.database_url)
        app.state.queue = JobQueue(settings)
        try:
            app.state.queue.reconcile(app.state.store, this_host=True)
        except Exception as err:  # the queue down at start: the periodic check tries again
            logger.warning("Reconciliation at start-up failed (%s); retrying periodically.", error_text(err))
        reconciler = Reconciler(app.state.queue, app.state.store, settings.reconcile_seconds).start()
        try:
            yield
        finally:
            reconciler.stop()

    app = FastAPI(
        title="kshot",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.settings = settings
    # The token, then the body's size and text, before any route parses anything.
    app.add_middleware(RequestGuard, settings=settings)
    for router in (attempts, jobs, metrics, studies, dashboard):
        app.include_router(router)
    _document_guard(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_error_handlers(app)
    return app


def _document_guard(app: FastAPI) -> None:
    """The answers RequestGuard gives before any route runs, in every changing route's documentation."""
    from fastapi.routing import APIRoute

    for route in app.routes:
        if isinstance(route, APIRoute) and route.methods - {"GET", "HEAD"}:
            route.responses.setdefault(401, {"description": "Missing or wrong bearer token."})
            route.responses.setdefault(413, {"description": "The body is larger than KSHOT_MAX_BODY_BYTES."})


def _add_error_handlers(app: FastAPI) -> None:
    from ..errors import KshotError
    from ..tracking.errors import AttemptError, AttemptExists, AttemptNotFound, IllegalTransition
    from .launch import AttemptNotReady, QueueUnavailable
    from .references import InvalidReference

    def detail(code: int, message: str) -> JSONResponse:
        return SafeJSONResponse({"detail": message[:MAX_MESSAGE_CHARS]}, status_code=code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        # FastAPI's own handler echoes the whole input (a 1 MB value comes back as 2 MB): this one
        # answers where and why only, for the first few errors, each cut short.
        return SafeJSONResponse({"detail": bounded_errors(err.errors())}, status_code=422)

    @app.exception_handler(IllegalTransition)
    async def _transition(request: Request, err: IllegalTransition):
        return detail(status.HTTP_409_CONFLICT, str(err))

    @app.exception_handler(AttemptNotFound)
    async def _not_found(request: Request, err: AttemptNotFound):
        return detail(status.HTTP_404_NOT_FOUND, str(err))

    @app.exception_handler(AttemptExists)
    async def _exists(request: Request, err: AttemptExists):
        return detail(status.HTTP_409_CONFLICT, str(err))

    @app.exception_handler(AttemptNotReady)
    async def _not_ready(request: Request, err: AttemptNotReady):
        return detail(status.HTTP_409_CONFLICT, str(err))

    @app.exception_handler(InvalidReference)
    async def _invalid_reference(request: Request, err: InvalidReference):
        # The same shape as FastAPI's own validation errors, so clients handle one format.
        body = {"detail": [{"loc": list(err.loc), "msg": err.message[:MAX_MESSAGE_CHARS], "type": "value_error"}]}
        return SafeJSONResponse(body, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(AttemptError)
    async def _attempt_error(request: Request, err: AttemptError):
        return detail(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err))

    @app.exception_handler(QueueUnavailable)
    async def _queue(request: Request, err: QueueUnavailable):
        return detail(status.HTTP_503_SERVICE_UNAVAILABLE, str(err))

    @app.exception_handler(KshotError)
    async def _kshot(request: Request, err: KshotError):
        return detail(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err))
