# SPDX-License-Identifier: AGPL-3.0-only
"""What the chain said at one block, reused until the next (`mercato.client.chain_cache`).

The head and the values are plain callables here, with a hand-turned clock: these tests
check what is reused and when, not how fast; the try provider on a real chain is in
`tests/integration/gateway/test_try_cache.py`.
"""

from __future__ import annotations

import pytest

from mercato.client.chain_cache import BlockCache, BlockRef, ChainHead
from mercato.client.provider import _refusal
from mercato.errors import (
    ChainUnavailableError,
    ContentKeyMissingError,
    ContentKeyNotBoundError,
    ModelNotFoundError,
)

A = BlockRef(10, b"\xaa" * 32)
B = BlockRef(11, b"\xbb" * 32)
A_REORGED = BlockRef(10, b"\xcc" * 32)  # the same height, another block


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Chain:
    """A head that moves when told, counting how often it is read."""

    def __init__(self, head: BlockRef) -> None:
        self.head = head
        self.reads = 0

    def read(self) -> BlockRef:
        self.reads += 1
        return self.head


def test_the_head_is_read_once_while_fresh_and_again_once_older_than_max_age() -> None:
    clock, chain = Clock(), Chain(A)
    head = ChainHead(chain.read, max_age=1.0, clock=clock)

    assert head.fresh() is None  # never read: nothing to trust
    assert head.current() == A
    clock.now += 0.5
    chain.head = B  # a block the node has not looked for yet
    assert (head.current(), head.fresh(), chain.reads) == (A, A, 1)
    clock.now += 0.5
    assert head.fresh() is None
    assert (head.current(), chain.reads) == (B, 2)


def test_a_max_age_of_zero_reads_the_head_on_every_call() -> None:
    chain = Chain(A)
    head = ChainHead(chain.read, max_age=0, clock=Clock())
    for _ in range(3):
        head.current()
    assert chain.reads == 3


def test_the_age_of_a_head_counts_from_before_it_was_read() -> None:
    # A slow answer is a reading of the chain as it was when it was asked.
    clock = Clock()

    def slow_read() -> BlockRef:
        clock.now += 0.75
        return A

    head = ChainHead(slow_read, max_age=1.0, clock=clock)
    head.current()
    clock.now += 0.25
    assert head.fresh() is None


def test_a_value_is_computed_once_per_block_and_dropped_when_the_head_moves() -> None:
    cache: BlockCache[int, str] = BlockCache()
    computed: list[str] = []

    def owner(name: str) -> str:
        computed.append(name)
        return name

    assert cache.get(1, A, lambda: owner("alice")) == "alice"
    assert cache.get(1, A, lambda: owner("mallory")) == "alice"
    assert cache.peek(1, A) == "alice"
    assert cache.peek(1, B) is None  # never served to a caller at another head
    assert cache.get(1, B, lambda: owner("bob")) == "bob"
    assert cache.peek(1, A) is None
    assert computed == ["alice", "bob"]


def test_another_block_at_the_same_height_drops_the_values() -> None:
    cache: BlockCache[int, str] = BlockCache()
    cache.get(1, A, lambda: "before the reorg")
    assert cache.get(1, A_REORGED, lambda: "after the reorg") == "after the reorg"
    # A lower head (a chain restarted, a snapshot reverted) drops them too.
    assert cache.get(1, BlockRef(3, b"\x01" * 32), lambda: "restarted") == "restarted"


def test_a_failed_reading_is_not_kept() -> None:
    cache: BlockCache[int, str] = BlockCache()

    def unreachable() -> str:
        raise ChainUnavailableError("http://127.0.0.1:1", "connection refused")

    with pytest.raises(ChainUnavailableError):
        cache.get(1, A, unreachable)
    assert cache.peek(1, A) is None
    assert cache.get(1, A, lambda: "alice") == "alice"


def test_past_the_entry_limit_values_are_computed_and_not_kept() -> None:
    cache: BlockCache[int, int] = BlockCache(max_entries=2)
    for model_id in range(5):
        assert cache.get(model_id, A, lambda m=model_id: m * 10) == model_id * 10  # type: ignore[misc]
    assert [cache.peek(m, A) for m in range(5)] == [0, 10, None, None, None]


@pytest.mark.parametrize(
    "error",
    [
        ContentKeyNotBoundError("bafy-victim", 7, 2, "0x" + "ab" * 20),
        ContentKeyMissingError("bafy-missing"),
        ModelNotFoundError(99),
    ],
)
def test_a_kept_refusal_raises_a_new_error_with_the_same_data_each_time(
    error: ContentKeyMissingError | ModelNotFoundError,
) -> None:
    rebuild = _refusal(error)
    assert rebuild is not None
    first, second = rebuild(), rebuild()
    assert first is not second  # one instance raised from many threads shares a traceback
    assert type(first) is type(error)
    assert (first.code, str(first), vars(first)) == (error.code, str(error), vars(error))


def test_only_refusals_are_kept() -> None:
    assert _refusal(ChainUnavailableError("http://127.0.0.1:1", "refused")) is None
