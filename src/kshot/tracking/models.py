"""SQLAlchemy tables of the attempt store. Changing them needs a new Alembic revision in migrations/."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Attempt(Base):
    __tablename__ = "attempts"
    # One attempt per trial of a study (NULLs, the attempts of no study, never collide).
    __table_args__ = (UniqueConstraint("study", "trial", name="uq_attempt_study_trial"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    # The full resolved command: {"config": ..., "params": ...} (+ "model" for a test).
    command: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    n_steps: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    artefacts: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # "host:pid" of the process running it, so a restarted service can tell a dead run from a live one.
    worker: Mapped[str | None] = mapped_column(String(255))
    # The lease of a running attempt: its job writes heartbeat_at (and pushes lease_expires_at a few
    # heartbeats ahead) every KSHOT_HEARTBEAT_SECONDS; a running attempt whose lease has expired lost
    # its worker, on whatever host it ran, and is failed by the next reconciliation (API or worker).
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the service last queued a job for it (POST /train or /test, a resume, a reconciliation);
    # null for an attempt only recorded (POST /attempts, the CLI), which no worker is to run. A queued
    # attempt with a job_queued_at older than a grace period and no queue message naming it lost its job.
    job_queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A trial of a `kshot tune` study: the study's name and Optuna's trial number (null otherwise).
    study: Mapped[str | None] = mapped_column(String(128), index=True)
    trial: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utcnow, onupdate=utcnow
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    steps: Mapped[list[Step]] = relationship(
        back_populates="attempt", cascade="all, delete-orphan", passive_deletes=True
    )
    evaluations: Mapped[list[Evaluation]] = relationship(
        back_populates="attempt", cascade="all, delete-orphan", passive_deletes=True
    )


class Step(Base):
    """One outer step's training metrics (loss, query_loss, ...); one row per (attempt, step)."""

    __tablename__ = "attempt_steps"

    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    loss: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)

    attempt: Mapped[Attempt] = relationship(back_populates="steps")


class Evaluation(Base):
    """One task's few-shot score at one evaluation (validation during training, test at the end)."""

    __tablename__ = "attempt_evaluations"
    __table_args__ = (
        UniqueConstraint("attempt_id", "step", "split", "task", name="uq_evaluation_attempt_step_split_task"),
        Index("ix_evaluation_attempt_split", "attempt_id", "split"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"), nullable=False)
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    split: Mapped[str] = mapped_column(String(32), nullable=False)
    task: Mapped[str] = mapped_column(String(255), nullable=False)
    accuracy: Mapped[float | None] = mapped_column(Float)
    macro_f1: Mapped[float | None] = mapped_column(Float)
    n_query: Mapped[int | None] = mapped_column(Integer)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)

    attempt: Mapped[Attempt] = relationship(back_populates="evaluations")
