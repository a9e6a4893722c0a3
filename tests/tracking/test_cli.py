"""`kshot train` / `kshot evaluate` record their attempt; `kshot attempts list | show | compare` read them."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from kshot.cli.main import app
from kshot.tracking import AttemptExists, AttemptStore

from .. import synthetic
from ..torch_free import run_without_torch

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_kshot_logger():
    """The CLI configures the 'kshot' logger; undo that for the tests that follow."""
    logger = logging.getLogger("kshot")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in [h for h in logger.handlers if h not in saved[0]]:
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir):
    """A project with config.yaml, params.yaml, data, and two recorded attempts: run-a (train), ev-b (test)."""
    root = tmp_path_factory.mktemp("project")
    synthetic.write_review_json(root / "dataset.json")
    config = {
        "data": {
            "format": "review_json",
            "path": str(root / "dataset.json"),
            "test_domains": ["domain6", "domain7"],
            "validation_domains": ["domain5"],
            "cache_dir": str(root / "cache"),
        },
        "model": {"name_or_path": str(tiny_model_dir)},
        "output_dir": str(root / "out"),
        "logging": {"log_dir": str(root / "logs"), "progress_bar": False},
    }
    params = {
        "meta_steps": 6,
        "meta_batch_size": 2,
        "k_support": 4,
        "k_query": 8,
        "inner_steps": 2,
        "inner_batch_size": 8,
        "inner_lr": 1e-3,
        "eval_every": 3,
        "eval_tasks": 2,
        "eval_inner_steps": 2,
        "max_length": 32,
        "seed": 0,
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    db = f"sqlite:///{root / 'attempts.db'}"
    train = invoke(
        ["train", "-c", str(root / "config.yaml"), "-p", str(root / "params.yaml"), "--name", "run-a", "--db", db]
    )
    assert "Recording as attempt 'run-a'" in train.output
    evaluate = invoke(
        ["evaluate", "--model", str(root / "out"), "-c", str(root / "config.yaml"), "--name", "ev-b", "--db", db]
    )
    assert "Recording as attempt 'ev-b'" in evaluate.output
    return root, db


def invoke(args, expect_ok=True, **kwargs):
    result = runner.invoke(app, args, **kwargs)
    if expect_ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_train_and_evaluate_are_recorded(project):
    root, db = project
    store = AttemptStore(db)
    run_a, ev_b = store.get_attempt("run-a"), store.get_attempt("ev-b")
    assert run_a.kind == "train" and run_a.status == "completed" and run_a.n_steps == 6
    assert run_a.command["params"]["inner_lr"] == 1e-3 and run_a.command["config"]["output_dir"] == str(root / "out")
    assert len(store.steps(run_a.id)) == 6
    assert ev_b.kind == "test" and ev_b.status == "completed" and ev_b.command["model"] == str(root / "out")
    assert set(store.latest_evaluation(ev_b.id)["tasks"]) == {"domain6", "domain7"}


def test_no_track_records_nothing_and_names_are_generated(project, tmp_path):
    root, _ = project
    db = f"sqlite:///{tmp_path / 'other.db'}"
    invoke(["evaluate", "--model", str(root / "out"), "-c", str(root / "config.yaml"), "--db", db, "--no-track"])
    assert AttemptStore(db).list_attempts()[1] == 0
    invoke(["evaluate", "--model", str(root / "out"), "-c", str(root / "config.yaml"), "--db", db])
    (generated,), _ = AttemptStore(db).list_attempts()
    assert generated.name.startswith("test-") and generated.status == "completed"


def test_no_track_does_not_need_the_store(project):
    """`--no-track` is for a machine without the store: evaluating must run where its database library
    (sqlalchemy) cannot even be imported."""
    root, _ = project
    program = (
        "import sys; sys.modules['sqlalchemy'] = None\n"  # None in sys.modules makes `import sqlalchemy` fail
        "from kshot.cli.main import main\n"
        "sys.argv = ['kshot', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as stop:\n    assert not stop.code, stop.code\n"
        "assert not any(m.startswith('kshot.tracking') for m in sys.modules)\n"
    )
    args = ["evaluate", "--model", str(root / "out"), "-c", str(root / "config.yaml"), "--no-track"]
    proc = subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "accuracy" in proc.stdout.lower()


def test_a_taken_name_is_refused_before_training(project):
    root, db = project
    result = invoke(
        ["train", "-c", str(root / "config.yaml"), "-p", str(root / "params.yaml"), "--name", "run-a", "--db", db],
        expect_ok=False,
    )
    assert isinstance(result.exception, AttemptExists)
    assert AttemptStore(db).list_attempts()[1] == 2


def test_resume_by_name_reuses_the_attempt_and_its_command(project):
    root, db = project
    invoke(["train", "--resume", "--name", "run-a", "--db", db])  # no -c/-p: the stored command
    store = AttemptStore(db)
    run_a = store.get_attempt("run-a")
    assert run_a.status == "completed" and [s.step for s in store.steps(run_a.id)] == list(range(1, 7))
    assert store.list_attempts()[1] == 2


def test_list_filters_and_pages(project, monkeypatch):
    _, db = project
    out = invoke(["attempts", "list", "--db", db]).output
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["id", "name", "kind", "status"]
    assert "ev-b" in lines[1] and "run-a" in lines[2]  # newest first
    assert "completed" in lines[2] and "6/6" in lines[2] and lines[-1] == "page 1 of 1; 2 attempts"
    assert "run-a" not in invoke(["attempts", "list", "--db", db, "--kind", "test"]).output
    page2 = invoke(["attempts", "list", "--db", db, "--limit", "1", "--page", "2"]).output
    assert "run-a" in page2 and "ev-b" not in page2 and "page 2 of 2" in page2
    assert "No attempts." in invoke(["attempts", "list", "--db", db, "--status", "failed"]).output
    data = json.loads(invoke(["attempts", "list", "--db", db, "--json", "--sort", "name"]).output)
    assert data["total"] == 2 and [a["name"] for a in data["attempts"]] == ["ev-b", "run-a"]
    monkeypatch.setenv("KSHOT_DATABASE_URL", db)  # the database without --db
    assert "run-a" in invoke(["attempts", "list"]).output


def test_show_prints_command_status_steps_and_metrics(project):
    _, db = project
    out = invoke(["attempts", "show", "run-a", "--db", db, "--steps"]).output
    assert out.startswith("Attempt run-a (id 1): train, completed")
    assert "steps: 6 of 6; loss " in out
    assert "command:" in out and "inner_lr: 0.001" in out and "meta_steps: 6" in out
    assert "validation (mean over tasks): step 3:" in out
    assert "test tasks" in out and "domain6" in out and "domain7" in out
    assert "best_model: " in out
    step_lines = [line for line in out.splitlines() if line.split()[:1] and line.split()[0].isdigit()]
    assert [int(line.split()[0]) for line in step_lines] == [1, 2, 3, 4, 5, 6]
    by_id = invoke(["attempts", "show", "1", "--db", db]).output
    assert by_id.startswith("Attempt run-a (id 1)")
    shown = json.loads(invoke(["attempts", "show", "ev-b", "--db", db, "--json"]).output)
    assert shown["kind"] == "test" and {e["task"] for e in shown["evaluations"]} == {"domain6", "domain7"}


def test_compare_prints_tasks_side_by_side(project):
    _, db = project
    store = AttemptStore(db)
    out = invoke(["attempts", "compare", "run-a", "ev-b", "--db", db]).output
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    header = out.splitlines()[0].split()
    assert header == ["run-a", "ev-b"]
    for name, column in (("run-a", 0), ("ev-b", 1)):
        results = store.latest_evaluation(store.get_attempt(name).id, "test")
        for task in ("domain6", "domain7"):
            m = results["tasks"][task]
            cell = rows[task].split()[1 + 3 * column : 4 + 3 * column]
            assert cell == [f"{100 * m['accuracy']:.2f}", "/", f"{m['macro_f1']:.3f}"]
    last_loss = store.steps(store.get_attempt("run-a").id)[-1].metrics["loss"]
    (final_loss,) = [line for line in out.splitlines() if line.startswith("final loss ")]
    assert final_loss.split()[2:] == [f"{last_loss:.4f}", "-"] and "mean" in rows


def test_unknown_attempt_is_a_clear_error(project):
    _, db = project
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "kshot", "attempts", "show", "nope", "--db", db],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2 and "No attempt 'nope'" in proc.stderr and "kshot attempts list" in proc.stderr
    result = invoke(["attempts", "compare", "run-a", "--db", db], expect_ok=False)
    assert "at least two attempts" in str(result.exception)


def test_reading_the_store_does_not_import_torch(project):
    """`kshot attempts list | show | compare` only read the store: torch and transformers cost seconds to import
    (`attempts show` took 8.9 s when it imported them, 0.7 s without)."""
    _, db = project
    reads = [["list"], ["show", "run-a"], ["show", "nope"], ["compare", "run-a", "ev-b"]]
    proc = run_without_torch([(["attempts", *args, "--db", db], 2 if "nope" in args else 0) for args in reads])
    assert "run-a" in proc.stdout and "No attempt 'nope'" in proc.stderr
