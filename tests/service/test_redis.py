"""The Redis queue backend, once, against a real redis-server on loopback."""

from __future__ import annotations

import os
import subprocess
import uuid
from datetime import datetime

import pytest

from .conftest import train_body, wait_finished
from .live import LiveService, free_port, require_program, wait_for


@pytest.fixture()
def redis_url(tmp_path):
    """KSHOT_TEST_REDIS_URL if set, else a redis-server of this test's own on a free loopback port."""
    if os.environ.get("KSHOT_TEST_REDIS_URL"):
        yield os.environ["KSHOT_TEST_REDIS_URL"]
        return
    server = require_program("redis-server", "redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        wait_for(lambda: _pings(client), 20, what="redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _pings(client) -> bool:
    import redis

    try:
        return client.ping()
    except redis.ConnectionError:
        return False


# A few seconds per training: with 8 steps (under a second) the first could end before the second
# job's process had started, and the overlap check below failed about one run in three.
STEPS = 40


def test_trainings_through_the_redis_queue_run_side_by_side(tmp_path, service_data, redis_url):
    """One worker with concurrency 2 runs two queued trainings at the same time."""
    (tmp_path / "svc").mkdir()
    service = LiveService(
        tmp_path / "svc",
        [service_data["root"], service_data["model"]],
        extra_env={
            "KSHOT_QUEUE_BACKEND": "redis",
            "KSHOT_REDIS_URL": redis_url,
            "KSHOT_WORKER_CONCURRENCY": "2",
            # A shared Redis may hold other queues: this run's own name.
            "KSHOT_QUEUE_NAME": f"kshot-test-{uuid.uuid4().hex[:8]}",
        },
    )
    try:
        service.start()
        with service.client() as client:
            ids = [
                client.post(
                    "/train", json=train_body(service_data, f"via-redis-{i}", meta_steps=STEPS, eval_every=0)
                ).json()["id"]
                for i in range(2)
            ]
            done = [wait_finished(client, i) for i in ids]
            assert [d["status"] for d in done] == ["completed", "completed"], [d["error"] for d in done]
            (s1, f1), (s2, f2) = [
                (datetime.fromisoformat(d["started_at"]), datetime.fromisoformat(d["finished_at"])) for d in done
            ]
            assert s1 < f2 and s2 < f1, "the two trainings ran one after the other"
            first, second = done
            assert first["worker"] != second["worker"]
            for i in ids:
                assert [s["step"] for s in client.get(f"/attempts/{i}/steps").json()] == list(range(1, STEPS + 1))
        worker_log = service.log("worker")
        assert "2 process(es) on the redis queue" in worker_log and "kshot.train" in worker_log
        # The SQLite queue file was never made: the jobs went through Redis.
        assert not (tmp_path / "svc" / "queue.db").exists()
    finally:
        service.stop()
