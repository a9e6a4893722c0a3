"""The attempts resource over HTTP: create, find, update, list, latest; 404, 409 and 422."""

from __future__ import annotations

import pytest

from .conftest import train_body


def test_create_find_update_an_attempt(live):
    with live.client() as client:
        created = client.post(
            "/attempts", json={"name": "rec-notebook", "kind": "train", "command": {"params": {"meta_steps": 3}}}
        )
        assert created.status_code == 201, created.text
        attempt = created.json()
        assert attempt["status"] == "queued" and attempt["command"]["params"] == {"meta_steps": 3}

        assert client.get(f"/attempts/{attempt['id']}").json()["name"] == "rec-notebook"
        assert client.get("/attempts/rec-notebook").json()["id"] == attempt["id"]

        updated = client.patch(
            "/attempts/rec-notebook",
            json={
                "status": "completed",
                "n_steps": 3,
                "metrics": {"accuracy": 0.75},
                "artefacts": {"model": str(live.root / "runs" / "elsewhere")},
            },
        )
        assert updated.status_code == 200, updated.text
        again = client.get(f"/attempts/{attempt['id']}").json()
        assert again["status"] == "completed" and again["n_steps"] == 3 and again["metrics"] == {"accuracy": 0.75}
        assert again["finished_at"] is not None
        assert again["artefacts"] == {"model": str(live.root / "runs" / "elsewhere")}
        # An empty update changes nothing.
        assert client.patch("/attempts/rec-notebook", json={}).json()["updated_at"] == again["updated_at"]


def test_list_filters_sorts_and_pages(live):
    with live.client() as client:
        for i in range(5):
            assert (
                client.post("/attempts", json={"name": f"page-{i}", "kind": "test" if i % 2 else "train"}).status_code
                == 201
            )
        page = client.get("/attempts", params={"q": "page-", "sort": "name", "limit": 2, "offset": 1}).json()
        assert page["total"] == 5 and [a["name"] for a in page["items"]] == ["page-1", "page-2"]
        tests = client.get("/attempts", params={"q": "PAGE-", "kind": "test", "sort": "-name"}).json()
        assert [a["name"] for a in tests["items"]] == ["page-3", "page-1"]
        assert client.get("/attempts", params={"q": "page-", "status": "running"}).json()["total"] == 0
        assert client.get("/attempts/latest").json()["name"] == "page-4"


def test_unknown_attempts_are_404(live):
    with live.client() as client:
        for path in (
            "/attempts/no-such-attempt",
            "/attempts/999999",
            "/attempts/99999999999999999999999",
            "/attempts/no-such-attempt/steps",
            "/attempts/999999/evaluations",
            "/attempts/999999/events",
        ):
            response = client.get(path)
            assert response.status_code == 404, path
            assert "No attempt" in response.json()["detail"]
        assert client.patch("/attempts/no-such-attempt", json={"status": "failed"}).status_code == 404
        assert client.post("/attempts/no-such-attempt/cancel").status_code == 404


def test_a_duplicate_name_is_409(live, service_data):
    with live.client() as client:
        assert client.post("/attempts", json={"name": "twice"}).status_code == 201
        again = client.post("/attempts", json={"name": "twice"})
        assert again.status_code == 409 and "twice" in again.json()["detail"]
        # Also when the duplicate comes as a training request: nothing is queued for it.
        assert client.post("/train", json=train_body(service_data, "twice")).status_code == 409


@pytest.mark.parametrize(
    "path, body, field, message",
    [
        ("/attempts", {"name": "has space"}, ["body", "name"], "letters, digits"),
        ("/attempts", {"name": "12345"}, ["body", "name"], "not all digits"),
        ("/attempts", {"name": "ok", "status": "done"}, ["body", "status"], "queued"),
        ("/attempts", {"name": "ok", "colour": "red"}, ["body", "colour"], "Extra inputs"),
        ("/attempts", {"name": "ok", "command": {"config": "data.yaml"}}, ["body", "command", "config"], "dictionary"),
        ("/train", {"params": {"inner_lrr": 0.1}}, ["body", "params"], "Did you mean 'inner_lr'"),
        ("/train", {"params": {"meta_steps": "many"}}, ["body", "params"], "'meta_steps' must be an integer"),
        ("/train", {"params": {"algorithm": "reptil"}}, ["body", "params"], "Did you mean 'reptile'"),
        ("/train", {"config": {"data": {"format": "csv"}}}, ["body", "config"], "'data.format' must be one of"),
        ("/test", {"config": {}}, ["body"], "exactly one of 'model'"),
        ("/test", {"attempt": "no-such-training"}, ["body", "attempt"], "No attempt"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(live, path, body, field, message):
    with live.client() as client:
        response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"][: len(field)] == field and message in e["msg"] for e in errors), errors


def test_invalid_updates_and_queries_are_422(live):
    with live.client() as client:
        client.post("/attempts", json={"name": "to-patch"})
        assert client.patch("/attempts/to-patch", json={"n_steps": -1}).status_code == 422
        assert client.patch("/attempts/to-patch", json={"metrics": {"accuracy": "high"}}).status_code == 422
        # Python's JSON reader accepts NaN and Infinity; the service refuses them before any route reads them.
        for text in ('{"metrics": {"accuracy": NaN}}', '{"metrics": {"accuracy": -Infinity}}'):
            nan = client.patch("/attempts/to-patch", content=text, headers={"Content-Type": "application/json"})
            assert nan.status_code == 422 and "not a JSON number" in nan.json()["detail"][0]["msg"], nan.text
        nan_lr = client.post(
            "/train", content='{"params": {"inner_lr": NaN}}', headers={"Content-Type": "application/json"}
        )
        assert nan_lr.status_code == 422 and "NaN" in nan_lr.json()["detail"][0]["msg"]
        assert (
            client.patch(
                "/attempts/to-patch", content="{not json", headers={"Content-Type": "application/json"}
            ).status_code
            == 422
        )
        assert client.get("/attempts", params={"sort": "password"}).status_code == 422
        assert client.get("/attempts", params={"limit": 0}).status_code == 422
        assert client.get("/attempts", params={"status": "sleeping"}).status_code == 422


def test_paths_outside_the_allowed_roots_are_422(live, service_data, tmp_path):
    outside = tmp_path / "elsewhere.json"
    outside.write_text(service_data["reviews"].read_text())
    escape = service_data["root"] / "escape"
    if not escape.exists():
        escape.symlink_to(tmp_path, target_is_directory=True)
    cases = [
        (("config", "data", "path"), str(outside)),
        (("config", "data", "path"), str(service_data["root"] / ".." / outside.parent.name / outside.name)),
        (("config", "data", "path"), str(escape / "elsewhere.json")),  # a symlink inside a root pointing out
        (("config", "model", "name_or_path"), "/etc"),
        (("config", "model", "name_or_path"), "__import__('os').system('id')"),
        (("config", "output_dir"), "/tmp/somewhere-else"),
        (("config", "data", "cache_dir"), str(service_data["root"])),
        (("config", "logging", "log_dir"), "/var/log"),
    ]
    with live.client() as client:
        for loc, value in cases:
            body = train_body(service_data)
            target = body
            for key in loc[:-1]:
                target = target.setdefault(key, {})
            target[loc[-1]] = value
            response = client.post("/train", json=body)
            assert response.status_code == 422, (loc, value, response.text)
            error = response.json()["detail"][0]
            assert error["loc"] == ["body", *loc], error
        test = client.post("/test", json={"model": "/etc", "config": train_body(service_data)["config"]})
        assert test.status_code == 422 and test.json()["detail"][0]["loc"] == ["body", "model"]
        # Nothing was recorded for the refused requests.
        assert client.get("/attempts", params={"q": "train-"}).json()["total"] == 0


def test_testing_an_unfinished_training_is_409(live, service_data):
    with live.client() as client:
        client.post("/attempts", json={"name": "unfinished", "kind": "train", "status": "failed"})
        response = client.post("/test", json={"attempt": "unfinished", "config": train_body(service_data)["config"]})
    assert response.status_code == 409 and "failed" in response.json()["detail"]
