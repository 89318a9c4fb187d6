"""Schemathesis drives the real OpenAPI schema against the application, in process (WSGI, the
test database, real Redis), authenticated as the owner of a test client: every operation, valid
and invalid inputs, a bounded number of examples each so that it stays under a minute. None may
answer a server error."""
from __future__ import annotations

import contextlib

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tradingplatform.testing import bearer

EXAMPLES_PER_OPERATION = 8


@contextlib.contextmanager
def _connection_kept_across_requests():
    """The WSGI handler closes the database connection after each request (CONN_MAX_AGE=0), which
    would end the test's transaction; Django's own test client keeps it the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.django_db(transaction=False)
def test_no_operation_of_the_schema_answers_a_server_error(alpha):
    with _connection_kept_across_requests():
        _drive_the_schema(alpha)


def _drive_the_schema(alpha) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    headers = {key.removeprefix("HTTP_").title(): value for key, value in bearer(alpha.owner).items()}
    failures: list[str] = []
    answered: dict[str, set[int]] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30  # the whole API, not a schema that failed to load

    for operation in operations:
        path_parameters = {"client_id": alpha.client_id} if "{client_id}" in operation.path else None
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case):
                response = case.call(headers=headers)
                answered.setdefault(f"{case.method} {case.operation.path}", set()).add(response.status_code)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} {response.status_code}: "
                                    f"{case.body!r:.200} -> {response.text[:300]}")

            try:
                run()
            except Unsatisfiable:  # no invalid input exists (an operation without parameters)
                assert mode is GenerationMode.NEGATIVE
    assert not failures, "\n".join(failures[:20])
    # it really ran, as a member: every operation was called, and the client's reads answered
    assert len(answered) == len(operations)
    assert 200 in answered["GET /clients/{client_id}/agent/status"]
    assert 200 in answered["GET /clients/{client_id}/positions"]
