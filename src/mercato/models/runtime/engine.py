# SPDX-License-Identifier: AGPL-3.0-only
"""The try pool's engine: one event loop drives every worker process.

All dispatch happens on one asyncio loop: waiting calls are queued there, a free
worker gets the next batch as soon as its answer is read, a timer per run kills a
worker that overruns, and the end of a worker's pipe is watched with `add_reader`, so a
worker that dies, even while idle, is noticed and replaced at once. Nothing here takes
a lock or wakes a thread: callers on the same loop pay a future per call, and callers
elsewhere hand their calls over through a `LoopMailbox` (one loop wake per burst).

Faults stay with their worker. A batched run that fails in any way (error, timeout,
crash, memory, output limit, outputs without the batch dimension) is retried call by
call, so one bad call fails alone; a worker that overruns, runs out of memory or dies is
replaced, started in a thread so the loop keeps serving the other workers meanwhile. A
worker that has done `max_runs_per_worker` runs is recycled without a gap: it keeps
serving until its replacement is ready, then leaves (workers that share the load evenly
come due together, and retiring them first would leave the pool empty for seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mercato.errors import (
    InferenceError,
    InferenceMemoryError,
    InferencePoolClosedError,
    InferenceRunError,
    InferenceTimeoutError,
    InferenceWorkerCrashedError,
)
from mercato.models.runtime.batching import split_outputs
from mercato.models.runtime.calls import Call, TryResult
from mercato.models.runtime.limits import RuntimeLimits
from mercato.models.runtime.process import WorkerProcess
from mercato.models.runtime.tensors import non_finite_input
from mercato.models.runtime.worker import place, receive, send, take


@dataclass
class _Run:
    """A batch (or one call) a worker is running, and the timer that stops it."""

    calls: list[Call]
    timer: asyncio.TimerHandle


class Engine:
    """Queues, batches and runs try-calls on worker processes; lives on one loop.

    Every method runs on `loop`'s thread; other threads read only the counters and
    `workers`, and set `held`.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limits: RuntimeLimits,
        spawn: Callable[[], WorkerProcess],
        workers: list[WorkerProcess],
    ) -> None:
        self.loop = loop
        self.limits = limits
        self._spawn = spawn
        self.workers: set[WorkerProcess] = set()  # every live worker, for `pids`
        self._idle: list[WorkerProcess] = []
        self._busy: dict[WorkerProcess, _Run] = {}
        # Waiting calls, grouped by what may share a batch; oldest group first.
        self._pending: dict[object, deque[Call]] = {}
        self._alone: deque[Call] = deque()  # calls of a failed batch, to run one by one
        self.held = 0
        self._kick_scheduled = False
        self._start_failures = 0  # replacements in a row that did not start
        self.open = True
        self._ids = itertools.count()
        self.replaced = 0
        self.batched_runs = 0
        self.batch_retries = 0
        for worker in workers:
            self._join(worker)

    # --- calls in -----------------------------------------------------------------------

    def accept(self, group: object, call: Call) -> None:
        """Queue a call with its batch group; free workers take it this iteration."""
        if not self.open:
            call.finish(None, InferencePoolClosedError("The try pool was closed."))
            return
        queue = self._pending.get(group)
        if queue is None:
            self._pending[group] = queue = deque()
        queue.append(call)
        # Dispatch at the end of this loop iteration, not now: the calls other
        # coroutines make in the same iteration then share the batch.
        if not self._kick_scheduled:
            self._schedule_kick()

    def accept_posted(self, calls: list[tuple[object, Call]]) -> None:
        """`accept` for calls other threads posted to the engine's mailbox."""
        for group, call in calls:
            self.accept(group, call)

    def _schedule_kick(self) -> None:
        """`kick` once the callbacks already scheduled on the loop have run.

        Everything that frees a worker or queues a call goes through here, so `kick`
        never calls itself back through a failing call.
        """
        if not self._kick_scheduled:
            self._kick_scheduled = True
            self.loop.call_soon(self._kick_now)

    def _kick_now(self) -> None:
        self._kick_scheduled = False
        self.kick()

    def queued(self) -> int:
        return len(self._alone) + sum(len(calls) for calls in self._pending.values())

    def kick(self) -> None:
        """Give waiting calls to free workers, a fair share each."""
        while self._idle and (self._alone or self._pending) and not self.held:
            worker = self._idle.pop()
            if self._alone:
                self._start(worker, [self._alone.popleft()])
            else:
                self._start(worker, self._take_batch())

    def _take_batch(self) -> list[Call]:
        """The oldest group's calls that fit one batch, at most a fair share of them.

        With other workers free, take only a share of the waiting calls, so they all
        run at once instead of one worker taking everything while the others wait.
        """
        group = next(iter(self._pending))
        calls = self._pending.pop(group)
        share = min(self.limits.max_batch_calls, -(-len(calls) // (len(self._idle) + 1)))
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

    # --- one run ------------------------------------------------------------------------

    def _start(self, worker: WorkerProcess, batch: list[Call]) -> None:
        """Send a batch to a free worker, or fail calls that waited too long."""
        now = time.monotonic()
        live = []
        for call in batch:
            if now - call.queued_at > self.limits.queue_timeout_s:
                call.finish(
                    None,
                    InferenceTimeoutError(
                        f"All {len(self.workers)} try workers stayed busy for "
                        f"{self.limits.queue_timeout_s} s. Try again later.",
                        seconds=self.limits.queue_timeout_s,
                    ),
                )
            else:
                live.append(call)
        if not live:
            self._idle.append(worker)
            return
        first = live[0]
        arrays: dict[str, Any] = (
            first.arrays
            if len(live) == 1
            else {name: [call.arrays[name] for call in live] for name in first.arrays}
        )
        try:
            layout = place(arrays, worker.buffer, 0, worker.input_capacity)
            if not self.limits.allow_non_finite:
                # One pass over the whole batch in place, cheaper than one per call.
                error = non_finite_input(take(layout, worker.buffer, copy=False))
                if error is not None:
                    self._idle.append(worker)  # it never saw this input
                    self._fail(live, error)
                    return
            send(worker.conn, ("run", next(self._ids), first.key, first.path, layout, first.names))
        except (OSError, ValueError):  # the pipe is gone: the worker died while idle
            self._crashed(worker, [])
            self._retry_alone(live)  # no worker saw these calls: they lose nothing
            return
        timer = self.loop.call_later(self.limits.timeout_s, self._overran, worker)
        self._busy[worker] = _Run(live, timer)

    def _answered(self, worker: WorkerProcess) -> None:
        """The worker's pipe is readable: an answer, or the end of a dead worker."""
        run = self._busy.pop(worker, None)
        if run is not None:
            run.timer.cancel()
        try:
            reply = receive(worker.conn)
        except (EOFError, OSError):  # it died, busy or idle
            self._crashed(worker, run.calls if run else [])
            return
        if run is None:
            return  # nothing was asked of it: the protocol never gets here
        calls = run.calls
        if reply[0] != "ok":
            self._refused(worker, calls, reply[2], reply[3])
            return
        elapsed_ms = reply[3]
        parts: list[dict[str, Any]] | None
        if len(calls) == 1:
            parts = [take(reply[2], worker.buffer, copy=True)]
        else:
            self.batched_runs += 1
            # Views into the worker's segment: split_outputs copies each output once.
            outputs = take(reply[2], worker.buffer, copy=False)
            parts = split_outputs(outputs, [call.rows for call in calls])
            del outputs  # no view on the segment outlives this answer
        if parts is None:
            self._served(worker)
            self.batch_retries += 1
            self._retry_alone(calls)
            return
        for call, part in zip(calls, parts, strict=True):
            call.finish(TryResult(call.model, part, elapsed_ms))
        # Its next batch goes out after the callers just woken have run: those that call
        # again join it, so batches grow with the load instead of leaving half-empty.
        self._served(worker)

    def _refused(self, worker: WorkerProcess, calls: list[Call], kind: str, detail: str) -> None:
        """The worker answered with an error of `kind` for this run."""
        model = calls[0].model
        if kind == "memory":
            self._replace(worker)  # its heap may be fragmented or half-freed
            error: InferenceError = InferenceMemoryError(
                f"Model {model!r} needed more memory than the "
                f"{self.limits.memory_bytes}-byte try limit "
                f"({detail.splitlines()[0][:200]}). Try a smaller input.",
                limit_bytes=self.limits.memory_bytes,
            )
        else:
            self._served(worker)
            what = {"load": "could not be loaded", "output": "produced too much output"}.get(
                kind, "failed"
            )
            error = InferenceRunError(
                f"Model {model!r} {what} in ONNX Runtime: {detail.strip()[:500]}"
            )
        self._fail(calls, error)

    def _overran(self, worker: WorkerProcess) -> None:
        run = self._busy.pop(worker, None)
        if run is None:
            return
        self._replace(worker)
        model = run.calls[0].model
        self._fail(
            run.calls,
            InferenceTimeoutError(
                f"Model {model!r} ran longer than the {self.limits.timeout_s} s "
                "try limit and was stopped. Try a smaller input; the model may loop.",
                seconds=self.limits.timeout_s,
            ),
        )

    def _crashed(self, worker: WorkerProcess, calls: list[Call]) -> None:
        worker.process.join(0.5)  # reap it, so the exit code is known
        exitcode = worker.process.exitcode
        self._replace(worker)
        if calls:
            self._fail(
                calls,
                InferenceWorkerCrashedError(
                    f"The worker running model {calls[0].model!r} died (exit code "
                    f"{exitcode}). The model may be malformed or need more memory than "
                    "a try-call allows.",
                    exitcode=exitcode,
                ),
            )

    def _fail(self, calls: list[Call], error: InferenceError) -> None:
        """A failed run: its only call gets `error`; a batch's calls run again alone."""
        if len(calls) == 1:
            calls[0].finish(None, error)
            self._schedule_kick()
        else:
            self.batched_runs += 1
            self.batch_retries += 1
            self._retry_alone(calls)

    def _fail_waiting(self, error: InferenceError) -> None:
        """Every call still waiting for a worker gets `error`."""
        waiting = list(self._alone)
        waiting += [call for calls in self._pending.values() for call in calls]
        self._alone.clear()
        self._pending.clear()
        for call in waiting:
            call.finish(None, error)

    def _retry_alone(self, calls: list[Call]) -> None:
        self._alone.extendleft(reversed(calls))  # first in line, in their order
        self._schedule_kick()

    # --- workers ------------------------------------------------------------------------

    def _join(self, worker: WorkerProcess) -> None:
        """A started worker joins: watch its pipe and give it work."""
        self.workers.add(worker)
        self.loop.add_reader(worker.conn.fileno(), self._answered, worker)
        self._idle.append(worker)
        self._schedule_kick()

    def _served(self, worker: WorkerProcess) -> None:
        """A run finished normally; the worker is free again, or leaves if recycled."""
        worker.runs += 1
        if worker.retire_when_free:
            self._drop(worker)
            worker.kill()
            return
        if worker.runs >= self.limits.max_runs_per_worker and not worker.retiring:
            worker.retiring = True
            self.replaced += 1
            self._launch(replacing=worker)
        self._idle.append(worker)
        self._schedule_kick()

    def _replace(self, worker: WorkerProcess) -> None:
        """Kill a faulty worker and start another; the loop keeps serving meanwhile."""
        self._drop(worker)
        worker.kill()
        if self.open and not worker.retiring:  # a retiring one's replacement is on its way
            self.replaced += 1
            self._launch()

    def _retire(self, worker: WorkerProcess) -> None:
        """A recycled worker's replacement has joined: it leaves once it is free."""
        if worker not in self.workers:
            return  # it died meanwhile, and its replacement took its place
        if worker in self._busy:
            worker.retire_when_free = True
            return
        self._drop(worker)
        worker.kill()

    def _launch(self, replacing: WorkerProcess | None = None) -> None:
        """Start a worker; it waits for ONNX Runtime to import in a thread, then joins."""
        fresh = self._spawn()
        self.workers.add(fresh)  # counted (and stopped on close) while it starts
        started = self.loop.run_in_executor(None, fresh.wait_ready, self.limits.startup_timeout_s)
        started.add_done_callback(lambda done: self._started(fresh, done, replacing))

    def _started(
        self,
        worker: WorkerProcess,
        done: asyncio.Future[None],
        replacing: WorkerProcess | None,
    ) -> None:
        # Read even when closed, or asyncio logs the start failure as never retrieved.
        failure = done.exception() if not done.cancelled() else None
        if not self.open:
            return  # `close` listed it among the workers, and its caller stops it
        self.workers.discard(worker)
        if done.cancelled() or failure is not None:
            worker.kill()
            if not self._idle and not self._busy:
                # No worker is left to serve the waiting calls: tell them, then retry.
                error = (
                    failure
                    if isinstance(failure, InferenceError)
                    else InferenceWorkerCrashedError(
                        "A try-runtime worker did not start.", exitcode=worker.process.exitcode
                    )
                )
                self._fail_waiting(error)
            # Back off (0.5 s, 1 s, 2 s... at most 30 s) so a broken runtime does not
            # turn into a stream of processes.
            delay = min(30.0, 0.5 * 2**self._start_failures)
            self._start_failures += 1
            self.replaced += 1
            self.loop.call_later(delay, self._relaunch, replacing)
            return
        self._start_failures = 0
        self._join(worker)
        if replacing is not None:
            self._retire(replacing)

    def _relaunch(self, replacing: WorkerProcess | None) -> None:
        if self.open:
            self._launch(replacing)

    def _drop(self, worker: WorkerProcess) -> None:
        with contextlib.suppress(ValueError, OSError):  # already closed
            self.loop.remove_reader(worker.conn.fileno())
        self.workers.discard(worker)
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)

    # --- closing ------------------------------------------------------------------------

    async def close(self) -> list[WorkerProcess]:
        """Refuse new calls, fail waiting ones, let running ones finish (bounded).

        Returns:
            Every worker, for the caller to stop.
        """
        self.open = False
        self._fail_waiting(InferencePoolClosedError("The try pool was closed."))
        deadline = time.monotonic() + self.limits.timeout_s + 5
        while self._busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        workers = list(self.workers)
        for worker in workers:
            self._drop(worker)
        return workers
