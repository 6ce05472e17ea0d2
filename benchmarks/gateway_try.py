# SPDX-License-Identifier: AGPL-3.0-only
"""Requests/s of `POST /v1/models/{id}/try` vs a bare FastAPI endpoint, same server, same run.

    .venv/bin/python benchmarks/gateway_try.py [--seconds 5] [--threads 4] [--workers 2]

Starts a node with the demo models, then serves the gateway app (its try provider on
the node's data directory and accounts, its own try pool, and one extra bare route,
`POST /bench/bare`) from uvicorn on loopback and loads three endpoints in turn with
keep-alive httpx clients in threads, each for a fixed time:

- the bare route (an `async def` answering a constant; the same body is posted);
- the try route, where the chain is read once per block (`mercato.client.chain_cache`);
- `POST /bench/try-lookup/{id}`: the try route after the full chain reading of the model
  (`market.models.show`) that every call used to make, for comparison.

Then it times the pieces of one call: the full chain reading, one new-block decision
(owner, latest version, agent) and a cached one. Goal: try >= 0.5x bare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn
from fastapi import Request
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


def per_call_ms(call: Callable[[], object], n: int = 30) -> float:
    """Milliseconds per call of `call`, averaged over `n` calls."""
    started = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="try worker processes")
    args = parser.parse_args()
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
            bare_rps = load(f"{base}/bench/bare", IRIS_REQUEST, args.seconds, args.threads)
            try_rps = load(try_url, IRIS_REQUEST, args.seconds, args.threads)
            lookup_rps = load(
                f"{base}/bench/try-lookup/{iris}", IRIS_REQUEST, args.seconds, args.threads
            )
            server.should_exit = True
            serving.join(timeout=30)  # its lifespan stops the try pool
            show_ms = per_call_ms(lambda: market.models.show(iris))
            decide_ms = per_call_ms(lambda: service._decide(iris))
            cached_ms = per_call_ms(lambda: service.package_for(iris), n=1000)
        finally:
            node.stop()
    ratio = try_rps / bare_rps
    print(f"bare endpoint:            {bare_rps:8.0f} requests/s")
    print(f"try, chain read per block:{try_rps:8.0f} requests/s")
    print(f"try, chain read per call: {lookup_rps:8.0f} requests/s")
    print(f"full chain reading (show):   {show_ms:8.2f} ms")
    print(f"decision at a new block:     {decide_ms:8.2f} ms")
    print(f"decision at the same block:  {cached_ms:8.3f} ms")
    print(f"ratio:                    {ratio:8.2f}x  (goal >= 0.5x)")


if __name__ == "__main__":
    main()
