# SPDX-License-Identifier: AGPL-3.0-only
"""Back-off for hosted RPC providers: what is retried, how long it waits, what it shows."""

from __future__ import annotations

import random

import requests

from mercato.chain.retry import RetryPolicy, is_rate_limit_error, is_transient_exception
from mercato.errors import ChainUnavailableError, RpcRetryExhaustedError


def _http_error(status: int, retry_after: str | None = None) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return requests.HTTPError(f"{status}", response=response)


def test_a_hostile_retry_after_is_capped() -> None:
    policy = RetryPolicy(max_delay=8.0)
    assert policy.delay(0, retry_after=10**9) == 8.0
    assert policy.delay(0, retry_after=-5) == 0.0


def test_back_off_grows_with_jitter_and_stays_under_the_cap() -> None:
    policy = RetryPolicy(base_delay=0.25, max_delay=8.0, rng=random.Random(1))
    waits = [[policy.delay(retry) for _ in range(200)] for retry in range(8)]
    for retry, seen in enumerate(waits):
        assert all(0 <= w <= min(8.0, 0.25 * 2**retry) for w in seen)
        assert len(set(seen)) > 100  # jittered, not one fixed step
    assert max(waits[5]) > 4 * max(waits[0])


def test_only_transient_failures_are_retried() -> None:
    assert is_transient_exception(_http_error(429)) and is_transient_exception(_http_error(503))
    assert not is_transient_exception(_http_error(401))
    assert not is_transient_exception(_http_error(413))  # too large: split, not resend
    assert is_transient_exception(requests.ConnectionError("reset"))
    assert is_rate_limit_error(
        {"code": -32005, "message": "daily request count exceeded, request rate limited"}
    )
    assert not is_rate_limit_error(
        {"code": -32005, "message": "query returned more than 10000 results"}
    )
    assert is_rate_limit_error({"code": 429, "message": "slow down"})


def test_a_refused_connection_is_not_retried() -> None:
    # Nothing listens on port 1: no node runs there, and retrying would only delay saying so.
    try:
        requests.post("http://127.0.0.1:1", data=b"{}", timeout=5)
    except requests.ConnectionError as exc:
        assert not is_transient_exception(exc)
    else:
        raise AssertionError("a connection to port 1 was accepted")


def test_rpc_errors_do_not_show_the_urls_path_where_api_keys_live() -> None:
    error = RpcRetryExhaustedError(
        "eth_getLogs", 6, "HTTP 429", rpc_url="https://user:pw@eth.example.org/v2/SECRETKEY?k=1"
    )
    assert isinstance(error, ChainUnavailableError) and error.code == "rpc_retries_exhausted"
    assert "SECRETKEY" not in str(error) and "pw" not in str(error)
    assert "https://eth.example.org" in str(error)


def test_an_unreachable_chain_does_not_show_the_api_key_in_its_url() -> None:
    url = "https://eth.example.org/v2/SECRETKEY"
    error = ChainUnavailableError(url, "Max retries exceeded with url: /v2/SECRETKEY")
    assert "SECRETKEY" not in str(error) and "https://eth.example.org" in str(error)
    assert error.rpc_url == url  # kept for code, not printed
    local = ChainUnavailableError("http://127.0.0.1:8545", "Connection refused")
    assert "http://127.0.0.1:8545: Connection refused" in str(local)
