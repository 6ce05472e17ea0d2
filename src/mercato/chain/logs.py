# SPDX-License-Identifier: AGPL-3.0-only
"""Reading contract logs from providers that cap, throttle and drop `eth_getLogs`.

Hosted JSON-RPC providers refuse a block range wider than their cap (often 2,000 to
10,000 blocks) or an answer with too many results, answer HTTP 429 when called too
often, and drop connections. `LogFetcher` asks for at most `max_range` blocks at a
time; when a provider refuses a range as too large it halves the range and asks
again, and after a run of successes it doubles it back towards `max_range`. A
transient failure (429, 5xx, a dropped connection, a timeout) is retried with
exponential back-off and jitter, a bounded number of times per range, then becomes a
typed error. Pages come out in block order, each covering a whole range, so a caller
that stops anywhere resumes after the last page it finished.

    fetcher = LogFetcher(w3, max_range=5_000)
    for page in fetcher.pages({"address": [...]}, 100, 90_000):
        handle(page.logs)            # raw JSON-RPC entries, in order
        cursor = page.last           # everything up to here is done
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3._utils.filters import construct_event_filter_params
from web3.datastructures import AttributeDict
from web3.types import EventData

from mercato.chain.retry import (
    RetryPolicy,
    http_status,
    is_rate_limit_error,
    is_transient_exception,
    retry_after_seconds,
)
from mercato.errors import LogQueryError, RpcAnswerTooLargeError, RpcRetryExhaustedError

DEFAULT_MAX_RANGE = 5_000
# Consecutive answered ranges before the range doubles again towards max_range.
GROW_AFTER = 4
# How providers word "this range or answer is too big" (Infura, Alchemy, QuickNode,
# Ankr, geth, Erigon, reth, Nethermind); the code alone is ambiguous (-32005, -32602).
_TOO_LARGE = re.compile(
    r"block range|range (is )?too|too (large|wide|big)|more than \d+ results|"
    r"too many (results|logs|blocks)|response size|limited to|max(imum)? (block )?range|"
    r"exceeds? (the )?(max|limit|range)|result window|query timeout|range exceed|"
    r"returned more than|size exceeded",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class LogPage:
    """The logs of one whole block range, in order.

    Attributes:
        first: The range's first block.
        last: Its last block: a caller that finished this page resumes at last + 1.
        logs: Raw `eth_getLogs` entries (hex strings, as JSON-RPC returns them).
    """

    first: int
    last: int
    logs: list[dict[str, Any]]


class _RangeTooLarge(Exception):
    """The provider refused this range or its answer as too large (never escapes)."""


class LogFetcher:
    """Fetches logs in ranges the provider accepts, remembering what it learned.

    One fetcher per connection: the range it settles on carries over to the next call,
    so a provider capped at 100 blocks is not asked for 5,000 again every poll.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        max_range: int = DEFAULT_MAX_RANGE,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Binds a fetcher to a connection.

        Args:
            w3: The connection; its provider's own retries are bypassed when it offers
                `make_request_once` (this fetcher retries, and retries must not multiply).
            max_range: Most blocks asked for in one request.
            retry: How transient failures are retried; None uses the defaults.

        Raises:
            ValueError: `max_range` is below 1.
        """
        if max_range < 1:
            raise ValueError(f"max_range must be at least 1, not {max_range}")
        self.w3 = w3
        self.max_range = max_range
        self.span = max_range
        self.retry = retry or RetryPolicy()
        self._successes = 0
        provider = w3.provider
        self._send: Callable[..., Any] = getattr(
            provider, "make_request_once", provider.make_request
        )

    def pages(self, params: dict[str, Any], first: int, last: int) -> Iterator[LogPage]:
        """The logs matching `params` from block `first` to `last`, one range at a time.

        Args:
            params: An `eth_getLogs` filter without block numbers (address, topics).
            first: First block (inclusive).
            last: Last block (inclusive); nothing is yielded when it is below `first`.

        Yields:
            Consecutive pages covering [first, last] in order.

        Raises:
            RpcRetryExhaustedError: The provider kept failing (rate limit, server error,
                dropped connection) through every retry for one range.
            LogQueryError: The provider refused the query for another reason, or
                refused even a single block's logs as too large.
        """
        start = first
        while start <= last:
            end = min(start + self.span - 1, last)
            try:
                logs = self._fetch(params, start, end)
            except _RangeTooLarge as exc:
                if end == start:
                    raise LogQueryError(start, end, str(exc)) from exc
                self.span = max(1, (end - start + 1) // 2)
                self._successes = 0
                continue
            yield LogPage(start, end, logs)
            start = end + 1
            self._successes += 1
            if self._successes >= GROW_AFTER and self.span < self.max_range:
                self.span = min(self.max_range, self.span * 2)
                self._successes = 0

    def get(self, params: dict[str, Any], first: int, last: int) -> list[dict[str, Any]]:
        """Every log of `pages(...)` in one list (same arguments and errors)."""
        return [log for page in self.pages(params, first, last) for log in page.logs]

    def _fetch(self, params: dict[str, Any], first: int, last: int) -> list[dict[str, Any]]:
        query = {**params, "fromBlock": hex(first), "toBlock": hex(last)}
        detail = ""
        retry_after: float | None = None
        for attempt in range(self.retry.attempts):
            if attempt:
                self.retry.sleep(self.retry.delay(attempt - 1, retry_after))
            retry_after = None
            try:
                response = self._send("eth_getLogs", [query])
            except RpcAnswerTooLargeError as exc:
                raise _RangeTooLarge(str(exc)) from exc
            except (requests.RequestException, OSError) as exc:
                if http_status(exc) == 413:  # the answer was too big to send
                    raise _RangeTooLarge(f"HTTP 413 for blocks {first}-{last}") from exc
                if not is_transient_exception(exc):
                    raise LogQueryError(first, last, _describe(exc)) from exc
                detail = _describe(exc)
                retry_after = retry_after_seconds(exc)
                continue
            error = response.get("error") if isinstance(response, dict) else None
            if error is None:
                result = response.get("result") if isinstance(response, dict) else None
                if not isinstance(result, list):
                    raise LogQueryError(first, last, "the provider answered no list of logs")
                return result
            if is_rate_limit_error(error):
                detail = f"rate limited: {_error_text(error)}"
                continue
            if _TOO_LARGE.search(_error_text(error)):
                raise _RangeTooLarge(_error_text(error))
            raise LogQueryError(first, last, _error_text(error))
        raise RpcRetryExhaustedError(
            "eth_getLogs", self.retry.attempts, detail, rpc_url=_endpoint(self.w3)
        )


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('message', '')} (code {error.get('code')})"
    return str(error)


def _describe(exc: BaseException) -> str:
    status = http_status(exc)
    return f"HTTP {status}" if status is not None else type(exc).__name__


def _endpoint(w3: Web3) -> str:
    return str(getattr(w3.provider, "endpoint_uri", "") or "")


_fetchers: weakref.WeakKeyDictionary[Web3, LogFetcher] = weakref.WeakKeyDictionary()
_fetchers_lock = threading.Lock()


def fetcher_for(w3: Web3) -> LogFetcher:
    """The shared `LogFetcher` of a connection (what it learned about ranges is kept)."""
    with _fetchers_lock:
        fetcher = _fetchers.get(w3)
        if fetcher is None:
            fetcher = _fetchers[w3] = LogFetcher(w3)
        return fetcher


def get_logs(
    w3: Web3,
    params: dict[str, Any],
    first: int,
    last: int,
    *,
    max_range: int | None = None,
) -> list[dict[str, Any]]:
    """Raw logs matching `params` in [first, last], through the connection's fetcher.

    Args:
        w3: The connection.
        params: An `eth_getLogs` filter without block numbers.
        first: First block (inclusive).
        last: Last block (inclusive).
        max_range: Most blocks per request; None shares the connection's fetcher
            (and the range it learned), a number uses a fetcher of its own.

    Returns:
        Raw JSON-RPC log entries in chain order.

    Raises:
        RpcRetryExhaustedError: The provider kept failing through every retry.
        LogQueryError: The provider refused the query.
    """
    fetcher = fetcher_for(w3) if max_range is None else LogFetcher(w3, max_range=max_range)
    return fetcher.get(params, first, last)


def event_logs(
    event: Any,
    first: int,
    last: int | None = None,
    **argument_filters: Any,
) -> list[EventData]:
    """Decoded logs of one contract event, as web3's `get_logs` gives them.

    Args:
        event: A bound contract event class (`contract.events.Purchased`).
        first: First block (inclusive).
        last: Last block (inclusive); None is the current head.
        **argument_filters: Indexed arguments are filtered by the provider, the others
            here after decoding.

    Returns:
        The decoded events in chain order.

    Raises:
        RpcRetryExhaustedError: The provider kept failing through every retry.
        LogQueryError: The provider refused the query.
    """
    w3 = event.w3
    abi = event._get_event_abi()
    indexed = {i["name"] for i in abi["inputs"] if i.get("indexed")}
    now = {k: v for k, v in argument_filters.items() if k in indexed}
    later = {k: v for k, v in argument_filters.items() if k not in indexed}
    _, params = construct_event_filter_params(
        abi, w3.codec, contract_address=event.address, argument_filters=now
    )
    if last is None:
        last = int(w3.eth.block_number)
    found = []
    for raw in get_logs(w3, dict(params), first, last):
        decoded = event().process_log(format_log(raw))
        if all(_same(decoded["args"][k], v) for k, v in later.items()):
            found.append(decoded)
    return found


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(value, str) and isinstance(wanted, str):
        return value.lower() == wanted.lower()
    return bool(value == wanted)


def format_log(raw: dict[str, Any]) -> AttributeDict[str, Any]:
    """A raw JSON-RPC log entry in the shape web3's event decoding takes."""
    return AttributeDict(
        {
            "address": to_checksum_address(raw["address"]),
            "topics": [HexBytes(topic) for topic in raw["topics"]],
            "data": HexBytes(raw["data"]),
            "blockNumber": int(raw["blockNumber"], 16),
            "blockHash": HexBytes(raw["blockHash"]),
            "transactionHash": HexBytes(raw["transactionHash"]),
            "transactionIndex": int(raw["transactionIndex"], 16),
            "logIndex": int(raw["logIndex"], 16),
            "removed": bool(raw.get("removed", False)),
        }
    )
