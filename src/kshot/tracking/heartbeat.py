"""The lease of a running attempt: a thread of the process running it renews it every few seconds.

A running attempt holds a lease in the store (``heartbeat_at``, ``lease_expires_at``). The process
that runs it renews the lease every ``every`` seconds, ``lease`` seconds ahead; a process that dies
(SIGKILL, out of memory, its host gone) stops renewing, and once the lease has expired any
reconciliation (the API's periodic check, a worker's, a worker starting) fails the attempt. The
lease is written in the store's clock (the database server's for PostgreSQL), so hosts whose clocks
disagree judge it alike.

A process whose lease was taken from it (it was marked failed while it still ran, e.g. frozen or
cut off from the database for longer than the lease) must stop writing: ``lost`` is set, the
training callback stops the run at its next step, and, where ``kill_when_lost``, the process kills
itself if the job has not ended one lease later.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time

from ..errors import ConfigError

logger = logging.getLogger(__name__)

HEARTBEAT_ENV = "KSHOT_HEARTBEAT_SECONDS"
LEASE_ENV = "KSHOT_LEASE_HEARTBEATS"
DEFAULT_HEARTBEAT_SECONDS = 10.0
DEFAULT_LEASE_HEARTBEATS = 3
HEARTBEAT_RANGE = (0.1, 300.0)
LEASE_HEARTBEATS_RANGE = (2, 100)


class LeaseLost(RuntimeError):
    """This process no longer holds the attempt's lease: another reconciliation ended (or re-queued) it."""


def lease_timing(every: float | None = None, heartbeats: int | None = None) -> tuple[float, float]:
    """(heartbeat seconds, lease seconds): the arguments, else $KSHOT_HEARTBEAT_SECONDS and $KSHOT_LEASE_HEARTBEATS."""
    if every is None:
        every = _env_number(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_SECONDS, float, HEARTBEAT_RANGE)
    if heartbeats is None:
        heartbeats = _env_number(LEASE_ENV, DEFAULT_LEASE_HEARTBEATS, int, LEASE_HEARTBEATS_RANGE)
    return float(every), float(every) * int(heartbeats)


def _env_number(name: str, default, kind, bounds):
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"${name}={text!r}: expected a {kind.__name__} from {bounds[0]} to {bounds[1]}.")
    return value


class Heartbeat:
    """Renews the attempt's lease from a daemon thread while the ``with`` block runs.

    The attempt must have been started by this process (``store.start_attempt``), which took the
    first lease; the thread ends with the block.
    """

    def __init__(self, store, attempt_id: int, every: float, lease: float, *, kill_when_lost: bool = False):
        from .store import this_worker

        self.store, self.attempt_id = store, attempt_id
        self.every, self.lease = every, lease
        self.kill_when_lost = kill_when_lost
        self.owner = this_worker()
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"kshot-heartbeat-{attempt_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self._thread.join(timeout=max(self.every, 1.0) + 5)

    def stop(self) -> None:
        """No more beats: the run is about to write the attempt's final status itself."""
        self._stop.set()

    def check(self) -> None:
        """Raise LeaseLost when the lease was taken from this process: the run must stop writing."""
        if self.lost.is_set():
            raise LeaseLost(
                f"Attempt {self.attempt_id} was taken from this process ({self.owner}): its lease expired "
                "and it was marked failed, or it was resumed elsewhere; this run stops."
            )

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.every):
            try:
                held = self.store.heartbeat(self.attempt_id, self.owner, self.lease)
            except Exception as err:  # the database unreachable for a moment: try again at the next beat
                logger.warning("Heartbeat of attempt %s failed (%s); retrying.", self.attempt_id, err)
                continue
            if held:
                beat = time.monotonic()
                if beat - last > max(2 * self.every, self.lease / 2):
                    logger.warning(
                        "Heartbeat of attempt %s came %.1f s after the last (every %.1f s, lease %.1f s): this "
                        "process or the database is overloaded.",
                        self.attempt_id,
                        beat - last,
                        self.every,
                        self.lease,
                    )
                last = beat
                continue
            if self._stop.is_set():
                return  # the run finished the attempt itself meanwhile
            self.lost.set()
            logger.error(
                "Attempt %s is no longer held by this process (%s): its lease expired or it ended elsewhere. "
                "Stopping the run.",
                self.attempt_id,
                self.owner,
            )
            if self.kill_when_lost and not self._stop.wait(self.lease):
                # Still running a lease later (a long evaluation): two runs of one attempt must not write
                # the same checkpoints, so this one goes.
                logger.error("The run of attempt %s did not stop; killing its process.", self.attempt_id)
                os.kill(os.getpid(), signal.SIGKILL)
            return
