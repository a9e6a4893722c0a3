"""Access: a bearer token for everything that changes or starts something; no token, no public bind."""

from __future__ import annotations

import sys

import httpx
import pytest

from kshot.errors import ConfigError
from kshot.service import ServiceSettings

from .live import free_port


def _mutating_operations(client) -> list[tuple[str, str]]:
    spec = client.get("/openapi.json").json()
    ops = [
        (method.upper(), path.replace("{key}", "1"))
        for path, item in spec["paths"].items()
        for method in item
        if method != "get"
    ]
    assert ("POST", "/train") in ops and ("PATCH", "/attempts/1") in ops
    return ops


def test_every_mutating_route_needs_the_token(live):
    with live.client(token=None) as anonymous, live.client(token="wrong-token") as wrong:
        for method, path in _mutating_operations(anonymous):
            for client in (anonymous, wrong):
                response = client.request(method, path, json={"name": "sneaky"})
                assert response.status_code == 401, (method, path, response.status_code)
                assert response.headers["www-authenticate"] == "Bearer"
        # Nothing was created by the refused requests.
        assert anonymous.get("/attempts/sneaky").status_code == 404


def test_reads_need_no_token(live):
    with live.client(token=None) as anonymous:
        assert anonymous.get("/attempts").status_code == 200
        assert anonymous.get("/health").json()["status"] == "ok"
        assert anonymous.get("/").status_code == 200


def test_the_token_is_accepted(live):
    with live.client() as client:
        assert client.post("/attempts", json={"name": "with-token"}).status_code == 201


def test_without_a_token_the_service_refuses_to_bind_beyond_loopback(monkeypatch, tmp_path, capsys):
    from kshot.cli.main import main

    port = free_port()
    monkeypatch.setenv("KSHOT_TOKEN", "")
    monkeypatch.setenv("KSHOT_DATABASE_URL", f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.setattr(sys, "argv", ["kshot", "serve", "--host", "0.0.0.0", "--port", str(port)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "Refusing to serve on 0.0.0.0 without a token" in message and "KSHOT_TOKEN" in message
    # It never listened, and never opened the database.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
    assert not (tmp_path / "a.db").exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_no_token(host):
    ServiceSettings(token=None).check_bind(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org"])
def test_other_addresses_need_a_token(host):
    with pytest.raises(ConfigError, match=f"Refusing to serve on {host} without a token"):
        ServiceSettings(token=None).check_bind(host)
    ServiceSettings(token="a-long-secret").check_bind(host)
