# SPDX-License-Identifier: AGPL-3.0-only
"""Running a coroutine to completion from a test, whatever loop the test thread has.

Playwright's sync API (the e2e tests) leaves an event loop running in the main thread
for the rest of the session, and `asyncio.run` refuses to start inside a running loop;
a short-lived thread gets a loop of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coroutine)` in a fresh thread; returns its result or raises its error."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-loop") as executor:
        return executor.submit(asyncio.run, coroutine).result()
