import socket
import time

import pytest
from sqlalchemy.exc import OperationalError

from kshot.tracking import database


@pytest.fixture()
def silent_port():
    """A socket that listens but never speaks: the kernel completes the TCP handshake, then nothing."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    yield silent.getsockname()[1]
    silent.close()


def connect_seconds(url: str) -> float:
    engine = database.make_engine(url)
    t0 = time.monotonic()
    try:
        with pytest.raises(OperationalError):
            engine.connect()
    finally:
        engine.dispose()
    return time.monotonic() - t0


def test_a_postgresql_server_that_never_answers_fails_the_connection_within_the_timeout(monkeypatch, silent_port):
    monkeypatch.setattr(database, "PG_CONNECT_TIMEOUT_SECONDS", 2)
    assert connect_seconds(f"postgresql+psycopg://kshot:x@127.0.0.1:{silent_port}/kshot") < 10


def test_a_urls_own_connect_timeout_wins(monkeypatch, silent_port):
    monkeypatch.setattr(database, "PG_CONNECT_TIMEOUT_SECONDS", 600)
    assert connect_seconds(f"postgresql+psycopg://kshot:x@127.0.0.1:{silent_port}/kshot?connect_timeout=2") < 10
