# SPDX-License-Identifier: AGPL-3.0-only
"""The try pool awaited from asyncio: same answers and errors as the blocking API."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import psutil
import pytest

from mercato.errors import (
    InferenceInputError,
    InferenceInputNonFiniteError,
    InferenceInputShapeError,
    InferencePoolClosedError,
    InferenceRunError,
    InferenceTimeoutError,
)
from mercato.models import ModelPackage, TryPool
from tests.event_loop import run

from .conftest import LIMITS, digit_images, iris_rows, reference_session


@pytest.fixture(scope="module")
def pool() -> Iterator[TryPool]:
    with TryPool(workers=2, limits=LIMITS) as running:
        yield running


def test_a_pool_started_on_a_loop_serves_its_coroutines_and_other_threads(
    samples: dict[str, ModelPackage],
) -> None:
    """`async with TryPool(...)`: the engine runs on this loop, next to its callers."""
    package = samples["digits-mlp"]
    session = reference_session(package)
    inputs = digit_images(3, (1, 2, 1, 3, 1, 1, 2, 1))

    async def scenario() -> tuple[list[object], object, int, list[int]]:
        async with TryPool(workers=1, limits=LIMITS) as pool:
            # Calls made in one loop iteration share one batch: nothing waits for them.
            results = await asyncio.gather(*(pool.run_async(package, {"X": x}) for x in inputs))
            batched = pool.batched_runs
            # A blocking call from another thread reaches the same engine...
            threaded = await asyncio.to_thread(pool.run, package, {"X": inputs[0]})
            # ...but on the loop's own thread it would wait for itself forever.
            with pytest.raises(InferenceRunError, match="await run_async"):
                pool.run(package, {"X": inputs[0]})
            return list(results), threaded, batched, pool.pids

    results, threaded, batched, pids = run(scenario())
    assert batched == 1
    for x, result in zip(inputs, results, strict=True):
        label, _ = session.run(None, {"X": x})
        assert result.outputs["label"].tolist() == label.tolist()  # type: ignore[attr-defined]
    assert threaded.outputs["label"].tolist() == results[0].outputs["label"].tolist()  # type: ignore[attr-defined]
    assert len(pids) == 1 and not psutil.pid_exists(pids[0])  # stopped on leaving the block


def test_async_outputs_match_the_blocking_call(
    pool: TryPool, samples: dict[str, ModelPackage]
) -> None:
    package = samples["iris-logreg"]
    blocking = pool.run(package, {"X": iris_rows()})
    awaited = run(pool.run_async(package, {"X": iris_rows()}))
    assert awaited.model == package.name
    assert awaited.outputs["label"].tolist() == blocking.outputs["label"].tolist()
    np.testing.assert_array_equal(
        awaited.outputs["probabilities"], blocking.outputs["probabilities"]
    )


def test_many_coroutines_share_batches_and_each_gets_its_own_rows(
    pool: TryPool, samples: dict[str, ModelPackage]
) -> None:
    package = samples["digits-mlp"]
    session = reference_session(package)
    inputs = digit_images(7, range(1, 41))

    async def all_at_once() -> list[object]:
        with pool._hold():  # every call waits before the first is dispatched
            tasks = [asyncio.ensure_future(pool.run_async(package, {"X": x})) for x in inputs]
            while pool._queued() < len(inputs):
                await asyncio.sleep(0.005)
        return await asyncio.gather(*tasks)

    before = pool.batched_runs
    results = run(all_at_once())
    # Two idle workers split the 40 waiting calls between them instead of one taking all.
    assert pool.batched_runs == before + 2
    for x, result in zip(inputs, results, strict=True):
        label, _ = session.run(None, {"X": x})
        assert result.outputs["label"].tolist() == label.tolist()  # type: ignore[attr-defined]


def test_async_errors_are_the_same_typed_errors(
    pool: TryPool, samples: dict[str, ModelPackage], hostile: dict[str, ModelPackage]
) -> None:
    with pytest.raises(InferenceInputShapeError):
        run(pool.run_async(samples["iris-logreg"], {"X": [[1.0, 2.0]]}))
    with pytest.raises(InferenceInputNonFiniteError):  # checked in the pool, before a worker
        run(pool.run_async(samples["iris-logreg"], {"X": [[1.0, 2.0, float("nan"), 0.0]]}))
    before = set(pool.pids)
    with pytest.raises(InferenceTimeoutError):
        run(pool.run_async(hostile["loops"], {"x": [1.0]}))
    assert set(pool.pids) != before  # the looping worker was replaced
    result = run(pool.run_async(samples["iris-logreg"], {"X": iris_rows()}))
    assert result.outputs["label"].shape == (2,)


def test_json_async_small_and_large_requests(
    pool: TryPool, samples: dict[str, ModelPackage]
) -> None:
    package = samples["iris-logreg"]
    small = json.dumps({"inputs": {"X": iris_rows().tolist()}})
    awaited = json.loads(run(pool.run_json_async(package, small)))
    assert awaited["outputs"] == json.loads(pool.run_json(package, small))["outputs"]
    assert awaited["model"] == package.name
    # Over the inline limit: parsed and encoded off the loop, same answer.
    rows = np.random.default_rng(3).uniform(0, 8, (4000, 4)).round(3).tolist()
    large = json.dumps({"inputs": {"X": {"dtype": "float32", "data": rows}}})
    assert len(large) > 64 * 1024
    answer = json.loads(run(pool.run_json_async(package, large)))
    assert answer["outputs"] == json.loads(pool.run_json(package, large))["outputs"]
    assert answer["outputs"]["label"]["shape"] == [4000]


def test_a_cancelled_caller_leaves_the_pool_serving(
    pool: TryPool, samples: dict[str, ModelPackage], hostile: dict[str, ModelPackage]
) -> None:
    async def cancel_a_slow_call() -> None:
        task = asyncio.ensure_future(pool.run_async(hostile["loops"], {"x": [1.0]}))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancel_a_slow_call())
    time.sleep(LIMITS.timeout_s + 0.5)  # the abandoned call times out in its worker
    result = run(pool.run_async(samples["iris-logreg"], {"X": iris_rows()}))
    assert result.outputs["label"].shape == (2,)


def test_closed_pool_refuses_async_calls(samples: dict[str, ModelPackage]) -> None:
    closed = TryPool(workers=1, limits=LIMITS)
    with pytest.raises(InferencePoolClosedError):
        run(closed.run_async(samples["iris-logreg"], {"X": iris_rows()}))


def test_bad_json_is_refused_before_any_worker(
    pool: TryPool, samples: dict[str, ModelPackage]
) -> None:
    calls = pool.batched_runs
    with pytest.raises(InferenceInputError, match="not valid JSON"):
        run(pool.run_json_async(samples["iris-logreg"], b"{not json"))
    assert pool.batched_runs == calls


def test_closing_while_a_replacement_starts_logs_nothing(
    samples: dict[str, ModelPackage],
) -> None:
    """A replacement whose start fails after the pool closed is dropped quietly."""
    reported: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
        async with TryPool(workers=1, limits=LIMITS) as pool:
            engine = pool._engine
            assert engine is not None
            # Less than ONNX Runtime takes to import: the replacement fails while closing.
            engine.limits = replace(LIMITS, startup_timeout_s=0.3)
            (worker,) = pool.pids
            os.kill(worker, signal.SIGKILL)
            while pool.replaced == 0:  # its death is seen and a replacement starts
                await asyncio.sleep(0.001)
        assert not pool.running
        # Let every future of the run be collected: an unread failure would be reported.
        gc.collect()
        await asyncio.sleep(0)

    run(scenario())
    assert reported == []
