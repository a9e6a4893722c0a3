from __future__ import annotations

import pytest

from .. import synthetic
from .live import LiveService, wait_for

# Tiny runs: a step takes a fraction of a second on the synthetic BERT.
TINY_PARAMS = {
    "meta_steps": 6,
    "meta_batch_size": 2,
    "k_support": 4,
    "k_query": 8,
    "inner_steps": 2,
    "inner_batch_size": 8,
    "inner_lr": 1e-3,
    "eval_every": 3,
    "eval_tasks": 2,
    "eval_inner_steps": 2,
    "checkpoint_every": 0,
    "max_length": 32,
    "seed": 0,
}


@pytest.fixture(scope="session")
def service_data(tmp_path_factory, tiny_model_dir):
    """Data and model the service may read: a synthetic review JSON and the tiny BERT."""
    root = tmp_path_factory.mktemp("service-data")
    return {"root": root, "reviews": synthetic.write_review_json(root / "reviews.json"), "model": tiny_model_dir}


def train_body(service_data, name: str | None = None, **params) -> dict:
    body = {
        "config": {
            "data": {
                "format": "review_json",
                "path": str(service_data["reviews"]),
                "test_domains": ["domain6", "domain7"],
                "validation_domains": ["domain5"],
            },
            "model": {"name_or_path": str(service_data["model"])},
        },
        "params": {**TINY_PARAMS, **params},
    }
    if name:
        body["name"] = name
    return body


@pytest.fixture(scope="session")
def live(tmp_path_factory, service_data):
    """The service with one worker, shared by the tests of this folder (starting one takes seconds)."""
    service = LiveService(tmp_path_factory.mktemp("service"), [service_data["root"], service_data["model"]])
    try:
        service.start()
        yield service
    finally:
        service.stop()


def wait_finished(client, attempt_id: int, timeout: float = 120) -> dict:
    def finished():
        attempt = client.get(f"/attempts/{attempt_id}").json()
        return attempt if attempt["status"] in ("completed", "failed", "cancelled") else None

    return wait_for(finished, timeout, interval=0.3, what=f"attempt {attempt_id} to finish")


def pytest_terminal_summary(terminalreporter):
    from .tally import summary

    lines = summary()
    if lines:
        terminalreporter.section("service: attacks, faults, load")
        for line in lines:
            terminalreporter.write_line(line)
