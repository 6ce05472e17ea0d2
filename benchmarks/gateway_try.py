# SPDX-License-Identifier: AGPL-3.0-only
"""Requests/s of `POST /v1/models/{id}/try` vs a bare FastAPI endpoint, same server, same run.

    .venv/bin/python benchmarks/gateway_try.py [--seconds 5] [--rounds 3] [--threads 4]
        [--workers 2] [--load-process]

Starts a node with the demo models, then serves the gateway app (its try provider on
the node's data directory and accounts, its own try pool, and two extra routes) from
uvicorn on loopback and loads it with keep-alive httpx clients, each endpoint for a
fixed time:

- `POST /bench/bare`: an `async def` answering a constant (the same body is posted),
  matched before every other route, as in an app that has only it;
- the try route, through everything a try call passes: body limits, moderation, the
  rate limits, the model judged once per block (`mercato.client.chain_cache`), the
  try pool;
- `POST /bench/try-lookup/{id}`: the try route after the full chain reading of the
  model (`market.models.show`) that every call used to make, for comparison.

Bare and try take turns, `--rounds` times, so noise from other work on the machine
lands on both; each round's ratio is printed, then the median. By default the load
generator's threads run in this process (with the GIL, the same for both routes);
`--load-process` runs them in a separate process instead, so the server has the
interpreter to itself. "CPU/request" is this process's CPU time (every thread: the
server, the try engine, and the load threads unless --load-process) per request. Then
it times the pieces of one call: the full chain reading, one new-block decision
(owner, latest version, agent) and a cached one. Goal: try >= 0.5x bare.

Figures, 2026-12-05, 2 cores shared with other work (load average as `uptime` said
before and after each run; 3 rounds of 5 s each):

    before, the old script (bare registered after every other route), load 0.3:
      bare 776-822/s, try 190/s: 0.23-0.24x
    before, this script on the code of that day, load 1.1-1.8:
      in-process load:   bare 671-737/s, try 132-150/s: 0.19-0.21x (try 6.9-7.9 ms
                         CPU/request, bare 1.5-1.6)
      --load-process:    bare 1140-1213/s, try 147-162/s: 0.12-0.14x (try 6.1-6.6 ms
                         CPU/request in the server, bare 0.55-0.60)
    after, load 0.6-2.4:
      in-process load:   bare 620-697/s, try 406-468/s: 0.64-0.75x (2.2-2.6 ms / 1.5-1.7)
      --load-process:    bare 1158-1232/s, try 946-991/s: 0.77-0.86x (0.97-0.99 / 0.54-0.59)
    after, load 3-5 (other test suites running): in-process 0.47-0.58x and 0.49-0.73x
      in three runs (medians 0.54-0.57x); --load-process 0.68-0.85x.

Where the try call's time went, and what changed: ~2-4 ms per call in a thread on
moderation (two index queries and base58/sha256 of every CID of the model, through a
pure-Python base58): each model's verdict is now kept and answered from the event loop
while the lists' files are unchanged, for at most 1 s (`ModelVerdicts`); a worker woken
by a call preempted the event loop on its core for the whole run (a pipe write "took"
~0.8 ms): workers run as SCHED_BATCH; ~0.1 ms matching routes before the try route:
it is matched first; ~55 us following the structure of a 70-byte body: byte counts
suffice; ~8 us naming output dtypes. The try pool's own round trip (decode, place,
pipe, ONNX Runtime ~0.06 ms, answer, encode) is now the largest part, ~0.25 ms of the
event loop's CPU per call without batching.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from mercato.chain.anvil import free_port
from mercato.chain.session import demo_accounts
from mercato.client.provider import ProviderService
from mercato.config import Settings
from mercato.gateway.app import create_app
from mercato.models.runtime import TryPool
from mercato.node import Node, seed_demo

IRIS_REQUEST = json.dumps(
    {"inputs": {"X": {"dtype": "float32", "data": [[5.1, 3.5, 1.4, 0.2]]}}}
).encode()


def load(url: str, body: bytes, seconds: float, threads: int) -> float:
    """Requests/s over `seconds` from `threads` keep-alive clients posting `body`
    (a non-200 answer stops the benchmark)."""
    counts = [0] * threads
    failures: list[str] = []
    stop = time.monotonic() + seconds
    headers = {"Content-Type": "application/json"}

    def worker(i: int) -> None:
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop:
                answer = client.post(url, content=body, headers=headers)
                if answer.status_code == 200:
                    counts[i] += 1
                else:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")
                    return

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if failures:
        raise SystemExit(f"{len(failures)} requests to {url} failed, e.g. {failures[0]}")
    return sum(counts) / seconds


def load_elsewhere(url: str, body: bytes, seconds: float, threads: int) -> float:
    """`load` run in a fresh Python process (this script, `--load-only`)."""
    command = [sys.executable, __file__, "--load-only", url, "--seconds", str(seconds)]
    command += ["--threads", str(threads)]
    done = subprocess.run(command, input=body, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr.decode()[-2000:])
    return float(done.stdout)


def measured(
    run: Callable[[str, bytes, float, int], float], url: str, args: argparse.Namespace
) -> tuple[float, float]:
    """(requests/s, this process's CPU milliseconds per request) of one load window."""
    cpu = time.process_time()
    rate = run(url, IRIS_REQUEST, args.seconds, args.threads)
    spent = time.process_time() - cpu
    return rate, spent * 1000 / max(rate * args.seconds, 1)


def per_call_ms(call: Callable[[], object], n: int = 30) -> float:
    """Milliseconds per call of `call`, averaged over `n` calls."""
    started = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n * 1000


def first_route(app: FastAPI, path: str) -> None:
    """Move the route just added for `path` before every other route."""
    routes = app.router.routes
    index = next(i for i, r in enumerate(routes) if getattr(r, "path", None) == path)
    routes.insert(0, routes.pop(index))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="bare/try turns")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="try worker processes")
    parser.add_argument(
        "--load-process", action="store_true", help="generate the load in another process"
    )
    parser.add_argument("--load-only", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_only:  # the load process of --load-process: body on standard input
        print(load(args.load_only, sys.stdin.buffer.read(), args.seconds, args.threads))
        return
    run = load_elsewhere if args.load_process else load
    creators = demo_accounts()[:2]
    with tempfile.TemporaryDirectory() as tmp:
        # The try limit per client address would refuse a benchmark after 30 calls.
        settings = Settings(
            data_dir=Path(tmp),
            anvil_port=free_port(),
            gateway_port=free_port(),
            try_per_minute=10**9,
        )
        node = Node(settings, accounts=creators, try_workers=1)
        node.start()
        try:
            ids = seed_demo(node, creators)
            market = node.market
            assert market is not None
            iris = ids[0]  # iris-logreg: a paid model, served with its owner's key
            service = ProviderService(
                market, TryPool(workers=args.workers), accounts=[a.address for a in creators]
            )
            app = create_app(market, service, follow_chain=False)

            @app.post("/bench/bare")
            async def bare() -> dict[str, int]:
                return {"model_id": iris}

            first_route(app, "/bench/bare")

            @app.post("/bench/try-lookup/{model_id}")
            async def try_after_lookup(model_id: int, request: Request) -> Response:
                # What each call cost before: the model read in full from the chain.
                await asyncio.to_thread(market.models.show, model_id)
                answer = await service.try_json_async(model_id, await request.body())
                return Response(answer, media_type="application/json")

            port = free_port()
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            )
            serving = threading.Thread(target=server.run, daemon=True)
            serving.start()
            while not server.started:
                time.sleep(0.1)
            base = f"http://127.0.0.1:{port}"
            try_url = f"{base}/v1/models/{iris}/try"
            load(try_url, IRIS_REQUEST, 1.0, args.threads)  # warm-up: restores the package
            load(f"{base}/bench/bare", IRIS_REQUEST, 1.0, args.threads)
            rounds = []
            for _ in range(args.rounds):
                bare_rate, bare_cpu = measured(run, f"{base}/bench/bare", args)
                try_rate, try_cpu = measured(run, try_url, args)
                rounds.append((bare_rate, bare_cpu, try_rate, try_cpu))
            lookup_rps = run(f"{base}/bench/try-lookup/{iris}", IRIS_REQUEST, args.seconds, 4)
            server.should_exit = True
            serving.join(timeout=30)  # its lifespan stops the try pool
            show_ms = per_call_ms(lambda: market.models.show(iris))
            decide_ms = per_call_ms(lambda: service._decide(iris))
            cached_ms = per_call_ms(lambda: service.package_for(iris), n=1000)
        finally:
            node.stop()
    where = "another process" if args.load_process else "this process"
    print(f"load generated in {where}, {args.threads} threads, {args.seconds} s a window")
    ratios = []
    for i, (bare_rate, bare_cpu, try_rate, try_cpu) in enumerate(rounds, 1):
        ratios.append(try_rate / bare_rate)
        print(
            f"round {i}: bare {bare_rate:6.0f} requests/s ({bare_cpu:.2f} ms CPU/request), "
            f"try {try_rate:6.0f} requests/s ({try_cpu:.2f} ms CPU/request): "
            f"{ratios[-1]:.2f}x"
        )
    print(f"try, chain read per call: {lookup_rps:8.0f} requests/s")
    print(f"full chain reading (show):   {show_ms:8.2f} ms")
    print(f"decision at a new block:     {decide_ms:8.2f} ms")
    print(f"decision at the same block:  {cached_ms:8.3f} ms")
    load_average = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average now: {load_average}")
    print(
        f"ratio: median {statistics.median(ratios):.2f}x, range {min(ratios):.2f}-"
        f"{max(ratios):.2f}x  (goal >= 0.5x)"
    )


if __name__ == "__main__":
    main()
