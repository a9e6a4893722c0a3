"""Attacks on a real `kshot serve` + `kshot worker`: a token holder reaches no code, file or attempt it should not.

One test per class of defect, each with several variants. Every variant asserts the status code
and that nothing was created, written, read or executed: no attempt appeared, the folder outside
the roots is untouched, and a planted pickle's marker file never appears.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from kshot.service.references import OWNER_FILE
from kshot.training.checkpoint import checkpoint_path

from . import tally
from .conftest import TINY_PARAMS, train_body, wait_finished
from .live import wait_for

BUILDERS = ["text", "csv", "json", "parquet", "arrow", "xml", "cache", "pandas", "imagefolder", "webdataset", "sql"]


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """A folder outside every root, with a data file and a model folder in it: nothing may read or write it."""
    root = tmp_path_factory.mktemp("outside")
    (root / "tiny.jsonl").write_text('{"text": "a", "label": "x", "domain": "d"}\n')
    (root / "api_key.txt").write_text("api_key=secret-0123\n")
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def attempt_names(client) -> set[str]:
    return {a["name"] for a in client.get("/attempts", params={"limit": 500}).json()["items"]}


class Refusals:
    """Counts variants and checks each left no attempt behind and the outside folder as it was."""

    def __init__(self, client, outside: Path):
        self.client, self.outside = client, outside
        self.before, self.files = attempt_names(client), snapshot(outside)
        self.tried = 0

    def expect(self, response, status: int, loc: tuple | None = None, text: str | None = None):
        self.tried += 1
        tally.tried("attacks")
        assert response.status_code == status, (response.status_code, response.text[:500])
        assert len(response.content) < 8192, f"{len(response.content)}-byte error response"
        body = response.json()
        if loc is not None:
            assert any(tuple(e["loc"][: len(loc)]) == loc for e in body["detail"]), body
        if text is not None:
            assert text in json.dumps(body), body
        tally.held("attacks")
        return body

    def nothing_changed(self):
        assert attempt_names(self.client) == self.before
        assert snapshot(self.outside) == self.files


SPACE = {"inner_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}


def config_with(service_data, **changes) -> dict:
    config = train_body(service_data)["config"]
    for dotted, value in changes.items():
        section = config
        *parents, key = dotted.split("__")
        for parent in parents:
            section = section.setdefault(parent, {})
        section[key] = value
    return config


# ------------------------------------------------------------------------ 1. paths at every entry
def test_paths_outside_the_roots_are_refused_at_every_entry(live, service_data, outside):
    with live.client() as client:
        refusals = Refusals(client, outside)
        cases = [
            ({"data__path": str(outside / "tiny.jsonl"), "data__format": "hf"}, ("config", "data", "path")),
            ({"data__path": "../" * 12 + "etc"}, ("config", "data", "path")),
            ({"model__name_or_path": str(outside)}, ("config", "model", "name_or_path")),
            ({"model__name_or_path": "~/.ssh"}, ("config", "model", "name_or_path")),
            ({"output_dir": str(outside / "run")}, ("config", "output_dir")),
            ({"output_dir": str(live.root / "runs" / ".." / ".." / "escape")}, ("config", "output_dir")),
            ({"data__cache_dir": str(outside / "cache")}, ("config", "data", "cache_dir")),
            ({"logging__log_dir": str(outside / "logs")}, ("config", "logging", "log_dir")),
            ({"data__format": "class_splits", "data__path": str(outside)}, ("config", "data", "path")),
            # A class list given as a file is a path too (new classes: tasks drawn from pools of classes).
            (
                {"data__format": "hf", "data__domain_column": None, "data__test_classes": str(outside / "c.txt")},
                ("config", "data", "test_classes"),
            ),
        ]
        for i, (changes, loc) in enumerate(cases):
            config = config_with(service_data, **changes)
            for path, body in (
                ("/train", {"name": f"atk-path-{i}", "config": config, "params": TINY_PARAMS}),
                ("/test", {"name": f"atk-path-t{i}", "model": str(service_data["model"]), "config": config}),
                ("/attempts", {"name": f"atk-path-r{i}", "command": {"config": config, "params": {"meta_steps": 2}}}),
                ("/tune", {"study": f"atk-study-{i}", "config": config, "params": TINY_PARAMS, "space": SPACE}),
            ):
                if path == "/test" and loc[-1] == "name_or_path":
                    continue  # a test evaluates body.model; config.model is not read
                refusals.expect(client.post(path, json=body), 422, ("body", *loc))
        # The model a test reads, named directly.
        for model in (str(outside), "/etc", "../../../../etc"):
            body = {"name": "atk-test-model", "model": model, "config": config_with(service_data)}
            refusals.expect(client.post("/test", json=body), 422, ("body", "model"))
        # PATCH artefacts: a path outside the roots is not stored.
        assert client.post("/attempts", json={"name": "atk-artefacts"}).status_code == 201
        refusals.before.add("atk-artefacts")
        for path in (str(outside), "/etc/passwd", str(live.root / "runs" / ".." / "..")):
            response = client.patch("/attempts/atk-artefacts", json={"artefacts": {"best_model": path}})
            refusals.expect(response, 422, ("body", "artefacts", "best_model"))
        assert client.get("/attempts/atk-artefacts").json()["artefacts"] == {}
        refusals.nothing_changed()
        assert refusals.tried >= 25


def test_a_recorded_attempt_can_be_neither_resumed_nor_tested(live, service_data, outside):
    """The reported exploit: record a command, then resume it (it wrote a model outside the roots)."""
    with live.client() as client:
        refusals = Refusals(client, outside)
        exploit = {
            "name": "atk-recorded",
            "kind": "train",
            "status": "failed",
            "command": {
                "config": {"data": {"format": "hf", "path": str(outside / "tiny.jsonl")}, "output_dir": str(outside)},
                "params": {"meta_steps": 2},
            },
        }
        refusals.expect(client.post("/attempts", json=exploit), 422, ("body", "config", "data", "path"))
        # A recorded command inside the roots is stored resolved, but owns no folder: no resume, no test.
        for status in ("failed", "cancelled"):
            name = f"atk-recorded-{status}"
            body = {"name": name, "kind": "train", "status": status, "command": train_body(service_data)}
            body["command"]["params"] = TINY_PARAMS
            assert client.post("/attempts", json=body).status_code == 201
            refusals.before.add(name)
            refusals.expect(client.post(f"/attempts/{name}/resume"), 409, text="does not belong")
            assert client.get(f"/attempts/{name}").json()["status"] == status
        completed = {
            "name": "atk-recorded-done",
            "kind": "train",
            "status": "completed",
            "command": train_body(service_data),
        }
        assert client.post("/attempts", json=completed).status_code == 201
        refusals.before.add("atk-recorded-done")
        client.patch("/attempts/atk-recorded-done", json={"artefacts": {"best_model": str(service_data["model"])}})
        test = {"name": "atk-test-recorded", "attempt": "atk-recorded-done", "config": config_with(service_data)}
        refusals.expect(client.post("/test", json=test), 422, ("body", "attempt"), text="does not belong")
        refusals.nothing_changed()
        assert not (live.root / "runs" / "atk-recorded-failed").exists()


def test_a_row_planted_in_the_store_is_refused_by_the_worker(live, service_data, outside):
    """The store is trusted no more than a request: the worker resolves a command again before it runs."""
    from kshot.service import ServiceSettings
    from kshot.service.queue import JobQueue
    from kshot.tracking import AttemptStore

    store = AttemptStore(live.env["KSHOT_DATABASE_URL"])
    settings = ServiceSettings(
        queue_path=Path(live.env["KSHOT_QUEUE_PATH"]), database_url=live.env["KSHOT_DATABASE_URL"]
    )
    queue = JobQueue(settings)
    planted = {
        "atk-planted-data": config_with(service_data, data__path=str(outside / "tiny.jsonl"), data__format="hf"),
        "atk-planted-out": config_with(service_data, output_dir=str(outside / "run")),
        "atk-planted-builder": config_with(service_data, data__path="text", data__format="hf"),
    }
    with live.client() as client:
        files = snapshot(outside)
        for name, config in planted.items():
            attempt = store.create_attempt(name, "train", {"config": config, "params": TINY_PARAMS})
            queue.enqueue_train(attempt.id)
        # A trial of a study (POST /tune's kind of attempt) planted the same way: refused the same way.
        name = "atk-planted-trial"
        config = config_with(service_data, output_dir=str(outside / "trial"))
        attempt = store.create_attempt(name, "train", {"config": config, "params": TINY_PARAMS}, study="atk-study")
        queue.enqueue_train(attempt.id)
        planted[name] = config
        for name in planted:
            done = wait_finished(client, client.get(f"/attempts/{name}").json()["id"], timeout=60)
            tally.tried("attacks")
            assert done["status"] == "failed" and done["error"].startswith("Refused to run"), done
            assert "api_key" not in done["error"] and done["n_steps"] == 0
            tally.held("attacks")
        assert snapshot(outside) == files
    store.close()


def test_a_planted_checkpoint_pickle_never_runs_on_resume(live, service_data, outside):
    marker = outside / "pickle-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with live.client() as client:
        body = train_body(service_data, "atk-pickle", meta_steps=2000, checkpoint_every=2, eval_every=0)
        attempt = client.post("/train", json=body).json()
        wait_for(lambda: client.get(f"/attempts/{attempt['id']}").json()["n_steps"] >= 2, 60, what="two steps")
        assert client.post("/attempts/atk-pickle/cancel").status_code == 202
        assert wait_finished(client, attempt["id"])["status"] == "cancelled"
        state = checkpoint_path(attempt["command"]["config"]["output_dir"])
        assert state.exists()
        state.write_bytes(pickle.dumps({"step": 1, "algorithm": Payload()}, protocol=2))
        # The worker reads the checkpoint on resume: it must refuse the objects, not build them.
        assert client.post("/attempts/atk-pickle/resume").status_code == 202
        done = wait_finished(client, attempt["id"])
    tally.tried("attacks")
    assert done["status"] == "failed" and "not a kshot checkpoint" in done["error"], done
    assert not marker.exists()
    tally.held("attacks")


# --------------------------------------------------------------------- 2. builder names as hub ids
def test_datasets_builder_and_script_names_are_not_hub_ids(live, service_data, outside):
    with live.client() as client:
        refusals = Refusals(client, outside)
        for i, name in enumerate(
            [*BUILDERS, "json.py", "./text", "text/", "/text", "owner/../etc", "owner/name/extra"]
        ):
            config = config_with(service_data, data__path=name, data__format="hf")
            response = client.post("/train", json={"name": f"atk-builder-{i}", "config": config})
            refusals.expect(response, 422, ("body", "config", "data", "path"))
            assert "api_key" not in response.text
        for i, name in enumerate(["bert-base-uncased", "gpt2", "text", "owner/../x", "a/b/c"]):
            config = config_with(service_data, model__name_or_path=name)
            response = client.post("/train", json={"name": f"atk-model-{i}", "config": config})
            refusals.expect(response, 422, ("body", "config", "model", "name_or_path"))
        refusals.nothing_changed()


# ------------------------------------------------------------------------------- 3. lopt_path
def test_lopt_path_is_resolved(live, service_data, outside):
    with live.client() as client:
        refusals = Refusals(client, outside)
        for i, value in enumerate(["/etc", str(outside), "../../../../etc", "~"]):
            for path, body in (
                ("/train", {"name": f"atk-lopt-{i}", "config": config_with(service_data)}),
                (
                    "/test",
                    {
                        "name": f"atk-lopt-t{i}",
                        "model": str(service_data["model"]),
                        "config": config_with(service_data),
                    },
                ),
            ):
                body["params"] = {"algorithm": "learned_optimizer", "lopt_path": value}
                refusals.expect(client.post(path, json=body), 422, ("body", "params", "lopt_path"))
        refusals.nothing_changed()


# --------------------------------------------------------------------------- 4. output folders
def test_an_attempt_cannot_write_into_another_attempts_folder(live, service_data, outside):
    runs = live.root / "runs"
    with live.client() as client:
        first = client.post("/train", json=train_body(service_data, "atk-owner", meta_steps=2, eval_every=0)).json()
        wait_finished(client, first["id"])
        own = Path(first["command"]["config"]["output_dir"])
        assert json.loads((own / OWNER_FILE).read_text()) == {"attempt": "atk-owner"}
        before = snapshot(own)
        refusals = Refusals(client, outside)
        for i, target in enumerate([runs, own, own / "sub", runs / ".cache", runs / ".cache" / "x", runs / "."]):
            body = train_body(service_data, f"atk-folder-{i}")
            body["config"]["output_dir"] = str(target)
            refusals.expect(client.post("/train", json=body), 422, ("body", "config", "output_dir"))
        # Logs or a private cache in another attempt's folder.
        for i, key in enumerate(("logging__log_dir", "data__cache_dir")):
            config = config_with(service_data, **{key: str(own / "x")})
            refusals.expect(client.post("/train", json={"name": f"atk-into-{i}", "config": config}), 422)
        # A name that is taken leaves its would-be folder alone (and creates none).
        refusals.expect(client.post("/train", json=train_body(service_data, "atk-owner")), 409)
        # Two requests for one new folder: the second is refused.
        body = train_body(service_data, "atk-new-a", meta_steps=1, eval_every=0)
        body["config"]["output_dir"] = str(runs / "shared-new")
        assert client.post("/train", json=body).status_code == 202
        refusals.before.add("atk-new-a")
        body["name"] = "atk-new-b"
        refusals.expect(client.post("/train", json=body), 422, ("body", "config", "output_dir"), text="exists")
        refusals.nothing_changed()
        assert snapshot(own) == before


# ------------------------------------------------------------------------ 5. unencodable text
def test_lone_surrogates_are_refused_and_reads_keep_working(live, service_data, outside):
    surrogate = "\\udcff"
    raw_bodies = [
        ("POST", "/attempts", '{"name": "x' + surrogate + '"}'),
        ("POST", "/attempts", '{"name": "atk-sur", "command": {"params": {"lopt_path": "' + surrogate + '"}}}'),
        ("POST", "/train", '{"config": {"data": {"label_names": ["' + surrogate + '"]}}}'),
        ("POST", "/train", '{"params": {"' + surrogate + '": 1}}'),
        ("PATCH", "/attempts/atk-sur-target", '{"error": "boom' + surrogate + '"}'),
        ("PATCH", "/attempts/atk-sur-target", '{"metrics": {"' + surrogate + '": 1.0}}'),
        ("PATCH", "/attempts/atk-sur-target", '{"artefacts": {"m": "' + surrogate + '"}}'),
        ("POST", "/test", '{"model": "' + surrogate * 3 + '"}'),
    ]
    with live.client() as client:
        assert client.post("/attempts", json={"name": "atk-sur-target"}).status_code == 201
        refusals = Refusals(client, outside)
        for method, path, text in raw_bodies:
            response = client.request(method, path, content=text, headers={"Content-Type": "application/json"})
            refusals.expect(response, 422, ("body",))
        # Invalid UTF-8 bytes are refused the same way.
        bad = client.post(
            "/attempts", content=b'{"name": "\xed\xb3\xbf"}', headers={"Content-Type": "application/json"}
        )
        refusals.expect(bad, 422)
        refusals.nothing_changed()
        assert client.get("/attempts/atk-sur-target").json()["error"] is None
        for path in ("/attempts", "/attempts/latest", "/", "/attempts?q=%ED%B3%BF"):
            assert client.get(path).status_code == 200, path


# ------------------------------------------------------------------------ 6. bounded error bodies
def test_validation_errors_never_echo_their_input(live, outside):
    with live.client() as client:
        refusals = Refusals(client, outside)
        big = "A" * 900_000
        refusals.expect(client.post("/attempts", json={"name": big}), 422, ("body", "name"))
        refusals.expect(client.post("/train", json={"params": {"lopt_path": big}}), 422)
        refusals.expect(client.post("/attempts", json={"name": "ok", big[:5000]: 1}), 422)
        for depth in (40, 600, 5000):
            nested = "[" * depth + "]" * depth
            text = '{"name": "atk-deep", "command": {"config": {"x": ' + nested + "}}}"
            response = client.post("/attempts", content=text, headers={"Content-Type": "application/json"})
            refusals.expect(response, 422)
        # Many errors at once: the answer lists a few.
        many = {"name": "atk-many", **{f"extra{i}": i for i in range(5000)}}
        body = refusals.expect(client.post("/attempts", json=many), 422)
        assert len(body["detail"]) <= 10
        refusals.expect(
            client.post("/attempts", content="{" * 200_000, headers={"Content-Type": "application/json"}), 422
        )
        refusals.nothing_changed()


# --------------------------------------------------------------------------- 7. Last-Event-ID
def test_last_event_id_is_validated(live, service_data, outside):
    with live.client() as client:
        assert client.post("/attempts", json={"name": "atk-events", "status": "completed"}).status_code == 201
        refusals = Refusals(client, outside)
        for value in ("9" * 20, "-1", "abc", "1e9", str(10**9 + 1), "1" * 33, "3x"):
            with live.client(token=None) as anonymous:
                response = anonymous.get("/attempts/atk-events/events", headers={"Last-Event-ID": value})
            refusals.expect(response, 422)
        with client.stream("GET", "/attempts/atk-events/events", headers={"Last-Event-ID": "3"}) as stream:
            assert stream.status_code == 200
            assert "event: end" in "".join(stream.iter_text())
        refusals.nothing_changed()


# ------------------------------------------------------------------------------ 11. param bounds
@pytest.mark.parametrize(
    "params",
    [
        {"meta_steps": 2**63},
        {"meta_steps": 10**8},
        {"k_support": 10**9},
        {"k_query": 10**9},
        {"eval_tasks": 10**9},
        {"inner_steps": 10**6},
        {"meta_batch_size": 10**6},
        {"inner_lr": 1e308},
        {"meta_lr": 1e30},
        {"seed": 2**64},
        {"n_way": 10**7},
        {"lopt_hidden": 10**6},
        {"lopt_path": "a" * 500_000},
        {"algorithm": "x" * 500_000},
    ],
)
def test_params_beyond_their_bounds_are_refused(live, service_data, outside, params):
    with live.client() as client:
        refusals = Refusals(client, outside)
        response = client.post("/train", json={"config": config_with(service_data), "params": params})
        refusals.expect(response, 422, ("body", "params"))
        refusals.nothing_changed()


# -------------------------------------------------------------------------------------- 12. PATCH
def test_patch_is_bounded_and_follows_the_attempts_life(live, outside):
    with live.client() as client:
        assert client.post("/attempts", json={"name": "atk-patch"}).status_code == 201
        refusals = Refusals(client, outside)
        refusals.expect(client.patch("/attempts/atk-patch", json={"error": "x" * 20_000_000}), 413)
        refusals.expect(
            client.patch("/attempts/atk-patch", json={"metrics": {f"m{i}": 1.0 for i in range(100_000)}}), 413
        )
        refusals.expect(client.patch("/attempts/atk-patch", json={"metrics": {f"m{i}": 1.0 for i in range(101)}}), 422)
        refusals.expect(client.patch("/attempts/atk-patch", json={"metrics": {"k" * 65: 1.0}}), 422)
        refusals.expect(client.patch("/attempts/atk-patch", json={"error": "x" * 10_001}), 422)
        refusals.expect(
            client.patch("/attempts/atk-patch", json={"artefacts": {f"a{i}": "/x" for i in range(33)}}), 422
        )
        assert client.patch("/attempts/atk-patch", json={"status": "running"}).status_code == 200
        assert client.patch("/attempts/atk-patch", json={"status": "completed"}).status_code == 200
        for status in ("running", "queued", "failed", "cancelled"):
            refusals.expect(client.patch("/attempts/atk-patch", json={"status": status}), 409, text="completed")
        stored = client.get("/attempts/atk-patch")
        assert stored.json()["status"] == "completed" and len(stored.content) < 4096
        refusals.nothing_changed()


# ------------------------------------------------------------------------- 13. token before body
def test_authentication_comes_before_validation(live, outside):
    with live.client(token=None) as anonymous, live.client(token="wrong") as wrong:
        refusals = Refusals(anonymous, outside)
        for client in (anonymous, wrong):
            for method, path, content in (
                ("POST", "/train", "{}"),
                ("POST", "/train", "{not json"),
                ("POST", "/test", '{"model": 1}'),
                ("POST", "/attempts", '{"name": "' + "x" * 2_000_000 + '"}'),
                ("PATCH", "/attempts/1", "[" * 10_000),
                ("POST", "/attempts/1/resume", ""),
                ("POST", "/no-such-route", "{}"),
            ):
                response = client.request(method, path, content=content, headers={"Content-Type": "application/json"})
                refusals.expect(response, 401)
                assert response.headers["www-authenticate"] == "Bearer"
        refusals.nothing_changed()


def test_a_hub_id_that_names_a_local_folder_is_refused(live, service_data, outside):
    """datasets and transformers read a local folder before the hub: owner/name beside the API is a path."""
    local = live.root / "owner" / "name"
    local.mkdir(parents=True, exist_ok=True)
    try:
        with live.client() as client:
            refusals = Refusals(client, outside)
            config = config_with(service_data, data__path="owner/name", data__format="hf")
            refusals.expect(client.post("/train", json={"name": "atk-local-hub", "config": config}), 422)
            refusals.nothing_changed()
    finally:
        shutil.rmtree(live.root / "owner")


def test_the_attack_suite_leaves_the_service_healthy(live):
    with live.client() as client:
        assert client.get("/health").json()["status"] == "ok"
        wait_for(lambda: client.get("/attempts").status_code == 200, 5, what="the list")
