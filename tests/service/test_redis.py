"""The Redis queue backend, once, against a real redis-server on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .conftest import train_body, wait_finished
from .live import LiveService, free_port, wait_for


@pytest.fixture()
def redis_url(tmp_path):
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; scripts/services.sh installs it (apt-get install redis-server).")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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


def test_training_through_the_redis_queue(tmp_path, service_data, redis_url):
    service = LiveService(tmp_path / "svc", [service_data["root"], service_data["model"]],
                          extra_env={"KSHOT_QUEUE_BACKEND": "redis", "KSHOT_REDIS_URL": redis_url})
    (tmp_path / "svc").mkdir()
    try:
        service.start()
        with service.client() as client:
            attempt = client.post("/train", json=train_body(service_data, "via-redis", meta_steps=3, eval_every=0)).json()
            done = wait_finished(client, attempt["id"])
            assert done["status"] == "completed", done["error"] or service.log("worker")[-2000:]
            assert [s["step"] for s in client.get("/attempts/via-redis/steps").json()] == [1, 2, 3]
        assert "redis" in service.log("worker") and "kshot.train" in service.log("worker")
        # The SQLite queue file was never made: the jobs went through Redis.
        assert not (tmp_path / "svc" / "queue.db").exists()
    finally:
        service.stop()
