"""``create_app(settings)``: the FastAPI application; nothing is built until it is called."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from .settings import ServiceSettings

logger = logging.getLogger("kshot.service")

DESCRIPTION = """Store, launch and follow few-shot meta-learning attempts.

Reads are open; every request that changes or starts something needs `Authorization: Bearer <KSHOT_TOKEN>`.
Training and tests run in `kshot worker` processes; `POST /train` and `POST /test` answer 202 with the
queued attempt at once. The dashboard is at `/`."""


def create_app(settings: ServiceSettings | None = None, store=None) -> FastAPI:
    """Build the app. ``store`` (an ``AttemptStore``) defaults to one on ``settings.database_url``.

    At start-up, attempts left 'running' by a process that died are marked failed (interrupted).
    """
    from .queue import JobQueue
    from .routes import attempts, dashboard, jobs, metrics
    from .routes.dashboard import STATIC

    settings = settings or ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from ..tracking import AttemptStore

        app.state.store = store or AttemptStore(settings.database_url)
        interrupted = app.state.store.fail_interrupted()
        if interrupted:
            logger.warning(
                "%d attempt(s) left running by a stopped process were marked failed (interrupted).", interrupted
            )
        app.state.queue = JobQueue(settings)
        yield

    app = FastAPI(title="kshot", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    for router in (attempts, jobs, metrics, dashboard):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_error_handlers(app)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    from ..errors import KshotError
    from ..tracking.errors import AttemptError, AttemptExists, AttemptNotFound
    from .launch import AttemptNotReady, QueueUnavailable
    from .references import InvalidReference
    from .schemas.common import finite_or_none

    def detail(code: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        # FastAPI's own handler echoes the input, and an input holding NaN cannot be written as JSON.
        errors = finite_or_none(jsonable_encoder(err.errors()))
        return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

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
        body = {"detail": [{"loc": list(err.loc), "msg": err.message, "type": "value_error"}]}
        return JSONResponse(body, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(AttemptError)
    async def _attempt_error(request: Request, err: AttemptError):
        return detail(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err))

    @app.exception_handler(QueueUnavailable)
    async def _queue(request: Request, err: QueueUnavailable):
        return detail(status.HTTP_503_SERVICE_UNAVAILABLE, str(err))

    @app.exception_handler(KshotError)
    async def _kshot(request: Request, err: KshotError):
        return detail(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err))
