"""The job queue: huey (SQLite file or Redis) between the API, which enqueues, and ``kshot worker``, which runs.

Both sides build the queue with :func:`build_queue` from the same settings, so the task names match;
a message carries only the attempt id. The worker reads the attempt's command from the store and
opens the store itself (its own ``KSHOT_DATABASE_URL``): no database password travels through the queue.

Nothing here trusts a process to say goodbye. A job claims its attempt with one conditional update
(queued → running), so a message delivered twice runs once, and holds the attempt's lease while it
runs (a heartbeat thread, ``tracking.heartbeat``). :meth:`JobQueue.reconcile`, run by the API and by
every worker, at start and every ``reconcile_seconds``, ends the running attempts whose lease
expired (their worker died, on any host) and queues again the attempts left queued with no message
naming them (the API died between storing an attempt and queueing its job, or a worker between
taking a message and claiming its attempt).
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .settings import ServiceSettings

logger = logging.getLogger("kshot.service.worker")

TRAIN_TASK = "kshot.train"
TEST_TASK = "kshot.test"
ERROR_LIMIT = 4000


@dataclass
class Reconciled:
    """What one reconciliation did: attempts ended (lease expired), attempts of dead processes of this
    host failed (``interrupted``, a count), and attempts queued again (job lost)."""

    ended: list = field(default_factory=list)
    interrupted: int = 0
    requeued: list = field(default_factory=list)


class JobQueue:
    """Enqueue training and test attempts; the worker runs them through the same object."""

    def __init__(self, settings: ServiceSettings):
        from huey.signals import SIGNAL_ERROR, SIGNAL_INTERRUPTED

        self.settings = settings
        self.huey = make_huey(settings)
        self._stores: dict[int, object] = {}
        self._train = self.huey.task(name=TRAIN_TASK)(self._run_train)
        self._test = self.huey.task(name=TEST_TASK)(self._run_test)
        self.huey.signal(SIGNAL_ERROR)(self._on_error)
        self.huey.signal(SIGNAL_INTERRUPTED)(self._on_interrupted)

    # -------------------------------------------------------------------------------- API side
    def enqueue_train(self, attempt_id: int, resume: bool = False) -> None:
        self._train(attempt_id, resume)

    def enqueue_test(self, attempt_id: int) -> None:
        self._test(attempt_id)

    def enqueue(self, attempt, resume: bool = False) -> None:
        """The job of ``attempt`` (a record), by its kind."""
        if attempt.kind == "train":
            self.enqueue_train(attempt.id, resume=resume)
        else:
            self.enqueue_test(attempt.id)

    def pending(self) -> int:
        return self.huey.pending_count()

    def queued_attempt_ids(self) -> set[int]:
        """Ids of the attempts that a message waiting in the queue (or its schedule) names."""
        ids: set[int] = set()
        for task in [*self.huey.pending(), *self.huey.scheduled()]:
            if task.name in (TRAIN_TASK, TEST_TASK) and task.args and isinstance(task.args[0], int):
                ids.add(task.args[0])
        return ids

    # ---------------------------------------------------------------------------- both sides
    def reconcile(self, store, *, this_host: bool = False) -> Reconciled:
        """End running attempts whose worker is gone; queue again queued attempts whose job is gone.

        ``this_host``: also fail, at once, running attempts of dead processes of this host (a
        worker starting, the API starting), without waiting for their lease to expire.
        """
        done = Reconciled()
        # Leases first: their error says how long the worker has been silent and what to do.
        for attempt in store.reap_expired():
            done.ended.append(attempt)
            logger.warning("Attempt %s (id %d) ended %s: %s", attempt.name, attempt.id, attempt.status, attempt.error)
        if this_host:
            done.interrupted = store.fail_interrupted()
            if done.interrupted:
                logger.warning(
                    "%d attempt(s) of stopped processes of this host marked failed (interrupted).", done.interrupted
                )
        done.requeued = self._requeue_lost(store)
        self._fail_lost_trials(store, done)
        return done

    def _fail_lost_trials(self, store, done: Reconciled) -> None:
        """A trial whose attempt was just ended (its worker gone) is failed in its study too."""
        studies = {a.study for a in done.ended if a.study}
        if done.interrupted:
            studies |= {a.study for a in store.list_attempts(status="failed", limit=200)[0] if a.study}
        if not studies:
            return
        import optuna

        from ..tuning import fail_lost_trials, optuna_storage

        storage = optuna_storage(store.url)
        for name in studies:
            try:
                fail_lost_trials(store, optuna.load_study(study_name=name, storage=storage))
            except KeyError:  # the study was deleted
                continue

    def _requeue_lost(self, store) -> list:
        grace = timedelta(seconds=self.settings.queued_grace_seconds)
        stale = store.stale_queued(grace)
        if not stale:
            return []
        # Read after the attempts: a job taken meanwhile is then claimed already, or its attempt is
        # queued twice, which is harmless (the second delivery finds it no longer queued).
        named = self.queued_attempt_ids()
        requeued = []
        for attempt in stale:
            if attempt.id in named or not store.touch_queued(attempt.id, grace):
                continue
            # A training that ran before (a resume whose job was lost) continues from its checkpoint.
            resume = attempt.kind == "train" and attempt.started_at is not None
            try:
                self.enqueue(attempt, resume=resume)
            except Exception as err:  # the queue down: the next reconciliation tries again
                logger.error("Could not queue attempt %s again: %s", attempt.name, error_text(err))
                continue
            logger.warning(
                "Attempt %s (id %d) was queued with no job for over %.0f s (its job was lost); queued it again.",
                attempt.name,
                attempt.id,
                grace.total_seconds(),
            )
            requeued.append(attempt)
        return requeued

    def close_connections(self) -> None:
        """Close this process's store and queue connections (they reopen on use): nothing open crosses a fork."""
        store = self._stores.get(os.getpid())
        if store is not None:
            store.engine.dispose()
        self.huey.storage.close()

    # ----------------------------------------------------------------------------- worker side
    def store(self):
        """One store per process: huey's process workers are forked, and an engine must not cross a fork."""
        pid = os.getpid()
        if pid not in self._stores:
            from ..tracking import AttemptStore

            self._stores[pid] = AttemptStore(self.settings.database_url)
        return self._stores[pid]

    def warm_up(self) -> None:
        """Import what a job needs before it claims an attempt (the worker does, before it forks).

        Importing torch and transformers holds the interpreter lock for seconds at a time: after the
        claim, that would starve the heartbeat thread and let the lease of a healthy job expire.
        """
        import importlib

        modules = ("trainer", "evaluate_saved", "adapt", "predict")
        for module in [f"kshot.training.{m}" for m in modules] + ["kshot.tracking.runner"]:
            importlib.import_module(module)

    def lease(self):
        """How a job holds its attempt: the settings' heartbeat and lease; it kills itself when it lost it."""
        from ..tracking.runner import Lease

        every = self.settings.heartbeat_seconds
        return Lease(every, every * self.settings.lease_heartbeats, kill_when_lost=True)

    def _run_train(self, attempt_id: int, resume: bool = False) -> None:
        from ..tracking import run_training_attempt

        def job(store):
            attempt = store.get_attempt(attempt_id)
            if attempt is not None and attempt.study is not None:  # a trial of a study (POST /tune)
                from ..tuning.trial import run_queued_trial

                return run_queued_trial(store, attempt_id, lease=self.lease())
            return run_training_attempt(store, attempt_id, resume=resume, expect=("queued",), lease=self.lease())

        self._run(attempt_id, job)

    def _run_test(self, attempt_id: int) -> None:
        from ..tracking import run_test_attempt

        self._run(attempt_id, lambda store: run_test_attempt(store, attempt_id, expect=("queued",), lease=self.lease()))

    def _run(self, attempt_id: int, job) -> None:
        from ..tracking.store import this_worker

        store = self.store()
        attempt = store.get_attempt(attempt_id)
        if attempt is None:
            logger.error(
                "Attempt %d is not in this worker's store (%s): do the API and the worker use the same "
                "KSHOT_DATABASE_URL?",
                attempt_id,
                self.settings.database_url or "default",
            )
            return
        if attempt.status != "queued":
            # Cancelled while it waited, or run already (a message delivered twice, or queued again).
            logger.info("Attempt %s is %s; not running it.", attempt.name, attempt.status)
            return
        if not self._command_allowed(store, attempt):
            return
        logger.info("Running %s attempt %s (id %d).", attempt.kind, attempt.name, attempt_id)
        me = this_worker()
        try:
            ran = job(store)  # claims the attempt (queued → running) first; False when another process did
        except BaseException as err:  # noqa: BLE001 - a job must never leave its attempt 'running'
            mark_failed(store, attempt_id, error_text(err), owner=me)
            raise
        after = store.get_attempt(attempt_id)
        if ran and after is not None and after.status == "running" and after.worker == me:
            mark_failed(store, attempt_id, "The job ended without finishing the attempt (status running).", owner=me)
        logger.info("Attempt %s: %s.", attempt.name, after.status if after else "deleted")

    def _command_allowed(self, store, attempt) -> bool:
        """Resolve the stored command again where it runs: a row is trusted no more than a request."""
        from .launch import check_stored_command
        from .references import InvalidReference

        try:
            check_stored_command(attempt, self.settings)
        except InvalidReference as err:
            logger.warning("Attempt %s refused: %s", attempt.name, err.message)
            mark_failed(store, attempt.id, f"Refused to run: {err.message}")
            return False
        return True

    def _on_error(self, signal, task, exc=None) -> None:
        from ..tracking.store import this_worker

        attempt_id = task.args[0] if task.args else None
        if attempt_id is not None:
            error = error_text(exc) if exc else "The job raised an error."
            mark_failed(self.store(), attempt_id, error, owner=this_worker())

    def _on_interrupted(self, signal, task, exc=None) -> None:
        from ..tracking.store import this_worker

        attempt_id = task.args[0] if task.args else None
        if attempt_id is not None:
            mark_failed(
                self.store(),
                attempt_id,
                "interrupted: the worker stopped while the job ran; resume to continue from the last checkpoint.",
                owner=this_worker(),
            )


class Reconciler:
    """Runs ``queue.reconcile`` every ``every`` seconds in a daemon thread (the API's periodic check).

    Not for a huey consumer: it forks its workers, and a fork while this thread holds a lock would
    hand the child a lock nobody releases (the worker reconciles from its main loop instead).
    """

    def __init__(self, queue: JobQueue, store, every: float):
        self.queue, self.store, self.every = queue, store, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kshot-reconcile", daemon=True)

    def start(self) -> Reconciler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.queue.reconcile(self.store)
            except Exception as err:  # the database or the queue down for a moment: the next round retries
                logger.warning("Reconciliation failed (%s); trying again in %.1f s.", error_text(err), self.every)


def make_huey(settings: ServiceSettings):
    # Results are never read (the store holds them), so huey keeps none.
    if settings.queue_backend == "redis":
        from huey import RedisHuey

        return RedisHuey(settings.queue_name, url=settings.redis_url, results=False)
    from huey import SqliteHuey

    path = settings.queue_path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(settings.queue_name, filename=str(path), results=False)


def error_text(err: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(err), err)).strip()
    return text[:ERROR_LIMIT]


def mark_failed(store, attempt_id: int, error: str, owner: str | None = None) -> None:
    """Mark an unfinished attempt failed; a finished one (completed, cancelled) keeps its status.

    ``owner`` (host:pid, a job's own process): only when that process runs it, so that a job which
    did not claim the attempt (a second delivery) never fails the run of another; an attempt it did
    not claim stays queued, and reconciliation queues it again if no message names it.
    """
    try:
        attempt = store.get_attempt(attempt_id)
        if attempt is None or attempt.status not in ("queued", "running"):
            return
        if owner is not None and (attempt.status != "running" or attempt.worker != owner):
            return
        store.update_attempt(
            attempt_id, status="failed", error=error[:ERROR_LIMIT], finished_at=datetime.now(timezone.utc)
        )
    except Exception:  # the store itself failing must not hide the job's own error in the log
        logger.exception("Could not mark attempt %s failed.", attempt_id)
