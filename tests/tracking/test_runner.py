"""Real (tiny) training and test runs recorded through the store: completed, failed, cancelled, resumed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kshot.tracking import (
    AttemptStore,
    eval_command,
    run_test_attempt,
    run_training_attempt,
    train_attempt,
    train_command,
)
from kshot.training import TrainerCallback


class AtStep(TrainerCallback):
    """Does ``action(step)`` once, after the given step."""

    def __init__(self, step, action):
        self.step, self.action = step, action

    def on_step_end(self, trainer, step, metrics):
        if step == self.step:
            self.action(step)


def test_training_attempt_stores_every_step_and_completes(db_url, tiny_run):
    config, params = tiny_run
    store = AttemptStore(db_url)
    attempt = store.create_attempt("tiny", "train", train_command(config, params))
    run_training_attempt(store, attempt.id)

    done = store.get_attempt(attempt.id)
    assert done.status == "completed", done.error
    assert done.error is None and done.started_at <= done.finished_at
    steps = store.steps(attempt.id)
    assert [s.step for s in steps] == list(range(1, params.meta_steps + 1))
    assert done.n_steps == done.total_steps == params.meta_steps
    assert all(0 < s.metrics["loss"] < 5 for s in steps)
    test = store.latest_evaluation(attempt.id, "test")
    assert set(test["tasks"]) == {"domain6", "domain7"}
    assert done.metrics["accuracy"] == pytest.approx(test["mean"]["accuracy"]) and done.metrics["split"] == "test"
    assert {e.step for e in store.evaluations(attempt.id, "validation")} == {3, 6}  # eval_every=3
    assert Path(done.artefacts["best_model"], "kshot.json").exists()
    store.close()


def test_failing_training_ends_failed_with_the_error(tmp_path, tiny_run):
    config, params = tiny_run
    missing = tmp_path / "no-such-data.json"
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, path=str(missing)))
    store = AttemptStore(f"sqlite:///{tmp_path / 'a.db'}")
    attempt = store.create_attempt("bad-data", "train", train_command(config, params))
    run_training_attempt(store, attempt.id)  # records the failure, raises nothing

    failed = store.get_attempt(attempt.id)
    assert failed.status == "failed" and failed.finished_at is not None
    assert failed.error.startswith("DataError") and str(missing) in failed.error
    assert store.steps(attempt.id) == []


def test_invalid_command_ends_failed(tmp_path):
    store = AttemptStore(f"sqlite:///{tmp_path / 'a.db'}")
    attempt = store.create_attempt("typo", "train", {"config": {}, "params": {"inner_lrr": 1e-3}})
    run_training_attempt(store, attempt.id)
    failed = store.get_attempt(attempt.id)
    assert failed.status == "failed" and "Unknown key 'inner_lrr'" in failed.error and "inner_lr" in failed.error


def test_cancel_stops_training_after_the_current_step(tmp_path, tiny_run):
    config, params = tiny_run
    store = AttemptStore(f"sqlite:///{tmp_path / 'a.db'}")
    attempt = store.create_attempt("to-cancel", "train", train_command(config, params))
    # As the API does from another process: request_cancel while the run is going.
    result = train_attempt(
        store, attempt.id, config, params, callbacks=[AtStep(2, lambda _: store.request_cancel(attempt.id))]
    )

    cancelled = store.get_attempt(attempt.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert result.steps == 3 < params.meta_steps  # the cancel is seen at the next step
    assert [s.step for s in store.steps(attempt.id)] == [1, 2, 3] and cancelled.n_steps == 3
    assert store.latest_evaluation(attempt.id, "test") is None  # no test after a cancel


def test_queued_attempt_cancelled_before_it_runs_never_starts(tmp_path, tiny_run):
    config, params = tiny_run
    store = AttemptStore(f"sqlite:///{tmp_path / 'a.db'}")
    attempt = store.create_attempt("never", "train", train_command(config, params))
    store.request_cancel(attempt.id)
    run_training_attempt(store, attempt.id)
    assert store.get_attempt(attempt.id).status == "cancelled" and store.get_attempt(attempt.id).started_at is None
    assert not Path(config.output_dir).exists()


def test_interrupted_attempt_resumes_to_completion(tmp_path, tiny_run):
    config, params = tiny_run
    store = AttemptStore(f"sqlite:///{tmp_path / 'a.db'}")
    attempt = store.create_attempt("resumable", "train", train_command(config, params))

    def ctrl_c(step):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_attempt(store, attempt.id, config, params, callbacks=[AtStep(3, ctrl_c)])
    interrupted = store.get_attempt(attempt.id)
    assert interrupted.status == "failed" and interrupted.n_steps == 3
    # What happened and what to do, as for an attempt whose worker was lost.
    assert interrupted.error == (
        "interrupted: the run was stopped (Ctrl-C or a signal); resume to continue from the last checkpoint"
    )

    run_training_attempt(store, attempt.id, resume=True)  # from the step-2 checkpoint
    resumed = store.get_attempt(attempt.id)
    assert resumed.status == "completed" and resumed.error is None
    assert [s.step for s in store.steps(attempt.id)] == list(range(1, params.meta_steps + 1))  # step 3 once, not twice
    assert resumed.n_steps == params.meta_steps


def test_test_attempt_records_per_task_results(tmp_path, tiny_run, tiny_model_dir):
    config, _ = tiny_run
    store = AttemptStore(f"sqlite:///{tmp_path / 'a.db'}")
    attempt = store.create_attempt("eval", "test", eval_command(tiny_model_dir, config, {"eval_inner_steps": 1}))
    run_test_attempt(store, attempt.id)

    done = store.get_attempt(attempt.id)
    assert done.status == "completed", done.error
    rows = store.evaluations(attempt.id, "test")
    assert {r.task for r in rows} == {"domain6", "domain7"} and all(
        0 <= r.accuracy <= 1 and r.n_query > 0 for r in rows
    )
    assert done.metrics["accuracy"] == pytest.approx(sum(r.accuracy for r in rows) / len(rows))

    bad = store.create_attempt("eval-missing", "test", eval_command(tmp_path / "nope", config))
    run_test_attempt(store, bad.id)
    failed = store.get_attempt(bad.id)
    assert failed.status == "failed" and failed.error.startswith("ModelError") and "nope" in failed.error
