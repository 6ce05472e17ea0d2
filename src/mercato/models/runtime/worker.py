# SPDX-License-Identifier: AGPL-3.0-only
"""The try-runtime worker: one process that runs ONNX models for the pool.

It imports only NumPy and ONNX Runtime, caps its own address space (RLIMIT_AS), keeps
an LRU cache of InferenceSessions, and answers one request at a time over a pipe. It
needs no network. The pool kills it on a timeout and replaces it after any fault, so
a model that hangs, crashes or eats memory only ever takes this process down.

Protocol (tuples over a `multiprocessing` connection)::

    worker -> pool   ("ready", pid)
    pool -> worker   ("run", call_id, cache_key, model_path, pack(inputs), output_names)
    worker -> pool   ("ok", call_id, pack(outputs), elapsed_ms)
                     ("error", call_id, kind, message)   kind: load | run | memory | output
    pool -> worker   ("stop",)
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from multiprocessing.connection import Connection
from typing import Any

Packed = list[tuple[str, str, tuple[int, ...], Any]]

# ONNX Runtime's allocation failures arrive as generic errors; these words mark them.
_MEMORY_MARKERS = ("failed to allocate", "bad_alloc", "bad allocation", "out of memory")


def pack(arrays: dict[str, Any]) -> Packed:
    """Flatten arrays to (name, dtype, shape, bytes) for the pipe.

    Pickling an ndarray costs tens of microseconds even for a few numbers; raw bytes
    cost almost nothing, and a try-call is mostly small tensors.

    Args:
        arrays: Tensors by name; anything that is not a numeric array passes as is.

    Returns:
        One tuple per tensor.
    """
    packed: Packed = []
    for name, value in arrays.items():
        dtype = getattr(value, "dtype", None)
        if dtype is not None and dtype.kind in "biufc":
            packed.append((name, dtype.str, value.shape, value.tobytes()))
        else:
            packed.append((name, "", (), value))
    return packed


def unpack(packed: Packed) -> dict[str, Any]:
    """Rebuild the arrays `pack` flattened (read-only views on the received bytes).

    Args:
        packed: The output of `pack`.

    Returns:
        Tensors by name.
    """
    import numpy as np

    out: dict[str, Any] = {}
    for name, dtype, shape, data in packed:
        out[name] = np.frombuffer(data, dtype=dtype).reshape(shape) if dtype else data
    return out


def _limit_memory(headroom_bytes: int) -> None:
    try:
        import resource
    except ImportError:  # not on POSIX: no RLIMIT_AS, the timeout still applies
        return
    import psutil

    # The limit is headroom on top of what the interpreter and ONNX Runtime already map.
    limit = psutil.Process().memory_info().vms + headroom_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _is_memory_error(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _MEMORY_MARKERS)


def worker_main(
    conn: Connection,
    memory_headroom_bytes: int,
    cache_size: int,
    threads: int,
    max_output_bytes: int,
) -> None:
    """Serve try-calls until told to stop or the pipe closes.

    Args:
        conn: The worker's end of the pipe to the pool.
        memory_headroom_bytes: Address space the worker may map beyond its start-up size.
        cache_size: How many InferenceSessions to keep warm.
        threads: Intra-op threads per session.
        max_output_bytes: Largest total output to send back.
    """
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # errors are reported to the pool, not printed
    sessions: OrderedDict[str, Any] = OrderedDict()
    _limit_memory(memory_headroom_bytes)
    conn.send(("ready", os.getpid()))

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        _, call_id, key, path, inputs, output_names = message
        try:
            cached = sessions.get(key)
            if cached is None:
                try:
                    session = ort.InferenceSession(
                        path, options, providers=["CPUExecutionProvider"]
                    )
                except Exception as exc:  # ORT's pybind error classes are not public API
                    kind = "memory" if _is_memory_error(exc) else "load"
                    conn.send(("error", call_id, kind, str(exc)))
                    continue
                cached = (session, [o.name for o in session.get_outputs()])
                sessions[key] = cached
                while len(sessions) > cache_size:
                    sessions.popitem(last=False)
            sessions.move_to_end(key)
            session, all_names = cached
            started = time.perf_counter()
            try:
                results = session.run(output_names, unpack(inputs))
            except Exception as exc:  # as above: Fail, InvalidArgument, RuntimeException...
                kind = "memory" if _is_memory_error(exc) else "run"
                conn.send(("error", call_id, kind, str(exc)))
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            names = output_names or all_names
            outputs = dict(zip(names, results, strict=True))
            size = sum(v.nbytes for v in outputs.values() if isinstance(v, np.ndarray))
            if size > max_output_bytes:
                detail = f"{size} bytes of output, limit {max_output_bytes}"
                conn.send(("error", call_id, "output", detail))
                continue
            conn.send(("ok", call_id, pack(outputs), elapsed_ms))
        except MemoryError:
            # Even the error reply may fail to allocate; dying lets the pool replace us.
            os._exit(70)
