"""`kshot attempts export` / `import`: final attempts move between databases whole, bad archives write nothing."""

from __future__ import annotations

import json

import pytest

from kshot.errors import ConfigError
from kshot.tracking import AttemptStore
from kshot.tracking import archive as archive_module
from kshot.tracking.archive import MAX_LINE_BYTES, export_attempts, import_attempts

COMMAND = {
    "config": {"data": {"format": "arsc", "path": "data/arsc"}, "output_dir": "outputs/a"},
    "params": {"algorithm": "anil", "meta_steps": 4, "eval_every": 2},
}


def _finished(store, name, status="completed", study=None, trial=None):
    """An attempt as a run leaves it: steps, a validation at steps 2 and 4, final metrics."""
    a = store.create_attempt(name, "train", COMMAND, status="running", study=study)
    if trial is not None:
        store.update_attempt(a.id, trial=trial)
    for step in range(1, 5):
        store.add_step(a.id, step, {"loss": 1.0 / step, "support_loss": 0.5, "lr": 1e-4})
    for step in (2, 4):
        tasks = {
            f"t{i}": {"accuracy": 0.5 + step / 10 + i / 100, "macro_f1": 0.4 + step / 10, "n_query": 30} for i in (1, 2)
        }
        store.add_evaluation(a.id, step, "validation", {"tasks": tasks})
    store.update_attempt(a.id, artefacts={"output_dir": "outputs/a"}, total_steps=4)
    return store.finish_attempt(a.id, status, metrics={"accuracy": 0.9, "macro_f1": 0.8})


@pytest.fixture()
def source(tmp_path):
    store = AttemptStore(f"sqlite:///{tmp_path / 'source.db'}")
    yield store
    store.close()


def test_final_attempts_move_whole_and_the_others_stay(source, store, tmp_path):
    _finished(source, "hand-run")
    _finished(source, "s-trial-0000", study="s", trial=0)
    _finished(source, "s-trial-0001", status="pruned", study="s", trial=1)
    _finished(source, "broken", status="failed")
    archive = tmp_path / "out" / "attempts.jsonl"

    report = export_attempts(source, archive)
    assert (report.exported, report.not_final) == (3, 1)  # a failed attempt resumes from a checkpoint left behind
    assert import_attempts(store, archive).added == 3

    for name in ("hand-run", "s-trial-0000", "s-trial-0001"):
        a, b = source.get_attempt(name), store.get_attempt(name)
        for key in ("kind", "status", "command", "study", "trial", "n_steps", "total_steps", "metrics"):
            assert getattr(b, key) == getattr(a, key), key
        for key in ("created_at", "started_at", "finished_at"):
            assert getattr(b, key) == getattr(a, key), key
        assert b.artefacts == {} and b.worker is None  # its files stay on the machine that ran it
        assert [(s.step, s.metrics) for s in store.steps(b.id)] == [(s.step, s.metrics) for s in source.steps(a.id)]
        assert store.latest_evaluation(b.id, "validation") == source.latest_evaluation(a.id, "validation")
        assert len(store.evaluations(b.id)) == len(source.evaluations(a.id)) == 4
    assert store.get_attempt("broken") is None
    assert store.list_attempts(study="s")[1] == 2

    # Importing again adds nothing twice and leaves what is there as it was.
    again = import_attempts(store, archive)
    assert (again.added, again.already_here) == (0, 3)
    assert store.list_attempts(limit=None)[1] == 3


def _line(**changes):
    line = {
        "format": "kshot-attempt",
        "version": 1,
        "name": "ok",
        "kind": "train",
        "status": "completed",
        "command": COMMAND,
        "study": None,
        "trial": None,
        "n_steps": 4,
        "total_steps": 4,
        "metrics": {},
        "error": None,
        "created_at": "2026-12-07T08:00:00+00:00",
        "started_at": None,
        "finished_at": None,
        "steps": [[1, {"loss": 0.5}]],
        "evaluations": [[1, "validation", "t1", {"accuracy": 0.5, "macro_f1": 0.4, "n_query": 10}]],
    }
    line.update(changes)
    return json.dumps(line)


@pytest.mark.parametrize(
    "bad, says",
    [
        (_line(name="x" * 5000), "Invalid attempt name"),
        (_line(name="../../etc"), "Invalid attempt name"),
        (_line(status="running"), "only final attempts"),
        (_line(kind="shell"), "field 'kind'"),
        (_line(command={"config": {}, "params": {"meta_lr": "rm -rf"}}), "meta_lr"),
        (_line(command={"config": {"data": {"path": "x"}, "surprise": 1}, "params": {}}), "surprise"),
        (_line(steps=[[-1, {"loss": 0.5}]]), "steps[0]'s step"),
        (_line(steps=[[1, {"loss": "many"}]]), "not a number"),
        (_line(evaluations=[[1, "v" * 100, "t", {}]]), "split must be a name"),
        (_line(n_steps=10**12), "field 'n_steps'"),
        (_line(study="s"), "go together"),
        (_line(created_at="yesterday"), "ISO 8601"),
        (_line(worker="host:1"), "unknown field 'worker'"),
        (_line(version=2), "archive version 2"),
        (_line().replace('"loss": 0.5', '"loss": NaN'), "not JSON"),
        (_line().replace('"ok"', '"ok\\udcff"'), "ok"),
        ("[1, 2]", "not an attempt of `kshot attempts export`"),
        (_line(name="first"), "appears twice"),
    ],
)
def test_a_bad_archive_names_line_and_field_and_writes_nothing(store, tmp_path, bad, says):
    archive = tmp_path / "bad.jsonl"
    archive.write_text(_line(name="first") + "\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        import_attempts(store, archive)
    message = str(caught.value)
    assert "line 2" in message and says in message
    assert len(message) < 600  # never the whole bad value back
    assert store.list_attempts()[1] == 0  # the good first line was not written either


def test_an_overlong_line_or_a_missing_file_is_refused(store, tmp_path):
    archive = tmp_path / "long.jsonl"
    with archive.open("w", encoding="utf-8") as f:
        f.write(_line(metrics={"x": "a" * (MAX_LINE_BYTES + 10)}) + "\n")
    with pytest.raises(ConfigError, match="line 1 is longer than"):
        import_attempts(store, archive)
    with archive.open("r+b") as f:
        f.truncate(archive_module.MAX_FILE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ConfigError, match="larger than 512 MiB"):
        import_attempts(store, archive)
    with pytest.raises(ConfigError, match="No archive file"):
        import_attempts(store, tmp_path / "missing.jsonl")
    assert store.list_attempts()[1] == 0
