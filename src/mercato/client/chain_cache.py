# SPDX-License-Identifier: AGPL-3.0-only
"""What the chain said at its latest block, kept until the next block.

A try call needs the model's owner, its latest version and who the owner named as
agent. Reading them costs several RPC round trips (tens of milliseconds), far more
than the inference itself. Between two blocks nothing on-chain changes, so the answer
read at one block is reused until the head moves:

- `ChainHead` knows the latest block, re-read at most every `max_age` seconds (one
  round trip whoever asks, however many calls arrive meanwhile);
- `BlockCache` keeps values computed at one head and drops all of them once another
  head is seen. Only one thread computes a key at a time; the others wait for it.

The staleness bound follows: a call that starts more than `max_age` seconds after a
block was mined is answered from that block's state or a later one (the value was
read after the head it is filed under). A new block of any content drops everything,
so no event (transfer, new version, agent change) is missed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import requests
from web3 import Web3
from web3.exceptions import Web3Exception

from mercato.errors import ChainUnavailableError

# Below the block time of the chains a node runs on (Ethereum 12 s, most L2s 2 s), so
# an answer is at most one block old; a head read every 0.2 s is nothing to the RPC.
HEAD_MAX_AGE = 0.2  # seconds
MAX_ENTRIES = 10_000  # values kept per block; every model id a client names is a key

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class BlockRef:
    """One block: its number and hash (a reorg at the same height has another hash)."""

    number: int
    hash: bytes


def read_head(w3: Web3, rpc_url: str) -> BlockRef:
    """The chain's latest block.

    Args:
        w3: A connection to the chain.
        rpc_url: Its URL, for the error message.

    Returns:
        The block.

    Raises:
        ChainUnavailableError: The RPC endpoint does not answer.
    """
    try:
        block = w3.eth.get_block("latest")
    except (requests.RequestException, Web3Exception, OSError) as exc:
        raise ChainUnavailableError(rpc_url, str(exc)) from exc
    return BlockRef(int(block["number"]), bytes(block["hash"]))


class ChainHead:
    """The latest block, re-read when the last reading is older than `max_age`."""

    def __init__(
        self,
        read: Callable[[], BlockRef],
        max_age: float = HEAD_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        Args:
            read: Reads the latest block from the chain (`read_head`).
            max_age: Seconds a reading is trusted; 0 reads the chain on every call.
            clock: A monotonic clock.
        """
        self._read = read
        self._clock = clock
        self.max_age = max_age
        # One tuple, replaced whole: a reader never pairs a new head with an old time.
        self._reading: tuple[BlockRef, float] | None = None
        self._lock = threading.Lock()  # one reader at a time; the others reuse its answer

    def fresh(self) -> BlockRef | None:
        """The head when the last reading is recent enough, else None; never reads."""
        reading = self._reading
        if reading is None or self._clock() - reading[1] >= self.max_age:
            return None
        return reading[0]

    def current(self) -> BlockRef:
        """The head, read from the chain when the last reading is too old.

        Raises:
            ChainUnavailableError: As the `read` function.
        """
        head = self.fresh()
        if head is not None:
            return head
        with self._lock:
            head = self.fresh()
            if head is not None:
                return head  # another thread read it while this one waited
            # The time before the read: the block is at least this recent.
            started = self._clock()
            head = self._read()
            self._reading = (head, started)
            return head


class BlockCache(Generic[K, V]):
    """Values computed at one block, all dropped when another block is seen."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        """
        Args:
            max_entries: Values kept for one block; past it new values are computed
                each time and not kept (a client naming many ids fills no memory).
        """
        self._max = max_entries
        self._block: BlockRef | None = None
        self._values: dict[K, V] = {}
        self._computing: dict[K, threading.Lock] = {}
        self._lock = threading.Lock()

    def peek(self, key: K, block: BlockRef) -> V | None:
        """The value kept for `key` at `block`, or None; never computes."""
        with self._lock:
            if block != self._block:
                return None
            return self._values.get(key)

    def get(self, key: K, block: BlockRef, compute: Callable[[], V]) -> V:
        """The value for `key` at `block`, computed once per block.

        Args:
            key: What is asked for.
            block: The head the caller read before calling (the value is filed under it).
            compute: Reads the value from the chain; its errors reach the caller and
                nothing is kept.

        Returns:
            The value.
        """
        with self._lock:
            if block != self._block:
                # Any other head, even a lower one (a reorg, a chain restarted): what
                # was read at the old one may no longer hold.
                self._block, self._values, self._computing = block, {}, {}
            if key in self._values:
                return self._values[key]
            if len(self._computing) >= self._max:
                computing = None
            else:
                computing = self._computing.setdefault(key, threading.Lock())
        if computing is None:
            return compute()
        with computing:
            with self._lock:
                if block == self._block and key in self._values:
                    return self._values[key]
            value = compute()
            with self._lock:
                if block == self._block and len(self._values) < self._max:
                    self._values[key] = value
            return value


__all__ = ["HEAD_MAX_AGE", "BlockCache", "BlockRef", "ChainHead", "read_head"]
