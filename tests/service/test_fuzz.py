"""Property-based fuzzing of every operation from the OpenAPI schema (schemathesis).

Against a real server on the committed default models: no answer is a 5xx, and every answer
(status, content type, body) conforms to the schema the service publishes.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ROOT
from tests.service.server import running_server

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def operations():
    with running_server(ROOT / "models") as (_, base):
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        yield base, [result.ok() for result in schema.get_all_operations()]


def test_the_schema_lists_every_operation(operations):
    _, ops = operations
    labels = {op.label for op in ops}
    for operation in ("encode", "decode", "reconstruct"):
        assert f"POST /v1/models/{{name}}/{operation}" in labels
        assert f"POST /v1/models/{{name}}/versions/{{version}}/{operation}" in labels


def test_every_operation_conforms_and_never_fails(operations):
    base, ops = operations
    failures, statuses = [], []
    for operation in ops:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case):
            statuses.append(case.call_and_validate(base_url=base, checks=CHECKS).status_code)

        try:
            fuzz()
        except Exception as error:  # collect every operation's first failure, then report them all
            failures.append(f"{operation.label}: {error}")
    assert not failures, "\n\n".join(failures)
    assert len(statuses) >= 5 * len(ops)  # the fuzzer really talked to the server
    assert 200 in statuses and any(400 <= s < 500 for s in statuses)
