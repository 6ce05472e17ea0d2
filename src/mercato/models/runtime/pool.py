# SPDX-License-Identifier: AGPL-3.0-only
"""The try-before-you-buy pool: ONNX Runtime in worker processes with hard limits.

A call is checked against the model's manifest in the caller's process, then handed
to an idle worker. The pool waits at most `timeout_s`; a worker that overruns is
killed and replaced, one that runs out of memory or dies is replaced, and the caller
gets a typed error while the other workers keep serving. `run` is thread-safe: with N
workers, N calls run in parallel.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import queue
import select
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

import numpy as np

from mercato.errors import (
    ConfigError,
    InferenceMemoryError,
    InferencePoolClosedError,
    InferenceRunError,
    InferenceTimeoutError,
    InferenceWorkerCrashedError,
)
from mercato.models.package import ModelPackage
from mercato.models.runtime.tensors import (
    InputPolicy,
    decode_request,
    encode_outputs,
    prepare_inputs,
)
from mercato.models.runtime.worker import pack, unpack, worker_main


@dataclass(frozen=True)
class RuntimeLimits:
    """Limits for every try-call.

    Attributes:
        timeout_s: Wall-clock time a call may run in its worker.
        memory_bytes: Address space a worker may map beyond its start-up size.
        max_input_bytes: All input tensors of one call together.
        max_request_bytes: One raw JSON request.
        max_output_bytes: All output tensors of one call together.
        allow_non_finite: Accept NaN and infinities in float inputs.
        session_cache_size: Warm InferenceSessions kept per worker.
        max_calls_per_worker: Recycle a worker after this many calls.
        threads: Intra-op threads per session (1 = one core per worker).
        startup_timeout_s: How long a new worker may take to import ONNX Runtime.
        queue_timeout_s: How long a call waits for a free worker.
    """

    timeout_s: float = 5.0
    memory_bytes: int = 1024 * 1024 * 1024
    max_input_bytes: int = 8 * 1024 * 1024
    max_request_bytes: int = 32 * 1024 * 1024
    max_output_bytes: int = 16 * 1024 * 1024
    allow_non_finite: bool = False
    session_cache_size: int = 8
    max_calls_per_worker: int = 100_000
    threads: int = 1
    startup_timeout_s: float = 60.0
    queue_timeout_s: float = 30.0

    @property
    def input_policy(self) -> InputPolicy:
        """The input checks these limits imply."""
        return InputPolicy(
            max_input_bytes=self.max_input_bytes,
            max_request_bytes=self.max_request_bytes,
            allow_non_finite=self.allow_non_finite,
        )


@dataclass(frozen=True)
class TryResult:
    """The outputs of one try-call.

    Attributes:
        model: The model's name.
        outputs: Output tensors by name.
        elapsed_ms: Time `session.run` took in the worker.
    """

    model: str
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    elapsed_ms: float = 0.0

    def to_json(self) -> bytes:
        """Encode as the JSON response of `TryPool.run_json`.

        Returns:
            UTF-8 JSON.
        """
        return encode_outputs(self.model, self.outputs, self.elapsed_ms)


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, context: Any, limits: RuntimeLimits) -> None:
        parent, child = context.Pipe(duplex=True)
        self.conn: Connection = parent
        self.process = context.Process(
            target=worker_main,
            args=(
                child,
                limits.memory_bytes,
                limits.session_cache_size,
                limits.threads,
                limits.max_output_bytes,
            ),
            daemon=True,
            name="mercato-try-worker",
        )
        self.process.start()
        child.close()
        self.ready = False
        self.calls = 0
        # One poll object per worker: Connection.poll(timeout) builds a selector per call,
        # which costs more than the rest of a small try-call.
        self._poller = select.poll()
        self._poller.register(self.conn.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)

    def wait_reply(self, timeout: float) -> bool:
        """Wait until the worker has answered (or died); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._poller.poll(max(1, int(remaining * 1000))):
                return True

    def wait_ready(self, timeout: float) -> None:
        if self.ready:
            return
        if not self.conn.poll(timeout):
            raise InferenceWorkerCrashedError(
                f"A try-runtime worker did not start within {timeout} s.",
                exitcode=self.process.exitcode,
            )
        try:
            message = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise InferenceWorkerCrashedError(
                "A try-runtime worker died while starting; check that onnxruntime imports.",
                exitcode=self.process.exitcode,
            ) from exc
        self.ready = message[0] == "ready"

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # already dead or closed
            self.conn.send(("stop",))
        self.process.join(2)
        if self.process.is_alive():
            self.kill()
        else:
            self.conn.close()


class TryPool:
    """A pool of try-runtime worker processes.

    Use as a context manager, or call `start` and `close`::

        with TryPool(workers=2) as pool:
            result = pool.run(package, {"X": [[5.1, 3.5, 1.4, 0.2]]})
    """

    def __init__(
        self,
        workers: int = 2,
        limits: RuntimeLimits | None = None,
        *,
        start_method: str = "spawn",
    ) -> None:
        """Configure the pool; no process starts until `start`.

        Args:
            workers: Number of worker processes.
            limits: Per-call limits; defaults to `RuntimeLimits()`.
            start_method: `spawn` (a fresh interpreter per worker, the default) or
                `forkserver` (faster replacement after a fault).

        Raises:
            ConfigError: `workers` is below 1 or the start method is unknown.
        """
        if workers < 1:
            raise ConfigError(f"A try pool needs at least 1 worker, got {workers}.")
        if start_method not in multiprocessing.get_all_start_methods():
            raise ConfigError(
                f"Unknown start method {start_method!r}; use one of "
                f"{multiprocessing.get_all_start_methods()}."
            )
        self.size = workers
        self.limits = limits or RuntimeLimits()
        self._context = multiprocessing.get_context(start_method)
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._open = False
        self.replaced = 0  # workers replaced after faults or recycling, for monitoring

    def __enter__(self) -> TryPool:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the workers and wait until each has imported ONNX Runtime.

        Raises:
            InferenceWorkerCrashedError: a worker did not come up.
        """
        with self._lock:
            if self._open:
                return
            self._open = True
        fresh = [self._spawn() for _ in range(self.size)]
        for worker in fresh:
            worker.wait_ready(self.limits.startup_timeout_s)
            self._idle.put(worker)

    def close(self) -> None:
        """Stop every worker. Calls after this raise `InferencePoolClosedError`."""
        with self._lock:
            self._open = False
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.stop()

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers."""
        with self._lock:
            return sorted(w.process.pid for w in self._all if w.process.pid is not None)

    def _spawn(self) -> _Worker:
        worker = _Worker(self._context, self.limits)
        with self._lock:
            self._all.add(worker)
        return worker

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)
            if not self._open:
                return
            self.replaced += 1
        # The new worker warms up in the background; whoever takes it waits for "ready".
        self._idle.put(self._spawn())

    def _acquire(self) -> _Worker:
        if not self._open:
            raise InferencePoolClosedError("The try pool is closed; start it first.")
        try:
            worker = self._idle.get(timeout=self.limits.queue_timeout_s)
        except queue.Empty as exc:
            raise InferenceTimeoutError(
                f"All {self.size} try workers stayed busy for {self.limits.queue_timeout_s} "
                "s. Try again later.",
                seconds=self.limits.queue_timeout_s,
            ) from exc
        try:
            worker.wait_ready(self.limits.startup_timeout_s)
        except InferenceWorkerCrashedError:
            self._replace(worker)
            raise
        return worker

    def _release(self, worker: _Worker) -> None:
        worker.calls += 1
        if worker.calls >= self.limits.max_calls_per_worker:
            self._replace(worker)
        elif self._open:
            self._idle.put(worker)
        else:
            worker.stop()

    def run_arrays(
        self,
        package: ModelPackage,
        arrays: Mapping[str, np.ndarray],
        output_names: Sequence[str] | None = None,
    ) -> TryResult:
        """Run already-checked arrays (from `prepare_inputs`) in a worker.

        Args:
            package: The model.
            arrays: Inputs of the exact dtypes the manifest declares.
            output_names: Outputs to compute; all by default.

        Returns:
            The outputs.

        Raises:
            InferencePoolClosedError: the pool is not running.
            InferenceTimeoutError: the call overran `timeout_s` (worker replaced), or
                no worker became free in time.
            InferenceMemoryError: the model needed more memory than allowed (worker
                replaced).
            InferenceWorkerCrashedError: the worker died (worker replaced).
            InferenceRunError: ONNX Runtime could not load or run the model, or the
                outputs are over `max_output_bytes`.
        """
        worker = self._acquire()
        call_id = next(self._ids)
        key, path = package.session_key
        names = list(output_names) if output_names is not None else None
        try:
            message = ("run", call_id, key, path, pack(dict(arrays)), names)
            worker.conn.send(message)
            answered = worker.wait_reply(self.limits.timeout_s)
            reply = worker.conn.recv() if answered else None
        except (EOFError, OSError) as exc:
            worker.process.join(0.5)  # reap it, so the exit code is known
            exitcode = worker.process.exitcode
            self._replace(worker)
            raise InferenceWorkerCrashedError(
                f"The worker running model {package.name!r} died (exit code {exitcode}). "
                "The model may be malformed or need more memory than a try-call allows.",
                exitcode=exitcode,
            ) from exc
        if reply is None:
            # Raised outside the try: TimeoutError is an OSError and must not look like a crash.
            self._replace(worker)
            raise InferenceTimeoutError(
                f"Model {package.name!r} ran longer than the {self.limits.timeout_s} s "
                "try limit and was stopped. Try a smaller input; the model may loop.",
                seconds=self.limits.timeout_s,
            )
        if reply[0] == "ok":
            self._release(worker)
            return TryResult(model=package.name, outputs=unpack(reply[2]), elapsed_ms=reply[3])
        _, _, kind, detail = reply
        if kind == "memory":
            self._replace(worker)  # its heap may be fragmented or half-freed
            raise InferenceMemoryError(
                f"Model {package.name!r} needed more memory than the "
                f"{self.limits.memory_bytes}-byte try limit ({detail.splitlines()[0][:200]}). "
                "Try a smaller input.",
                limit_bytes=self.limits.memory_bytes,
            )
        self._release(worker)
        what = {"load": "could not be loaded", "output": "produced too much output"}.get(
            kind, "failed"
        )
        raise InferenceRunError(
            f"Model {package.name!r} {what} in ONNX Runtime: {detail.strip()[:500]}"
        )

    def run(
        self,
        package: ModelPackage,
        inputs: Mapping[str, Any],
        output_names: Sequence[str] | None = None,
    ) -> TryResult:
        """Check inputs against the manifest and run the model in a worker.

        Args:
            package: The model (a validated package).
            inputs: One NumPy array or nested list per input name.
            output_names: Outputs to compute; all by default.

        Returns:
            The outputs as NumPy arrays.

        Raises:
            InferenceInputError: (and its subclasses for shape, dtype, non-finite
                values and size) the input does not fit; nothing was run.
            InferencePoolClosedError: the pool is not running.
            InferenceTimeoutError: the call overran its time limit.
            InferenceMemoryError: the call overran its memory limit.
            InferenceWorkerCrashedError: the worker died.
            InferenceRunError: ONNX Runtime failed.
        """
        arrays = prepare_inputs(package.inputs, inputs, self.limits.input_policy)
        return self.run_arrays(package, arrays, output_names)

    def run_json(self, package: ModelPackage, request: bytes | str) -> bytes:
        """JSON in, JSON out: the try-call the gateway exposes.

        Args:
            package: The model.
            request: ``{"inputs": {"X": {"dtype": "float32", "data": [[...]]}}}``.

        Returns:
            ``{"model": ..., "outputs": {"label": {"dtype", "shape", "data"}}, ...}``.

        Raises:
            InferenceInputError: (and subclasses) the request does not fit the manifest.
            InferencePoolClosedError: the pool is not running.
            InferenceTimeoutError: the call overran its time limit.
            InferenceMemoryError: the call overran its memory limit.
            InferenceWorkerCrashedError: the worker died.
            InferenceRunError: ONNX Runtime failed.
        """
        arrays = decode_request(request, package.inputs, self.limits.input_policy)
        return self.run_arrays(package, arrays).to_json()
