"""AttemptStore: create, find, update and list attempts, and record their steps and evaluations.

Every method opens its own short transaction, so one store may be shared between threads (the API
server) and several processes may share one database (the API and its workers).

A process running an attempt holds its lease (``start_attempt``, then ``heartbeat`` from a thread,
see ``heartbeat.Heartbeat``); ``reap_expired`` ends the running attempts whose lease ran out (their
process is gone, on whatever host), and ``fail_interrupted`` those of dead processes of this host.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import ConfigError, shown
from .database import database_url, make_engine, safe_url, upgrade
from .errors import AttemptError, AttemptExists, AttemptNotFound, IllegalTransition
from .heartbeat import lease_timing
from .models import Attempt, Evaluation, Step, utcnow
from .records import (
    ATTEMPT_KINDS,
    ATTEMPT_STATUSES,
    FINAL_STATUSES,
    FINISHED_STATUSES,
    TRANSITIONS,
    AttemptRecord,
    EvaluationRecord,
    StepRecord,
    as_utc,
)

# Names appear in URLs and shell commands; all-digit names would be mistaken for ids.
NAME_PATTERN = re.compile(r"^(?!\d+$)[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
UPDATABLE = (
    "name",
    "status",
    "command",
    "n_steps",
    "total_steps",
    "metrics",
    "error",
    "artefacts",
    "worker",
    "cancel_requested",
    "started_at",
    "finished_at",
    "study",
    "trial",
)
SORTABLE = ("id", "name", "kind", "status", "n_steps", "trial", "created_at", "updated_at", "started_at", "finished_at")


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class AttemptStore:
    """The attempts of one database (``url``, else ``$KSHOT_DATABASE_URL``, else ./kshot_attempts.db)."""

    def __init__(self, url: str | None = None, *, create: bool = True):
        self.url = database_url(url)
        self.engine = make_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if create:
            try:
                upgrade(self.engine)
            except OperationalError as err:
                raise ConfigError(
                    f"Cannot open the attempt database {safe_url(self.url)}: {err.orig}. Check --db or "
                    "$KSHOT_DATABASE_URL, and that the server is running."
                ) from None

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"AttemptStore({safe_url(self.url)!r})"

    # -- attempts ------------------------------------------------------------------------------
    def create_attempt(
        self,
        name: str,
        kind: str,
        command: dict,
        status: str = "queued",
        *,
        job: bool = False,
        study: str | None = None,
    ) -> AttemptRecord:
        """A new attempt. ``job=True``: the service queues a job for it next (``job_queued_at`` is set in
        the same commit), so a reconciliation can tell if that job never arrived; otherwise it is only recorded.
        ``study``: it is a trial of that `kshot tune` study (its trial number is set when it is sampled)."""
        _check_name(name)
        if study is not None:
            _check_name(study)
        _check_choice("kind", kind, ATTEMPT_KINDS)
        _check_choice("status", status, ATTEMPT_STATUSES)
        row = Attempt(
            name=name,
            kind=kind,
            status=status,
            command=_json_field("command", command),
            metrics={},
            artefacts={},
            job_queued_at=utcnow() if job else None,
            study=study,
        )
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            raise AttemptExists(f"An attempt named '{name}' exists already; choose another name.") from None
        return _record(row)

    def get_attempt(self, key: int | str) -> AttemptRecord | None:
        """By id (an int) or by unique name (a str)."""
        with self._sessions() as session:
            row = self._find(session, key)
            return _record(row) if row is not None else None

    def update_attempt(self, attempt_id: int, **fields: Any) -> AttemptRecord:
        """Set ``fields`` (see ``UPDATABLE``); only a legal status change (``TRANSITIONS``) is made.

        Timestamps follow the status (running → started_at, finished → finished_at).
        """
        unknown = sorted(set(fields) - set(UPDATABLE))
        if unknown:
            raise AttemptError(f"Unknown attempt field(s) {', '.join(unknown)}. Updatable: {', '.join(UPDATABLE)}.")
        values = _clean_fields(fields)
        try:
            with self._sessions.begin() as session:
                row = self._get(session, attempt_id)
                status = values.get("status")
                if status is not None and status != row.status and status not in TRANSITIONS[row.status]:
                    allowed = ", ".join(TRANSITIONS[row.status]) or "none: it is final"
                    raise IllegalTransition(
                        f"Attempt '{row.name}' is {row.status}; it cannot become {status} (allowed: {allowed})."
                    )
                if status == "running" and row.status != "running":
                    values.setdefault("started_at", utcnow())
                    values.setdefault("finished_at", None)
                elif status in FINISHED_STATUSES and row.status not in FINISHED_STATUSES:
                    values.setdefault("finished_at", utcnow())
                for key, value in values.items():
                    setattr(row, key, value)
        except IntegrityError:
            raise AttemptExists(
                f"An attempt named '{fields.get('name')}' exists already; choose another name."
            ) from None
        return _record(row)

    def start_attempt(
        self,
        attempt_id: int,
        total_steps: int | None = None,
        *,
        resume: bool = False,
        expect: Iterable[str] | None = None,
        lease: float | None = None,
    ) -> AttemptRecord | None:
        """Claim it: running in this process, holding a fresh lease, previous error and cancel cleared.

        One conditional UPDATE, so of two processes claiming one attempt (a job delivered twice) one
        only gets it, and a cancel that lands while a worker picks the attempt up is never
        overwritten. ``expect``: the statuses it may have (a worker: ``("queued",)``); by default any
        but cancelled, and with ``resume=True`` any (``kshot train --resume`` restarts it on purpose).
        Returns None when it was not claimed. ``lease``: seconds (default from $KSHOT_HEARTBEAT_SECONDS
        and $KSHOT_LEASE_HEARTBEATS); the process renews it with ``heartbeat``.
        """
        if lease is None:
            lease = lease_timing()[1]
        query = update(Attempt).where(Attempt.id == attempt_id)
        if expect is not None:
            statuses = [expect] if isinstance(expect, str) else list(expect)
            for s in statuses:
                _check_choice("status", s, ATTEMPT_STATUSES)
            query = query.where(Attempt.status.in_(statuses))
        elif not resume:
            query = query.where(Attempt.status != "cancelled")
        with self._sessions.begin() as session:
            now = self._now(session)
            values: dict[str, Any] = {
                "status": "running",
                "started_at": utcnow(),
                "finished_at": None,
                "error": None,
                "cancel_requested": False,
                "worker": this_worker(),
                "updated_at": utcnow(),
                "heartbeat_at": now,
                "lease_expires_at": now + timedelta(seconds=lease),
            }
            if total_steps is not None:
                values["total_steps"] = total_steps
            started = session.execute(query.values(**values)).rowcount
            self._get(session, attempt_id)
        return self.get_attempt(attempt_id) if started else None

    def claim_trial(
        self, name: str, command: dict, study: str, *, total_steps: int | None = None, lease: float | None = None
    ) -> AttemptRecord | None:
        """A new train attempt named ``name``, running in this process under a fresh lease, in one insert.

        How the processes working one study (``kshot tune``) share its trials: each trial has a name
        of its own, and of two processes claiming it the unique name lets one only have it (None for
        the other). Born running and leased, it is never left queued with no one to run it: a process
        that dies holding it stops renewing the lease, and any reconciliation ends it.
        """
        _check_name(name)
        _check_name(study)
        if lease is None:
            lease = lease_timing()[1]
        try:
            with self._sessions.begin() as session:
                now = self._now(session)
                row = Attempt(
                    name=name,
                    kind="train",
                    status="running",
                    command=_json_field("command", command),
                    metrics={},
                    artefacts={},
                    total_steps=total_steps,
                    study=study,
                    worker=this_worker(),
                    started_at=utcnow(),
                    heartbeat_at=now,
                    lease_expires_at=now + timedelta(seconds=lease),
                )
                session.add(row)
        except IntegrityError:
            return None
        return _record(row)

    def heartbeat(self, attempt_id: int, owner: str, lease: float) -> bool:
        """Renew the lease of ``owner`` (host:pid) for ``lease`` seconds; False when it no longer holds it.

        Not held: the attempt is no longer running in that process (it finished, was failed by a
        reconciliation after its lease ran out, was resumed elsewhere, or deleted).
        """
        with self._sessions.begin() as session:
            now = self._now(session)
            query = (
                update(Attempt)
                .where(Attempt.id == attempt_id, Attempt.status == "running", Attempt.worker == owner)
                # A heartbeat is not an update of the attempt: updated_at stays.
                .values(
                    heartbeat_at=now,
                    lease_expires_at=now + timedelta(seconds=lease),
                    updated_at=Attempt.updated_at,
                )
            )
            return bool(session.execute(query).rowcount)

    def finish_attempt(
        self, attempt_id: int, status: str, *, metrics: dict | None = None, error: str | None = None
    ) -> AttemptRecord:
        fields: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error}
        if metrics is not None:
            fields["metrics"] = metrics
        return self.update_attempt(attempt_id, **fields)

    def delete_attempt(self, attempt_id: int) -> None:
        with self._sessions.begin() as session:
            session.delete(self._get(session, attempt_id))

    def list_attempts(
        self,
        *,
        status: str | Iterable[str] | None = None,
        kind: str | None = None,
        name_contains: str | None = None,
        study: str | None = None,
        sort: str = "-created_at",
        offset: int = 0,
        limit: int | None = 50,
    ) -> tuple[list[AttemptRecord], int]:
        """One page of attempts and the total matching the filters. ``sort``: a field, ``-`` first for descending."""
        query = select(Attempt)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            for s in statuses:
                _check_choice("status", s, ATTEMPT_STATUSES)
            query = query.where(Attempt.status.in_(statuses))
        if kind is not None:
            _check_choice("kind", kind, ATTEMPT_KINDS)
            query = query.where(Attempt.kind == kind)
        if name_contains:
            query = query.where(func.lower(Attempt.name).contains(name_contains.lower(), autoescape=True))
        if study is not None:
            query = query.where(Attempt.study == study)
        key = sort.lstrip("+-")
        _check_choice("sort field", key, SORTABLE)
        column = getattr(Attempt, key)
        order = column.desc() if sort.startswith("-") else column.asc()
        tiebreak = Attempt.id.desc() if sort.startswith("-") else Attempt.id.asc()
        if offset < 0 or (limit is not None and limit < 0):
            raise AttemptError(f"offset and limit must be 0 or more, got offset={offset}, limit={limit}.")
        with self._sessions() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery()))
            page = query.order_by(order.nulls_last(), tiebreak).offset(offset)
            if limit is not None:
                page = page.limit(limit)
            return [_record(r) for r in session.scalars(page)], int(total or 0)

    def latest_attempt(self) -> AttemptRecord | None:
        page, _ = self.list_attempts(sort="-created_at", limit=1)
        return page[0] if page else None

    # -- steps and evaluations -----------------------------------------------------------------
    def add_step(self, attempt_id: int, step: int, metrics: dict[str, float]) -> None:
        """Record one outer step's metrics (a repeated step replaces the earlier row); n_steps follows."""
        clean = _clean_metrics(metrics)
        with self._sessions.begin() as session:
            attempt = self._get(session, attempt_id)
            row = session.get(Step, (attempt_id, step))
            if row is None:
                session.add(_step_row(attempt_id, step, clean))
            else:
                row.loss, row.metrics, row.created_at = clean.get("loss"), clean, utcnow()
            attempt.n_steps = max(attempt.n_steps or 0, step)
            attempt.updated_at = utcnow()

    def truncate_steps(self, attempt_id: int, after_step: int) -> None:
        """Forget steps and evaluations after ``after_step``: a resumed run repeats them from its checkpoint."""
        with self._sessions.begin() as session:
            attempt = self._get(session, attempt_id)
            session.execute(delete(Step).where(Step.attempt_id == attempt_id, Step.step > after_step))
            session.execute(delete(Evaluation).where(Evaluation.attempt_id == attempt_id, Evaluation.step > after_step))
            attempt.n_steps = min(attempt.n_steps or 0, after_step)

    def steps(self, attempt_id: int, after_step: int | None = None, limit: int | None = None) -> list[StepRecord]:
        """Steps in order; ``after_step`` gives only the newer ones (for following a run live)."""
        query = select(Step).where(Step.attempt_id == attempt_id)
        if after_step is not None:
            query = query.where(Step.step > after_step)
        query = query.order_by(Step.step)
        if limit is not None:
            query = query.limit(limit)
        with self._sessions() as session:
            return [StepRecord(r.step, dict(r.metrics or {}), as_utc(r.created_at)) for r in session.scalars(query)]

    def add_evaluation(self, attempt_id: int, step: int, split: str, results: dict) -> None:
        """Record ``evaluate_tasks`` output ({"tasks": {name: {accuracy, macro_f1, n_query, ...}}, "mean": ...})."""
        if not isinstance(split, str) or not split or len(split) > 32:
            raise AttemptError(f"Evaluation split must be a name such as 'validation' or 'test', got {shown(split)}.")
        tasks = (results or {}).get("tasks")
        if not isinstance(tasks, dict):
            raise AttemptError(
                "Evaluation results need a 'tasks' mapping of task name to metrics (evaluate_tasks output)."
            )
        with self._sessions.begin() as session:
            self._get(session, attempt_id)
            session.execute(
                delete(Evaluation).where(
                    Evaluation.attempt_id == attempt_id, Evaluation.step == step, Evaluation.split == split
                )
            )
            for task, metrics in tasks.items():
                session.add(_evaluation_row(attempt_id, step, split, task, metrics))
            session.get(Attempt, attempt_id).updated_at = utcnow()

    def restore_attempt(
        self,
        fields: dict[str, Any],
        steps: Iterable[tuple[int, dict]],
        evaluations: Iterable[tuple[int, str, str, dict]],
    ) -> AttemptRecord | None:
        """A final attempt of another database (`kshot attempts import`): its fields, its steps as (step,
        metrics) and its evaluations as (step, split, task, metrics), written in one transaction. None,
        writing nothing, when this database has an attempt of that name (or that study's trial) already."""
        values = restorable_fields(fields)
        try:
            with self._sessions.begin() as session:
                row = Attempt(**{"metrics": {}, "artefacts": {}, **values})
                session.add(row)
                session.flush()  # its id, for the rows below
                for step, metrics in steps:
                    session.add(_step_row(row.id, step, _clean_metrics(metrics)))
                for step, split, task, metrics in evaluations:
                    session.add(_evaluation_row(row.id, step, split, task, metrics))
        except IntegrityError:
            return None
        return _record(row)

    def evaluations(self, attempt_id: int, split: str | None = None) -> list[EvaluationRecord]:
        query = select(Evaluation).where(Evaluation.attempt_id == attempt_id)
        if split is not None:
            query = query.where(Evaluation.split == split)
        with self._sessions() as session:
            rows = session.scalars(query.order_by(Evaluation.step, Evaluation.split, Evaluation.id))
            return [
                EvaluationRecord(
                    r.step,
                    r.split,
                    r.task,
                    r.accuracy,
                    r.macro_f1,
                    r.n_query,
                    dict(r.extra or {}),
                    as_utc(r.created_at),
                )
                for r in rows
            ]

    def latest_evaluation(self, attempt_id: int, split: str = "test") -> dict[str, Any] | None:
        """The last evaluation of ``split`` as ``{"step", "tasks": {...}, "mean": {...}}`` (evaluate_tasks format)."""
        from ..training.metrics import summarize

        rows = self.evaluations(attempt_id, split)
        if not rows:
            return None
        last = max(r.step for r in rows)
        tasks = {
            r.task: {"accuracy": r.accuracy, "macro_f1": r.macro_f1, "n_query": r.n_query, **r.extra}
            for r in rows
            if r.step == last
        }
        scored = {k: v for k, v in tasks.items() if v["accuracy"] is not None and v["macro_f1"] is not None}
        return {"step": last, "tasks": tasks, "mean": summarize(scored)}

    # -- cancelling and crashes ----------------------------------------------------------------
    def request_cancel(self, attempt_id: int) -> None:
        """Ask a running attempt to stop after its current step; a queued one is cancelled at once.

        A running attempt whose lease has expired (its worker is gone) is cancelled at once too:
        nothing is left to see the request. One whose worker is gone but whose lease still runs is
        cancelled by the reconciliation that finds the lease expired (``reap_expired``).
        """
        with self._sessions.begin() as session:
            row = self._get(session, attempt_id)
            now = self._now(session)
            if row.status == "queued":
                row.status, row.finished_at = "cancelled", utcnow()
            elif row.status == "running" and _expired(row, now):
                row.status, row.finished_at = "cancelled", utcnow()
                row.error, row.lease_expires_at = _lost_error(row, now, cancelled=True), None
            if row.status not in ("completed", "failed"):
                row.cancel_requested = True

    def cancel_requested(self, attempt_id: int) -> bool:
        with self._sessions() as session:
            return bool(session.scalar(select(Attempt.cancel_requested).where(Attempt.id == attempt_id)))

    def fail_interrupted(self, stale_after: timedelta | None = None) -> int:
        """Mark 'running' attempts whose process is gone 'failed' (the error says why and to resume); returns how many.

        A run of this host is gone when its pid is not alive; a run of another host (or of unknown
        origin) only when ``stale_after`` is given and it wrote nothing for that long. A leased run
        whose pid is not alive here must also have missed half its lease: another container with
        the same host name (its own process ids) may be renewing it. A cancel asked of a run that
        is gone ends it cancelled. Each is a conditional UPDATE: a run claimed again meanwhile stays.
        """
        host = socket.gethostname()
        now = utcnow()
        with self._sessions() as session:
            db_now = self._now(session)
            rows = list(session.scalars(select(Attempt).where(Attempt.status == "running")))
        count = 0
        for row in rows:
            worker_host, _, pid = (row.worker or "").rpartition(":")
            if worker_host == host and pid.isdigit():
                dead = not _pid_alive(int(pid)) and _silent_half_lease(row, db_now)
            elif stale_after is not None:
                dead = now - as_utc(row.updated_at) > stale_after
            else:
                dead = row.worker is None
            if not dead:
                continue
            same = Attempt.worker.is_(None) if row.worker is None else Attempt.worker == row.worker
            count += self._end_lost(row, same, judged_at=db_now, now=now)
        return count

    def fail_process(self, worker: str) -> int:
        """End the running attempts of one process known to be dead (``host:pid``, e.g. by its parent,
        which saw it exit): failed, or cancelled when a cancel was asked; returns how many."""
        now = utcnow()
        with self._sessions() as session:
            rows = list(session.scalars(select(Attempt).where(Attempt.status == "running", Attempt.worker == worker)))
        return sum(self._end_lost(row, Attempt.worker == worker, judged_at=now, now=now, exited=True) for row in rows)

    def _end_lost(self, row: Attempt, *where, judged_at: datetime, now: datetime, exited: bool = False) -> int:
        """End ``row``, a running attempt whose worker is gone, if it still matches ``where``: cancelled when
        a cancel was asked, else failed, with the message every lost worker's attempt gets (``_lost_error``)."""
        cancelled = bool(row.cancel_requested)
        error = _lost_error(row, judged_at, cancelled=cancelled, exited=exited)
        return self._end_running(Attempt.id == row.id, *where, cancelled=cancelled, error=error, now=now)

    def _end_running(self, *where, cancelled: bool, error: str, now) -> int:
        """End the running attempts matching ``where`` whose process is gone, in one conditional UPDATE:
        failed with ``error``, or cancelled (a cancel was asked). A cancel asked since the caller read the
        row leaves it running, for the next reconciliation to end cancelled. Returns how many."""
        query = (
            update(Attempt)
            .where(Attempt.status == "running", Attempt.cancel_requested.is_(cancelled), *where)
            .values(
                status="cancelled" if cancelled else "failed",
                error=error,
                finished_at=now,
                lease_expires_at=None,
                updated_at=now,
            )
        )
        with self._sessions.begin() as session:
            return session.execute(query).rowcount

    def reap_expired(self, attempt_id: int | None = None) -> list[AttemptRecord]:
        """End the running attempts whose lease has expired (their process stopped renewing it); returns them.

        Failed, with an error saying what happened and what to do ("interrupted: its worker stopped
        (no heartbeat for N s); resume ..."), or cancelled when a cancel was asked. Each is one
        conditional UPDATE: a heartbeat or a cancel that lands first keeps its attempt running (to be
        ended at the next round), and of several reconciliations at once each attempt is ended once.
        ``attempt_id``: only that one.
        """
        with self._sessions() as session:
            now = self._now(session)
            query = select(Attempt).where(Attempt.status == "running", Attempt.lease_expires_at < now)
            if attempt_id is not None:
                query = query.where(Attempt.id == attempt_id)
            candidates = list(session.scalars(query.order_by(Attempt.id)))
        reaped = []
        for row in candidates:
            # The lease condition again: a heartbeat that landed since the read keeps its attempt running.
            if self._end_lost(row, Attempt.lease_expires_at < now, judged_at=now, now=utcnow()):
                reaped.append(self.get_attempt(row.id))
        return reaped

    def queue_again(
        self, attempt_id: int, from_statuses: Iterable[str] = ("failed", "cancelled")
    ) -> AttemptRecord | None:
        """Queued again for a new job (a resume): error, cancel and finish cleared, in one conditional
        UPDATE; None when it is not (or no longer) in one of ``from_statuses`` (two resumes at once: one wins)."""
        statuses = list(from_statuses)
        for s in statuses:
            _check_choice("status", s, ATTEMPT_STATUSES)
        values = {
            "status": "queued",
            "error": None,
            "cancel_requested": False,
            "finished_at": None,
            "lease_expires_at": None,
            "job_queued_at": utcnow(),
            "updated_at": utcnow(),
        }
        with self._sessions.begin() as session:
            query = update(Attempt).where(Attempt.id == attempt_id, Attempt.status.in_(statuses)).values(**values)
            queued = session.execute(query).rowcount
            self._get(session, attempt_id)
        return self.get_attempt(attempt_id) if queued else None

    def stale_queued(self, older_than: timedelta) -> list[AttemptRecord]:
        """Attempts whose job was queued over ``older_than`` ago and that are still queued: was the job lost?

        Only attempts the service queued a job for (``job_queued_at``): a recorded attempt is never run.
        """
        with self._sessions() as session:
            cutoff = self._now(session) - older_than
            query = select(Attempt).where(Attempt.status == "queued", Attempt.job_queued_at < cutoff)
            return [_record(r) for r in session.scalars(query.order_by(Attempt.id))]

    def touch_queued(self, attempt_id: int, older_than: timedelta) -> bool:
        """Record that a job of a stale queued attempt is queued now; False when it changed meanwhile (or
        another reconciliation touched it first), so that of several reconciliations one only re-enqueues it."""
        with self._sessions.begin() as session:
            now = self._now(session)
            query = (
                update(Attempt)
                .where(Attempt.id == attempt_id, Attempt.status == "queued", Attempt.job_queued_at < now - older_than)
                .values(job_queued_at=utcnow(), updated_at=Attempt.updated_at)
            )
            return bool(session.execute(query).rowcount)

    # -- helpers -------------------------------------------------------------------------------
    def _now(self, session: Session) -> datetime:
        """The time leases are written and judged in: the PostgreSQL server's clock, shared by every host
        (a SQLite file is on one host: its clock)."""
        if self.engine.dialect.name == "postgresql":
            return as_utc(session.scalar(select(func.now())))
        return utcnow()

    def _find(self, session: Session, key: int | str) -> Attempt | None:
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise AttemptError(f"An attempt is found by id (int) or name (str), got {shown(key)}.")
        if isinstance(key, int):
            return session.get(Attempt, key)
        return session.scalar(select(Attempt).where(Attempt.name == key))

    def _get(self, session: Session, key: int | str) -> Attempt:
        row = self._find(session, key)
        if row is None:
            raise AttemptNotFound(f"No attempt {shown(key)} in {safe_url(self.url)}; see `kshot attempts list`.")
        return row


def _silent_half_lease(row: Attempt, now: datetime) -> bool:
    """No lease, or no heartbeat for half of it."""
    if row.heartbeat_at is None or row.lease_expires_at is None:
        return True
    beat, expires = as_utc(row.heartbeat_at), as_utc(row.lease_expires_at)
    return now - beat > (expires - beat) / 2


def _expired(row: Attempt, now: datetime) -> bool:
    return row.lease_expires_at is not None and as_utc(row.lease_expires_at) < now


def _lost_error(row: Attempt, now: datetime, *, cancelled: bool = False, exited: bool = False) -> str:
    """What a user reads on an attempt whose worker stopped (its lease expired, its process is gone, or
    its parent saw it ``exited``), and what to do about it. Every way an attempt is ended for a lost
    worker says the same: which reconciliation got there first is a race, and must not change the message."""
    since = as_utc(row.heartbeat_at) or as_utc(row.started_at)
    silent = f"no heartbeat for {max(0, round((now - since).total_seconds()))} s" if since else "no heartbeat"
    if exited:
        silent = f"its process exited; {silent}"
    where = f" ({row.worker})" if row.worker else ""
    again = "resume to continue from the last checkpoint" if row.kind == "train" else "start the test again"
    if cancelled:
        return f"cancelled: its worker{where} stopped ({silent}) before the run could stop; {again}"
    return f"interrupted: its worker{where} stopped ({silent}); {again}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _record(row: Attempt) -> AttemptRecord:
    return AttemptRecord(
        id=row.id,
        name=row.name,
        kind=row.kind,
        status=row.status,
        command=dict(row.command or {}),
        n_steps=row.n_steps or 0,
        total_steps=row.total_steps,
        metrics=dict(row.metrics or {}),
        error=row.error,
        artefacts=dict(row.artefacts or {}),
        cancel_requested=bool(row.cancel_requested),
        worker=row.worker,
        study=row.study,
        trial=row.trial,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at),
    )


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise AttemptError(
            f"Invalid attempt name {shown(name)}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit and not all digits, e.g. 'reptile-lr1e-4'."
        )


def _check_choice(what: str, value: Any, choices: tuple[str, ...]) -> None:
    from ..errors import unknown_choice

    if value not in choices:
        raise AttemptError(unknown_choice(what, value, choices))


def _json_field(field: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise AttemptError(f"Attempt field '{field}' must be a mapping, got {type(value).__name__}.")
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        _check_text(field, text)
        return json.loads(text)
    except (TypeError, ValueError) as err:
        raise AttemptError(f"Attempt field '{field}' must be JSON (no NaN, no objects): {err}.") from None


def _check_text(field: str, text: str) -> None:
    """Text every database can store and every reader can encode: no lone surrogates (e.g. '\\udcff')."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise AttemptError(
            f"Attempt field '{field}' holds a character that is not Unicode text (a lone surrogate)."
        ) from None


def _clean_metrics(metrics: dict) -> dict[str, Any]:
    """Numbers as plain floats; NaN and infinities become null (JSON has neither, PostgreSQL refuses them)."""
    clean: dict[str, Any] = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, bool) or value is None or isinstance(value, str):
            clean[str(key)] = value
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise AttemptError(f"Metric {shown(str(key))} must be a number, got {shown(value)}.") from None
        clean[str(key)] = (value if isinstance(value, int) else number) if math.isfinite(number) else None
    return clean


def restorable_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` of a final attempt from another database, checked as the store checks its own writes."""
    values = _clean_fields(fields)
    _check_name(values.get("name"))
    _check_choice("kind", values.get("kind"), ATTEMPT_KINDS)
    if values.get("status") not in FINAL_STATUSES:
        raise AttemptError(f"Only a final attempt ({', '.join(FINAL_STATUSES)}) can be restored.")
    for key in ("created_at", "updated_at"):
        if values.get(key) is not None and not isinstance(values[key], datetime):
            raise AttemptError(f"Attempt field '{key}' must be a datetime, got {type(values[key]).__name__}.")
    return values


def _step_row(attempt_id: int, step: int, clean: dict[str, Any]) -> Step:
    return Step(attempt_id=attempt_id, step=step, loss=clean.get("loss"), metrics=clean)


def _evaluation_row(attempt_id: int, step: int, split: str, task: Any, metrics: dict) -> Evaluation:
    clean = _clean_metrics(metrics)
    n_query = clean.pop("n_query", None)
    return Evaluation(
        attempt_id=attempt_id,
        step=step,
        split=split,
        task=str(task),
        accuracy=clean.pop("accuracy", None),
        macro_f1=clean.pop("macro_f1", None),
        n_query=int(n_query) if n_query is not None else None,
        extra=clean,
    )


def _clean_fields(fields: dict[str, Any]) -> dict[str, Any]:
    values = dict(fields)
    if "name" in values:
        _check_name(values["name"])
    if "status" in values:
        _check_choice("status", values["status"], ATTEMPT_STATUSES)
    for key in ("error", "worker"):
        if isinstance(values.get(key), str):
            _check_text(key, values[key])
    for key in ("command", "artefacts"):
        if key in values:
            values[key] = _json_field(key, values[key])
    if "metrics" in values:
        values["metrics"] = _json_field("metrics", _clean_nested(values["metrics"]))
    if values.get("study") is not None:
        _check_name(values["study"])
    for key in ("n_steps", "total_steps", "trial"):
        if (
            key in values
            and values[key] is not None
            and (isinstance(values[key], bool) or not isinstance(values[key], int) or values[key] < 0)
        ):
            raise AttemptError(f"Attempt field '{key}' must be an integer 0 or more, got {shown(values[key])}.")
    for key in ("started_at", "finished_at"):
        if values.get(key) is not None and not isinstance(values[key], datetime):
            raise AttemptError(f"Attempt field '{key}' must be a datetime, got {shown(values[key])}.")
    return values


def _clean_nested(value: Any) -> Any:
    """Final metrics may nest (per-task tables); non-finite floats anywhere become null."""
    if isinstance(value, dict):
        return {str(k): _clean_nested(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_nested(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _clean_nested(value.item())
    return value
