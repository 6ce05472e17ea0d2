# SPDX-License-Identifier: AGPL-3.0-only
"""Dynamic batching in the try pool: waiting calls for one model share a worker run.

`TryPool._hold` keeps calls queued until all of them are waiting, so each test knows
they were offered to a worker as one batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest

from mercato.errors import InferenceInputNonFiniteError, InferenceRunError, InferenceTimeoutError
from mercato.models import ModelPackage, TryPool, TryResult
from tests.event_loop import run

from .conftest import LIMITS, digit_images, reference_session


@pytest.fixture(scope="module")
def pool() -> Iterator[TryPool]:
    with TryPool(workers=1, limits=LIMITS) as running:
        yield running


def _together(pool: TryPool, calls: list[Callable[[], TryResult]]) -> list[Future[TryResult]]:
    """Queue every call while dispatch is held, then let them go at once."""
    executor = ThreadPoolExecutor(max_workers=len(calls))
    with pool._hold():
        futures = [executor.submit(call) for call in calls]
        while pool._queued() < len(calls):
            if any(f.done() for f in futures):  # failed before queueing: report it below
                break
            time.sleep(0.005)
    executor.shutdown(wait=True)
    return futures


def test_batched_outputs_are_split_back_per_call(
    pool: TryPool, samples: dict[str, ModelPackage]
) -> None:
    package = samples["digits-mlp"]
    session = reference_session(package)
    inputs = digit_images(1, (1, 3, 2, 5, 1))
    before = pool.batched_runs
    futures = _together(pool, [lambda x=x: pool.run(package, {"X": x}) for x in inputs])
    assert pool.batched_runs == before + 1
    for x, future in zip(inputs, futures, strict=True):
        result = future.result()
        label, probabilities = session.run(None, {"X": x})
        assert result.outputs["label"].tolist() == label.tolist()
        np.testing.assert_allclose(result.outputs["probabilities"], probabilities, rtol=1e-5)


def test_a_bad_call_in_a_batch_fails_alone(
    pool: TryPool, batchable: dict[str, ModelPackage]
) -> None:
    package = batchable["gathers"]
    indices = [[0, 1], [3], [99], [2, 2, 0]]
    retries = pool.batch_retries
    futures = _together(pool, [lambda i=i: pool.run(package, {"idx": i}) for i in indices])
    assert pool.batch_retries == retries + 1
    with pytest.raises(InferenceRunError):
        futures[2].result()
    assert futures[0].result().outputs["y"].tolist() == [10.0, 11.0]
    assert futures[1].result().outputs["y"].tolist() == [13.0]
    assert futures[3].result().outputs["y"].tolist() == [12.0, 12.0, 10.0]


def test_nan_in_a_batch_fails_that_call_alone_before_any_worker_runs_it(
    pool: TryPool, samples: dict[str, ModelPackage]
) -> None:
    """Float inputs are checked for NaN once per batch; a hit is traced to its call."""
    package = samples["digits-mlp"]
    session = reference_session(package)
    inputs = digit_images(2, (1, 2, 1, 3))
    inputs[2][0, 7] = np.nan
    pids, retries = pool.pids, pool.batch_retries
    futures = _together(pool, [lambda x=x: pool.run(package, {"X": x}) for x in inputs])
    assert pool.batch_retries == retries + 1
    with pytest.raises(InferenceInputNonFiniteError) as info:
        futures[2].result()
    assert info.value.input_name == "X"
    for index in (0, 1, 3):
        result = futures[index].result()
        label, _ = session.run(None, {"X": inputs[index]})
        assert result.outputs["label"].tolist() == label.tolist()
    assert pool.pids == pids  # refused in the pool: no worker was faulted or replaced


def test_a_thousand_bad_calls_each_get_their_error_and_the_pool_serves_on(
    pool: TryPool, samples: dict[str, ModelPackage]
) -> None:
    """Every failed batch's calls are checked alone; each bad one fails on its own."""
    package = samples["iris-logreg"]
    bad = np.full((1, 4), np.nan, np.float32)

    async def many() -> list[object]:
        with pool._hold():
            calls = [
                asyncio.ensure_future(pool.run_async(package, {"X": bad})) for _ in range(1000)
            ]
            await asyncio.sleep(0)  # every call is queued before any is dispatched
            while pool._queued() < len(calls):
                await asyncio.sleep(0.005)
        return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = run(many())
    assert all(isinstance(outcome, InferenceInputNonFiniteError) for outcome in outcomes)
    assert pool.run(package, {"X": np.ones((1, 4), np.float32)}).outputs["label"].shape == (1,)


def test_a_timeout_in_a_batch_kills_the_worker_and_only_the_looping_call_fails(
    pool: TryPool, batchable: dict[str, ModelPackage]
) -> None:
    package = batchable["loops-per-row"]
    values = [[1.0, 2.0], [1e15], [3.0]]
    before = set(pool.pids)
    replaced = pool.replaced
    futures = _together(pool, [lambda v=v: pool.run(package, {"x": v}) for v in values])
    with pytest.raises(InferenceTimeoutError):
        futures[1].result()
    assert futures[0].result().outputs["y"].tolist() == [1.0, 2.0]
    assert futures[2].result().outputs["y"].tolist() == [3.0]
    # Killed once in the batch, once more when the looping call ran alone.
    assert pool.replaced == replaced + 2
    assert set(pool.pids).isdisjoint(before) and len(pool.pids) == 1


def test_models_without_a_batch_dimension_run_one_call_at_a_time(
    pool: TryPool, hostile: dict[str, ModelPackage]
) -> None:
    package = hostile["eats-memory"]  # input n: [1], output: [n_value]
    before = pool.batched_runs
    futures = _together(pool, [lambda n=n: pool.run(package, {"n": [n]}) for n in (1, 2, 3)])
    assert [f.result().outputs["y"].tolist() for f in futures] == [[1.0], [1.0] * 2, [1.0] * 3]
    assert pool.batched_runs == before
