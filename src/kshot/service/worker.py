"""``kshot worker``: a huey consumer that runs training and test attempts in their own processes."""

from __future__ import annotations

import logging

from .queue import JobQueue
from .settings import ServiceSettings

logger = logging.getLogger("kshot.service.worker")


def build_consumer(settings: ServiceSettings, concurrency: int | None = None, health_check_interval: float = 5.0):
    """A huey consumer with ``concurrency`` worker processes (default ``settings.worker_concurrency``).

    Processes, not threads: a job that crashes its process (out of memory, a native fault) takes
    down only its worker; the consumer starts a new one and marks the attempt failed.
    """
    from huey.consumer import Consumer

    queue = JobQueue(settings)

    class KshotConsumer(Consumer):
        def check_worker_health(self):
            alive = [self.environment.is_alive(t) for _, t in self.worker_threads]
            super().check_worker_health()
            if not all(alive):
                # The dead worker's attempt is still 'running' with that process id; the store
                # recognises a dead process on this host and marks its attempt failed.
                failed = queue.store().fail_interrupted()
                logger.warning("A worker process died; %d attempt(s) marked failed (interrupted).", failed)

    return KshotConsumer(
        queue.huey,
        workers=concurrency or settings.worker_concurrency,
        worker_type="process",
        periodic=False,
        # Poll at most every second when idle: a queued attempt starts promptly.
        max_delay=1.0,
        health_check_interval=health_check_interval,
    )


def run_worker(settings: ServiceSettings, concurrency: int | None = None) -> None:
    consumer = build_consumer(settings, concurrency)
    where = settings.redis_url if settings.queue_backend == "redis" else str(settings.queue_path)
    logger.info("kshot worker: %d process(es) on the %s queue %s.", consumer.workers, settings.queue_backend, where)
    consumer.run()
