"""Service settings, read from ``KSHOT_*`` environment variables (or passed to ``create_app``)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ..errors import ConfigError

LOOPBACK_NAMES = ("localhost",)


def _split_list(value):
    """``a:b`` (os.pathsep), ``a,b`` or a JSON-style list: environment variables carry lists as text."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        parts = text.replace(",", os.pathsep).split(os.pathsep)
        return [p.strip() for p in parts if p.strip()]
    return value


def _split_mapping(value):
    """``name=path,name2=path2`` or a JSON object."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            import json

            return json.loads(text)
        pairs = [p.strip() for p in text.split(",") if p.strip()]
        out = {}
        for pair in pairs:
            name, sep, path = pair.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise ValueError(f"expected name=path, got {pair!r}")
            out[name.strip()] = path.strip()
        return out
    return value


class ServiceSettings(BaseSettings):
    """Everything ``kshot serve`` and ``kshot worker`` need; each field is the env var ``KSHOT_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="KSHOT_", extra="ignore")

    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the attempt store; null = kshot_attempts.db in the working directory."
    )
    queue_backend: Literal["sqlite", "redis"] = Field(
        "sqlite", description="huey storage: a SQLite file (no set-up) or Redis (workers on several machines)."
    )
    queue_path: Path = Field(
        Path("kshot_queue.db"),
        description="SQLite file of the job queue (queue_backend=sqlite); API and workers must name the same file.",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL of the job queue (queue_backend=redis).")
    queue_name: str = Field("kshot", description="Queue name; services sharing one Redis need different names.")
    allowed_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders under which requests may name data and model paths (KSHOT_ALLOWED_ROOTS=/data:/models).",
    )
    output_root: Path = Field(
        Path("kshot_runs"),
        description="Where service-started training writes models, checkpoints and logs (one folder per attempt).",
    )
    datasets: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Registry of data sources by name (KSHOT_DATASETS=arsc=/data/arsc,reviews=/data/r.json).",
    )
    models: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Registry of models by name (KSHOT_MODELS=minilm=/models/minilm).",
    )
    token: SecretStr | None = Field(
        None, description="Bearer token required by every request that changes or starts something."
    )
    host: str = Field("127.0.0.1", description="Address `kshot serve` binds; anything but loopback needs a token.")
    port: int = Field(8000, ge=0, le=65535, description="Port `kshot serve` binds.")
    worker_concurrency: int = Field(1, ge=1, le=64, description="Jobs one `kshot worker` runs at once.")
    events_poll_seconds: float = Field(
        0.5, gt=0, le=10, description="How often a live event stream looks for new metrics."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, le=64 * 1_048_576, description="Largest request body the API reads (413 above it)."
    )
    max_json_depth: int = Field(32, ge=4, le=256, description="Deepest nesting of a JSON body (422 deeper).")
    heartbeat_seconds: float = Field(
        10.0, ge=0.1, le=300, description="How often a running job renews its attempt's lease (its heartbeat)."
    )
    lease_heartbeats: int = Field(
        3,
        ge=2,
        le=100,
        description="Heartbeats a job may miss before its attempt counts as interrupted (lease = this x heartbeat).",
    )
    reconcile_seconds: float = Field(
        10.0,
        ge=0.1,
        le=3600,
        description="How often the API and each worker end attempts whose lease expired and re-queue lost jobs.",
    )
    queued_grace_seconds: float = Field(
        60.0,
        ge=1,
        le=86400,
        description="How long an attempt may stay queued with no job naming it in the queue before it is re-queued.",
    )

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _roots(cls, value):
        return _split_list(value)

    @field_validator("datasets", "models", mode="before")
    @classmethod
    def _registry(cls, value):
        return _split_mapping(value)

    @field_validator("token", mode="before")
    @classmethod
    def _empty_token(cls, value):
        # KSHOT_TOKEN= (set but empty) means no token, not the empty string as a token.
        return None if isinstance(value, str) and not value.strip() else value

    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token else None

    def resolved_roots(self) -> list[Path]:
        """Allowed roots plus the output root (models trained here are testable), symlinks resolved."""
        roots = [*self.allowed_roots, self.output_root]
        return [Path(os.path.realpath(r)) for r in roots]

    def check_bind(self, host: str | None = None) -> None:
        """Refuse a non-loopback address without a token: anyone who reaches it could start jobs."""
        host = host or self.host
        if self.token_value() or is_loopback(host):
            return
        raise ConfigError(
            f"Refusing to serve on {host} without a token: anyone who can reach it could start jobs. "
            "Set KSHOT_TOKEN (a long random string) or bind to 127.0.0.1."
        )


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
