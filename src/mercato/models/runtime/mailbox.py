# SPDX-License-Identifier: AGPL-3.0-only
"""Handing finished try-calls from the pool's dispatcher threads to an event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopMailbox(Generic[T]):
    """Outcomes on their way to one event loop's futures.

    A dispatcher finishing a batch posts each call's outcome here; only the first post
    before the loop drains the box schedules a drain, so a batch wakes the loop once,
    not once per call.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._posted: list[tuple[asyncio.Future[T], T | None, BaseException | None]] = []
        self._scheduled = False

    def post(
        self, future: asyncio.Future[T], result: T | None, error: BaseException | None
    ) -> None:
        """Settle `future` on the loop with `error` if given, else `result` (thread-safe)."""
        with self._lock:
            self._posted.append((future, result, error))
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop was closed: nobody waits
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            posted, self._posted = self._posted, []
            self._scheduled = False
        for future, result, error in posted:
            if future.cancelled():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]
