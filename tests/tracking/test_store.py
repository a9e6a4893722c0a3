"""The attempt store's contract, on SQLite and on PostgreSQL (the db_url fixture runs both)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest

from kshot.tracking import AttemptError, AttemptExists, AttemptNotFound, AttemptStore

COMMAND = {"config": {"output_dir": "out"}, "params": {"meta_steps": 3, "inner_lr": 1e-4}}


def test_create_then_get_by_id_and_name(store):
    created = store.create_attempt("reptile-lr1e-4", "train", COMMAND)
    assert created.id > 0 and created.status == "queued" and created.n_steps == 0
    by_id, by_name = store.get_attempt(created.id), store.get_attempt("reptile-lr1e-4")
    assert by_id == by_name == created
    assert by_id.command == COMMAND
    assert by_id.created_at.tzinfo is not None
    # JSON-ready for the API
    data = json.loads(json.dumps(by_id.to_dict()))
    assert data["name"] == "reptile-lr1e-4" and data["command"] == COMMAND
    assert store.get_attempt("missing") is None and store.get_attempt(10_000) is None


def test_names_are_unique(store):
    store.create_attempt("run", "train", COMMAND)
    with pytest.raises(AttemptExists, match="'run' exists already"):
        store.create_attempt("run", "test", {"model": "m"})
    other = store.create_attempt("run-2", "train", COMMAND)
    with pytest.raises(AttemptExists):
        store.update_attempt(other.id, name="run")
    assert store.list_attempts()[1] == 2


@pytest.mark.parametrize("name", ["", "has space", "12", "-dash-first", "x" * 129, "a/b"])
def test_invalid_names_are_refused(store, name):
    with pytest.raises(AttemptError, match="Invalid attempt name"):
        store.create_attempt(name, "train", COMMAND)


def test_invalid_kind_status_and_command_are_refused(store):
    with pytest.raises(AttemptError, match="Unknown kind 'trian'. Did you mean 'train'"):
        store.create_attempt("a", "trian", COMMAND)
    with pytest.raises(AttemptError, match="Unknown status 'done'"):
        store.create_attempt("a", "train", COMMAND, status="done")
    with pytest.raises(AttemptError, match="command.*JSON"):
        store.create_attempt("a", "train", {"lr": float("nan")})
    with pytest.raises(ValueError):  # AttemptError is a ValueError: the service maps it to 422
        store.create_attempt("a", "train", ["not", "a", "mapping"])
    assert store.list_attempts()[1] == 0


def test_update_sets_fields_and_status_timestamps(store):
    attempt = store.create_attempt("a", "train", COMMAND)
    running = store.update_attempt(attempt.id, status="running", total_steps=10)
    assert running.status == "running" and running.started_at is not None and running.finished_at is None
    done = store.update_attempt(
        attempt.id,
        status="completed",
        metrics={"accuracy": 0.8, "macro_f1": float("nan")},
        artefacts={"best_model": "out"},
    )
    assert done.finished_at >= done.started_at
    assert done.metrics == {"accuracy": 0.8, "macro_f1": None}  # NaN is not JSON
    assert store.get_attempt("a").artefacts == {"best_model": "out"}
    assert done.updated_at >= attempt.updated_at


def test_update_rejects_unknown_fields_and_attempts(store):
    attempt = store.create_attempt("a", "train", COMMAND)
    with pytest.raises(ValueError, match="Unknown attempt field.*colour"):
        store.update_attempt(attempt.id, colour="red")
    with pytest.raises(AttemptError, match="n_steps"):
        store.update_attempt(attempt.id, n_steps=-1)
    with pytest.raises(AttemptNotFound):
        store.update_attempt(attempt.id + 100, status="running")


def test_list_filters_sorts_and_pages(store):
    for i, (kind, status) in enumerate(
        [("train", "completed"), ("train", "failed"), ("test", "completed"), ("train", "running"), ("test", "queued")]
    ):
        a = store.create_attempt(f"Run-{i}", kind, COMMAND)
        store.update_attempt(a.id, status=status, n_steps=10 - i)
    page, total = store.list_attempts()
    assert total == 5 and [a.name for a in page] == ["Run-4", "Run-3", "Run-2", "Run-1", "Run-0"]  # newest first
    assert [a.name for a in store.list_attempts(status="completed")[0]] == ["Run-2", "Run-0"]
    assert {a.name for a in store.list_attempts(status=["failed", "queued"])[0]} == {"Run-1", "Run-4"}
    assert [a.name for a in store.list_attempts(kind="test", sort="name")[0]] == ["Run-2", "Run-4"]
    assert [a.name for a in store.list_attempts(name_contains="run-3")[0]] == ["Run-3"]  # case-insensitive
    assert store.list_attempts(name_contains="%")[1] == 0  # a literal, not a wildcard
    assert [a.n_steps for a in store.list_attempts(sort="n_steps")[0]] == [6, 7, 8, 9, 10]
    first, total = store.list_attempts(sort="name", offset=0, limit=2)
    second, _ = store.list_attempts(sort="name", offset=2, limit=2)
    last, _ = store.list_attempts(sort="name", offset=4, limit=2)
    assert total == 5 and [a.name for a in first + second + last] == [f"Run-{i}" for i in range(5)]
    assert store.latest_attempt().name == "Run-4"
    with pytest.raises(AttemptError, match="Unknown sort field 'colour'"):
        store.list_attempts(sort="-colour")
    with pytest.raises(AttemptError, match="Unknown status"):
        store.list_attempts(status="finished")


def test_steps_are_ordered_and_followed_with_after_step(store):
    attempt = store.create_attempt("a", "train", COMMAND)
    for step in (2, 1, 3, 4):
        store.add_step(attempt.id, step, {"loss": 1.0 / step, "query_loss": float("nan")})
    steps = store.steps(attempt.id)
    assert [s.step for s in steps] == [1, 2, 3, 4]
    assert steps[1].metrics == {"loss": 0.5, "query_loss": None}
    assert [s.step for s in store.steps(attempt.id, after_step=2)] == [3, 4]
    assert store.steps(attempt.id, after_step=4) == []
    assert store.get_attempt(attempt.id).n_steps == 4
    store.add_step(attempt.id, 4, {"loss": 0.1})  # a repeated step replaces the row
    assert [s.metrics["loss"] for s in store.steps(attempt.id)][-1] == 0.1 and len(store.steps(attempt.id)) == 4
    store.truncate_steps(attempt.id, 2)  # what a resume from a step-2 checkpoint does
    assert [s.step for s in store.steps(attempt.id)] == [1, 2] and store.get_attempt(attempt.id).n_steps == 2
    with pytest.raises(AttemptNotFound):
        store.add_step(attempt.id + 100, 1, {"loss": 1.0})


def test_evaluations_one_row_per_task(store):
    attempt = store.create_attempt("a", "train", COMMAND)
    results = {
        "tasks": {
            "books": {"accuracy": 0.8, "macro_f1": 0.7, "n_query": 40, "n_positive_pred": 20},
            "dvd": {"accuracy": 0.6, "macro_f1": 0.5, "n_query": 30},
        },
        "mean": {"accuracy": 0.7, "macro_f1": 0.6},
    }
    store.add_evaluation(attempt.id, 5, "validation", results)
    store.add_evaluation(attempt.id, 10, "validation", results)
    store.add_evaluation(attempt.id, 10, "test", results)
    store.add_evaluation(
        attempt.id, 10, "test", {"tasks": {"books": {"accuracy": 1.0, "macro_f1": 1.0, "n_query": 40}}}
    )
    rows = store.evaluations(attempt.id)
    assert [(r.step, r.split, r.task) for r in rows] == [
        (5, "validation", "books"),
        (5, "validation", "dvd"),
        (10, "test", "books"),
        (10, "validation", "books"),
        (10, "validation", "dvd"),
    ]
    assert rows[0].extra == {"n_positive_pred": 20} and rows[1].n_query == 30
    latest = store.latest_evaluation(attempt.id, "validation")
    assert latest["step"] == 10 and latest["mean"]["tasks"] == 2
    assert {k: latest["mean"][k] for k in ("accuracy", "macro_f1")} == pytest.approx({"accuracy": 0.7, "macro_f1": 0.6})
    assert store.latest_evaluation(attempt.id, "test")["tasks"]["books"]["accuracy"] == 1.0  # re-recorded, replaced
    with pytest.raises(AttemptError, match="tasks"):
        store.add_evaluation(attempt.id, 1, "test", {"accuracy": 0.5})


def test_cancel_requests(store):
    queued = store.create_attempt("queued", "train", COMMAND)
    running = store.create_attempt("running", "train", COMMAND, status="running")
    done = store.create_attempt("done", "train", COMMAND, status="completed")
    for a in (queued, running, done):
        store.request_cancel(a.id)
    assert store.get_attempt("queued").status == "cancelled" and store.get_attempt("queued").finished_at is not None
    assert store.get_attempt("running").status == "running" and store.cancel_requested(running.id)
    assert store.get_attempt("done").status == "completed" and not store.cancel_requested(done.id)
    with pytest.raises(AttemptNotFound):
        store.request_cancel(done.id + 100)


def test_a_worker_never_starts_an_attempt_cancelled_while_queued(store):
    attempt = store.create_attempt("a", "train", COMMAND)
    store.request_cancel(attempt.id)
    assert store.start_attempt(attempt.id) is None  # the worker picked it up too late
    assert store.get_attempt(attempt.id).status == "cancelled"
    restarted = store.start_attempt(attempt.id, total_steps=8, resume=True)  # `kshot train --resume`: on purpose
    assert restarted.status == "running" and not restarted.cancel_requested and restarted.total_steps == 8
    assert restarted.finished_at is None and restarted.worker.endswith(f":{os.getpid()}")


def test_fail_interrupted_marks_only_dead_runs(store):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    store.create_attempt("unknown-origin", "train", COMMAND, status="running")
    crashed = store.create_attempt("crashed", "train", COMMAND)
    alive = store.create_attempt("alive", "train", COMMAND)
    store.start_attempt(alive.id)  # this process: alive
    store.start_attempt(crashed.id, lease=0.02)
    just_died = store.create_attempt("just-died", "train", COMMAND)
    store.start_attempt(just_died.id, lease=60)  # renewed a moment ago: perhaps by a process of another
    store.update_attempt(just_died.id, worker=f"{socket.gethostname()}:{dead.stdout.strip()}")  # pid namespace
    host = store.get_attempt(crashed.id).worker.rpartition(":")[0]
    store.update_attempt(crashed.id, worker=f"{host}:{dead.stdout.strip()}")
    elsewhere = store.create_attempt("elsewhere", "train", COMMAND)
    store.start_attempt(elsewhere.id)
    store.update_attempt(elsewhere.id, worker="another-host:1")
    store.create_attempt("finished", "train", COMMAND, status="completed")
    time.sleep(0.05)

    assert store.fail_interrupted() == 2
    assert {a.name for a in store.list_attempts(status="failed")[0]} == {"unknown-origin", "crashed"}
    crashed = store.get_attempt("crashed")
    assert crashed.error.startswith(f"interrupted: its worker ({crashed.worker}) stopped (no heartbeat for ")
    assert crashed.error.endswith("; resume to continue from the last checkpoint") and crashed.finished_at is not None
    assert store.get_attempt("alive").status == store.get_attempt("elsewhere").status == "running"
    assert store.get_attempt("just-died").status == "running"  # its lease decides (reap_expired)
    assert store.fail_interrupted() == 0
    # another host's run only goes when it has been silent for longer than stale_after
    assert store.fail_interrupted(stale_after=timedelta(hours=1)) == 0
    assert store.fail_interrupted(stale_after=timedelta(0)) == 1 and store.get_attempt("elsewhere").status == "failed"


def test_fail_process_ends_the_runs_of_one_dead_process(store):
    mine = store.create_attempt("mine", "train", COMMAND)
    store.start_attempt(mine.id, lease=60)
    cancelling = store.create_attempt("cancelling", "train", COMMAND)
    store.start_attempt(cancelling.id, lease=60)
    store.request_cancel(cancelling.id)
    other = store.create_attempt("other", "train", COMMAND)
    store.start_attempt(other.id, lease=60)
    store.update_attempt(other.id, worker="elsewhere:1")
    assert store.fail_process(store.get_attempt(mine.id).worker) == 2
    ended = store.get_attempt(mine.id)
    assert ended.status == "failed" and ended.error.startswith(f"interrupted: its worker ({ended.worker}) stopped")
    assert "its process exited" in ended.error and "resume to continue from the last checkpoint" in ended.error
    assert store.get_attempt(cancelling.id).status == "cancelled"
    assert store.get_attempt(cancelling.id).error.startswith("cancelled: its worker")
    assert store.get_attempt(other.id).status == "running"


def test_delete_removes_steps_and_evaluations(store):
    attempt = store.create_attempt("a", "train", COMMAND)
    store.add_step(attempt.id, 1, {"loss": 1.0})
    store.add_evaluation(attempt.id, 1, "test", {"tasks": {"t": {"accuracy": 1.0, "macro_f1": 1.0, "n_query": 1}}})
    store.delete_attempt(attempt.id)
    assert (
        store.get_attempt(attempt.id) is None and store.steps(attempt.id) == [] and store.evaluations(attempt.id) == []
    )
    store.create_attempt("a", "train", COMMAND)  # the name is free again


def test_concurrent_writers_lose_nothing(db_url):
    """Threads sharing one store (as the API does) and a second store on the same database (a worker)."""
    stores = [AttemptStore(db_url), AttemptStore(db_url)]
    ids = [stores[0].create_attempt(f"run-{i}", "train", COMMAND).id for i in range(4)]
    errors = []

    def write(store, attempt_id):
        try:
            for step in range(1, 26):
                store.add_step(attempt_id, step, {"loss": float(step)})
                store.list_attempts(limit=5)
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(stores[i % 2], attempt_id)) for i, attempt_id in enumerate(ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for attempt_id in ids:
        assert [s.step for s in stores[1].steps(attempt_id)] == list(range(1, 26))
        assert stores[0].get_attempt(attempt_id).n_steps == 25
    for s in stores:
        s.close()
