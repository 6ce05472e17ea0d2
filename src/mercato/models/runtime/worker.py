# SPDX-License-Identifier: AGPL-3.0-only
"""The try-runtime worker: one process that runs ONNX models for the pool.

It imports only NumPy and ONNX Runtime, caps its own address space (RLIMIT_AS), keeps
an LRU cache of InferenceSessions, and answers one request at a time over a pipe. It
needs no network. The pool kills it on a timeout and replaces it after any fault, so
a model that hangs, crashes or eats memory only ever takes this process down.

Tensors travel through a shared-memory segment the pool creates for this worker alone
(inputs at the start, outputs after `input_capacity` bytes); the pipe carries only a
small pickled header per call. A tensor that does not fit its region, or is not a
numeric array, travels inline in the header instead. The segment is mapped before the
memory limit is set, so it does not eat into the model's headroom.

Protocol (`send_bytes` of a pickled tuple over a `multiprocessing` connection)::

    worker -> pool   ("ready", pid)
    pool -> worker   ("run", call_id, cache_key, model_path, layout(inputs), output_names)
    worker -> pool   ("ok", call_id, layout(outputs), elapsed_ms)
                     ("error", call_id, kind, message)   kind: load | run | memory | output
    pool -> worker   ("stop",)

A layout is one ``(name, dtype, shape, where)`` per tensor: ``where`` is the byte offset
in the shared segment, or ``("inline", value)``. Sequence and map outputs (a ZipMap's
list of dicts) travel inline, a sequence as a tuple, and count against
`max_output_bytes` like tensors do.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import time
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import Any

Layout = list[tuple[str, str, tuple[int, ...], Any]]

# ONNX Runtime's allocation failures arrive as generic errors; these words mark them.
_MEMORY_MARKERS = ("failed to allocate", "bad_alloc", "bad allocation", "out of memory")
_ALIGN = 64


def send(conn: Connection, message: tuple[Any, ...]) -> None:
    """Send one protocol message (a small tuple) as a single pickled frame."""
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def receive(conn: Connection) -> Any:
    """Receive one protocol message sent with `send`."""
    return pickle.loads(conn.recv_bytes())


def place(arrays: dict[str, Any], buffer: memoryview | None, start: int, end: int) -> Layout:
    """Copy numeric arrays into `buffer[start:end]` and describe where each went.

    Args:
        arrays: Tensors by name, or lists of tensors to concatenate along the first
            axis (a batch); anything that is not a numeric array goes inline.
        buffer: The shared segment, or None to send everything inline.
        start: First byte of the region to fill.
        end: End of the region.

    Returns:
        The layout the other side passes to `take`.
    """
    import numpy as np

    layout: Layout = []
    offset = start
    for name, value in arrays.items():
        parts = value if isinstance(value, list) else None  # a batch, to concatenate
        sample = parts[0] if parts else value
        dtype = getattr(sample, "dtype", None)
        if dtype is None or dtype.kind not in "biufc":
            layout.append((name, "", (), ("inline", value)))
            continue
        if parts is not None:
            shape = (sum(p.shape[0] for p in parts), *sample.shape[1:])
        else:
            shape = value.shape
        nbytes = math.prod(shape) * dtype.itemsize  # np.prod would cost ~5 us a tensor
        if buffer is not None and offset + nbytes <= end:
            target = np.ndarray(shape, dtype=dtype, buffer=buffer, offset=offset)
            if parts is not None:
                np.concatenate(parts, axis=0, out=target, casting="no")
            else:
                np.copyto(target, value, casting="no")
            del target
            layout.append((name, dtype.str, shape, offset))
            offset += -(-nbytes // _ALIGN) * _ALIGN
        else:
            data = np.concatenate(parts, axis=0) if parts is not None else value
            layout.append((name, dtype.str, shape, ("inline", data.tobytes())))
    return layout


def take(layout: Layout, buffer: memoryview | None, *, copy: bool) -> dict[str, Any]:
    """Rebuild the arrays `place` described.

    Args:
        layout: The output of `place`.
        buffer: The shared segment.
        copy: Copy out of the segment (the pool does, since the segment is reused);
            the worker reads its inputs in place.

    Returns:
        Tensors by name.
    """
    import numpy as np

    out: dict[str, Any] = {}
    for name, dtype, shape, where in layout:
        if isinstance(where, tuple):
            value = where[1]
            if dtype:
                out[name] = np.frombuffer(value, dtype=dtype).reshape(shape)
            else:  # a sequence output travels as a tuple (see worker_main)
                out[name] = list(value) if isinstance(value, tuple) else value
            continue
        view = np.ndarray(shape, dtype=dtype, buffer=buffer, offset=where)
        out[name] = view.copy() if copy else view
    return out


def structure_nbytes(value: Any) -> int:
    """Roughly the bytes a sequence or map output holds, to hold it to the output limit.

    Args:
        value: What ONNX Runtime returned for a non-tensor output: lists of arrays or
            of dicts, dicts of numbers or strings, or None (an empty optional).

    Returns:
        Array bytes plus 8 bytes per number and the length of each string (walked with
        a stack, not recursion, so no nesting depth can overflow it).
    """
    import numpy as np

    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray):
            if item.dtype.kind == "O":  # strings: count each one
                stack.extend(item.ravel().tolist())
            else:
                total += item.nbytes
        elif isinstance(item, (list, tuple)):
            total += 8
            stack.extend(item)
        elif isinstance(item, dict):
            total += 8
            for key, entry in item.items():
                stack.append(key)
                stack.append(entry)
        elif isinstance(item, (str, bytes)):
            total += len(item)
        else:
            total += 8
    return total


def _limit_memory(headroom_bytes: int) -> None:
    try:
        import resource
    except ImportError:  # not on POSIX: no RLIMIT_AS, the timeout still applies
        return
    import psutil

    # The limit is headroom on top of what the interpreter and ONNX Runtime already map.
    limit = psutil.Process().memory_info().vms + headroom_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _yield_to_the_gateway() -> None:
    """Run as a batch process (SCHED_BATCH), which never preempts a running one when it
    wakes.

    Woken by the pool's request, a worker used to preempt the gateway's event loop on
    its core, which then waited for the whole run and the answer before serving anything
    else (writing a request "took" ~0.8 ms on a loaded 2-core machine). A model that
    loops can no longer crowd the gateway either. Lowering one's own priority needs no
    privilege; where the policy does not exist, the worker runs as before.
    """
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None or not hasattr(os, "sched_setscheduler"):
        return
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, policy, os.sched_param(0))


def _is_memory_error(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _MEMORY_MARKERS)


def session_options(threads: int) -> Any:
    """The ONNX Runtime session options every try session gets.

    Args:
        threads: Intra-op threads (1: the calling thread alone, no thread pool).

    Returns:
        An `onnxruntime.SessionOptions`.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # errors are reported to the pool, not printed
    # With more than one thread, ONNX Runtime's pool threads spin between runs by
    # default: on 2 cores with 2 threads a 64-row call took ~2.2 ms of CPU instead of
    # ~0.16 ms, CPU taken from the gateway and the other workers
    # (benchmarks/runtime_try.py --threads 2). Waiting threads sleep instead.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def worker_main(
    conn: Connection,
    memory_headroom_bytes: int,
    cache_size: int,
    threads: int,
    max_output_bytes: int,
    shared_name: str | None = None,
    input_capacity: int = 0,
) -> None:
    """Serve try-calls until told to stop or the pipe closes.

    Args:
        conn: The worker's end of the pipe to the pool.
        memory_headroom_bytes: Address space the worker may map beyond its start-up size.
        cache_size: How many InferenceSessions to keep warm.
        threads: Intra-op threads per session.
        max_output_bytes: Largest total output to send back.
        shared_name: The shared-memory segment for tensors, if the pool made one.
        input_capacity: Bytes at the start of the segment reserved for inputs.
    """
    import numpy as np
    import onnxruntime as ort

    options = session_options(threads)
    sessions: OrderedDict[str, Any] = OrderedDict()
    buffer: memoryview | None = None
    size = 0
    if shared_name is not None:
        from multiprocessing import shared_memory

        segment = shared_memory.SharedMemory(name=shared_name)
        buffer, size = segment.buf, segment.size
    _limit_memory(memory_headroom_bytes)
    _yield_to_the_gateway()
    send(conn, ("ready", os.getpid()))

    while True:
        try:
            message = receive(conn)
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        _, call_id, key, path, layout, output_names = message
        try:
            cached = sessions.get(key)
            if cached is None:
                try:
                    session = ort.InferenceSession(
                        path, options, providers=["CPUExecutionProvider"]
                    )
                except Exception as exc:  # ORT's pybind error classes are not public API
                    kind = "memory" if _is_memory_error(exc) else "load"
                    send(conn, ("error", call_id, kind, str(exc)))
                    continue
                cached = (session, [o.name for o in session.get_outputs()])
                sessions[key] = cached
                while len(sessions) > cache_size:
                    sessions.popitem(last=False)
            sessions.move_to_end(key)
            session, all_names = cached
            inputs = take(layout, buffer, copy=False)
            started = time.perf_counter()
            try:
                results = session.run(output_names, inputs)
            except Exception as exc:  # as above: Fail, InvalidArgument, RuntimeException...
                kind = "memory" if _is_memory_error(exc) else "run"
                send(conn, ("error", call_id, kind, str(exc)))
                continue
            finally:
                del inputs  # no views on the segment survive the call
            elapsed_ms = (time.perf_counter() - started) * 1000
            names = output_names or all_names
            outputs = dict(zip(names, results, strict=True))
            total = 0
            tensors_only = True
            for value in outputs.values():
                if isinstance(value, np.ndarray):
                    # A string tensor's nbytes counts pointers, not the strings.
                    total += value.nbytes if value.dtype.kind != "O" else structure_nbytes(value)
                else:  # a sequence or map (a ZipMap's list of dicts): sized, sent inline
                    tensors_only = False
                    total += structure_nbytes(value)
            if total > max_output_bytes:
                detail = f"{total} bytes of output, limit {max_output_bytes}"
                send(conn, ("error", call_id, "output", detail))
                continue
            if not tensors_only:
                # `place` reads a list as a batch to concatenate; a sequence output is
                # not one, so it travels as a tuple (`take` gives a list back).
                outputs = {
                    name: tuple(value) if isinstance(value, list) else value
                    for name, value in outputs.items()
                }
            placed = place(outputs, buffer, input_capacity, size)
            send(conn, ("ok", call_id, placed, elapsed_ms))
        except MemoryError:
            # Even the error reply may fail to allocate; dying lets the pool replace us.
            os._exit(70)
