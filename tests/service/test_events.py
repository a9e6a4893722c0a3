"""Following an attempt live over server-sent events."""

from __future__ import annotations

import json

from .conftest import train_body, wait_finished


def read_events(client, path: str, headers: dict | None = None) -> list[tuple[str, dict, str | None]]:
    """(event, data, id) of every event until the stream's 'end'."""
    events, event, ident, data = [], None, None, []
    with client.stream("GET", path, headers=headers or {}, timeout=120) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            line = line.rstrip("\r")
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("id:"):
                ident = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data.append(line.split(":", 1)[1].strip())
            elif not line and event:
                events.append((event, json.loads("\n".join(data)), ident))
                if event == "end":
                    break
                event, ident, data = None, None, []
    return events


def test_events_follow_a_training_from_queued_to_completed(live, service_data):
    with live.client() as client:
        attempt = client.post("/train", json=train_body(service_data, "followed", meta_steps=12, eval_every=6)).json()
        # Subscribed while it is queued or running: every step arrives once, in order, then the end.
        events = read_events(client, f"/attempts/{attempt['id']}/events")
        steps = [data["step"] for kind, data, _ in events if kind == "step"]
        assert steps == list(range(1, 13))
        assert all(ident == str(data["step"]) for kind, data, ident in events if kind == "step")
        statuses = [data["status"] for kind, data, _ in events if kind == "status"]
        assert statuses[-1] == "completed" and len(statuses) == len(set(statuses))
        evaluations = {(data["split"], data["step"]) for kind, data, _ in events if kind == "evaluation"}
        assert {("validation", 6), ("validation", 12)} <= evaluations
        assert events[-1][0] == "end" and events[-1][1] == {"status": "completed"}

        # A reconnecting client (Last-Event-ID) gets only what it missed.
        resumed = read_events(client, "/attempts/followed/events", headers={"Last-Event-ID": "10"})
        assert [data["step"] for kind, data, _ in resumed if kind == "step"] == [11, 12]
        assert wait_finished(client, attempt["id"])["n_steps"] == 12
