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

Around this module: `limits` (what a call may use), `calls` (a queued call and its
result), `process` (the pool's handle on a worker process), `worker` (the worker's own
loop), `batching` (which calls may share a run), `mailbox` (finished calls on their way
to an event loop) and `tensors` (input checks and JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any

import numpy as np

from mercato.errors import (
    ConfigError,
    InferenceError,
    InferenceInputError,
    InferenceMemoryError,
    InferencePoolClosedError,
    InferenceRunError,
    InferenceTimeoutError,
    InferenceWorkerCrashedError,
)
from mercato.models.package import ModelPackage
from mercato.models.runtime.batching import batch_dimension, batch_signature, split_outputs
from mercato.models.runtime.calls import Call, Outcomes, TryResult, hand_over
from mercato.models.runtime.limits import RuntimeLimits
from mercato.models.runtime.mailbox import LoopMailbox
from mercato.models.runtime.process import WorkerProcess
from mercato.models.runtime.tensors import decode_request, non_finite_input, prepare_inputs
from mercato.models.runtime.worker import place, receive, send, take


class _Slot:
    """A dispatcher thread's worker; replaced in place after a fault."""

    __slots__ = ("worker",)

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker


# Served calls not yet handed to their callers: (call, result, error).
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
        self._policy = self.limits.input_policy
        self._context = multiprocessing.get_context(start_method)
        self._cond = threading.Condition()
        # Waiting calls, grouped by what may share a batch; oldest group first.
        self._pending: dict[object, deque[Call]] = {}
        self._held = 0
        self._idle = 0  # dispatchers waiting for calls
        self._dispatchers: list[threading.Thread] = []
        self._all: set[WorkerProcess] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._batch_dims: dict[str, str | None] = {}
        self._open = False
        self.replaced = 0  # workers replaced after faults or recycling, for monitoring
        self.batched_runs = 0  # worker runs that served more than one call
        self.batch_retries = 0  # batched runs that failed and were retried call by call
        self._mailboxes: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, LoopMailbox[TryResult]
        ] = weakref.WeakKeyDictionary()

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
        fresh: list[WorkerProcess] = []
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

    def _spawn(self) -> WorkerProcess:
        worker = WorkerProcess(self._context, self.limits)
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
        served: Outcomes = []
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
                hand_over(served)
                continue
            previous, served = served, []
            try:
                self._serve(slot, batch, served, on_sent=partial(hand_over, previous))
            except Exception as exc:  # a bug here must not strand callers
                hand_over(previous)
                hand_over(served)
                self._replace(slot)
                for call in batch:
                    if not call.finished:
                        call.finish(None, InferenceRunError(f"The try pool failed: {exc!r}"))
        hand_over(served)
        with self._lock:
            self._all.discard(slot.worker)
        slot.worker.stop()

    def _take_batch(self) -> list[Call]:
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
        batch: list[Call],
        served: Outcomes,
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
        call: Call,
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
        if not worker.ready and on_sent is not None:
            on_sent()  # a replacement may take seconds to start: nobody waits on it
        try:
            worker.wait_ready(self.limits.startup_timeout_s)
        except InferenceWorkerCrashedError:
            self._replace(slot)
            raise
        model = call.model
        try:
            layout = place(dict(arrays), worker.buffer, 0, worker.input_capacity)
            if not self.limits.allow_non_finite:
                # One pass over the whole batch in place, cheaper than one per call.
                error = non_finite_input(take(layout, worker.buffer, copy=False))
                if error is not None:
                    raise error
            send(worker.conn, ("run", next(self._ids), call.key, call.path, layout, call.names))
            if on_sent is not None:
                on_sent()
            answered = worker.wait_reply(self.limits.timeout_s)
            reply = receive(worker.conn) if answered else None
        except InferenceInputError:
            raise  # the worker never saw this input; it is fine
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

    def _group(self, package: ModelPackage, key: str, call: Call) -> object:
        """What a call may share a batch with: itself alone, or a signature."""
        if self.limits.max_batch_calls < 2 or call.rows < 1:
            return call
        if key not in self._batch_dims:
            self._batch_dims[key] = batch_dimension(package)
        if self._batch_dims[key] is None:
            return call
        signature = batch_signature(key, call.names, call.arrays, call.rows)
        return call if signature is None else signature

    def run_arrays(
        self,
        package: ModelPackage,
        arrays: Mapping[str, np.ndarray],
        output_names: Sequence[str] | None = None,
    ) -> TryResult:
        """Run already-checked arrays (from `prepare_inputs`) in a worker.

        Float inputs are checked for NaN and infinity here in any case (unless the
        limits allow them), batch by batch.

        Args:
            package: The model.
            arrays: Inputs of the exact dtypes the manifest declares.
            output_names: Outputs to compute; all by default.

        Returns:
            The outputs.

        Raises:
            InferenceInputNonFiniteError: a float input holds NaN or infinity.
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
        on_done: Callable[[Call], None] | None = None,
    ) -> Call:
        """Queue a call for the dispatchers and return it (not yet finished)."""
        key, path = package.session_key
        names = list(output_names) if output_names is not None else None
        inputs = dict(arrays)
        first = next(iter(inputs.values()), None)
        rows = first.shape[0] if isinstance(first, np.ndarray) and first.ndim else 0
        call = Call(package.name, key, path, inputs, names, rows, on_done)
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
        arrays = prepare_inputs(package.inputs, inputs, self._policy, check_finite=False)
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
        arrays = decode_request(request, package.inputs, self._policy, check_finite=False)
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
        return await self._submit_async(package, arrays, output_names)

    async def run_async(
        self,
        package: ModelPackage,
        inputs: Mapping[str, Any],
        output_names: Sequence[str] | None = None,
    ) -> TryResult:
        """`run` for asyncio. Args, returns and raises as `run`."""
        arrays = prepare_inputs(package.inputs, inputs, self._policy, check_finite=False)
        return await self._submit_async(package, arrays, output_names)

    def _submit_async(
        self,
        package: ModelPackage,
        arrays: Mapping[str, np.ndarray],
        output_names: Sequence[str] | None,
    ) -> asyncio.Future[TryResult]:
        """Queue a call whose outcome settles a future of the running loop."""
        loop = asyncio.get_running_loop()
        mailbox = self._mailboxes.get(loop)
        if mailbox is None:
            mailbox = self._mailboxes[loop] = LoopMailbox(loop)
        future: asyncio.Future[TryResult] = loop.create_future()

        def on_done(call: Call) -> None:
            mailbox.post(future, call.result, call.failure())

        self._submit(package, arrays, output_names, on_done)
        return future

    async def run_json_async(self, package: ModelPackage, request: bytes | str) -> bytes:
        """`run_json` for asyncio. Args, returns and raises as `run_json`.

        Requests and answers up to `_INLINE_JSON_BYTES` are decoded and encoded on the
        loop (microseconds); larger ones in a thread, so a 30 MB request does not stall
        every other coroutine while it is parsed.
        """
        if len(request) <= _INLINE_JSON_BYTES:
            arrays = decode_request(request, package.inputs, self._policy, check_finite=False)
        else:
            arrays = await asyncio.to_thread(
                partial(decode_request, check_finite=False),
                request,
                package.inputs,
                self._policy,
            )
        result = await self.run_arrays_async(package, arrays)
        size = sum(getattr(value, "nbytes", 0) for value in result.outputs.values())
        if size <= _INLINE_JSON_BYTES // 8:  # a JSON number takes ~8x its binary size
            return result.to_json()
        return await asyncio.to_thread(result.to_json)


_INLINE_JSON_BYTES = 64 * 1024
