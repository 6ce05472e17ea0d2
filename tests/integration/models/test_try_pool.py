# SPDX-License-Identifier: AGPL-3.0-only
"""The try pool with real worker processes and real ONNX Runtime.

Every hostile call must end in its own typed error while the pool keeps answering
good calls; the limits are small so the whole module runs in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psutil
import pytest

from mercato.errors import (
    ConfigError,
    InferenceInputNonFiniteError,
    InferenceInputShapeError,
    InferenceInputTooLargeError,
    InferenceInputTypeError,
    InferenceMemoryError,
    InferencePoolClosedError,
    InferenceTimeoutError,
    InferenceWorkerCrashedError,
)
from mercato.models import ModelPackage, TryPool
from mercato.models.runtime.process import WorkerProcess

from .conftest import LIMITS, iris_rows


def _direct(package: ModelPackage, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(package.entry_path), providers=["CPUExecutionProvider"])
    return list(session.run(None, {"X": x}))


def _wait_until(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the pool"
        time.sleep(0.01)


def _labels(pool: TryPool, package: ModelPackage) -> list[int]:
    labels: list[int] = pool.run(package, {"X": iris_rows()}).outputs["label"].tolist()
    return labels


def _still_serves(pool: TryPool, package: ModelPackage) -> None:
    assert _labels(pool, package) == [0, 2]


def test_outputs_match_in_process_onnxruntime(
    pool: TryPool, samples: dict[str, ModelPackage]
) -> None:
    for name, n_features in [("iris-logreg-tuned", 4), ("digits-mlp", 64), ("diabetes-gbr", 10)]:
        x = np.random.default_rng(0).uniform(0, 1, (3, n_features)).astype(np.float32)
        result = pool.run(samples[name], {"X": x})
        expected = _direct(samples[name], x)
        assert result.model == name
        for got, want in zip(result.outputs.values(), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6)


def test_json_in_json_out(pool: TryPool, samples: dict[str, ModelPackage]) -> None:
    request = json.dumps({"inputs": {"X": {"dtype": "float32", "data": iris_rows().tolist()}}})
    response = json.loads(pool.run_json(samples["iris-logreg-tuned"], request))
    assert response["model"] == "iris-logreg-tuned"
    assert response["outputs"]["label"] == {
        "kind": "tensor",
        "dtype": "int64",
        "shape": [2],
        "data": [0, 2],
    }
    probabilities = response["outputs"]["probabilities"]
    assert probabilities["dtype"] == "float32" and probabilities["shape"] == [2, 3]
    assert abs(sum(probabilities["data"][0]) - 1.0) < 1e-5


@pytest.mark.parametrize(
    ("inputs", "error"),
    [
        ({"X": [[1.0, 2.0, 3.0]]}, InferenceInputShapeError),
        ({"X": [["a", "b", "c", "d"]]}, InferenceInputTypeError),
        ({"X": [[1.0, float("nan"), 1.0, 1.0]]}, InferenceInputNonFiniteError),
        ({"X": np.empty((100 * 1024 * 1024 // 16, 4), np.float32)}, InferenceInputTooLargeError),
    ],
)
def test_bad_input_is_refused_before_the_worker(
    pool: TryPool, samples: dict[str, ModelPackage], inputs: dict[str, object], error: type
) -> None:
    pids = pool.pids
    with pytest.raises(error):
        pool.run(samples["iris-logreg-tuned"], inputs)
    assert pool.pids == pids  # nothing reached a worker, nothing was replaced
    _still_serves(pool, samples["iris-logreg-tuned"])


def test_run_arrays_refuses_nan_too(pool: TryPool, samples: dict[str, ModelPackage]) -> None:
    """Arrays that skipped `prepare_inputs` are still checked before a worker runs them."""
    pids = pool.pids
    rows = iris_rows()
    rows[1, 2] = np.inf
    with pytest.raises(InferenceInputNonFiniteError, match="finite"):
        pool.run_arrays(samples["iris-logreg-tuned"], {"X": rows})
    assert pool.pids == pids
    _still_serves(pool, samples["iris-logreg-tuned"])


def test_nan_where_ints_are_expected(pool: TryPool, hostile: dict[str, ModelPackage]) -> None:
    with pytest.raises(InferenceInputNonFiniteError, match="integers"):
        pool.run_json(hostile["eats-memory"], '{"inputs": {"n": [NaN]}}')
    with pytest.raises(InferenceInputTypeError):
        pool.run(hostile["eats-memory"], {"n": [2.5]})
    assert pool.run(hostile["eats-memory"], {"n": [3]}).outputs["y"].tolist() == [1.0] * 3


def test_100_mb_json_request_is_refused(pool: TryPool, samples: dict[str, ModelPackage]) -> None:
    request = b'{"inputs":{"X":[' + b"0," * (50 * 1024 * 1024) + b"0]}}"
    with pytest.raises(InferenceInputTooLargeError):
        pool.run_json(samples["iris-logreg-tuned"], request)
    _still_serves(pool, samples["iris-logreg-tuned"])


def test_looping_model_times_out_and_its_worker_is_replaced(
    pool: TryPool, samples: dict[str, ModelPackage], hostile: dict[str, ModelPackage]
) -> None:
    before = set(pool.pids)
    started = time.monotonic()
    with pytest.raises(InferenceTimeoutError) as info:
        pool.run(hostile["loops"], {"x": [0.0]})
    assert time.monotonic() - started < LIMITS.timeout_s + 5
    assert info.value.seconds == LIMITS.timeout_s
    assert info.value.code == "inference_timeout"
    after = set(pool.pids)
    assert len(after) == 2 and len(before - after) == 1
    # The other worker answers at once; the replacement joins when it has started.
    for _ in range(4):
        _still_serves(pool, samples["iris-logreg-tuned"])


def test_memory_eater_gets_a_memory_error_and_pool_keeps_serving(
    pool: TryPool, samples: dict[str, ModelPackage], hostile: dict[str, ModelPackage]
) -> None:
    with pytest.raises(InferenceMemoryError) as info:
        pool.run(hostile["eats-memory"], {"n": [2**30]})
    assert info.value.limit_bytes == LIMITS.memory_bytes
    assert info.value.code == "inference_out_of_memory"
    for _ in range(4):
        _still_serves(pool, samples["iris-logreg-tuned"])


def test_idle_workers_killed_from_outside_are_replaced_before_any_call_fails(
    pool: TryPool, samples: dict[str, ModelPackage]
) -> None:
    # Replacements started by earlier tests have come up.
    _wait_until(lambda: len(pool._all) == 2 and all(worker.ready for worker in pool._all))
    killed = set(pool.pids)
    replaced = pool.replaced
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    # The engine watches each worker's pipe, so a death is noticed without a call.
    _wait_until(lambda: pool.replaced >= replaced + 2)
    assert pool.replaced == replaced + 2
    for _ in range(4):
        _still_serves(pool, samples["iris-logreg-tuned"])  # waits for the replacements
    assert len(pool.pids) == 2 and killed.isdisjoint(pool.pids)


def test_a_worker_killed_during_a_call_fails_that_call_with_its_exit_code(
    pool: TryPool, samples: dict[str, ModelPackage], hostile: dict[str, ModelPackage]
) -> None:
    with ThreadPoolExecutor(max_workers=1) as executor:
        looping = executor.submit(pool.run, hostile["loops"], {"x": [0.0]})
        time.sleep(0.3)  # well inside its 1.5 s limit: it is running now
        assert not looping.done()
        for pid in pool.pids:
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(InferenceWorkerCrashedError) as info:
            looping.result(timeout=LIMITS.timeout_s)
    assert info.value.exitcode == -signal.SIGKILL
    assert info.value.code == "inference_worker_crashed"
    _still_serves(pool, samples["iris-logreg-tuned"])


def test_a_replacement_that_cannot_start_fails_the_waiting_calls_and_is_retried(
    samples: dict[str, ModelPackage],
) -> None:
    package = samples["iris-logreg-tuned"]
    with TryPool(workers=1, limits=LIMITS) as pool:
        engine = pool._engine
        assert engine is not None
        engine.limits = replace(LIMITS, startup_timeout_s=0.01)  # nothing imports ORT that fast
        os.kill(pool.pids[0], signal.SIGKILL)
        _wait_until(lambda: pool.replaced > 0)  # the death is noticed; a replacement starts
        with pytest.raises(InferenceWorkerCrashedError, match="did not start"):
            pool.run(package, {"X": iris_rows()})  # told, not left waiting forever
        failed_starts = pool.replaced
        engine.limits = LIMITS  # the runtime works again: a later retry brings a worker up
        deadline = time.monotonic() + 60
        while True:
            try:
                _still_serves(pool, package)
                break
            except InferenceWorkerCrashedError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert failed_starts >= 2  # the killed worker, and at least one failed start
        assert len(pool.pids) == 1


def test_parallel_calls_across_models_with_small_session_cache(
    pool: TryPool, samples: dict[str, ModelPackage]
) -> None:
    # Three models through a cache of two sessions per worker: evictions must be harmless.
    work = [samples[name] for name in ("iris-logreg", "iris-logreg-tuned", "diabetes-gbr")] * 10

    def call(package: ModelPackage) -> str:
        n = package.inputs[0].shape[1] if package.inputs[0].shape else 4
        x = np.ones((2, int(n or 4)), np.float32)
        return pool.run(package, {"X": x}).model

    with ThreadPoolExecutor(max_workers=4) as executor:
        names = list(executor.map(call, work))
    assert names == [package.name for package in work]


def test_closed_pool_and_bad_config(samples: dict[str, ModelPackage]) -> None:
    closed = TryPool(workers=1, limits=LIMITS)
    with pytest.raises(InferencePoolClosedError):
        closed.run(samples["iris-logreg"], {"X": iris_rows()})
    with pytest.raises(ConfigError):
        TryPool(workers=0)
    with pytest.raises(ConfigError):
        TryPool(start_method="teleport")


def test_closing_fails_waiting_calls_and_lets_the_running_one_finish(
    samples: dict[str, ModelPackage], hostile: dict[str, ModelPackage]
) -> None:
    package = samples["iris-logreg-tuned"]
    executor = ThreadPoolExecutor(max_workers=2)
    pool = TryPool(workers=1, limits=LIMITS)
    pool.start()
    pids = pool.pids
    running = executor.submit(pool.run, hostile["loops"], {"x": [0.0]})
    engine = pool._engine
    assert engine is not None
    _wait_until(lambda: len(engine._busy) == 1)  # the looping call is in the worker
    waiting = executor.submit(pool.run, package, {"X": iris_rows()})
    _wait_until(lambda: pool._queued() == 1)
    pool.close()
    # Close let it run into its own time limit rather than cutting it off as closed. (Its
    # future is settled by the executor's thread, a moment after close returns.)
    with pytest.raises(InferenceTimeoutError):
        running.result(timeout=30)
    with pytest.raises(InferencePoolClosedError):
        waiting.result(timeout=5)
    with pytest.raises(InferencePoolClosedError):
        pool.run(package, {"X": iris_rows()})
    assert pool.pids == [] and not any(psutil.pid_exists(pid) for pid in pids)
    executor.shutdown()


def test_a_pool_that_cannot_start_leaves_nothing_behind(samples: dict[str, ModelPackage]) -> None:
    shm = Path("/dev/shm")  # where Linux keeps POSIX shared-memory segments
    segments_before = set(os.listdir(shm))
    me = psutil.Process()
    children_before = {child.pid for child in me.children()}
    pool = TryPool(workers=2, limits=replace(LIMITS, startup_timeout_s=0.01))
    with pytest.raises(InferenceWorkerCrashedError, match="did not start"):
        pool.start()  # no worker imports ONNX Runtime in 10 ms
    workers_left = [
        child
        for child in me.children()
        if child.pid not in children_before
        and child.status() != psutil.STATUS_ZOMBIE
        and "spawn_main" in " ".join(child.cmdline())  # not the resource tracker
    ]
    assert workers_left == []
    assert set(os.listdir(shm)) - segments_before == set()
    assert pool.pids == []
    with pytest.raises(InferencePoolClosedError):
        pool.run(samples["iris-logreg"], {"X": iris_rows()})


def _hold_back_starts(pool: TryPool, gate: threading.Event) -> None:
    """New workers of `pool` report ready only once `gate` is set."""
    engine = pool._engine
    assert engine is not None
    spawn = engine._spawn

    def held_back() -> WorkerProcess:
        fresh = spawn()
        wait_ready = fresh.wait_ready

        def ready_after_the_gate(timeout: float) -> None:
            gate.wait(60)
            wait_ready(timeout)

        fresh.wait_ready = ready_after_the_gate  # type: ignore[method-assign]
        return fresh

    engine._spawn = held_back


def test_recycled_workers_serve_until_their_replacements_are_ready(
    samples: dict[str, ModelPackage],
) -> None:
    # Two workers recycled after every run come due together. Each keeps serving until its
    # replacement has imported ONNX Runtime (held back here), so the pool never goes dark.
    limits = replace(LIMITS, max_runs_per_worker=1)
    package = samples["iris-logreg-tuned"]
    gate = threading.Event()
    with TryPool(workers=2, limits=limits) as pool:
        _hold_back_starts(pool, gate)
        old = set(pool._all)
        with ThreadPoolExecutor(max_workers=4) as executor:
            labels = list(executor.map(lambda _: _labels(pool, package), range(40)))
        assert labels == [[0, 2]] * 40  # every call answered while no replacement was ready
        assert old <= set(pool._all)  # both due, both still there...
        assert pool.replaced == 2  # ...each with one replacement starting, not one per run
        gate.set()
        # The replacements joined, and the old workers left and were stopped.
        _wait_until(lambda: not old & set(pool._all) and not any(w.process.is_alive() for w in old))
        _still_serves(pool, package)
        assert len(pool._all) >= 2


def test_a_recycled_worker_that_dies_is_not_replaced_twice(
    samples: dict[str, ModelPackage],
) -> None:
    # Its replacement is already starting: dying must not start a second one.
    limits = replace(LIMITS, max_runs_per_worker=1)
    package = samples["iris-logreg-tuned"]
    gate = threading.Event()
    executor = ThreadPoolExecutor(max_workers=1)
    with TryPool(workers=1, limits=limits) as pool:
        _hold_back_starts(pool, gate)
        engine = pool._engine
        assert engine is not None
        (old,) = pool._all
        _still_serves(pool, package)  # its first run makes it due: a replacement starts
        _wait_until(lambda: pool.replaced == 1)
        engine.limits = LIMITS  # the replacement itself is not recycled during the test
        os.kill(old.process.pid, signal.SIGKILL)
        _wait_until(lambda: old not in pool._all)  # its death is seen
        waiting = executor.submit(_labels, pool, package)  # no worker serves it yet
        gate.set()
        assert waiting.result(timeout=60) == [0, 2]  # the replacement took it
        assert pool.replaced == 1
        assert len(pool._all) == 1
    executor.shutdown()


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
def test_workers_and_their_replacements_run_as_batch_processes(
    pool: TryPool, samples: dict[str, ModelPackage]
) -> None:
    # A woken worker must not preempt the gateway's event loop (see worker.py).
    _still_serves(pool, samples["iris-logreg-tuned"])
    assert pool.pids and all(os.sched_getscheduler(pid) == os.SCHED_BATCH for pid in pool.pids)
    killed = pool.pids[0]
    os.kill(killed, signal.SIGKILL)
    _wait_until(lambda: killed not in pool.pids and len(pool._all) == 2)
    _wait_until(lambda: all(worker.ready for worker in pool._all))
    _still_serves(pool, samples["iris-logreg-tuned"])
    assert all(os.sched_getscheduler(pid) == os.SCHED_BATCH for pid in pool.pids)
    # The gateway's own process keeps the normal policy.
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
