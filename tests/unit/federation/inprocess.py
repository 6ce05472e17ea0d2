# SPDX-License-Identifier: AGPL-3.0-only
"""An in-process Flower grid: Mercato's real ClientApp (with its mods) answers the real
ServerApp code's messages in this process.

Only the transport is replaced: every message and reply goes through Flower's own
protobuf serialisation, as it would over gRPC, and every reply the coordinator receives
is recorded for inspection. A node listed in `dropped` for a round answers nothing in
that round (as a SuperNode that went away would not); while `silent_calls` is above 0,
a call is answered by no node (as after a SuperLink restart, before the SuperNodes are
back).
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.app.error import Error
from flwr.clientapp import ClientApp
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

RUN_ID = 7


@contextmanager
def server_identity() -> Iterator[None]:
    """The identity Flower's runtime gives a ServerApp process (messages need it)."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = RUN_ID, 0, 1
    try:
        yield
    finally:
        TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def _wire(message: Message) -> Message:
    return message_from_proto(message_to_proto(message))


class InProcessGrid(Grid):
    """A grid whose nodes are ClientApp calls with one persistent Context each."""

    def __init__(self, app: ClientApp, node_configs: dict[int, dict[str, Any]]) -> None:
        self.app = app
        self.contexts = {
            node: Context(RUN_ID, node, dict(config), RecordDict(), {})
            for node, config in node_configs.items()
        }
        self.dropped: dict[str, set[int]] = {}  # group id (round) -> silent nodes
        self.silent_calls = 0  # the next calls answered by no node (nodes reconnecting)
        self.received: list[Message] = []  # every reply the coordinator got
        self._ids = itertools.count(1)

    def set_run(self, run_id: int) -> None:  # type: ignore[override]
        """Not used: one run."""

    @property
    def run(self) -> Any:
        """The run (only its id is read)."""
        return SimpleNamespace(run_id=RUN_ID)

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        """Not used by the code under test."""
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        """The nodes (connected or not)."""
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Not used: send_and_receive answers at once."""
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Not used: send_and_receive answers at once."""
        raise NotImplementedError

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Deliver each message to its node's ClientApp and collect the replies."""
        if self.silent_calls > 0:
            self.silent_calls -= 1
            return []
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            if node in self.dropped.get(message.metadata.group_id, set()):
                continue
            delivered = _wire(message)
            delivered.metadata.__dict__["_message_id"] = f"m{next(self._ids)}"
            try:
                reply = self.app(delivered, self.contexts[node])
            except Exception:
                reply = Message(Error(code=1, reason=traceback.format_exc()), reply_to=delivered)
            reply = _wire(reply)
            self.received.append(reply)
            replies.append(reply)
        return replies
