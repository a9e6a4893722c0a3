"""`kshot tune` on tiny real runs: every trial an attempt, objective = best validation, test never scored,
pruned trials recorded as pruned, studies resumable and shared by processes, warm start from the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kshot.errors import ConfigError
from kshot.tracking import AttemptStore, train_attempt, train_command
from kshot.tuning import SearchSpace, StudySpec, optuna_storage, run_search, run_trial, warm_start
from kshot.tuning.study import SPEC_ATTR
from kshot.tuning.warm_start import best_validation

SPACE = {
    "inner_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "inner_steps": {"type": "int", "low": 1, "high": 3},
}


def _spec(tiny_run, **params):
    config, base = tiny_run
    base = type(base).from_dict({**base.to_dict(), **params})
    return StudySpec(config, base, SearchSpace.from_dict(SPACE, base), "none")


def test_every_trial_is_an_attempt_scored_on_validation_only(tmp_path, tiny_run):
    store = AttemptStore(f"sqlite:///{tmp_path / 'a.db'}")
    spec = _spec(tiny_run)
    result = run_search(store, optuna_storage(store.url), "s1", spec, 3)

    assert [o.state for o in result.outcomes] == ["complete"] * 3
    attempts, total = store.list_attempts(study="s1", sort="trial", limit=None)
    assert total == 3 and [a.trial for a in attempts] == [0, 1, 2]
    for attempt, outcome in zip(attempts, result.outcomes):
        assert attempt.status == "completed" and attempt.name == outcome.attempt
        sampled = attempt.command["tune"]["sampled"]
        assert attempt.command["params"]["inner_lr"] == sampled["inner_lr"]  # it carries its sampled params
        assert attempt.command["params"]["test_after_train"] is False
        assert store.evaluations(attempt.id, "test") == []  # the test tasks are never scored in a search
        assert outcome.value == pytest.approx(best_validation(store, attempt.id, "macro_f1"))
        assert Path(attempt.command["config"]["output_dir"]).name == attempt.name
        assert Path(attempt.command["config"]["output_dir"], "kshot.json").exists()  # its best model stays
        assert not Path(attempt.command["config"]["output_dir"], "checkpoint").exists()  # not its checkpoint
    best = result.summary["best"]
    assert best["value"] == max(o.value for o in result.outcomes)
    assert result.summary["counts"] == {"complete": 3}

    # Continued by name alone (the stored spec), up to 4 trials in all: one more, numbered 3.
    more = run_search(store, optuna_storage(store.url), "s1", None, 4)
    assert [o.number for o in more.outcomes] == [3]
    store.close()


def test_a_study_continued_with_other_params_is_refused(tmp_path, tiny_run):
    store = AttemptStore(f"sqlite:///{tmp_path / 'a.db'}")
    run_search(store, optuna_storage(store.url), "s", _spec(tiny_run), 1)
    with pytest.raises(ConfigError, match="Study 's' was made with another params"):
        run_search(store, optuna_storage(store.url), "s", _spec(tiny_run, meta_steps=4), 2)
    with pytest.raises(ConfigError, match="No study named 'nope' yet"):
        run_search(store, optuna_storage(store.url), "nope", None, 1)
    store.close()


def test_a_process_joining_between_a_studys_creation_and_its_spec_waits_for_the_spec(tmp_path, tiny_run):
    """Optuna creates a study and its attributes in two writes: a second process opening it in that gap joins it.

    Seen in CI: two `kshot tune` processes started together, the second called the first's new study foreign.
    """
    import threading

    import optuna

    from kshot.tuning import open_study

    storage, spec = optuna_storage(f"sqlite:///{tmp_path / 'a.db'}"), _spec(tiny_run)
    created = optuna.create_study(storage=storage, study_name="gap", direction="maximize")  # the spec not yet written
    writer = threading.Timer(1.0, created.set_user_attr, (SPEC_ATTR, spec.to_dict()))
    writer.start()
    start = time.monotonic()
    study, joined = open_study(storage, "gap", spec)
    writer.join()
    assert study.study_name == "gap" and joined.to_dict() == spec.to_dict()
    assert 1.0 <= time.monotonic() - start < 10

    # A study that is someone else's (it has trials and no kshot spec) is refused at once, not waited on.
    foreign = optuna.create_study(storage=storage, study_name="theirs", direction="maximize")
    foreign.add_trial(optuna.trial.create_trial(value=1.0))
    start = time.monotonic()
    with pytest.raises(ConfigError, match="Study 'theirs' was not made by kshot tune"):
        open_study(storage, "theirs", spec)
    assert time.monotonic() - start < 5


def _pruning_at_every_report(store, name, spec):
    """A kshot study whose pruner prunes at every report (a value below 2.0: all of them)."""
    import optuna

    study = optuna.create_study(
        storage=optuna_storage(store.url),
        study_name=name,
        direction="maximize",
        pruner=optuna.pruners.ThresholdPruner(lower=2.0),
    )
    study.set_user_attr(SPEC_ATTR, spec.to_dict())
    return study


def test_a_pruned_trial_is_an_attempt_with_status_pruned_keeping_its_steps(tmp_path, tiny_run):
    import optuna

    store = AttemptStore(f"sqlite:///{tmp_path / 'a.db'}")
    spec = _spec(tiny_run)
    # A pruner that prunes at the first report: the trial stops at its first validation (step 3 of 6).
    study = _pruning_at_every_report(store, "p", spec)
    outcome = run_trial(store, study, spec, 0)
    assert outcome.state == "pruned"
    attempt = store.get_attempt(outcome.attempt)
    assert attempt.status == "pruned" and attempt.n_steps == 3 and len(store.steps(attempt.id)) == 3
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    # Reported at its share of the schedule (prune_by progress, the default): step 3 of 6 is 500 per mille.
    assert study.trials[0].intermediate_values == {500: pytest.approx(outcome.value)}
    # What pruning saved: the 3 steps of 6 it did not run, at its own rate.
    from kshot.tuning.search import summarize

    saved = summarize(store, study, spec)["pruning_saved_seconds"]
    assert saved == pytest.approx((6 - 3) * attempt.duration_seconds / 3)
    store.close()


def test_warm_start_adds_past_attempts_on_the_same_problem_once(tmp_path, tiny_run):
    store = AttemptStore(f"sqlite:///{tmp_path / 'a.db'}")
    spec = _spec(tiny_run)
    first = run_search(store, optuna_storage(store.url), "first", spec, 2)
    config, params = tiny_run
    # A hand-run attempt outside the space (inner_steps 5 > 3), and one on other data: neither is added.
    outside = type(params).from_dict({**spec.params.to_dict(), "inner_steps": 5})
    a = store.create_attempt("by-hand", "train", train_command(config, outside))
    train_attempt(store, a.id, config, outside)
    other = type(config).from_dict(
        {**config.to_dict(), "data": {**config.to_dict()["data"], "test_domains": ["domain7"]}}
    )
    b = store.create_attempt("other-data", "train", train_command(other, spec.params))
    train_attempt(store, b.id, other, spec.params)
    # One in the space with a longer schedule than the study's (meta_steps is not searched): it is added, and
    # its validations are reported as fractions of its own 9 steps, not of the study's 6.
    longer = type(params).from_dict({**spec.params.to_dict(), "meta_steps": 9})
    c = store.create_attempt("longer", "train", train_command(config, longer))
    train_attempt(store, c.id, config, longer)

    storage = optuna_storage(store.url)
    second = run_search(store, storage, "second", spec, 1, warm=True)
    assert second.warm.added == 3 and second.warm.outside_space == 1
    import optuna

    study = optuna.load_study(study_name="second", storage=storage)
    (long_trial,) = [t for t in study.trials if t.user_attrs.get("attempt") == "longer"]
    assert long_trial.user_attrs["meta_steps"] == 9
    assert sorted(long_trial.intermediate_values) == [spec.pruner_step(s, 9) for s in (3, 6, 9)] == [333, 667, 1000]
    assert all(t.user_attrs["meta_steps"] == 6 for t in study.trials if not t.user_attrs.get("warm_start"))
    warm = [t for t in study.trials if t.user_attrs.get("warm_start") and t.user_attrs["attempt"] != "longer"]
    assert sorted(t.value for t in warm) == pytest.approx(sorted(o.value for o in first.outcomes))
    assert {t.user_attrs["attempt"] for t in warm} == {o.attempt for o in first.outcomes}
    # With their validations as the first study's trials reported them, so the pruner can judge new trials by them.
    reported = {
        t.user_attrs["attempt"]: t.intermediate_values
        for t in optuna.load_study(study_name="first", storage=storage).trials
    }
    assert all(t.intermediate_values == pytest.approx(reported[t.user_attrs["attempt"]]) for t in warm)
    # Continuing with --warm-start again adds nothing twice.
    assert warm_start(store, study, spec).added == 0
    store.close()


# -- processes: two on one study, and kill then resume -------------------------------------------------------
def _write_files(tmp_path, tiny_run, **params_overrides):
    config, params = tiny_run
    c, p, s = tmp_path / "config.yaml", tmp_path / "params.yaml", tmp_path / "space.yaml"
    c.write_text(yaml.safe_dump(config.to_dict()))
    p.write_text(yaml.safe_dump({**params.to_dict(), **params_overrides}))
    s.write_text(yaml.safe_dump(SPACE))
    return ["-c", str(c), "-p", str(p), "-s", str(s)]


def _tune(args, db, env=None, **kw):
    env = {**os.environ, "KSHOT_HEARTBEAT_SECONDS": "0.5", **(env or {})}
    cmd = [sys.executable, "-m", "kshot", "tune", "--db", db, "--pruner", "none", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_processes_on_one_study_run_exactly_n_trials(tmp_path, tiny_run, backend, request):
    import optuna

    db = f"sqlite:///{tmp_path / 'a.db'}" if backend == "sqlite" else request.getfixturevalue("fresh_pg")
    AttemptStore(db).close()  # migrate once, before both start
    files = _write_files(tmp_path, tiny_run, meta_steps=3, checkpoint_every=0)
    procs = [_tune(["--study", "shared", "--n-trials", "4", *files], db) for _ in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    study = optuna.load_study(study_name="shared", storage=optuna_storage(db))
    numbers = [t.number for t in study.trials]
    assert len(study.trials) == 4 and sorted(numbers) == list(range(4))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    store = AttemptStore(db)
    attempts, total = store.list_attempts(study="shared", limit=None)
    assert total == 4 and sorted(a.trial for a in attempts) == sorted(numbers)
    assert {a.name for a in attempts} == {t.user_attrs["attempt"] for t in study.trials}
    store.close()


@pytest.fixture()
def fresh_pg():
    from tests.tracking.databases import fresh_postgres_url

    with fresh_postgres_url() as url:
        yield url


def test_killed_mid_trial_the_study_continues_and_the_trial_is_failed_once(tmp_path, tiny_run):
    import optuna

    db = f"sqlite:///{tmp_path / 'a.db'}"
    files = _write_files(tmp_path, tiny_run, meta_steps=20, eval_every=10, checkpoint_every=0)  # killed mid-trial
    proc = _tune(["--study", "k", "--n-trials", "2", *files], db, start_new_session=True)
    store = AttemptStore(db)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = [a for a in store.list_attempts(study="k", limit=None)[0] if a.status == "running" and a.n_steps]
        if running:
            break
        time.sleep(0.2)
    assert running, "no trial started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    time.sleep(2)  # past the killed process's lease (0.5 s heartbeats x 3)
    again = _tune(["--study", "k", "--n-trials", "2"], db)  # continued by name: the stored spec
    output = again.communicate(timeout=240)[0]
    assert again.returncode == 0, output
    store = AttemptStore(db)
    killed = store.get_attempt(running[0].name)
    assert killed.status == "failed" and "interrupted" in killed.error
    study = optuna.load_study(study_name="k", storage=optuna_storage(db))
    states = {t.number: t.state for t in study.trials}
    assert states[killed.trial] == optuna.trial.TrialState.FAIL
    assert len(study.trials) == 2  # the killed trial, then the study's second: none lost, none twice
    store.close()


def test_the_cli_lists_a_studys_trials_and_prints_the_top_ones(tmp_path, tiny_run):
    from typer.testing import CliRunner

    from kshot.cli.main import app

    db = f"sqlite:///{tmp_path / 'a.db'}"
    files = _write_files(tmp_path, tiny_run, meta_steps=3, checkpoint_every=0)
    runner = CliRunner()
    tuned = runner.invoke(app, ["tune", "--study", "cli", "--n-trials", "2", "--pruner", "none", "--db", db, *files])
    assert tuned.exit_code == 0, tuned.output
    assert "Study cli: 2 complete" in tuned.output and "kshot evaluate --model" in tuned.output
    listed = runner.invoke(app, ["attempts", "list", "--study", "cli", "--db", db])
    assert listed.exit_code == 0 and "cli-trial-0000" in listed.output and "cli-trial-0001" in listed.output
    shown = runner.invoke(app, ["attempts", "show", "cli-trial-0001", "--db", db])
    assert "study cli, trial 1" in shown.output
    bad = runner.invoke(app, ["tune", "--study", "cli2", "--db", db, *files[:4]])  # no -s
    assert bad.exit_code != 0 and "needs -s space.yaml" in str(bad.exception or bad.output)


def test_a_second_study_on_the_same_params_does_not_replay_the_firsts_random_draws(tmp_path, tiny_run):
    from kshot.tuning.study import open_study

    spec = _spec(tiny_run)
    storage = optuna_storage(f"sqlite:///{tmp_path / 'a.db'}")
    distributions = spec.space.distributions()
    first, _ = open_study(storage, "first", spec)
    drawn = [first.ask(distributions).params for _ in range(2)]
    second, _ = open_study(storage, "second", spec)
    assert second.ask(distributions).params not in drawn


def test_a_trial_stopped_by_ctrl_c_is_failed_in_its_study_and_its_attempt_says_how_to_go_on(tmp_path, tiny_run):
    import optuna

    class CtrlC(optuna.pruners.BasePruner):  # Ctrl-C at the trial's first validation
        def prune(self, study, trial):
            raise KeyboardInterrupt

    store = AttemptStore(f"sqlite:///{tmp_path / 'a.db'}")
    spec = _spec(tiny_run)
    study = optuna.create_study(storage=optuna_storage(store.url), study_name="c", direction="maximize", pruner=CtrlC())
    study.set_user_attr(SPEC_ATTR, spec.to_dict())
    with pytest.raises(KeyboardInterrupt):
        run_trial(store, study, spec, 0)
    (attempt,), _ = store.list_attempts(study="c", limit=None)
    assert attempt.status == "failed" and attempt.n_steps == 3
    assert attempt.error == (
        "interrupted: the run was stopped (Ctrl-C or a signal); "
        "run `kshot tune --study c` again: the study goes on with a new trial"
    )
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    store.close()


def test_a_trial_is_not_pruned_at_its_last_step(tmp_path, tiny_run):
    store = AttemptStore(f"sqlite:///{tmp_path / 'a.db'}")
    spec = _spec(tiny_run, meta_steps=3)  # its one validation (eval_every 3) is its last step
    study = _pruning_at_every_report(store, "last", spec)
    outcome = run_trial(store, study, spec, 0)
    assert outcome.state == "complete" and store.get_attempt(outcome.attempt).status == "completed"
    store.close()


def test_processes_joining_one_study_draw_distinct_trials_and_a_study_replays(tmp_path, tiny_run):
    """Each process builds its sampler from the stored seed: the draws are seeded by trial number, so two
    processes' start-up trials differ, and the same study made again draws the same trials."""
    from kshot.tuning.study import open_study

    spec = _spec(tiny_run)
    distributions = spec.space.distributions()
    storage = optuna_storage(f"sqlite:///{tmp_path / 'a.db'}")
    one, _ = open_study(storage, "shared", spec)
    two, _ = open_study(storage, "shared", spec)  # a second process joining the study
    a, b = one.ask(distributions), two.ask(distributions)
    assert (a.number, b.number) == (0, 1) and a.params != b.params
    again = optuna_storage(f"sqlite:///{tmp_path / 'b.db'}")
    replay, _ = open_study(again, "shared", spec)
    assert [replay.ask(distributions).params for _ in range(2)] == [a.params, b.params]


@pytest.mark.parametrize(("prune_after", "pruned_at"), [(0, 100), (100, 200), (200, 300), (300, None)])
def test_prune_after_keeps_the_early_validations_from_pruning(prune_after, pruned_at):
    """The median pruner with prune_after: a trial below the first trial's values is pruned only at a validation
    after that step (the ARSC searches' step-100 macro-F1 judged a 400-step schedule at a quarter of its length)."""
    import optuna

    from kshot.tuning.study import make_pruner

    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", prune_after))
    first = study.ask()
    for step in (100, 200, 300):
        first.report(0.8, step)
    study.tell(first, 0.8)
    second = study.ask()
    pruned = None
    for step in (100, 200, 300):
        second.report(0.5, step)
        if second.should_prune():
            pruned = step
            break
    assert pruned == pruned_at


def test_prune_after_is_bounded_stored_with_the_study_and_must_match_to_continue(tmp_path, tiny_run):
    config, params = tiny_run
    space = SearchSpace.from_dict(SPACE, params)
    for bad in (-1, 10**8, 2.5, True):
        with pytest.raises(ConfigError, match="prune_after"):
            StudySpec(config, params, space, "median", bad)
    spec = StudySpec(config, params, space, "median", 100, "step")
    assert StudySpec.from_dict(spec.to_dict()).prune_after == 100
    from kshot.tuning.study import open_study

    storage = optuna_storage(f"sqlite:///{tmp_path / 'a.db'}")
    study, _ = open_study(storage, "warmup", spec)
    assert study.pruner._n_warmup_steps == 101  # Optuna prunes from that step on
    with pytest.raises(ConfigError, match="prune_after"):
        open_study(storage, "warmup", StudySpec(config, params, space, "median", 0, "step"))


@pytest.mark.parametrize(("prune_by", "pruned_at"), [("step", 200), ("progress", None)])
def test_prune_by_progress_judges_a_long_schedule_at_the_same_fraction_of_a_short_one(prune_by, pruned_at):
    """A 200-step trial completed (0.70 at step 100, 0.80 at its last, 200); a 400-step trial at 0.75 by step 200.
    By step, its step 200 is judged against the short trial's final value and pruned (the late-pruning ARSC
    search stopped every long trial so); by progress, against the short one's halfway value, and it runs on."""
    import optuna

    from kshot.tuning.study import make_pruner, outer_step, reported_step

    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", 0, prune_by))
    short = study.ask()
    for step, value in ((100, 0.70), (200, 0.80)):
        short.report(value, reported_step(prune_by, step, 200))
    study.tell(short, 0.80)
    long, pruned = study.ask(), None
    for step, value in ((100, 0.60), (200, 0.75), (300, 0.78)):
        long.report(value, reported_step(prune_by, step, 400))
        if step > 100 and long.should_prune():  # its step 100 (a quarter) has no like in the short trial
            pruned = step
            break
    assert pruned == pruned_at
    assert [outer_step(prune_by, k, 400) for k in sorted(long.storage.get_trial(long._trial_id).intermediate_values)][
        :2
    ] == [100, 200]


def test_prune_by_is_checked_stored_and_reports_per_mille_of_the_trials_schedule(tmp_path, tiny_run):
    """A real trial under prune_by progress reports its validations at per mille of its meta_steps; prune_after
    (outer steps) still holds; a study continued with the other prune_by is refused; old specs read as step."""
    from kshot.tuning.study import open_study

    config, params = tiny_run
    space = SearchSpace.from_dict(SPACE, params)
    with pytest.raises(ConfigError, match="prune_by"):
        StudySpec(config, params, space, "median", 0, "fraction")
    spec = StudySpec(config, params, space, "median", 0, "progress")
    stored = spec.to_dict()
    assert StudySpec.from_dict(stored).prune_by == "progress"
    del stored["prune_by"]
    assert StudySpec.from_dict(stored).prune_by == "step"  # a study stored before prune_by compared steps

    store = AttemptStore(f"sqlite:///{tmp_path / 'a.db'}")
    storage = optuna_storage(store.url)
    study, _ = open_study(storage, "progress", spec)
    outcome = run_trial(store, study, spec, 0)
    assert outcome.state == "complete"
    steps = sorted({e.step for e in store.evaluations(store.get_attempt(outcome.attempt).id, "validation")})
    meta_steps = params.meta_steps
    reported = sorted(study.trials[0].intermediate_values)
    assert reported == [round(1000 * s / meta_steps) for s in steps] and reported[-1] == 1000
    with pytest.raises(ConfigError, match="prune_by"):
        open_study(storage, "progress", StudySpec(config, params, space, "median", 0, "step"))

    # prune_after counts outer steps under progress too: a pruner that prunes every report spares step 3 of 6.
    spared = StudySpec(config, params, space, "median", 3, "progress")
    outcome = run_trial(store, _pruning_at_every_report(store, "spared", spared), spared, 0)
    assert outcome.state == "complete"
    store.close()


def test_a_study_exported_and_imported_warm_starts_a_study_in_another_database(tmp_path, tiny_run):
    """What one machine's search learnt goes into another database (the CLI's export and import, as processes)."""
    first_db, second_db = f"sqlite:///{tmp_path / 'first.db'}", f"sqlite:///{tmp_path / 'second.db'}"
    first_store = AttemptStore(first_db)
    first = run_search(first_store, optuna_storage(first_db), "first", _spec(tiny_run), 2)
    archive = tmp_path / "first.jsonl"
    run = [sys.executable, "-m", "kshot", "attempts"]
    out = subprocess.run([*run, "export", str(archive), "--study", "first", "--db", first_db], capture_output=True)
    assert out.returncode == 0 and b"Wrote 2 attempt(s)" in out.stdout
    out = subprocess.run([*run, "import", str(archive), "--db", second_db], capture_output=True)
    assert out.returncode == 0 and b"Added 2 attempt(s)" in out.stdout

    store = AttemptStore(second_db)
    # The study itself did not move (Optuna's tables): its name is refused, since its trials' attempt names are taken.
    with pytest.raises(ConfigError, match="holds attempts of a study named 'first'"):
        run_search(store, optuna_storage(second_db), "first", _spec(tiny_run), 1)
    second = run_search(store, optuna_storage(second_db), "second", _spec(tiny_run), 1, warm=True)
    assert second.warm.added == 2
    import optuna

    study = optuna.load_study(study_name="second", storage=optuna_storage(second_db))
    warm = sorted(t.value for t in study.trials if t.user_attrs.get("warm_start"))
    assert warm == pytest.approx(sorted(o.value for o in first.outcomes))
    first_store.close()
    store.close()


def test_progress_pruning_judges_a_collapsed_long_trial_against_peers_between_their_reports():
    """The sixth ARSC search's trial 5: every review called negative (0.436) through 400 steps, never pruned,
    since Optuna's median compares only equal report steps. Peers read between their reports prune it at 500."""
    import optuna

    from kshot.tuning.pruners import value_at
    from kshot.tuning.study import make_pruner, reported_step

    peers = [  # (meta_steps, macro-F1 at each validation, every 100 steps): trials 0, 2 and 3 of that search
        (300, [0.708, 0.741, 0.749]),
        (300, [0.692, 0.742, 0.736]),
        (200, [0.436, 0.436]),
    ]

    def pruned_at(pruner):
        study = optuna.create_study(direction="maximize", pruner=pruner)
        for meta_steps, values in peers:
            t = study.ask()
            for i, v in enumerate(values):
                t.report(v, reported_step("progress", 100 * (i + 1), meta_steps))
            study.tell(t, max(values))
        collapsed = study.ask()
        for step in (100, 200, 300, 400):
            collapsed.report(0.436, reported_step("progress", step, 400))
            if step > 100 and step < 400 and collapsed.should_prune():  # --prune-after 100; never at its last step
                return step
        return None

    assert pruned_at(optuna.pruners.MedianPruner(n_startup_trials=1)) is None  # Optuna's own: no peer at 750
    assert pruned_at(make_pruner("median", 100, "progress")) == 200  # median of 0.724, 0.717, 0.436 at 500
    assert value_at({333: 0.708, 667: 0.741}, 500) == pytest.approx(0.708 + 0.033 * 167 / 334)
    assert value_at({333: 0.708, 667: 0.741}, 250) is None  # never before a peer's first report, nor after its last
    assert value_at({333: 0.708, 667: 0.741}, 750) is None
