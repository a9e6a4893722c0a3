"""Schemas of an attempt's metrics: per-step training losses and per-task evaluations."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from .common import finite_or_none


class StepPublic(BaseModel):
    step: int
    metrics: dict[str, float | None]
    created_at: datetime | None = None

    @classmethod
    def of(cls, record) -> StepPublic:
        return cls(step=record.step, metrics=finite_or_none(dict(record.metrics)), created_at=record.created_at)


class EvaluationPublic(BaseModel):
    step: int
    split: str
    task: str
    accuracy: float | None = None
    macro_f1: float | None = None
    n_query: int | None = None

    @classmethod
    def of(cls, record) -> EvaluationPublic:
        return cls(
            step=record.step,
            split=record.split,
            task=record.task,
            accuracy=finite_or_none(record.accuracy),
            macro_f1=finite_or_none(record.macro_f1),
            n_query=record.n_query,
        )
