# SPDX-License-Identifier: AGPL-3.0-only
"""The try-before-you-buy pool: ONNX Runtime in worker processes with hard limits.

A call is checked against the model's manifest in the caller's process, then queued.
One dispatcher thread per worker takes the oldest waiting call to its worker and waits
at most `timeout_s`; a worker that overruns is killed and replaced, one that runs out of
memory or dies is replaced, and the caller gets a typed error while the other workers
keep serving. `run` is thread-safe: with N workers, N batches run in parallel.

Dynamic batching, as model servers do it: when several calls for the same model wait
and the model's inputs and outputs all share a symbolic first dimension (`N`), a free
worker takes them together, concatenated along that dimension, and the outputs are
split back per call. Nothing waits on purpose to fill a batch, so a lone call goes
at once. A batch stays within `max_input_bytes`; if a batched run fails in any way
(error, timeout, crash, memory, output limit, outputs without the batch dimension),
each call is run again on its own, so one bad call fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import multiprocessing
import select
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

import numpy as np

from mercato.errors import (
    ConfigError,
    InferenceError,
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
from mercato.models.runtime.worker import place, receive, send, take, worker_main


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
        max_batch_calls: Most waiting calls for one model run together as one batch
            (1 turns dynamic batching off).
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
    max_batch_calls: int = 64

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


_SLACK = 64 * 64  # room for the alignment of up to 64 input tensors


class _Worker:
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
        self.calls = 0
        # One poll object per worker: Connection.poll(timeout) builds a selector per call,
        # which costs more than the rest of a small try-call.
        self._poller = select.poll()
        self._poller.register(self.conn.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)

    @property
    def buffer(self) -> memoryview | None:
        return self.segment.buf

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


class _Call:
    """One queued try-call and, once served, its outcome.

    A blocking caller waits on a lock the call holds until it is finished (cheaper than
    an Event: one futex, no Condition); an async caller passes `on_done` instead, which
    the dispatcher thread calls with the finished call.
    """

    __slots__ = (
        "_unfinished",
        "arrays",
        "error",
        "finished",
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
        on_done: Callable[[_Call], None] | None = None,
    ) -> None:
        self.model = model
        self.key = key
        self.path = path
        self.arrays = arrays
        self.names = names
        self.rows = rows
        self.nbytes = sum(getattr(a, "nbytes", 0) for a in arrays.values())
        self.queued_at = time.monotonic()
        self.result: TryResult | None = None
        self.error: BaseException | None = None
        self.finished = False
        self.on_done = on_done
        self._unfinished = threading.Lock()
        self._unfinished.acquire()

    def finish(self, result: TryResult | None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.arrays = {}  # the inputs are not needed any more
        self.finished = True
        if self.on_done is not None:
            self.on_done(self)
        self._unfinished.release()

    def outcome(self) -> TryResult:
        """The result of a finished call, or its error raised."""
        if self.error is not None or self.result is None:
            raise self.error or InferenceRunError("The try pool returned no result.")
        return self.result

    def wait(self) -> TryResult:
        """Block until the call is finished; its result, or its error raised."""
        self._unfinished.acquire()
        return self.outcome()


class _Slot:
    """A dispatcher thread's worker; replaced in place after a fault."""

    __slots__ = ("worker",)

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker


def batch_dimension(package: ModelPackage) -> str | None:
    """The symbolic batch dimension a model's inputs and outputs all start with.

    Args:
        package: The model.

    Returns:
        The dimension's name, or None when calls to this model cannot be batched:
        an input or output lacks a known rank, does not start with the same symbolic
        dimension, or is not a tensor.
    """
    inputs = package.inputs
    outputs = package.manifest.get("outputs") or []
    if not inputs or not outputs:
        return None
    first = inputs[0].shape[0] if inputs[0].shape else None
    if not isinstance(first, str):
        return None
    for spec in inputs:
        if not spec.shape or spec.shape[0] != first:
            return None
    for entry in outputs:
        shape = entry.get("shape") if entry.get("kind") == "tensor" else None
        if not shape or shape[0] != first:
            return None
    return first


def split_outputs(
    outputs: Mapping[str, Any], rows: Sequence[int]
) -> list[dict[str, np.ndarray]] | None:
    """Cut a batched run's outputs back into one output set per call.

    Args:
        outputs: The batched run's outputs.
        rows: Rows each call contributed, in batch order.

    Returns:
        One dict per call (copies), or None when an output is not an array whose
        first dimension is the batch's total rows.
    """
    total = sum(rows)
    for value in outputs.values():
        if not isinstance(value, np.ndarray) or value.ndim == 0 or value.shape[0] != total:
            return None
    parts: list[dict[str, np.ndarray]] = []
    start = 0
    for count in rows:
        parts.append({name: value[start : start + count].copy() for name, value in outputs.items()})
        start += count
    return parts


# Served calls not yet handed to their callers: (call, result, error).
_Outcomes = list[tuple[_Call, "TryResult | None", "BaseException | None"]]


def _hand_over(outcomes: _Outcomes) -> None:
    """Finish each served call, waking its caller; safe to call again (empties the list)."""
    for call, result, error in outcomes:
        call.finish(result, error)
    outcomes.clear()


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
            ConfigError: `workers` is below 1, the start method is unknown or
                `max_batch_calls` is below 1.
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
        if self.limits.max_batch_calls < 1:
            raise ConfigError(
                f"max_batch_calls must be at least 1, got {self.limits.max_batch_calls}."
            )
        self._context = multiprocessing.get_context(start_method)
        self._cond = threading.Condition()
        # Waiting calls, grouped by what may share a batch; oldest group first.
        self._pending: dict[object, deque[_Call]] = {}
        self._held = 0
        self._idle = 0  # dispatchers waiting for calls
        self._dispatchers: list[threading.Thread] = []
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._batch_dims: dict[str, str | None] = {}
        self._open = False
        self.replaced = 0  # workers replaced after faults or recycling, for monitoring
        self.batched_runs = 0  # worker runs that served more than one call
        self.batch_retries = 0  # batched runs that failed and were retried call by call
        self._mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopMailbox] = (
            weakref.WeakKeyDictionary()
        )

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
            InferenceWorkerCrashedError: a worker did not come up; every worker this
                call started is stopped again and the pool stays closed.
        """
        with self._lock:
            if self._open:
                return
            self._open = True
        fresh: list[_Worker] = []
        try:
            for _ in range(self.size):
                fresh.append(self._spawn())
            for worker in fresh:
                worker.wait_ready(self.limits.startup_timeout_s)
        except BaseException:
            # Leave nothing behind: no stray processes, no shared segments in /dev/shm.
            with self._lock:
                self._open = False
                self._all.difference_update(fresh)
            for worker in fresh:
                worker.kill()
            raise
        for worker in fresh:
            thread = threading.Thread(
                target=self._dispatch, args=(_Slot(worker),), daemon=True, name="mercato-try"
            )
            thread.start()
            self._dispatchers.append(thread)

    def close(self) -> None:
        """Stop every worker. Calls after this raise `InferencePoolClosedError`.

        A call already running in a worker finishes (within `timeout_s`) first.
        """
        with self._cond:
            self._open = False
            waiting = [call for calls in self._pending.values() for call in calls]
            self._pending.clear()
            self._cond.notify_all()
        for call in waiting:
            call.finish(None, InferencePoolClosedError("The try pool was closed."))
        for thread in self._dispatchers:
            thread.join(self.limits.timeout_s + 5)
        self._dispatchers = []
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.stop()

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers."""
        with self._lock:
            return sorted(w.process.pid for w in self._all if w.process.pid is not None)

    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        """Keep calls queued (not dispatched) while inside; lets tests build a batch."""
        with self._cond:
            self._held += 1
        try:
            yield
        finally:
            with self._cond:
                self._held -= 1
                self._cond.notify_all()

    def _queued(self) -> int:
        with self._cond:
            return sum(len(calls) for calls in self._pending.values())

    def _spawn(self) -> _Worker:
        worker = _Worker(self._context, self.limits)
        with self._lock:
            self._all.add(worker)
        return worker

    def _replace(self, slot: _Slot) -> None:
        worker = slot.worker
        worker.kill()
        with self._lock:
            self._all.discard(worker)
            if not self._open:
                return
            self.replaced += 1
        # The new worker warms up in the background; its next call waits for "ready".
        slot.worker = self._spawn()

    def _dispatch(self, slot: _Slot) -> None:
        """A dispatcher thread: serve batches of waiting calls on this slot's worker.

        A served batch's callers are handed their outcomes only once the next batch has
        been sent to the worker (or when nothing else waits): the worker then runs the
        next batch while this thread wakes the callers of the last one, instead of
        idling through that work.
        """
        served: _Outcomes = []
        while True:
            batch = None
            with self._cond:
                while self._open and not served and (self._held or not self._pending):
                    self._idle += 1
                    try:
                        self._cond.wait()
                    finally:
                        self._idle -= 1
                if not self._open:
                    break
                if self._pending and not self._held:
                    batch = self._take_batch()
                    if self._pending and self._idle:
                        self._cond.notify()  # more waits: wake an idle dispatcher for it
            if batch is None:
                _hand_over(served)
                continue
            previous, served = served, []
            try:
                self._serve(slot, batch, served, on_sent=partial(_hand_over, previous))
            except Exception as exc:  # a bug here must not strand callers
                _hand_over(previous)
                _hand_over(served)
                self._replace(slot)
                for call in batch:
                    if not call.finished:
                        call.finish(None, InferenceRunError(f"The try pool failed: {exc!r}"))
        _hand_over(served)
        with self._lock:
            self._all.discard(slot.worker)
        slot.worker.stop()

    def _take_batch(self) -> list[_Call]:
        """Take the oldest group's calls that fit one batch (call with `_cond` held).

        With other workers idle, take only a fair share of the waiting calls, so they all
        run at once instead of one worker taking everything while the others wait.
        """
        group = next(iter(self._pending))
        calls = self._pending.pop(group)
        share = min(self.limits.max_batch_calls, -(-len(calls) // (self._idle + 1)))
        batch = [calls.popleft()]
        size = batch[0].nbytes
        while calls and len(batch) < share:
            if size + calls[0].nbytes > self.limits.max_input_bytes:
                break
            call = calls.popleft()
            size += call.nbytes
            batch.append(call)
        if calls:
            self._pending[group] = calls  # back of the line: other models get a turn
        return batch

    def _serve(
        self,
        slot: _Slot,
        batch: list[_Call],
        served: _Outcomes,
        on_sent: Callable[[], None],
    ) -> None:
        """Run a batch on the slot's worker, appending each call's outcome to `served`.

        `on_sent` runs once the worker has the batch (or when nothing was sent).
        """
        now = time.monotonic()
        live = []
        for call in batch:
            if now - call.queued_at > self.limits.queue_timeout_s:
                error = InferenceTimeoutError(
                    f"All {self.size} try workers stayed busy for "
                    f"{self.limits.queue_timeout_s} s. Try again later.",
                    seconds=self.limits.queue_timeout_s,
                )
                served.append((call, None, error))
            else:
                live.append(call)
        if len(live) > 1:
            first = live[0]
            arrays = {name: [call.arrays[name] for call in live] for name in first.arrays}
            try:
                # Views into the worker's segment: split_outputs copies each call's rows out once.
                outputs, elapsed_ms = self._exchange(
                    slot, first, arrays, len(live), copy=False, on_sent=on_sent
                )
            except InferenceError:
                parts = None
            else:
                parts = split_outputs(outputs, [call.rows for call in live])
                del outputs  # no view on the segment outlives this exchange
            with self._lock:
                self.batched_runs += 1
                if parts is None:
                    self.batch_retries += 1
            if parts is not None:
                for call, part in zip(live, parts, strict=True):
                    result = TryResult(model=call.model, outputs=part, elapsed_ms=elapsed_ms)
                    served.append((call, result, None))
                return
        for call in live:  # alone, or again one by one after a failed batch
            try:
                outputs, elapsed_ms = self._exchange(slot, call, call.arrays, 1, on_sent=on_sent)
            except InferenceError as exc:
                served.append((call, None, exc))
            else:
                result = TryResult(model=call.model, outputs=outputs, elapsed_ms=elapsed_ms)
                served.append((call, result, None))
        on_sent()  # nothing was sent (every call had waited too long): hand over now

    def _exchange(
        self,
        slot: _Slot,
        call: _Call,
        arrays: Mapping[str, Any],
        count: int,
        *,
        copy: bool = True,
        on_sent: Callable[[], None] | None = None,
    ) -> tuple[dict[str, Any], float]:
        """One round trip to the slot's worker; replaces the worker after a fault.

        `arrays` holds arrays, or lists of arrays to concatenate for a batch. With
        `copy=False` the outputs are views into the worker's shared segment, valid only
        until this slot's next exchange. `on_sent` runs while the worker computes.
        """
        worker = slot.worker
        try:
            worker.wait_ready(self.limits.startup_timeout_s)
        except InferenceWorkerCrashedError:
            self._replace(slot)
            raise
        model = call.model
        try:
            layout = place(dict(arrays), worker.buffer, 0, worker.input_capacity)
            send(worker.conn, ("run", next(self._ids), call.key, call.path, layout, call.names))
            if on_sent is not None:
                on_sent()
            answered = worker.wait_reply(self.limits.timeout_s)
            reply = receive(worker.conn) if answered else None
        except (EOFError, OSError, ValueError) as exc:
            worker.process.join(0.5)  # reap it, so the exit code is known
            exitcode = worker.process.exitcode
            self._replace(slot)
            raise InferenceWorkerCrashedError(
                f"The worker running model {model!r} died (exit code {exitcode}). "
                "The model may be malformed or need more memory than a try-call allows.",
                exitcode=exitcode,
            ) from exc
        if reply is None:
            # Raised outside the try: TimeoutError is an OSError and must not look like a crash.
            self._replace(slot)
            raise InferenceTimeoutError(
                f"Model {model!r} ran longer than the {self.limits.timeout_s} s "
                "try limit and was stopped. Try a smaller input; the model may loop.",
                seconds=self.limits.timeout_s,
            )
        if reply[0] == "ok":
            outputs = take(reply[2], worker.buffer, copy=copy)
            self._release(slot, count)
            return outputs, reply[3]
        _, _, kind, detail = reply
        if kind == "memory":
            self._replace(slot)  # its heap may be fragmented or half-freed
            raise InferenceMemoryError(
                f"Model {model!r} needed more memory than the "
                f"{self.limits.memory_bytes}-byte try limit ({detail.splitlines()[0][:200]}). "
                "Try a smaller input.",
                limit_bytes=self.limits.memory_bytes,
            )
        self._release(slot, count)
        what = {"load": "could not be loaded", "output": "produced too much output"}.get(
            kind, "failed"
        )
        raise InferenceRunError(f"Model {model!r} {what} in ONNX Runtime: {detail.strip()[:500]}")

    def _release(self, slot: _Slot, count: int) -> None:
        slot.worker.calls += count
        if slot.worker.calls >= self.limits.max_calls_per_worker:
            self._replace(slot)

    def _group(self, package: ModelPackage, key: str, call: _Call) -> object:
        """What a call may share a batch with: itself alone, or a signature."""
        if self.limits.max_batch_calls < 2 or call.rows < 1:
            return call
        if key not in self._batch_dims:
            self._batch_dims[key] = batch_dimension(package)
        if self._batch_dims[key] is None:
            return call
        signature: list[object] = [key, tuple(call.names) if call.names is not None else None]
        for name, array in call.arrays.items():
            if not isinstance(array, np.ndarray) or array.dtype.kind not in "biufc":
                return call
            if array.ndim < 1 or array.shape[0] != call.rows:
                return call
            signature.append((name, array.dtype.str, array.shape[1:]))
        return tuple(signature)

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
        return self._submit(package, arrays, output_names).wait()

    def _submit(
        self,
        package: ModelPackage,
        arrays: Mapping[str, np.ndarray],
        output_names: Sequence[str] | None,
        on_done: Callable[[_Call], None] | None = None,
    ) -> _Call:
        """Queue a call for the dispatchers and return it (not yet finished)."""
        key, path = package.session_key
        names = list(output_names) if output_names is not None else None
        inputs = dict(arrays)
        first = next(iter(inputs.values()), None)
        rows = first.shape[0] if isinstance(first, np.ndarray) and first.ndim else 0
        call = _Call(package.name, key, path, inputs, names, rows, on_done)
        group = self._group(package, key, call)
        with self._cond:
            if not self._open:
                raise InferencePoolClosedError("The try pool is closed; start it first.")
            calls = self._pending.get(group)
            if calls is None:
                self._pending[group] = calls = deque()
            calls.append(call)
            self._cond.notify()
        return call

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

    # --- asyncio ------------------------------------------------------------------------
    # The same pool from an event loop: a waiting call costs a future, not a thread, and
    # a finished batch wakes the loop once for all of its calls.

    async def run_arrays_async(
        self,
        package: ModelPackage,
        arrays: Mapping[str, np.ndarray],
        output_names: Sequence[str] | None = None,
    ) -> TryResult:
        """`run_arrays` for asyncio: await the outputs without blocking the loop.

        Args, returns and raises as `run_arrays`. Cancelling the awaiting task does not
        stop a call a worker already runs; its outcome is dropped.
        """
        loop = asyncio.get_running_loop()
        mailbox = self._mailboxes.get(loop)
        if mailbox is None:
            mailbox = self._mailboxes[loop] = _LoopMailbox(loop)
        future: asyncio.Future[TryResult] = loop.create_future()
        self._submit(package, arrays, output_names, functools.partial(mailbox.post, future))
        return await future

    async def run_async(
        self,
        package: ModelPackage,
        inputs: Mapping[str, Any],
        output_names: Sequence[str] | None = None,
    ) -> TryResult:
        """`run` for asyncio. Args, returns and raises as `run`."""
        arrays = prepare_inputs(package.inputs, inputs, self.limits.input_policy)
        return await self.run_arrays_async(package, arrays, output_names)

    async def run_json_async(self, package: ModelPackage, request: bytes | str) -> bytes:
        """`run_json` for asyncio. Args, returns and raises as `run_json`.

        Requests and answers up to `_INLINE_JSON_BYTES` are decoded and encoded on the
        loop (microseconds); larger ones in a thread, so a 30 MB request does not stall
        every other coroutine while it is parsed.
        """
        if len(request) <= _INLINE_JSON_BYTES:
            arrays = decode_request(request, package.inputs, self.limits.input_policy)
        else:
            arrays = await asyncio.to_thread(
                decode_request, request, package.inputs, self.limits.input_policy
            )
        result = await self.run_arrays_async(package, arrays)
        size = sum(getattr(value, "nbytes", 0) for value in result.outputs.values())
        if size <= _INLINE_JSON_BYTES // 8:  # a JSON number takes ~8x its binary size
            return result.to_json()
        return await asyncio.to_thread(result.to_json)


_INLINE_JSON_BYTES = 64 * 1024


class _LoopMailbox:
    """Finished async calls on their way to one event loop.

    A dispatcher finishing a batch posts each call here; only the first post before the
    loop drains the box schedules a drain, so a batch wakes the loop once, not per call.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._posted: list[tuple[asyncio.Future[TryResult], _Call]] = []
        self._scheduled = False

    def post(self, future: asyncio.Future[TryResult], call: _Call) -> None:
        with self._lock:
            self._posted.append((future, call))
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop was closed: nobody waits
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            posted, self._posted = self._posted, []
            self._scheduled = False
        for future, call in posted:
            if future.cancelled():
                continue
            if call.error is not None or call.result is None:
                future.set_exception(
                    call.error or InferenceRunError("The try pool returned no result.")
                )
            else:
                future.set_result(call.result)
