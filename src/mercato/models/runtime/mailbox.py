# SPDX-License-Identifier: AGPL-3.0-only
"""Handing items from other threads to an event loop, one loop wake-up per burst."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class LoopMailbox(Generic[T]):
    """Items on their way to one event loop, delivered there in bursts.

    Any thread may `post`; only the first post before the loop drains the box schedules
    a drain, so a burst of posts wakes the loop once and `deliver` gets them all, in
    order, on the loop's thread. The try pool uses one to hand calls to its engine and
    one per caller loop to hand finished calls back.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[list[T]], None]) -> None:
        self.loop = loop
        self._deliver = deliver
        self._lock = threading.Lock()
        self._posted: list[T] = []
        self._scheduled = False

    def post(self, item: T) -> None:
        """Queue `item` for `deliver` on the loop (thread-safe)."""
        with self._lock:
            self._posted.append(item)
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop was closed: nobody waits
            self.loop.call_soon_threadsafe(self._drain)

    def __len__(self) -> int:
        return len(self._posted)

    def _drain(self) -> None:
        with self._lock:
            posted, self._posted = self._posted, []
            self._scheduled = False
        self._deliver(posted)


Outcome = tuple["asyncio.Future[Any]", Any, "BaseException | None"]


def settle(outcomes: list[Outcome]) -> None:
    """Settle each future with its error if given, else its result (on its loop).

    A future whose caller gave up (cancelled) is skipped.
    """
    for future, result, error in outcomes:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
