"""Plain records handed out by the store: detached from any database session, JSON-ready."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

# "pruned": a trial of a hyperparameter search (`kshot tune`) stopped early because its periodic
# validation was hopeless; it keeps its steps and evaluations, and like a completed attempt it is final.
ATTEMPT_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "pruned")
ATTEMPT_KINDS = ("train", "test")
FINISHED_STATUSES = ("completed", "failed", "cancelled", "pruned")
FINAL_STATUSES = ("completed", "pruned")  # never change again (TRANSITIONS below): what moves between databases
# The statuses each status may change to. A completed (or pruned) attempt is final; a failed or
# cancelled one goes back to queued (or straight to running) only to resume from its checkpoint.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "queued": ("running", "completed", "failed", "cancelled"),
    "running": ("completed", "failed", "cancelled", "pruned"),
    "failed": ("queued", "running"),
    "cancelled": ("queued", "running"),
    "completed": (),
    "pruned": (),
}


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite drops the time zone of stored datetimes; every time the store writes is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def _json_ready(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


@dataclass
class AttemptRecord:
    id: int
    name: str
    kind: str
    status: str
    command: dict[str, Any]
    n_steps: int = 0
    total_steps: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    artefacts: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    worker: str | None = None
    study: str | None = None  # the `kshot tune` study it is a trial of, and its Optuna trial number
    trial: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def duration_seconds(self) -> float | None:
        """Wall time from start to finish (or to the last update while it runs)."""
        end = self.finished_at or self.updated_at
        if self.started_at is None or end is None:
            return None
        return (end - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_ready(v) for k, v in asdict(self).items()}


@dataclass
class StepRecord:
    step: int
    metrics: dict[str, float | None]
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_ready(v) for k, v in asdict(self).items()}


@dataclass
class EvaluationRecord:
    """One task's score at one evaluation; the mean over tasks is computed, never stored."""

    step: int
    split: str
    task: str
    accuracy: float | None
    macro_f1: float | None
    n_query: int | None
    extra: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_ready(v) for k, v in asdict(self).items()}


def means_by_step(rows: Iterable[EvaluationRecord]) -> dict[int, tuple[float, float]]:
    """Mean accuracy (a fraction) and macro-F1 over the tasks of each step, from rows scoring both."""
    by_step: dict[int, list[EvaluationRecord]] = {}
    for r in rows:
        if r.accuracy is not None and r.macro_f1 is not None:
            by_step.setdefault(r.step, []).append(r)
    return {
        s: (sum(r.accuracy for r in rs) / len(rs), sum(r.macro_f1 for r in rs) / len(rs)) for s, rs in by_step.items()
    }
