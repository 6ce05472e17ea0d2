# SPDX-License-Identifier: AGPL-3.0-only
"""Try-call cost: the worker pool against a direct `session.run` in this process.

Builds the sample models in a temporary directory and starts a pool of 2 workers with
its engine on this script's event loop, as the node's gateway runs it. For each model,
at 1 row per call and at a batch (4096 rows by default), it measures back to back:
  * latency: p50 of an awaited call through the pool minus p50 of
    `InferenceSession.run` in-process (goal: overhead <= 2 ms);
  * throughput (goal: >= 0.5x in-process single-thread throughput): calls per second
    the pool serves to `--clients` (64) coroutines on its loop, against one thread
    calling `session.run` (one intra-op thread) in a loop, at the same rows per call.
    Every caller loops, as a load generator's connections do. The pool may batch calls
    that wait together for the same model, as a model server does; the in-process loop
    runs each call alone. Throughput is what the pool serves when enough calls wait to
    keep both workers busy.
  * for reference, the same pool called from as many threads (`TryPool.run`), against
    the single thread and against the in-process session shared by as many threads.
    At one row the threads themselves bound both sides: waking a blocked thread and
    handing it the GIL costs more than the whole model run.
The sample models run a row in 5-15 us while a round trip to another process costs
~70 us on a 2-core virtual machine, so at one row the figure measures the pool's
per-call cost, not the model. Both sides are measured in the same run, so the ratios
hold on any machine; each rate is the best of `--repeat` runs of `--seconds` each, the
same window for every side (noise only ever slows a run), and the goal's two sides take
turns window by window.

`--threads N` gives each worker's sessions N intra-op threads (the node uses 1); the
"wCPU/call" column is the workers' CPU time per call during the async windows, which
shows what ONNX Runtime's pool threads cost when they spin between runs. The workers
turn spinning off: `--rows 64 --threads 2 --clients 4`, digits-mlp, 2026-12-05 on 2
cores at load 2-4: 0.46 ms of worker CPU per call and a 0.74 ms p50 with spinning,
0.13 ms and 0.22 ms without (diabetes-gbr 0.29 -> 0.10 ms). With 1 thread (the
default) ONNX Runtime starts no pool threads and nothing spins.

Run: python benchmarks/runtime_try.py [--seconds S] [--rows 1 4096] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psutil

from mercato.models import ModelPackage, RuntimeLimits, TryPool


def _session(package: ModelPackage) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the baseline the pool's workers use per call
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        str(package.entry_path), options, providers=["CPUExecutionProvider"]
    )


def _rows(package: ModelPackage, count: int) -> np.ndarray:
    shape = package.inputs[0].shape or (None, 4)
    width = shape[1] if isinstance(shape[1], int) else 4
    return np.random.default_rng(0).uniform(0, 1, (count, width)).astype(np.float32)


def _p50_ms(fn: object, calls: int) -> float:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _rate(fn: Callable[[], object], seconds: float, clients: int) -> float:
    """Calls per second with `clients` threads calling in a loop for `seconds`.

    Each thread calls in a loop, as a load generator's connections do (and as the
    coroutines of `_rate_async` do): no task queue between calls to pay for.
    """
    done = itertools.count()  # next() is atomic under the GIL
    ready = threading.Barrier(clients + 1)
    deadline = 0.0

    def client() -> None:
        ready.wait()
        while time.perf_counter() < deadline:
            fn()
            next(done)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    deadline = started + seconds
    ready.wait()  # every thread is up before the clock runs
    for thread in threads:
        thread.join()
    return next(done) / (time.perf_counter() - started)


async def _rate_async(fn: Callable[[], Awaitable[object]], seconds: float, clients: int) -> float:
    """Calls per second with `clients` coroutines calling in a loop for `seconds`."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await fn()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return done / (time.perf_counter() - started)


def _rate_alone(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of one thread calling in a loop for `seconds`."""
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(16):  # the clock costs ~1% of a 5 us call; read it every 16
            fn()
        done += 16
    return done / (time.perf_counter() - started)


def _workers_cpu(pids: list[int]) -> float:
    """CPU seconds the worker processes used so far (a worker replaced meanwhile is
    left out; none is in these runs)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _best(measure: Callable[[], float], repeat: int) -> float:
    """The best of `repeat` rates: the machine is shared, noise only ever slows a run."""
    return max(measure() for _ in range(repeat))


async def _p50_async_ms(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def _measure(args: argparse.Namespace) -> None:
    """Everything for one model and size back to back, so the ratios share the machine.

    The pool's engine runs on this loop, as in the node's gateway. Blocking measurements
    that need no pool (the in-process baselines) run on this thread while the pool idles;
    the thread callers run in a thread, so the loop keeps serving them.
    """
    # Imported here, not at the top: each worker process the pool starts re-imports this
    # script's top-level imports, and scikit-learn would add ~4 s to every replacement.
    from mercato.models.samples import build_samples

    with tempfile.TemporaryDirectory() as tmp:
        packages = build_samples(Path(tmp))
        limits = RuntimeLimits(timeout_s=10, threads=args.threads)
        async with TryPool(workers=2, limits=limits) as pool:
            print(
                f"{'model':18} {'rows':>5} {'direct p50':>10} {'pool p50':>9} {'overhead':>8} | "
                f"{'1 thread/s':>10} {'async/s':>8} {'ratio':>5} {'wCPU/call':>9} | "
                f"{'threads/s':>9} {'ratio':>5} {'shared/s':>8} {'ratio':>5}"
            )
            worst_overhead = 0.0
            worst: dict[str, dict[int, float]] = {
                way: {rows: float("inf") for rows in args.rows}
                for way in ("async", "threads", "threads vs shared")
            }
            for (name, package), rows in itertools.product(packages.items(), args.rows):
                feed = {"X": _rows(package, rows)}
                session = _session(package)

                def direct(s: ort.InferenceSession = session, f: dict = feed) -> object:
                    return s.run(None, f)

                def tried(p: ModelPackage = package, f: dict = feed) -> object:
                    return pool.run(p, f)

                def awaited(p: ModelPackage = package, f: dict = feed) -> Awaitable[object]:
                    return pool.run_async(p, f)

                for _ in range(50):  # warm both: session caches, branch predictors
                    direct()
                    await awaited()
                seconds, clients, repeat = args.seconds, args.clients, args.repeat
                direct_ms = _p50_ms(direct, args.latency_calls)
                pool_ms = await _p50_async_ms(awaited, args.latency_calls)
                # Every rate over the same time window: a faster side gets no shorter,
                # luckier windows to pick its best from.
                # The goal's two sides take turns, window by window, so a burst of noise
                # from the machine's neighbours cannot land on one side only.
                alone_rates, async_rates = [], []
                worker_cpu = 0.0
                for _ in range(repeat):
                    alone_rates.append(_rate_alone(direct, seconds))
                    cpu_before = _workers_cpu(pool.pids)
                    async_rates.append(await _rate_async(awaited, seconds, clients))
                    worker_cpu += _workers_cpu(pool.pids) - cpu_before
                cpu_per_call_ms = worker_cpu / (sum(async_rates) * seconds) * 1000
                alone_rate, async_rate = max(alone_rates), max(async_rates)
                threads_rate = await asyncio.to_thread(
                    _best, partial(_rate, tried, seconds, clients), repeat
                )
                shared_rate = _best(partial(_rate, direct, seconds, clients), repeat)

                overhead = pool_ms - direct_ms
                worst_overhead = max(worst_overhead, overhead)
                ratios = {
                    "async": async_rate / alone_rate,
                    "threads": threads_rate / alone_rate,
                    "threads vs shared": threads_rate / shared_rate,
                }
                for way, ratio in ratios.items():
                    worst[way][rows] = min(worst[way][rows], ratio)
                print(
                    f"{name:18} {rows:5} {direct_ms:8.3f}ms {pool_ms:7.3f}ms {overhead:6.3f}ms | "
                    f"{alone_rate:10.0f} {async_rate:8.0f} {ratios['async']:5.2f} "
                    f"{cpu_per_call_ms:7.3f}ms | "
                    f"{threads_rate:9.0f} {ratios['threads']:5.2f} "
                    f"{shared_rate:8.0f} {ratios['threads vs shared']:5.2f}"
                )
    print(
        f"worst p50 overhead: {worst_overhead:.3f} ms (goal <= 2 ms): "
        f"{'ok' if worst_overhead <= 2 else 'MISSED'}"
    )
    for rows, ratio in worst["async"].items():
        print(
            f"worst throughput, 2 workers called from {args.clients} coroutines, {rows} "
            f"rows/call, vs in-process single thread: {ratio:.2f}x (goal >= 0.5x): "
            f"{'ok' if ratio >= 0.5 else 'MISSED'}"
        )
    for rows in args.rows:
        print(
            f"reference: worst throughput, 2 workers called from {args.clients} threads, "
            f"{rows} rows/call: {worst['threads'][rows]:.2f}x the in-process single thread, "
            f"{worst['threads vs shared'][rows]:.2f}x the in-process session shared by as "
            "many threads"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=0.5, help="length of each throughput measurement"
    )
    parser.add_argument(
        "--latency-calls", type=int, default=1000, help="calls per latency measurement"
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4096], help="batch sizes")
    parser.add_argument("--clients", type=int, default=64, help="concurrent callers of the pool")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many rates")
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads of each worker's sessions"
    )
    asyncio.run(_measure(parser.parse_args()))


if __name__ == "__main__":
    main()
