# SPDX-License-Identifier: AGPL-3.0-only
"""Test helper: the pinned SuperNode, with everything it sends to the SuperLink recorded.

Run as `python -m tests.integration.federation.capture_supernode` with the SuperNode's
flags and CAPTURE_DIR set: every message it sends is written as a JSON line (its type and
the records it carries) and every object it pushes (the message's content, serialized)
as a file of its own, so a test can read all of it afterwards."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flwr.supernode import start_client_internal

from mercato.federation import pinning


def _describe(message: Any) -> dict[str, Any]:
    content = message.content if message.has_content() else None
    records: dict[str, Any] = {}
    if content is not None:
        for name, record in content.items():
            keys = sorted(record.keys()) if not hasattr(record, "to_numpy_ndarrays") else []
            records[name] = {"type": type(record).__name__, "keys": keys}
    return {"type": message.metadata.message_type, "records": records}


def main() -> None:
    """Wrap the connection's send and push, then run the pinned SuperNode."""
    out = Path(os.environ["CAPTURE_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    original = start_client_internal._init_connection

    @contextlib.contextmanager
    def capturing(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with original(*args, **kwargs) as conn:
            conn = list(conn)
            send, push = conn[2], conn[6]

            def recorded_send(message: Any, tree: Any, runtime: float) -> Any:
                with (out / "messages.jsonl").open("a") as log:
                    log.write(json.dumps(_describe(message)) + "\n")
                return send(message, tree, runtime)

            def recorded_push(run_id: int, session: str, object_id: str, data: bytes) -> None:
                (out / f"object-{object_id}").write_bytes(data)
                push(run_id, session, object_id, data)

            conn[2], conn[6] = recorded_send, recorded_push
            yield tuple(conn)

    start_client_internal._init_connection = capturing
    pinning.main()


if __name__ == "__main__":
    main()
