# SPDX-License-Identifier: AGPL-3.0-only
"""The pool's side of one try-runtime worker: the process, its pipe and its tensor segment.

The worker's own side is `mercato.models.runtime.worker`.
"""

from __future__ import annotations

import contextlib
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any

from mercato.errors import InferenceWorkerCrashedError
from mercato.models.runtime.limits import RuntimeLimits
from mercato.models.runtime.worker import receive, send, worker_main

_SLACK = 64 * 64  # room for the alignment of up to 64 input tensors


class WorkerProcess:
    """One worker process, the parent's end of its pipe and its shared tensor segment."""

    def __init__(self, context: Any, limits: RuntimeLimits) -> None:
        parent, child = context.Pipe(duplex=True)
        self.conn: Connection = parent
        self.input_capacity = limits.max_input_bytes + _SLACK
        self.segment = shared_memory.SharedMemory(
            create=True, size=self.input_capacity + limits.max_output_bytes + _SLACK
        )
        self.unlinked = False
        self.process = context.Process(
            target=worker_main,
            args=(
                child,
                limits.memory_bytes,
                limits.session_cache_size,
                limits.threads,
                limits.max_output_bytes,
                self.segment.name,
                self.input_capacity,
            ),
            daemon=True,
            name="mercato-try-worker",
        )
        self.process.start()
        child.close()
        self.ready = False
        self.runs = 0
        self.retiring = False  # due for recycling; serves until its replacement joins
        self.retire_when_free = False  # the replacement joined during a run of this one

    @property
    def buffer(self) -> memoryview | None:
        return self.segment.buf

    def wait_ready(self, timeout: float) -> None:
        """Wait for the worker's "ready" (it has imported ONNX Runtime).

        Raises:
            InferenceWorkerCrashedError: it did not start within `timeout` or died.
        """
        if self.ready:
            return
        if not self.conn.poll(timeout):
            raise InferenceWorkerCrashedError(
                f"A try-runtime worker did not start within {timeout} s.",
                exitcode=self.process.exitcode,
            )
        try:
            message = receive(self.conn)
        except (EOFError, OSError) as exc:
            raise InferenceWorkerCrashedError(
                "A try-runtime worker died while starting; check that onnxruntime imports.",
                exitcode=self.process.exitcode,
            ) from exc
        self.ready = message[0] == "ready"
        # Both sides have it mapped now: drop the name, so nothing is left behind in
        # /dev/shm whatever happens to either process.
        self._unlink()

    def _unlink(self) -> None:
        if not self.unlinked:
            self.unlinked = True
            with contextlib.suppress(FileNotFoundError):
                self.segment.unlink()

    def _release_segment(self) -> None:
        self._unlink()
        with contextlib.suppress(BufferError):  # a view still alive: the GC unmaps it
            self.segment.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()
        self._release_segment()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # already dead or closed
            send(self.conn, ("stop",))
        self.process.join(2)
        if self.process.is_alive():
            self.kill()
        else:
            self.conn.close()
            self._release_segment()
