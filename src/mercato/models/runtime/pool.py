# SPDX-License-Identifier: AGPL-3.0-only
"""The try-before-you-buy pool: ONNX Runtime in worker processes with hard limits.

A call is checked against the model's manifest in the caller's process, then handed
to the pool's engine (`engine`), which runs on one event loop and drives every worker:
a call that overruns `timeout_s` gets its worker killed and replaced, one that runs out
of memory or kills its worker gets a typed error, and the other workers keep serving.

Where the engine runs is the caller's choice. `start` (or ``with TryPool(...)``) gives
it a thread of its own; `await start_async()` (or ``async with TryPool(...)``) puts it
on the running loop, so coroutines on that loop reach the workers without crossing a
thread, the fastest way to serve many small calls (the node's gateway does this).
Either way `run` works from any other thread and `run_async` from any loop.

Dynamic batching, as model servers do it: when several calls for the same model wait
and the model's inputs and outputs all share a symbolic first dimension (`N`), a free
worker takes them together, concatenated along that dimension, and the outputs are
split back per call. Nothing waits on purpose to fill a batch, so a lone call goes
at once. A batch stays within `max_input_bytes`; if a batched run fails in any way,
each call is run again on its own, so one bad call fails alone.

Around this module: `engine` (queueing, batching, faults), `limits` (what a call may
use), `calls` (a queued call and its result), `process` (the pool's handle on a worker
process), `worker` (the worker's own loop), `batching` (which calls may share a run),
`mailbox` (calls crossing to and from the engine's loop) and `tensors` (input checks and
JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from mercato.errors import (
    ConfigError,
    InferencePoolClosedError,
    InferenceRunError,
)
from mercato.models.package import ModelPackage
from mercato.models.runtime.batching import batch_dimension, batch_signature
from mercato.models.runtime.calls import Call, TryResult
from mercato.models.runtime.engine import Engine
from mercato.models.runtime.limits import RuntimeLimits
from mercato.models.runtime.mailbox import LoopMailbox, Outcome, settle
from mercato.models.runtime.process import WorkerProcess
from mercato.models.runtime.tensors import decode_request, prepare_inputs
from mercato.models.runtime.worker import structure_nbytes

T = TypeVar("T")


class TryPool:
    """A pool of try-runtime worker processes.

    Use as a context manager (``with`` or ``async with``), or call `start` (or
    `start_async`) and `close`::

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
                `forkserver` (workers forked from a server process; as fast to start as
                `spawn` unless the server preloads NumPy and ONNX Runtime, see
                `multiprocessing.set_forkserver_preload`).

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
        self._lock = threading.Lock()  # start and close
        self._engine: Engine | None = None
        self._engine_thread_id = 0
        self._own_thread: threading.Thread | None = None  # the engine's, when `start` made it
        self._inbox: LoopMailbox[tuple[object, Call]] | None = None
        self._batch_dims: dict[str, str | None] = {}
        self._mailboxes: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, LoopMailbox[Outcome]
        ] = weakref.WeakKeyDictionary()

    # --- starting and closing ------------------------------------------------------------

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

    async def __aenter__(self) -> TryPool:
        await self.start_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close_async()

    def start(self) -> None:
        """Start the workers, with the engine on a thread of its own.

        Waits until each worker has imported ONNX Runtime.

        Raises:
            InferenceWorkerCrashedError: a worker did not come up; every worker this
                call started is stopped again and the pool stays closed.
        """
        with self._lock:
            if self.running:
                return
            workers = self._start_workers()
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, daemon=True, name="mercato-try-engine"
            )
            thread.start()
            self._own_thread = thread
            self._on(loop, self._attach(workers))

    async def start_async(self) -> None:
        """Start the workers, with the engine on the running loop.

        Coroutines on this loop then reach the workers without crossing a thread.
        Close with `close_async` on the same loop (or `close` from another thread).

        Raises:
            InferenceWorkerCrashedError: as `start`.
        """
        if self.running:
            return
        workers = await asyncio.to_thread(self._start_workers)
        await self._attach(workers)

    def close(self) -> None:
        """Stop every worker. Calls after this raise `InferencePoolClosedError`.

        A call already running in a worker finishes (within `timeout_s`) first.

        Raises:
            InferenceRunError: called on the loop the engine runs on, which this would
                block; await `close_async` there instead.
        """
        engine = self._engine
        if engine is None or engine.loop.is_closed():
            return
        self._refuse_blocking("close")
        workers = self._on(engine.loop, engine.close()) if engine.open else []
        self._stop(workers)

    async def close_async(self) -> None:
        """`close` for asyncio: awaits the running calls instead of blocking."""
        engine = self._engine
        if engine is None or engine.loop.is_closed():
            return
        if self._on_engine_thread():
            workers = await engine.close() if engine.open else []
        else:
            workers = await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(engine.close(), engine.loop)
            )
        await asyncio.to_thread(self._stop, workers)

    @property
    def running(self) -> bool:
        """Whether the pool is started and not closed."""
        return self._engine is not None and self._engine.open

    def _start_workers(self) -> list[WorkerProcess]:
        fresh: list[WorkerProcess] = []
        try:
            for _ in range(self.size):
                fresh.append(self._spawn())
            for worker in fresh:
                worker.wait_ready(self.limits.startup_timeout_s)
        except BaseException:
            # Leave nothing behind: no stray processes, no shared segments in /dev/shm.
            for worker in fresh:
                worker.kill()
            raise
        return fresh

    def _spawn(self) -> WorkerProcess:
        return WorkerProcess(self._context, self.limits)

    async def _attach(self, workers: list[WorkerProcess]) -> None:
        """Make the engine on the running loop (the only thread that may touch it)."""
        loop = asyncio.get_running_loop()
        self._engine_thread_id = threading.get_ident()
        engine = Engine(loop, self.limits, self._spawn, workers)
        self._inbox = LoopMailbox(loop, engine.accept_posted)  # set before the engine is seen
        self._engine = engine

    def _stop(self, workers: list[WorkerProcess]) -> None:
        for worker in workers:
            worker.stop()
        thread, self._own_thread = self._own_thread, None
        if thread is not None and self._engine is not None:
            loop = self._engine.loop
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    def _on_engine_thread(self) -> bool:
        return self._engine is not None and threading.get_ident() == self._engine_thread_id

    def _refuse_blocking(self, what: str) -> None:
        if self._on_engine_thread():
            raise InferenceRunError(
                f"TryPool.{what} blocks, and this thread runs the pool's event loop; "
                f"await {what}_async instead."
            )

    @staticmethod
    def _on(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on `loop` (another thread's) and wait for its result."""
        return asyncio.run_coroutine_threadsafe(work, loop).result()

    # --- what tests and monitoring read --------------------------------------------------

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers (starting ones included)."""
        workers = tuple(self._engine.workers) if self._engine is not None else ()
        return sorted(w.process.pid for w in workers if w.process.pid is not None)

    @property
    def replaced(self) -> int:
        """Workers replaced after faults or recycling."""
        return self._engine.replaced if self._engine is not None else 0

    @property
    def batched_runs(self) -> int:
        """Worker runs that served more than one call."""
        return self._engine.batched_runs if self._engine is not None else 0

    @property
    def batch_retries(self) -> int:
        """Batched runs that failed and were retried call by call."""
        return self._engine.batch_retries if self._engine is not None else 0

    @property
    def _all(self) -> list[WorkerProcess]:
        return list(self._engine.workers) if self._engine is not None else []

    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        """Keep calls queued (not dispatched) while inside; lets tests build a batch."""
        engine = self._engine
        assert engine is not None, "start the pool first"

        def hold() -> None:
            engine.held += 1

        self._on(engine.loop, _call(hold))
        try:
            yield
        finally:

            def release() -> None:
                engine.held -= 1
                engine.kick()

            self._on(engine.loop, _call(release))

    def _queued(self) -> int:
        engine = self._engine
        if engine is None:
            return 0
        inbox = len(self._inbox) if self._inbox is not None else 0
        return inbox + self._on(engine.loop, _call(engine.queued))

    def _group(self, package: ModelPackage, key: str, call: Call) -> object:
        """What a call may share a batch with: itself alone, or a signature."""
        if self.limits.max_batch_calls < 2 or call.rows < 1:
            return call
        dimension = self._batch_dims.get(key, "")
        if dimension == "":  # not looked at yet ("" is never a dimension's name)
            dimension = self._batch_dims[key] = batch_dimension(package)
        if dimension is None:
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
        return self._run_blocking(package, dict(arrays), output_names)

    def _run_blocking(
        self,
        package: ModelPackage,
        arrays: dict[str, np.ndarray],
        output_names: Sequence[str] | None,
    ) -> TryResult:
        self._refuse_blocking("run")
        return self._submit(package, arrays, output_names).wait()

    def _submit(
        self,
        package: ModelPackage,
        arrays: dict[str, np.ndarray],
        output_names: Sequence[str] | None,
        on_done: Callable[[Call], None] | None = None,
        future: asyncio.Future[TryResult] | None = None,
    ) -> Call:
        """Hand a call to the engine and return it (not yet finished).

        `arrays` becomes the call's own (callers pass a dict nobody else holds). A
        `future` says the caller runs on the engine's loop (checked by the caller, which
        needs to know anyway): the call is queued at once and settles the future itself.
        """
        engine = self._engine
        if engine is None or not engine.open:
            raise InferencePoolClosedError("The try pool is closed; start it first.")
        key, path = package.session_key
        names = list(output_names) if output_names is not None else None
        first = next(iter(arrays.values()), None)
        rows = first.shape[0] if isinstance(first, np.ndarray) and first.ndim else 0
        call = Call(package.name, key, path, arrays, names, rows, on_done, future)
        group = self._group(package, key, call)
        if future is not None:
            engine.accept(group, call)
        else:
            assert self._inbox is not None  # set with the engine
            self._inbox.post((group, call))
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
        return self._run_blocking(package, arrays, output_names)

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
        return self._run_blocking(package, arrays, None).to_json()

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
        return await self._submit_async(package, dict(arrays), output_names)

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
        arrays: dict[str, np.ndarray],
        output_names: Sequence[str] | None,
    ) -> asyncio.Future[TryResult]:
        """Queue a call whose outcome settles a future of the running loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[TryResult] = loop.create_future()
        engine = self._engine
        if engine is not None and engine.loop is loop:  # the engine settles the future
            self._submit(package, arrays, output_names, future=future)
            return future
        mailbox = self._mailboxes.get(loop)
        if mailbox is None:
            mailbox = self._mailboxes[loop] = LoopMailbox(loop, settle)

        def on_done(call: Call) -> None:
            mailbox.post((future, call.result, call.failure()))

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
        result = await self._submit_async(package, arrays, None)
        size = 0
        for value in result.outputs.values():
            # A sequence or map output (a ZipMap's) has no nbytes; walk it to size it.
            size += value.nbytes if isinstance(value, np.ndarray) else structure_nbytes(value)
        if size <= _INLINE_JSON_BYTES // 8:  # a JSON number takes ~8x its binary size
            return result.to_json()
        return await asyncio.to_thread(result.to_json)


_INLINE_JSON_BYTES = 64 * 1024


async def _call(fn: Callable[[], T]) -> T:
    """`fn()` as a coroutine, to run it on the engine's loop with `TryPool._on`."""
    return fn()
