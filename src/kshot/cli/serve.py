"""``kshot serve`` (the API and dashboard, under uvicorn) and ``kshot worker`` (runs the queued jobs).

Both read their settings from ``KSHOT_*`` environment variables (see ``kshot.service.ServiceSettings``);
the options here override the few that differ per invocation.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def serve(
    host: Annotated[
        Optional[str],
        typer.Option(
            help="Address to bind (default $KSHOT_HOST or 127.0.0.1); anything but loopback needs $KSHOT_TOKEN."
        ),
    ] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default $KSHOT_PORT or 8000).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the attempts API and the dashboard; jobs run in `kshot worker` processes."""
    import uvicorn

    from ..service import create_app

    settings = _settings(host=host, port=port)
    settings.check_bind()
    typer.echo(f"kshot service on http://{settings.host}:{settings.port}/ (API docs at /docs)", err=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level)


def worker(
    concurrency: Annotated[
        Optional[int], typer.Option(help="Jobs run at once (default $KSHOT_WORKER_CONCURRENCY or 1).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Log level of the worker and its jobs.")] = "INFO",
) -> None:
    """Run queued training and test attempts (one process per concurrent job).

    A job renews its attempt's lease every $KSHOT_HEARTBEAT_SECONDS (lease: $KSHOT_LEASE_HEARTBEATS beats).

    When its worker dies, on any host, the attempt fails once the lease expires; resume continues it.
    """
    import logging

    from ..service.worker import run_worker
    from .logs import setup_logging

    setup_logging(None, log_level)
    logging.getLogger("huey").setLevel(log_level)
    logging.getLogger("huey").addHandler(logging.getLogger("kshot").handlers[0])
    run_worker(_settings(worker_concurrency=concurrency))


def _settings(**overrides):
    from pydantic import ValidationError

    from ..errors import ConfigError
    from ..service import ServiceSettings

    try:
        return ServiceSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        problems = "; ".join(f"KSHOT_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"Invalid service settings: {problems}") from None
