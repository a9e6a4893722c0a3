"""``kshot worker``: a huey consumer that runs training and test attempts in their own processes.

The consumer (the parent) forks one process per concurrent job. Each dies with the consumer
(``PR_SET_PDEATHSIG`` on Linux, and a check of its parent before it takes a job everywhere), so a
consumer killed with SIGKILL leaves no orphan taking jobs or writing attempts. The consumer
reconciles the store at start and every ``reconcile_seconds`` (see ``JobQueue.reconcile``).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time

from .queue import JobQueue
from .settings import ServiceSettings

logger = logging.getLogger("kshot.service.worker")

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> bool:
    """In a forked child: be killed (SIGKILL) when the parent dies; exit now if it is gone already.

    Returns whether the kernel will do it (Linux); elsewhere the caller checks ``os.getppid()``.
    """
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = (
                libc.prctl(
                    PR_SET_PDEATHSIG,
                    ctypes.c_ulong(signal.SIGKILL),
                    ctypes.c_ulong(0),
                    ctypes.c_ulong(0),
                    ctypes.c_ulong(0),
                )
                == 0
            )
            if not armed:
                logger.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d).", ctypes.get_errno())
        except (OSError, AttributeError) as err:
            logger.warning("prctl(PR_SET_PDEATHSIG) unavailable: %s", err)
    # The parent may have died between the fork and the prctl: then nothing would kill this process.
    if os.getppid() != parent_pid:
        os._exit(1)
    return armed


def build_consumer(settings: ServiceSettings, concurrency: int | None = None, health_check_interval: float = 5.0):
    """A huey consumer with ``concurrency`` worker processes (default ``settings.worker_concurrency``).

    Processes, not threads: a job that crashes its process (out of memory, a native fault) takes
    down only its worker; the consumer starts a new one and marks the attempt failed.
    """
    from huey.consumer import Consumer, Scheduler, Worker

    queue = JobQueue(settings)
    consumer_pid = os.getpid()

    class Orphanless:
        """Mixed into huey's worker and scheduler processes: they never outlive the consumer."""

        def initialize(self):
            die_with_parent(consumer_pid)
            super().initialize()

        def loop(self, now=None):
            if os.getppid() != consumer_pid:
                # No PDEATHSIG here (not Linux): stop before taking a job nobody would watch over.
                self._logger.error("The worker's consumer (pid %d) is gone; this process stops.", consumer_pid)
                os._exit(1)
            return super().loop(now)

    class KshotWorker(Orphanless, Worker):
        pass

    class KshotScheduler(Orphanless, Scheduler):
        pass

    class KshotConsumer(Consumer):
        worker_class = KshotWorker
        scheduler_class = KshotScheduler
        job_queue = queue
        next_reconcile = 0.0

        def check_worker_health(self):
            dead = [t.pid for _, t in self.worker_threads if not self.environment.is_alive(t)]
            healthy = super().check_worker_health()
            for pid in dead:
                # Its attempt is still 'running' with that process id: this consumer saw the process
                # exit, so it ends the attempt now rather than when its lease expires.
                failed = _store_call(queue, lambda store: store.fail_process(f"{socket.gethostname()}:{pid}"))
                logger.warning("Worker process %s died; %s attempt(s) marked failed (interrupted).", pid, failed)
            if time.monotonic() >= self.next_reconcile:
                self.next_reconcile = time.monotonic() + settings.reconcile_seconds
                _store_call(queue, queue.reconcile)
            return healthy

    return KshotConsumer(
        queue.huey,
        workers=concurrency or settings.worker_concurrency,
        worker_type="process",
        periodic=False,
        # Poll at most every second when idle: a queued attempt starts promptly.
        max_delay=1.0,
        # The consumer's main loop also reconciles: it runs at least that often.
        health_check_interval=min(health_check_interval, settings.reconcile_seconds),
    )


def _store_call(queue: JobQueue, call):
    """Run ``call(store)`` in the consumer, then close its connections: a process forked later must
    not inherit them. A failure is logged (the next round tries again), never fatal to the consumer."""
    try:
        return call(queue.store())
    except Exception as err:
        logger.warning("Reconciliation failed (%s: %s); trying again later.", type(err).__name__, err)
        return None
    finally:
        try:
            queue.close_connections()
        except Exception:
            logger.exception("Could not close the consumer's connections.")


def run_worker(settings: ServiceSettings, concurrency: int | None = None) -> None:
    consumer = build_consumer(settings, concurrency)
    queue = consumer.job_queue
    where = settings.redis_url if settings.queue_backend == "redis" else str(settings.queue_path)
    # A worker starting after a crash (its own, or another's on this host) reconciles first, before
    # the seconds its imports take.
    done = _store_call(queue, lambda store: queue.reconcile(store, this_host=True))
    if done is not None and (done.ended or done.interrupted or done.requeued):
        logger.warning(
            "At start: %d attempt(s) of stopped workers ended, %d queued again.",
            len(done.ended) + done.interrupted,
            len(done.requeued),
        )
    # Before forking: every job process (and every replacement of one that died) starts with them.
    queue.warm_up()
    logger.info("kshot worker: %d process(es) on the %s queue %s.", consumer.workers, settings.queue_backend, where)
    consumer.run()
