"""Schemas of the attempts resource: create, update, public view, page of a list."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .common import AttemptName, finite_or_none
from .jobs import check_config, check_params

MAX_METRICS = 100
MAX_ARTEFACTS = 32
MetricKey = Annotated[str, Field(min_length=1, max_length=64)]
ArtefactPath = Annotated[str, Field(min_length=1, max_length=4096)]

Status = Literal["queued", "running", "completed", "failed", "cancelled", "pruned"]
Kind = Literal["train", "test"]
SortKey = Literal[
    "created_at", "-created_at", "updated_at", "-updated_at", "name", "-name", "status", "-status", "id", "-id"
]


class AttemptCommand(BaseModel):
    """The resolved command of an attempt: kshot's config and params as JSON (and the model of a test)."""

    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] = Field(
        default_factory=dict, description="config.yaml as JSON (data, model, output_dir, logging)."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="params.yaml as JSON, or a test's param overrides."
    )
    model: str | None = Field(None, max_length=4096, description="The model folder a test attempt evaluates.")

    @field_validator("config")
    @classmethod
    def _valid_config(cls, value):
        return check_config(value) if value else value

    @field_validator("params")
    @classmethod
    def _valid_params(cls, value):
        return check_params(value) if value else value


class AttemptCreate(BaseModel):
    """Record an attempt made elsewhere (a notebook, another machine); the service does not run it."""

    model_config = ConfigDict(extra="forbid")

    name: AttemptName
    kind: Kind = "train"
    status: Status = "queued"
    command: AttemptCommand = Field(default_factory=AttemptCommand)


class AttemptUpdate(BaseModel):
    """Fields to change; those left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    status: Status | None = None
    n_steps: int | None = Field(None, ge=0, le=10**9, description="Outer steps run so far.")
    error: str | None = Field(None, max_length=10_000)
    metrics: dict[MetricKey, float] | None = Field(
        None,
        max_length=MAX_METRICS,
        description=f'Final metrics (at most {MAX_METRICS}), e.g. {{"accuracy": 0.83, "macro_f1": 0.81}}.',
    )
    artefacts: dict[MetricKey, ArtefactPath] | None = Field(
        None,
        max_length=MAX_ARTEFACTS,
        description=f"Named artefact paths under the allowed roots (at most {MAX_ARTEFACTS}).",
    )

    @field_validator("metrics")
    @classmethod
    def _finite(cls, value):
        if value is not None and any(not math.isfinite(v) for v in value.values()):
            raise ValueError("metrics must be finite numbers")
        return value

    def fields(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude_none=True)


class AttemptPublic(BaseModel):
    id: int
    name: str
    kind: Kind
    status: Status
    command: dict[str, Any]
    n_steps: int
    total_steps: int | None = None
    metrics: dict[str, Any]
    error: str | None = None
    artefacts: dict[str, Any]
    cancel_requested: bool = False
    worker: str | None = Field(None, description="host:pid of the process running it.")
    study: str | None = Field(None, description="The study it is a trial of (kshot tune, POST /tune).")
    trial: int | None = Field(None, description="Its trial number in that study, once sampled.")
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def of(cls, record) -> AttemptPublic:
        data = {name: getattr(record, name, None) for name in cls.model_fields}
        data["metrics"] = finite_or_none(data["metrics"] or {})
        data["artefacts"] = data["artefacts"] or {}
        data["command"] = finite_or_none(data["command"] or {})
        data["cancel_requested"] = bool(data["cancel_requested"])
        return cls(**data)


class AttemptPage(BaseModel):
    items: list[AttemptPublic]
    total: int = Field(description="Attempts matching the filters, over all pages.")
    offset: int
    limit: int
