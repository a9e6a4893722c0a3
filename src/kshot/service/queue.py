"""The job queue: huey (SQLite file or Redis) between the API, which enqueues, and ``kshot worker``, which runs.

Both sides build the queue with :func:`build_queue` from the same settings, so the task names match;
a message carries only the attempt id. The worker reads the attempt's command from the store and
opens the store itself (its own ``KSHOT_DATABASE_URL``): no database password travels through the queue.
"""

from __future__ import annotations

import logging
import os
import traceback
from datetime import datetime, timezone

from .settings import ServiceSettings

logger = logging.getLogger("kshot.service.worker")

TRAIN_TASK = "kshot.train"
TEST_TASK = "kshot.test"
ERROR_LIMIT = 4000


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

    def pending(self) -> int:
        return self.huey.pending_count()

    # ----------------------------------------------------------------------------- worker side
    def store(self):
        """One store per process: huey's process workers are forked, and an engine must not cross a fork."""
        pid = os.getpid()
        if pid not in self._stores:
            from ..tracking import AttemptStore

            self._stores[pid] = AttemptStore(self.settings.database_url)
        return self._stores[pid]

    def _run_train(self, attempt_id: int, resume: bool = False) -> None:
        from ..tracking import run_training_attempt

        self._run(attempt_id, lambda store: run_training_attempt(store, attempt_id, resume=resume))

    def _run_test(self, attempt_id: int) -> None:
        from ..tracking import run_test_attempt

        self._run(attempt_id, lambda store: run_test_attempt(store, attempt_id))

    def _run(self, attempt_id: int, job) -> None:
        store = self.store()
        attempt = store.get_attempt(attempt_id)
        if attempt is None:
            logger.error(
                "Attempt %d is not in this worker's store (%s): do the API and the worker use the same KSHOT_DATABASE_URL?",
                attempt_id,
                self.settings.database_url or "default",
            )
            return
        if attempt.status != "queued":
            # Cancelled while it waited (or already run by another worker after a re-delivery).
            logger.info("Attempt %s is %s; not running it.", attempt.name, attempt.status)
            return
        logger.info("Running %s attempt %s (id %d).", attempt.kind, attempt.name, attempt_id)
        try:
            job(store)
        except BaseException as err:  # noqa: BLE001 - a job must never leave its attempt 'running'
            mark_failed(store, attempt_id, error_text(err))
            raise
        after = store.get_attempt(attempt_id)
        if after is not None and after.status in ("queued", "running"):
            mark_failed(store, attempt_id, f"The job ended without finishing the attempt (status {after.status}).")
        logger.info("Attempt %s finished: %s.", attempt.name, after.status if after else "gone")

    def _on_error(self, signal, task, exc=None) -> None:
        attempt_id = task.args[0] if task.args else None
        if attempt_id is not None:
            mark_failed(self.store(), attempt_id, error_text(exc) if exc else "The job raised an error.")

    def _on_interrupted(self, signal, task, exc=None) -> None:
        attempt_id = task.args[0] if task.args else None
        if attempt_id is not None:
            mark_failed(
                self.store(),
                attempt_id,
                "interrupted: the worker stopped while the job ran; resume with `kshot train --resume`.",
            )


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


def mark_failed(store, attempt_id: int, error: str) -> None:
    """Mark an unfinished attempt failed; a finished one (completed, cancelled) keeps its status."""
    try:
        attempt = store.get_attempt(attempt_id)
        if attempt is None or attempt.status not in ("queued", "running"):
            return
        store.update_attempt(
            attempt_id, status="failed", error=error[:ERROR_LIMIT], finished_at=datetime.now(timezone.utc)
        )
    except Exception:  # the store itself failing must not hide the job's own error in the log
        logger.exception("Could not mark attempt %s failed.", attempt_id)
