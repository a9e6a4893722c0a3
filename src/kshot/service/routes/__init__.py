"""One router per resource."""

from .attempts import router as attempts
from .dashboard import router as dashboard
from .jobs import router as jobs
from .metrics import router as metrics
from .studies import router as studies

__all__ = ["attempts", "dashboard", "jobs", "metrics", "studies"]
