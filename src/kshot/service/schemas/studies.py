"""Schemas of the studies resource: start or extend a search (POST /tune), and a study's trials."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...config.schema import OUTER_STEPS
from .attempts import AttemptPublic
from .common import finite_or_none
from .jobs import CONFIG_DOC, ConfigBody, ParamsBody, reject_non_finite

# A request queues at most this many trials; a study may grow by more requests.
MAX_TRIALS_PER_REQUEST = 200
MAX_SPACE_PARAMS = 32


class TuneRequest(BaseModel):
    """Start a study (config, params, space) or queue more trials of an existing one (its name alone)."""

    model_config = ConfigDict(extra="forbid")

    study: str = Field(
        min_length=1,
        max_length=100,
        description="Study name: letters, digits, '.', '_', '-'. An existing study gets n_trials more trials.",
        json_schema_extra={"pattern": r"^(?!\d+$)[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$"},
    )
    config: ConfigBody | None = Field(None, description=CONFIG_DOC + " It must have validation tasks.")
    params: ParamsBody | None = Field(None, description="The fixed params of every trial (params.yaml as JSON).")
    space: dict[str, dict[str, Any]] | None = Field(
        None,
        max_length=MAX_SPACE_PARAMS,
        description='Each searched param\'s distribution, as space.yaml: {"inner_lr": {"type": "float", "low": '
        '1e-4, "high": 1e-2, "log": true}}.',
    )
    n_trials: int = Field(10, ge=1, le=MAX_TRIALS_PER_REQUEST, description="Trials to queue on the workers.")
    pruner: Literal["median", "halving", "none"] = "median"
    prune_after: int = Field(
        0, ge=0, le=OUTER_STEPS.high, description="Prune no trial at a validation up to this outer step (0: none)."
    )
    prune_by: Literal["progress", "step"] = Field(
        "progress", description="Compare trials at the same fraction of their meta_steps, or at the same outer step."
    )
    warm_start: bool = Field(False, description="Add the store's completed attempts on the same problem first.")

    @field_validator("space")
    @classmethod
    def _finite(cls, value):
        if value is not None:
            reject_non_finite(value, "space")
        return value


class TuneQueued(BaseModel):
    study: str
    trials: list[AttemptPublic] = Field(description="The queued trial attempts, one per trial.")
    warm_started: int = Field(0, description="Attempts of the store added to the study as finished trials.")


class TrialPublic(BaseModel):
    number: int
    state: Literal["complete", "pruned", "fail", "running", "waiting"]
    value: float | None = None
    params: dict[str, Any]
    attempt: str | None = Field(None, description="The trial's attempt (GET /attempts/{name}).")
    warm_start: bool = False
    intermediate: list[tuple[int, float | None]] = Field(description="[outer step, validation value] as reported.")

    @classmethod
    def of(cls, trial, outer_step=lambda step, trial: step) -> TrialPublic:
        """``outer_step(reported, trial)``: the outer step of a value reported to the pruner at ``reported``."""
        return cls(
            number=trial.number,
            state=trial.state.name.lower(),
            value=finite_or_none(trial.value),
            params=finite_or_none(dict(trial.params)),
            attempt=trial.user_attrs.get("attempt"),
            warm_start=bool(trial.user_attrs.get("warm_start")),
            intermediate=[
                (int(outer_step(k, trial)), finite_or_none(v)) for k, v in sorted(trial.intermediate_values.items())
            ],
        )


class StudySummary(BaseModel):
    name: str
    metric: str
    n_trials: int
    counts: dict[str, int] = Field(description="Trials by state (non-zero only).")
    best_value: float | None = None
    best_trial: int | None = None


class StudyList(BaseModel):
    studies: list[StudySummary]


class StudyPublic(BaseModel):
    name: str
    metric: str
    pruner: str
    prune_after: int = Field(0, description="No trial is pruned at a validation up to this outer step.")
    prune_by: str = Field("step", description="What trials are compared at: progress (of meta_steps) or step.")
    space: dict[str, Any]
    best: dict[str, Any] | None = None
    trials: list[TrialPublic]
    importance: dict[str, float] = Field(description="fANOVA importance of each param (needs 2+ finished trials).")
