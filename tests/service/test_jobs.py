"""Background jobs through a real worker: a training that completes, one that fails, a cancel, a test."""

from __future__ import annotations

import math
import os
import signal
import socket

from .conftest import train_body, wait_finished
from .live import wait_for


def test_training_in_the_background_completes_with_its_losses_stored(live, service_data):
    with live.client() as client:
        response = client.post("/train", json=train_body(service_data, "bg-train"))
        assert response.status_code == 202, response.text
        queued = response.json()
        # 202 at once, before any worker touched it.
        assert queued["status"] in ("queued", "running") and queued["name"] == "bg-train"
        assert queued["command"]["config"]["output_dir"].startswith(str(live.root / "runs"))

        done = wait_finished(client, queued["id"])
        assert done["status"] == "completed", done["error"]
        assert done["n_steps"] == 6 and done["total_steps"] == 6
        assert 0.0 <= done["metrics"]["accuracy"] <= 1.0 and done["metrics"]["split"] == "test"

        steps = client.get("/attempts/bg-train/steps").json()
        assert [s["step"] for s in steps] == [1, 2, 3, 4, 5, 6]
        assert all(math.isfinite(s["metrics"]["loss"]) and s["metrics"]["loss"] > 0 for s in steps)
        evaluations = client.get(f"/attempts/{queued['id']}/evaluations").json()
        assert {(e["split"], e["step"]) for e in evaluations} >= {
            ("validation", 3),
            ("validation", 6),
            ("test", done["metrics"]["best_step"]),
        }
        assert {e["task"] for e in evaluations if e["split"] == "test"} == {"domain6", "domain7"}

        # Its model can be tested by naming the attempt.
        test = client.post(
            "/test", json={"attempt": "bg-train", "name": "bg-test", "config": train_body(service_data)["config"]}
        )
        assert test.status_code == 202, test.text
        tested = wait_finished(client, test.json()["id"])
        assert tested["status"] == "completed", tested["error"]
        assert tested["kind"] == "test" and 0.0 <= tested["metrics"]["accuracy"] <= 1.0
        assert tested["command"]["model"] == done["artefacts"]["best_model"]


def test_a_job_that_fails_marks_its_attempt_failed_with_the_error(live, service_data):
    body = train_body(service_data, "bad-domain")
    body["config"]["data"]["test_domains"] = ["domain-that-does-not-exist"]
    with live.client() as client:
        attempt = client.post("/train", json=body).json()
        done = wait_finished(client, attempt["id"])
    assert done["status"] == "failed"
    assert "domain-that-does-not-exist" in done["error"] and "DataError" in done["error"]
    assert done["finished_at"] is not None


def test_cancel_stops_a_running_training(live, service_data):
    with live.client() as client:
        attempt = client.post(
            "/train", json=train_body(service_data, "to-cancel", meta_steps=2000, eval_every=0)
        ).json()
        wait_for(lambda: client.get(f"/attempts/{attempt['id']}").json()["n_steps"] >= 2, 60, what="two steps")
        response = client.post("/attempts/to-cancel/cancel")
        assert response.status_code == 202 and response.json()["cancel_requested"] is True
        done = wait_finished(client, attempt["id"])
        assert done["status"] == "cancelled"
        steps = client.get(f"/attempts/{attempt['id']}/steps").json()
        assert 2 <= len(steps) < 2000 and len(steps) == done["n_steps"]
        # Cancelling a finished attempt is a conflict.
        assert client.post("/attempts/to-cancel/cancel").status_code == 409


def test_a_job_whose_process_dies_is_marked_failed_and_can_be_resumed(live, service_data):
    with live.client() as client:
        body = train_body(service_data, "crashes", meta_steps=400, eval_every=0, checkpoint_every=2)
        attempt = client.post("/train", json=body).json()
        running = wait_for(
            lambda: (a := client.get(f"/attempts/{attempt['id']}").json())["n_steps"] >= 3 and a, 60, what="three steps"
        )
        host, _, pid = running["worker"].rpartition(":")
        assert host == socket.gethostname()
        # A native crash or the OOM killer: the job's process vanishes without a word.
        os.kill(int(pid), signal.SIGKILL)
        failed = wait_finished(client, attempt["id"], timeout=60)
        assert failed["status"] == "failed"
        assert failed["error"].startswith(f"interrupted: its worker ({running['worker']})")
        assert "resume to continue from the last checkpoint" in failed["error"]
        killed_at = failed["n_steps"]

        # Resumed from its last checkpoint (every 2 steps), it goes on with no step missing or repeated.
        resumed = client.post("/attempts/crashes/resume")
        assert resumed.status_code == 202, resumed.text
        assert resumed.json()["status"] == "queued" and resumed.json()["error"] is None
        wait_for(
            lambda: client.get(f"/attempts/{attempt['id']}").json()["n_steps"] > killed_at + 1,
            90,
            what="steps after the resume",
        )
        assert client.post("/attempts/crashes/cancel").status_code == 202
        done = wait_finished(client, attempt["id"])
        assert done["status"] == "cancelled"
        steps = [s["step"] for s in client.get(f"/attempts/{attempt['id']}/steps").json()]
        assert steps == list(range(1, done["n_steps"] + 1)) and done["n_steps"] > killed_at


def test_only_a_failed_or_cancelled_training_resumes(live):
    with live.client() as client:
        client.post("/attempts", json={"name": "finished-ok", "kind": "train", "status": "completed"})
        client.post("/attempts", json={"name": "failed-test", "kind": "test", "status": "failed"})
        for name, reason in (("finished-ok", "completed"), ("failed-test", "test attempt")):
            response = client.post(f"/attempts/{name}/resume")
            assert response.status_code == 409 and reason in response.json()["detail"]
