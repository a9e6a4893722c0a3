"""POST /tune through a real worker: a study's trials are queued attempts, sampled, trained, and shown by
GET /studies; bad spaces and paths are refused like POST /train's."""

from __future__ import annotations

from .conftest import train_body, wait_finished

SPACE = {"inner_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}


def test_a_study_runs_its_trials_on_the_worker_and_is_shown(live, service_data):
    body = {**train_body(service_data), "study": "svc-study", "space": SPACE, "n_trials": 2, "pruner": "none"}
    with live.client() as client:
        response = client.post("/tune", json=body)
        assert response.status_code == 202, response.text
        queued = response.json()["trials"]
        assert [t["name"] for t in queued] == ["svc-study-trial-0000", "svc-study-trial-0001"]
        assert all(t["study"] == "svc-study" and t["status"] in ("queued", "running") for t in queued)
        root = str(live.root / "runs" / "svc-study")
        assert all(t["command"]["config"]["output_dir"].startswith(root) for t in queued)
        done = [wait_finished(client, t["id"]) for t in queued]
        assert [d["status"] for d in done] == ["completed", "completed"], [d["error"] for d in done]
        assert sorted(d["trial"] for d in done) == [0, 1]
        assert all(d["command"]["params"]["test_after_train"] is False for d in done)
        assert all(1e-4 <= d["command"]["params"]["inner_lr"] <= 1e-2 for d in done)  # sampled from the space
        evaluations = client.get(f"/attempts/{done[0]['id']}/evaluations").json()
        assert {e["split"] for e in evaluations} == {"validation"}  # never the test tasks

        study = client.get("/studies/svc-study").json()
        assert [t["state"] for t in study["trials"]] == ["complete", "complete"]
        assert {t["attempt"] for t in study["trials"]} == {t["name"] for t in queued}
        assert study["best"]["value"] == max(t["value"] for t in study["trials"])
        assert all(t["intermediate"] for t in study["trials"])  # the periodic validation, as reported
        assert study["prune_by"] == "progress"  # the default: reported at per mille of meta_steps, shown at steps
        first = next(t for t in study["trials"] if t["attempt"] == done[0]["name"])
        assert [step for step, _ in first["intermediate"]] == sorted({e["step"] for e in evaluations})
        listed = {s["name"]: s for s in client.get("/studies").json()["studies"]}
        assert listed["svc-study"]["counts"] == {"complete": 2}

        # More trials of the same study: its name alone; giving a new spec for it is refused.
        more = client.post("/tune", json={"study": "svc-study", "n_trials": 1})
        assert more.status_code == 202, more.text
        assert [t["name"] for t in more.json()["trials"]] == ["svc-study-trial-0002"]
        assert client.post("/tune", json=body).status_code == 409
        assert wait_finished(client, more.json()["trials"][0]["id"])["status"] == "completed"
        # A trial is not resumed: its study has its result.
        assert client.post("/attempts/svc-study-trial-0000/resume").status_code == 409


def test_bad_tune_requests_are_refused_with_the_field(live, service_data):
    base = {**train_body(service_data), "study": "bad-study", "space": SPACE}
    with live.client() as client:
        cases = [
            ({**base, "space": {"inner_lrr": SPACE["inner_lr"]}}, "inner_lr"),
            ({**base, "space": {"lopt_path": {"type": "categorical", "choices": ["/etc/passwd"]}}}, "lopt_path"),
            ({**base, "config": {**base["config"], "data": {**base["config"]["data"], "path": "/etc/passwd"}}}, "path"),
            ({**base, "params": {**base["params"], "eval_every": 0}}, "eval_every"),
            ({**base, "n_trials": 10_000}, "n_trials"),
            ({**base, "study": "../x"}, "study"),
            ({"study": "no-such-study", "n_trials": 1}, "space"),
        ]
        for body, field in cases:
            response = client.post("/tune", json=body)
            assert response.status_code == 422, (field, response.text)
            assert field in response.text
        assert client.get("/studies/bad-study").status_code == 404  # nothing was created
        assert client.post("/tune", json=base, headers={"Authorization": "Bearer wrong"}).status_code == 401
