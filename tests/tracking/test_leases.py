"""Leases of running attempts: claiming is atomic, heartbeats renew the owner's lease only, an expired
lease ends its attempt once with an error a user can act on, and a run that lost its lease stops
without writing. On SQLite and PostgreSQL (the db_url fixture runs both)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from kshot.tracking import AttemptStore, train_attempt, train_command
from kshot.tracking.heartbeat import Heartbeat, LeaseLost, lease_timing
from kshot.tracking.runner import Lease
from kshot.tracking.store import this_worker
from kshot.training import TrainerCallback

COMMAND = {"config": {"output_dir": "out"}, "params": {"meta_steps": 3}}


def test_a_queued_attempt_is_claimed_once(store):
    attempt = store.create_attempt("a", "train", COMMAND)
    claimed = store.start_attempt(attempt.id, expect=("queued",), lease=30)
    assert claimed.status == "running" and claimed.worker == this_worker()
    assert store.start_attempt(attempt.id, expect=("queued",), lease=30) is None  # a second delivery
    assert store.get_attempt(attempt.id).started_at == claimed.started_at


def test_of_concurrent_claims_exactly_one_wins(db_url):
    stores = [AttemptStore(db_url) for _ in range(2)]
    attempt = stores[0].create_attempt("contended", "train", COMMAND)
    barrier, wins = threading.Barrier(6), []

    def claim(store):
        barrier.wait()
        wins.append(store.start_attempt(attempt.id, expect=("queued",), lease=30) is not None)

    threads = [threading.Thread(target=claim, args=(stores[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 5 + [True]
    for s in stores:
        s.close()


def test_heartbeats_renew_only_the_owners_lease(store):
    attempt = store.create_attempt("a", "train", COMMAND)
    started = store.start_attempt(attempt.id, lease=30)
    before = _lease(store, attempt.id)
    time.sleep(0.02)
    assert store.heartbeat(attempt.id, this_worker(), 30)
    after = _lease(store, attempt.id)
    assert after[0] > before[0] and after[1] > before[1]
    assert store.get_attempt(attempt.id).updated_at == started.updated_at  # a heartbeat is not an update
    assert not store.heartbeat(attempt.id, "another-host:1", 30)
    store.finish_attempt(attempt.id, "completed")
    assert not store.heartbeat(attempt.id, this_worker(), 30)  # finished: nothing to hold


def test_an_expired_lease_ends_its_attempt_once_with_an_actionable_error(store):
    gone = store.create_attempt("gone", "train", COMMAND)
    store.start_attempt(gone.id, lease=0.05)
    gone_test = store.create_attempt("gone-test", "test", {"model": "m"})
    store.start_attempt(gone_test.id, lease=0.05)
    cancelling = store.create_attempt("cancelling", "train", COMMAND)
    store.start_attempt(cancelling.id, lease=0.05)
    store.update_attempt(cancelling.id, cancel_requested=True)
    alive = store.create_attempt("alive", "train", COMMAND)
    store.start_attempt(alive.id, lease=60)
    recorded = store.create_attempt("recorded", "train", COMMAND, status="running")  # no lease: never reaped
    time.sleep(0.1)

    ended = {a.name: a for a in store.reap_expired()}
    assert set(ended) == {"gone", "gone-test", "cancelling"}
    assert ended["gone"].status == "failed" and ended["gone"].finished_at is not None
    assert ended["gone"].error.startswith("interrupted: its worker") and "no heartbeat for" in ended["gone"].error
    assert "resume to continue from the last checkpoint" in ended["gone"].error
    assert ended["gone-test"].status == "failed" and "start the test again" in ended["gone-test"].error
    assert ended["cancelling"].status == "cancelled" and "stopped" in ended["cancelling"].error
    assert store.get_attempt(alive.id).status == store.get_attempt(recorded.id).status == "running"
    assert store.reap_expired() == []  # once
    assert not store.heartbeat(gone.id, this_worker(), 30)  # the process learns it lost the attempt


def test_reap_expired_of_one_attempt(store):
    a = store.create_attempt("a", "train", COMMAND)
    b = store.create_attempt("b", "train", COMMAND)
    for x in (a, b):
        store.start_attempt(x.id, lease=0.01)
    time.sleep(0.05)
    assert [r.name for r in store.reap_expired(a.id)] == ["a"]
    assert store.get_attempt(b.id).status == "running"


def test_cancel_of_an_attempt_whose_lease_expired_ends_it_at_once(store):
    attempt = store.create_attempt("a", "train", COMMAND)
    store.start_attempt(attempt.id, lease=0.01)
    live = store.create_attempt("live", "train", COMMAND)
    store.start_attempt(live.id, lease=60)
    time.sleep(0.05)
    store.request_cancel(attempt.id)
    store.request_cancel(live.id)
    cancelled = store.get_attempt(attempt.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None and cancelled.cancel_requested
    assert store.get_attempt(live.id).status == "running" and store.cancel_requested(live.id)  # stops at its next step


def test_stale_queued_attempts_are_touched_by_one_reconciliation_only(store):
    old = store.create_attempt("old", "train", COMMAND, job=True)
    store.create_attempt("recorded", "train", COMMAND)  # queued, but only recorded: no worker is to run it
    store.create_attempt("running", "train", COMMAND, status="running", job=True)
    time.sleep(0.05)
    assert [a.name for a in store.stale_queued(timedelta(seconds=0.01))] == ["old"]
    assert store.stale_queued(timedelta(seconds=60)) == []
    assert store.touch_queued(old.id, timedelta(seconds=0.01))
    # Just touched by the first: a second reconciliation (any grace it would still be within) leaves it.
    assert not store.touch_queued(old.id, timedelta(seconds=30))
    assert store.stale_queued(timedelta(seconds=30)) == []
    time.sleep(0.05)  # and once the grace has passed again, it is stale again (the touch re-armed it)
    assert [a.name for a in store.stale_queued(timedelta(seconds=0.01))] == ["old"]


def test_the_heartbeat_thread_renews_and_notices_a_lost_lease(store):
    attempt = store.create_attempt("a", "train", COMMAND)
    store.start_attempt(attempt.id, lease=1)
    with Heartbeat(store, attempt.id, every=0.05, lease=1) as beat:
        first = _lease(store, attempt.id)[0]
        time.sleep(0.3)
        assert _lease(store, attempt.id)[0] > first and not beat.lost.is_set()
        beat.check()
        store.update_attempt(attempt.id, status="failed", error="reaped elsewhere")
        assert beat.lost.wait(2)
        with pytest.raises(LeaseLost, match="taken from this process"):
            beat.check()


def test_lease_timing_from_the_environment(monkeypatch):
    from kshot.errors import ConfigError

    monkeypatch.delenv("KSHOT_HEARTBEAT_SECONDS", raising=False)
    monkeypatch.delenv("KSHOT_LEASE_HEARTBEATS", raising=False)
    assert lease_timing() == (10.0, 30.0)
    monkeypatch.setenv("KSHOT_HEARTBEAT_SECONDS", "0.5")
    monkeypatch.setenv("KSHOT_LEASE_HEARTBEATS", "4")
    assert lease_timing() == (0.5, 2.0)
    monkeypatch.setenv("KSHOT_HEARTBEAT_SECONDS", "0")
    with pytest.raises(ConfigError, match="KSHOT_HEARTBEAT_SECONDS"):
        lease_timing()


class AtStep(TrainerCallback):
    def __init__(self, step, action):
        self.step, self.action = step, action

    def on_step_end(self, trainer, step, metrics):
        if step == self.step:
            self.action(step)


def test_a_run_that_lost_its_lease_stops_without_writing(tmp_path, tiny_run):
    """Another reconciliation ended the attempt while the run still went on: the run stops at its
    next step and leaves the attempt as the reconciliation did (no step, no final status of its own)."""
    config, params = tiny_run
    store = AttemptStore(f"sqlite:///{tmp_path / 'a.db'}")
    attempt = store.create_attempt("stolen", "train", train_command(config, params))

    def steal(step):
        store.update_attempt(attempt.id, status="failed", error="interrupted: reaped elsewhere")
        time.sleep(0.3)  # a few beats: the run's heartbeat finds the lease gone

    with pytest.raises(LeaseLost):
        train_attempt(store, attempt.id, config, params, callbacks=[AtStep(2, steal)], lease=Lease(0.05, 5))
    after = store.get_attempt(attempt.id)
    assert after.status == "failed" and after.error == "interrupted: reaped elsewhere"
    assert [s.step for s in store.steps(attempt.id)] == [1, 2]
    store.close()


def _lease(store, attempt_id):
    from sqlalchemy import select

    from kshot.tracking.models import Attempt
    from kshot.tracking.records import as_utc

    with store.engine.connect() as conn:
        row = conn.execute(select(Attempt.heartbeat_at, Attempt.lease_expires_at).where(Attempt.id == attempt_id)).one()
    return as_utc(row[0]), as_utc(row[1])


def test_queue_again_resumes_a_failed_or_cancelled_attempt_once(store):
    attempt = store.create_attempt("a", "train", COMMAND, job=True)
    store.start_attempt(attempt.id, lease=30)
    store.finish_attempt(attempt.id, "failed", error="interrupted")
    queued = store.queue_again(attempt.id)
    assert queued.status == "queued" and queued.error is None and queued.finished_at is None
    assert store.queue_again(attempt.id) is None  # a second resume at the same time
    store.start_attempt(attempt.id, expect=("queued",), lease=30)
    store.finish_attempt(attempt.id, "completed")
    assert store.queue_again(attempt.id) is None
