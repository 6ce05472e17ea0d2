# SPDX-License-Identifier: AGPL-3.0-only
"""Finished try-calls reach an event loop's futures, one wake-up per burst."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mercato.errors import InferenceRunError
from mercato.models.runtime.mailbox import LoopMailbox, Outcome, settle
from tests.event_loop import run


class _CountingMailbox(LoopMailbox[Outcome]):
    drains = 0

    def _drain(self) -> None:
        self.drains += 1
        super()._drain()


def test_a_burst_of_outcomes_wakes_the_loop_once_and_settles_every_future() -> None:
    async def scenario() -> tuple[list[object], int]:
        loop = asyncio.get_running_loop()
        mailbox = _CountingMailbox(loop, settle)
        futures = [loop.create_future() for _ in range(4)]
        cancelled = loop.create_future()
        cancelled.cancel()

        def dispatcher() -> None:  # posts from another thread, as the pool's engine does
            mailbox.post((futures[0], 10, None))
            mailbox.post((futures[1], 11, None))
            mailbox.post((cancelled, 99, None))  # its caller gave up: dropped quietly
            mailbox.post((futures[2], None, InferenceRunError("the model failed")))
            mailbox.post((futures[3], 13, None))

        thread = threading.Thread(target=dispatcher)
        thread.start()
        thread.join()  # all five posted before the loop runs again
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        return outcomes, mailbox.drains

    outcomes, drains = run(scenario())
    assert outcomes[0:2] == [10, 11] and outcomes[3] == 13
    assert isinstance(outcomes[2], InferenceRunError)
    assert drains == 1


def test_posting_to_a_closed_loop_is_harmless() -> None:
    loop = asyncio.new_event_loop()
    future: asyncio.Future[int] = loop.create_future()
    mailbox: LoopMailbox[Outcome] = LoopMailbox(loop, settle)
    loop.close()
    mailbox.post((future, 1, None))  # nobody waits any more; must not raise
    assert not future.done()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon_threadsafe(lambda: None)  # the loop really is closed
