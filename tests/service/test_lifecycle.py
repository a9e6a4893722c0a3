"""Service start-up: attempts left running by a dead process become failed (interrupted)."""

from __future__ import annotations

import socket
import subprocess
import sys

from fastapi.testclient import TestClient

from kshot.service import ServiceSettings, create_app
from kshot.tracking import AttemptStore


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_start_up_fails_attempts_of_dead_processes_only(tmp_path):
    url = f"sqlite:///{tmp_path / 'attempts.db'}"
    store = AttemptStore(url)
    orphan = store.create_attempt("orphan", "train", {})
    store.update_attempt(orphan.id, status="running", worker=f"{socket.gethostname()}:{_dead_pid()}")
    alive = store.create_attempt("alive", "train", {})
    store.update_attempt(alive.id, status="running", worker=f"{socket.gethostname()}:{subprocess.os.getpid()}")

    settings = ServiceSettings(database_url=url, queue_path=tmp_path / "queue.db", output_root=tmp_path / "runs")
    assert store.get_attempt("orphan").status == "running"
    with TestClient(create_app(settings)) as client:  # runs the app's start-up
        orphan_now = client.get("/attempts/orphan").json()
        assert orphan_now["status"] == "failed" and orphan_now["error"].startswith("interrupted: its worker (")
        assert orphan_now["error"].endswith("; resume to continue from the last checkpoint")
        assert client.get("/attempts/alive").json()["status"] == "running"


def test_nothing_is_built_before_create_app_is_called():
    import importlib

    module = importlib.import_module("kshot.service.app")
    assert not any(type(v).__name__ == "FastAPI" for v in vars(module).values())
