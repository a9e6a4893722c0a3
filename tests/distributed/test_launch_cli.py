"""`kshot train` under `accelerate launch` on 2 CPU processes, and a killed process ending the launch."""

from __future__ import annotations

import json
import time

import yaml

from kshot.tracking import AttemptStore
from kshot.training.checkpoint import load_checkpoint

from .conftest import PARAMS, assert_same_meta
from .launch import BIN, accelerate_launch


def test_kshot_train_under_accelerate_launch_resumes_and_writes_once(spec, reference, tmp_path):
    config = {
        **spec["config"],
        "output_dir": str(tmp_path / "out"),
        "logging": {"log_dir": str(tmp_path / "logs"), "progress_bar": False},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**PARAMS, "test_after_train": True}))
    args = ["train", "-c", str(tmp_path / "config.yaml"), "-p", str(tmp_path / "params.yaml")]
    db = f"sqlite:///{tmp_path / 'attempts.db'}"

    # First half with `python -m kshot`, second half resumed with the `kshot` entry point.
    first = accelerate_launch(
        ["-m", "kshot", *args, "--set", "params.meta_steps=2", "--db", db, "--name", "two-procs"], home=tmp_path
    )
    assert first.returncode == 0, first.stdout[-6000:]
    second = accelerate_launch([str(BIN / "kshot"), *args, "--resume", "--no-track"], home=tmp_path)
    assert second.returncode == 0, second.stdout[-6000:]

    # Only the main process prints, logs, records the attempt and saves.
    for run in (first, second):
        assert run.stdout.count("Test tasks (reptile") == 1
    log = (tmp_path / "logs" / "running_logs.log").read_text()
    assert log.count("Resumed from") == 1 and log.count("step 4: loss=") == 1
    attempts, total = AttemptStore(db).list_attempts()
    assert total == 1 and attempts[0].name == "two-procs" and attempts[0].status == "completed"
    assert json.loads((tmp_path / "out" / "kshot.json").read_text())["params"]["meta_steps"] == 4

    state = load_checkpoint(tmp_path / "out")
    assert state["step"] == 4
    assert_same_meta({"state": state["algorithm"]}, reference["reptile"])


def test_killed_process_ends_the_launch_with_an_error(spec, tmp_path):
    spec = {
        **spec,
        "out": str(tmp_path / "results"),
        "params": {**PARAMS, "meta_steps": 1000},
        "runs": [{"name": "killed", "output_dir": str(tmp_path / "out"), "kill_main_at": 1}],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    start = time.monotonic()
    run = accelerate_launch(["tests/distributed/worker.py", str(tmp_path / "spec.json")], home=tmp_path, timeout=90)
    assert run.returncode != 0
    # torch.distributed.run stops the other process and names the one that died, and how.
    assert "Root Cause" in run.stdout and "Signal 9 (SIGKILL)" in run.stdout, run.stdout[-4000:]
    assert time.monotonic() - start < 90
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
