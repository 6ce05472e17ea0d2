# SPDX-License-Identifier: AGPL-3.0-only
"""Fuzzing the node's HTTP API from its own OpenAPI schema: no input gives a 5xx.

Schemathesis generates requests (valid and invalid: odd strings, huge numbers, wrong
types, missing fields) for every operation the schema lists and sends them to a real
node (Anvil, index, store, gateway over HTTP). The checked property is
`not_a_server_error`: whatever the input, the node answers with a 2xx/4xx, never a 5xx.

Every operation is fuzzed; none needs to be left out, because the gateway never sends
a transaction (wallets sign those in the browser). Requests carry a signed-in session,
so routes behind sign-in are reached too; logout is fuzzed without it, so the session
outlives the run. The web pages are not in the schema and are not fuzzed here.
Examples per operation are few (`max_examples`) to keep the run near a minute on two
cores; a failure prints the request that reproduces it.
"""

from __future__ import annotations

import contextlib

import httpx
import pytest
import schemathesis
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok

from mercato.node import Node

pytestmark = pytest.mark.integration
FUZZER = Account.from_key("0x" + "44" * 32)


@pytest.fixture(scope="module")
def api_schema(demo_node: tuple[Node, str, list[int]]) -> schemathesis.BaseSchema:
    _, base, _ = demo_node
    return schemathesis.openapi.from_url(f"{base}/openapi.json")


@pytest.fixture(scope="module")
def session_headers(demo_node: tuple[Node, str, list[int]]) -> dict[str, str]:
    _, base, _ = demo_node
    with httpx.Client(base_url=base) as client:
        message = client.post("/v1/auth/nonce", json={"address": FUZZER.address}).json()
        signed = FUZZER.sign_message(encode_defunct(text=message["message"]))
        answer = client.post(
            "/v1/auth/verify",
            json={"message": message["message"], "signature": "0x" + signed.signature.hex()},
        )
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def _fuzz(operation: object, headers: dict[str, str], found: list[str]) -> None:
    """Sends `max_examples` generated requests of one operation; records each 5xx."""

    @given(case=operation.as_strategy())  # type: ignore[attr-defined]
    @settings(
        max_examples=25,
        deadline=None,  # a shared, noisy machine: time is not what this test checks
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(headers=headers, timeout=60)
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except (AssertionError, BaseExceptionGroup):  # schemathesis's FailureGroup
            found.append(f"{case.method} {case.formatted_path}: {case.as_curl_command()}")
            raise

    # Hypothesis re-raises the smallest failing case; it is recorded in `found` already,
    # and the other operations are still fuzzed.
    with contextlib.suppress(AssertionError, BaseExceptionGroup):
        run()


def test_no_request_makes_the_node_fail(
    api_schema: schemathesis.BaseSchema, session_headers: dict[str, str]
) -> None:
    found: list[str] = []
    results = list(api_schema.get_all_operations())
    broken = [r.err() for r in results if isinstance(r, Err)]
    assert not broken, broken  # every operation of the schema can be fuzzed
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert len(operations) >= 15  # the schema lists the whole API
    for operation in operations:
        # Logout goes without the session, so the session outlives the run.
        headers = {} if operation.path == "/v1/auth/logout" else session_headers
        _fuzz(operation, headers, found)
    assert not found, "\n".join(found)
