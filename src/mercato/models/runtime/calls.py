# SPDX-License-Identifier: AGPL-3.0-only
"""One try-call on its way through the pool, and the result its caller gets."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np

from mercato.errors import InferenceRunError
from mercato.models.runtime.tensors import encode_outputs


class TryResult(NamedTuple):
    """The outputs of one try-call (immutable; a named tuple, cheap to make per call).

    Attributes:
        model: The model's name.
        outputs: Outputs by name: NumPy arrays for tensors; for sequence and map
            outputs (a ZipMap's probabilities), the lists and dicts ONNX Runtime gives.
        elapsed_ms: Time `session.run` took in the worker.
    """

    model: str
    outputs: dict[str, Any]
    elapsed_ms: float

    def to_json(self) -> bytes:
        """Encode as the JSON response of `TryPool.run_json`.

        Returns:
            UTF-8 JSON.
        """
        return encode_outputs(self.model, self.outputs, self.elapsed_ms)


class Call:
    """One queued try-call and, once served, its outcome.

    A blocking caller waits on a lock the call holds until it is finished (cheaper than
    an Event: one futex, no Condition). An async caller on the engine's own loop passes
    its `future`, which the engine settles directly; one on another loop passes `on_done`,
    which the engine calls with the finished call.
    """

    __slots__ = (
        "_unfinished",
        "arrays",
        "error",
        "finished",
        "future",
        "key",
        "model",
        "names",
        "nbytes",
        "on_done",
        "path",
        "queued_at",
        "result",
        "rows",
    )

    def __init__(
        self,
        model: str,
        key: str,
        path: str,
        arrays: dict[str, np.ndarray],
        names: list[str] | None,
        rows: int,
        on_done: Callable[[Call], None] | None = None,
        future: asyncio.Future[TryResult] | None = None,
    ) -> None:
        self.model = model
        self.key = key
        self.path = path
        self.arrays = arrays
        self.names = names
        self.rows = rows
        nbytes = 0
        for array in arrays.values():
            nbytes += getattr(array, "nbytes", 0)
        self.nbytes = nbytes
        self.queued_at = time.monotonic()
        self.result: TryResult | None = None
        self.error: BaseException | None = None
        self.finished = False
        self.on_done = on_done
        self.future = future
        self._unfinished: threading.Lock | None = None
        if on_done is None and future is None:  # a blocking caller will wait on it
            self._unfinished = threading.Lock()
            self._unfinished.acquire()

    def finish(self, result: TryResult | None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.arrays = {}  # the inputs are not needed any more
        self.finished = True
        future = self.future
        if future is not None:
            if not future.done():  # done: its caller gave up (cancelled)
                if result is not None:
                    future.set_result(result)
                else:  # without a result there is always a failure
                    future.set_exception(cast(BaseException, self.failure()))
        elif self.on_done is not None:
            self.on_done(self)
        elif self._unfinished is not None:
            self._unfinished.release()

    def failure(self) -> BaseException | None:
        """Why a finished call has no result, or None when it has one."""
        if self.error is None and self.result is None:
            return InferenceRunError("The try pool returned no result.")
        return self.error

    def outcome(self) -> TryResult:
        """The result of a finished call, or its error raised."""
        error = self.failure()
        if error is not None:
            raise error
        return cast(TryResult, self.result)  # failure() is None only when there is one

    def wait(self) -> TryResult:
        """Block until the call is finished; its result, or its error raised."""
        if self._unfinished is not None:
            self._unfinished.acquire()
        return self.outcome()
