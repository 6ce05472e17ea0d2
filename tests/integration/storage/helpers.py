# SPDX-License-Identifier: AGPL-3.0-only
"""Helpers for the storage integration tests: a real uvicorn server, test data."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from mercato.chain.anvil import free_port


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve `app` over TCP; yield its base URL; stop the server on exit."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def pseudo_random(size: int, seed: bytes = b"mercato") -> bytes:
    """Deterministic bytes that do not compress or repeat (sha256 in counter mode)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])
