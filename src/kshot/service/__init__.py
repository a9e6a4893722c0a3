"""The kshot web service: API, job queue and dashboard (``kshot serve``, ``kshot worker``)."""

from .app import create_app
from .settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
