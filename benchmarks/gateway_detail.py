# SPDX-License-Identifier: AGPL-3.0-only
"""Requests/s of the model-detail endpoint vs a bare FastAPI endpoint, same server, same run.

    .venv/bin/python benchmarks/gateway_detail.py [--seconds 5] [--threads 4]

Starts a node with the demo models, then serves the gateway app (with one extra bare
route, `GET /bench/bare`) from uvicorn on loopback and loads both endpoints in turn
with keep-alive httpx clients in threads, each for a fixed time. Goal: detail >= 0.5x.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from mercato.chain.anvil import free_port
from mercato.chain.session import demo_accounts
from mercato.config import Settings
from mercato.gateway.app import create_app
from mercato.node import Node, seed_demo


def load(url: str, seconds: float, threads: int) -> float:
    """Requests/s over `seconds` from `threads` keep-alive clients (non-200 counts as failure)."""
    counts = [0] * threads
    failures = [0] * threads
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        with httpx.Client() as client:
            while time.monotonic() < stop:
                if client.get(url).status_code == 200:
                    counts[i] += 1
                else:
                    failures[i] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if sum(failures):
        raise SystemExit(f"{sum(failures)} requests to {url} failed")
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), anvil_port=free_port(), gateway_port=free_port())
        node = Node(settings, accounts=demo_accounts()[:2])
        node.start()
        try:
            ids = seed_demo(node, demo_accounts()[:2])
            assert node.market is not None
            from mercato.client.provider import ProviderService

            app = create_app(node.market, ProviderService(node.market, None))  # type: ignore[arg-type]

            @app.get("/bench/bare")
            def bare() -> dict[str, int]:
                return {"model_id": ids[0]}

            port = free_port()
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            )
            threading.Thread(target=server.run, daemon=True).start()
            base = f"http://127.0.0.1:{port}"
            while httpx.get(f"{base}/v1/models/{ids[0]}").status_code != 200:
                time.sleep(0.2)  # the index catches up with the demo models
            load(f"{base}/bench/bare", 1.0, args.threads)  # warm-up
            bare_rps = load(f"{base}/bench/bare", args.seconds, args.threads)
            detail_rps = load(f"{base}/v1/models/{ids[0]}", args.seconds, args.threads)
            server.should_exit = True
        finally:
            node.stop()
    ratio = detail_rps / bare_rps
    print(f"bare endpoint:   {bare_rps:8.0f} requests/s")
    print(f"model detail:    {detail_rps:8.0f} requests/s")
    print(f"ratio:           {ratio:8.2f}x  (goal >= 0.5x)")


if __name__ == "__main__":
    main()
