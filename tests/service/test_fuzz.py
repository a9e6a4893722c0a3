"""Property-based fuzzing of the live API from its own OpenAPI schema: no input makes it answer 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from .live import LiveService

EXAMPLES_PER_OPERATION = 20
# Bodies whose validity the schema does not express: a config and params are checked by kshot's own
# config classes (known keys, types, ranges), paths must lie under the server's allowed roots, and a
# test names an attempt that must exist, a tune request's space is checked against Params and a study
# named alone must exist. A 422 for a schema-valid body is right there.
RUNTIME_CHECKED = ("POST /train", "POST /test", "POST /attempts", "POST /tune")


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory, service_data):
    # A server of its own and no worker: a valid fuzzed /train request queues a job that never runs.
    service = LiveService(tmp_path_factory.mktemp("fuzz"), [service_data["root"], service_data["model"]])
    try:
        yield service.start(worker=False)
    finally:
        service.stop()


def _fuzz(operation, headers: dict) -> None:
    excluded = [positive_data_acceptance] if operation.label in RUNTIME_CHECKED else []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def fuzz(case):
        response = case.call(headers=headers, timeout=30)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
        )
        # Every answer matches what the schema documents (status code, body shape, content type).
        case.validate_response(response, headers=headers, excluded_checks=excluded)

    fuzz()


def test_no_request_makes_the_api_fail(fuzz_service):
    # The event stream stays open while its attempt runs: a fuzzed 'running' attempt would never end it.
    schema = schemathesis.openapi.from_url(f"{fuzz_service.url}/openapi.json").exclude(path_regex=r"/events$")
    headers = {"Authorization": f"Bearer {fuzz_service.token}"}
    tested, failures = [], []
    for result in schema.get_all_operations():
        operation = result.ok()
        try:
            _fuzz(operation, headers)
        except Exception as err:  # collect every operation's failure, not only the first
            failures.append(f"{operation.label}: {err}")
        tested.append(operation.label)
    assert {
        "POST /train",
        "POST /test",
        "PATCH /attempts/{key}",
        "POST /attempts/{key}/resume",
        "GET /attempts",
        "POST /tune",
        "GET /studies/{name}",
    } <= set(tested)
    assert not failures, "\n\n".join(failures)
