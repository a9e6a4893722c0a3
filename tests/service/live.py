"""A live kshot service for the tests: `kshot serve` and `kshot worker` as real processes on a free port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

TOKEN = "test-token-0123456789"


def require_program(name: str, package: str) -> str:
    """The program's path; a missing one fails the test (it is part of the suite), unless
    KSHOT_SKIP_SERVICES=1 says to skip the tests that need outside programs."""
    import pytest

    if os.environ.get("KSHOT_SKIP_SERVICES") == "1":
        pytest.skip(f"KSHOT_SKIP_SERVICES=1: tests needing {name} skipped")
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: run scripts/services.sh (apt-get install {package}), "
            "or set KSHOT_SKIP_SERVICES=1."
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class LiveService:
    """API server (and optionally a worker) in subprocesses, sharing one temp SQLite store and queue."""

    def __init__(self, root: Path, allowed_roots: list[Path], token: str | None = TOKEN, extra_env: dict | None = None):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.env = {
            **os.environ,
            "KSHOT_DATABASE_URL": f"sqlite:///{root / 'attempts.db'}",
            "KSHOT_QUEUE_PATH": str(root / "queue.db"),
            "KSHOT_ALLOWED_ROOTS": os.pathsep.join(str(r) for r in allowed_roots),
            "KSHOT_OUTPUT_ROOT": str(root / "runs"),
            "KSHOT_EVENTS_POLL_SECONDS": "0.2",
            "KSHOT_TOKEN": token or "",
            # Jobs use one thread each: the tests' own processes share the machine's few cores.
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            **(extra_env or {}),
        }
        self.processes: dict[str, subprocess.Popen] = {}

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "kshot", *args], env=self.env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes[name] = proc
        return proc

    def start(self, worker: bool = True) -> LiveService:
        """Start the server (and a worker, at the same time: each spends seconds importing torch)."""
        self._spawn("server", "serve", "--port", str(self.port), "--log-level", "warning")
        if worker:
            self.start_worker()
        wait_for(self._healthy, 120, what=f"the server on {self.url} ({self.log('server')[-2000:]})")
        return self

    def start_worker(self, name: str = "worker") -> subprocess.Popen:
        return self._spawn(name, "worker")

    def _healthy(self) -> bool:
        proc = self.processes["server"]
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}:\n{self.log('server')[-3000:]}")
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self, token: str | None = "default", timeout: float = 30) -> httpx.Client:
        token = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                # SIGTERM: uvicorn shuts down; the huey consumer stops at once, without waiting for a job.
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
