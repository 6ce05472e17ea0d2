# SPDX-License-Identifier: AGPL-3.0-only
"""A running Mercato node: chain, store, gateway (blocks + try calls) and the seller's agent.

node = Node(settings, accounts=[creator])
node.start()        # chain up and deployed, gateway listening, agent delivering
...
node.stop()         # everything down; the local chain's state is saved
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from eth_account.signers.local import LocalAccount

from mercato.agent import SellerAgent
from mercato.chain.session import ChainSession, open_chain
from mercato.client.market import Market
from mercato.client.provider import ProviderService
from mercato.client.running_node import NodeRecord, remove_record, write_record
from mercato.config import Settings
from mercato.errors import GatewayStartError
from mercato.gateway.api.health import NodeParts
from mercato.gateway.app import create_app
from mercato.index import Index
from mercato.leader import LeaderDuties, Leadership, lease_for
from mercato.models.runtime import TryPool
from mercato.moderation.policy import ModerationPolicy

log = logging.getLogger(__name__)
TOKEN = 10**18


@dataclass(frozen=True)
class DemoModel:
    sample: str
    creator: int  # index into the demo creators
    price: int
    parent: str | None = None
    royalty_bps: int = 0


# Two creators; the second's tuned iris model is derived from the first's, with a royalty.
DEMO_MODELS = (
    DemoModel("iris-logreg", 0, 5 * TOKEN),
    DemoModel("digits-mlp", 0, 3 * TOKEN),
    DemoModel("diabetes-gbr", 0, 0),
    DemoModel("iris-logreg-tuned", 1, 8 * TOKEN, parent="iris-logreg", royalty_bps=1_500),
)


class Node:
    """Everything a node runs, started and stopped together."""

    def __init__(self, settings: Settings, accounts: list[LocalAccount], *, try_workers: int = 2):
        self.settings = settings
        self.accounts = accounts
        self.try_workers = try_workers
        self.session: ChainSession | None = None
        self.market: Market | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: uvicorn.Server | None = None
        self._pool: TryPool | None = None
        # Which replica of a shared index follows the chain and delivers (mercato.leader).
        self.leadership: Leadership | None = None
        self.agent: SellerAgent | None = None  # the running agent, for the health check

    def start(self) -> None:
        """Brings the chain up, then the gateway and, when it holds accounts, the agent.

        Raises:
            AnvilError, ChainUnavailableError, DeploymentError: as `open_chain`.
            GatewayStartError: The gateway's port is taken.
            InferenceError: The try workers cannot start.
            Whatever fails, everything already started is stopped again (no stray Anvil).
        """
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.session = open_chain(
            self.settings.data_dir, rpc_url=self.settings.rpc_url, port=self.settings.anvil_port
        )
        settings = self.settings.model_copy(update={"rpc_url": self.session.rpc_url})
        deployment = self.session.deployment
        self.market = Market(settings, deployment=deployment)
        # Before the gateway serves or an import reuses a block: re-check what imports
        # cut off by an unclean stop wrote (cheap when there were none).
        recovered = self.market.store.recover()
        if recovered.intents:
            log.warning(
                "store: %d interrupted import(s) found; %d block(s) re-checked, %d damaged "
                "moved to quarantine",
                recovered.intents,
                recovered.checked,
                len(recovered.corrupted),
            )
        # Started by the gateway, on its event loop (see `create_app`).
        self._pool = TryPool(workers=self.try_workers)
        # Try calls only for the models the agent's accounts may sell (mercato.client.sale_keys).
        provider = ProviderService(
            self.market, self._pool, accounts=[a.address for a in self.accounts]
        )
        delivery_agent = self.accounts[0].address if self.accounts else None
        app = create_app(
            self.market,
            provider,
            delivery_agent=delivery_agent,
            try_request_bytes=self._pool.limits.max_request_bytes,
            index=Index.open(settings.index_url, data_dir=settings.data_dir),
            follow_chain=False,  # only the leader follows it (below)
        )
        config = uvicorn.Config(
            app,
            host=settings.gateway_host,
            port=settings.gateway_port,
            log_level="warning",
            # Rate limits key on the client's address; X-Forwarded-For from any local
            # process would let it pick a fresh address per request.
            proxy_headers=False,
        )
        self._server = uvicorn.Server(config)
        self._spawn("gateway", self._serve)
        markets = [Market(settings, account=a, deployment=deployment) for a in self.accounts]
        agent_factory = (
            self._agent_factory(markets, app.state.gateway.moderation) if markets else None
        )
        duties = LeaderDuties(app.state.gateway, agent_factory)
        pool = self._pool
        app.state.health = NodeParts(
            agent=lambda: self.agent.status() if self.agent is not None else None,
            sells=bool(markets),
            try_pool=lambda: pool.running,
        )
        lease = lease_for(
            settings.index_url,
            settings.data_dir,
            deployment.chain_id,
            deployment.marketplace,
            [a.address for a in self.accounts],
        )
        self.leadership = Leadership(lease, duties.start, duties.stop, duties_ok=duties.running)
        app.state.leadership = self.leadership
        self._wait_for_gateway()
        self.leadership.start()
        # Commands run on this data directory find the chain and gateway without flags.
        write_record(
            settings.data_dir,
            NodeRecord(
                os.getpid(),
                self.session.rpc_url,
                settings.public_url,
                tuple(a.address for a in self.accounts),
            ),
        )

    def _agent_factory(
        self, markets: list[Market], moderation: ModerationPolicy | None = None
    ) -> Callable[[], SellerAgent]:
        # The leader builds a fresh agent each time it takes over; health reads the latest.
        def new_agent() -> SellerAgent:
            self.agent = SellerAgent(markets, self.settings.data_dir, moderation=moderation)
            return self.agent

        return new_agent

    def account_market(self, account: LocalAccount) -> Market:
        """A market acting as one of the node's accounts."""
        if self.market is None:
            raise RuntimeError("the node is not started")
        return Market(self.market.settings, account=account, deployment=self.market.deployment)

    def stop(self) -> None:
        """Stops the agent, the gateway, the try workers and (if local) Anvil."""
        remove_record(self.settings.data_dir, os.getpid())
        if self.leadership is not None:
            self.leadership.stop()  # the agent and follower stop before the lease is let go
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        for thread in self._threads:
            thread.join(timeout=15)
        if self._pool is not None:
            self._pool.close()
        if self.session is not None:
            self.session.close()

    def _serve(self) -> None:
        if self._server is None:
            return
        try:
            self._server.run()
        except SystemExit:
            # uvicorn exits when it cannot bind; `_wait_for_gateway` reports it as
            # GatewayStartError, so the thread ends quietly.
            log.debug("the gateway could not start")

    def _spawn(self, name: str, target: object) -> None:
        thread = threading.Thread(target=target, name=f"mercato-{name}", daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _wait_for_gateway(self, timeout: float = 120.0) -> None:
        server = self._server
        if server is None:
            return
        # Generous: on a loaded two-core machine the try workers alone take many seconds
        # to start. A gateway that cannot bind ends its thread, which ends the wait at once.
        gateway = next(t for t in self._threads if t.name == "mercato-gateway")
        deadline = time.monotonic() + timeout
        while not server.started and gateway.is_alive() and time.monotonic() < deadline:
            gateway.join(0.05)
        if not server.started:
            raise GatewayStartError(self.settings.gateway_host, self.settings.gateway_port)


def seed_demo(node: Node, creators: list[LocalAccount]) -> list[int]:
    """Publishes the sample models from two demo creators, once per chain.

    Returns:
        The ids of the models it published (empty when the chain already has models).
    """
    from mercato.models.samples import build_samples

    if node.market is None:
        raise RuntimeError("the node is not started")
    if node.market.contracts.registry.total_models() > 0:
        return []
    packages = build_samples(node.settings.data_dir / "samples")
    ids: dict[str, int] = {}
    for demo in DEMO_MODELS:
        market = node.account_market(creators[demo.creator])
        parents = [ids[demo.parent]] if demo.parent else []
        published = market.models.publish(
            packages[demo.sample].root,
            price=demo.price,
            parents=parents,
            royalty_bps=[demo.royalty_bps] if demo.parent else [],
        )
        ids[demo.sample] = published.model_id
        log.info("demo model %s published as %d", demo.sample, published.model_id)
    _seed_evaluations(node, packages, ids)
    return list(ids.values())


def seed_demo_federation(node: Node, creators: list[LocalAccount]) -> None:
    """A finished federated task and one open for joining (see `mercato.demo_federation`),
    seeded once, right after `seed_demo` published the models.

    The first creator requests and coordinates the finished one, so this node's agent
    delivers the keys of its result model; four demo accounts are its data owners.
    """
    from mercato.chain.session import demo_accounts
    from mercato.demo_federation import seed_federation

    if node.market is None or node.market.deployment.federation is None:
        return
    tasks = seed_federation(
        node.account_market, creators[:2], demo_accounts()[2:6], node.settings.data_dir
    )
    log.info(
        "demo tasks: %d finished (model %d), %d open",
        tasks.finished,
        tasks.result_model_id,
        tasks.open,
    )


def _seed_evaluations(node: Node, packages: dict[str, Any], ids: dict[str, int]) -> None:
    """Two demo evaluators attest measured scores (see `mercato.demo_evaluations`)."""
    from mercato.chain.session import demo_accounts
    from mercato.demo_evaluations import seed_evaluations

    evaluators = demo_accounts()

    def attest(account: int, model_id: int, dataset_cid: Any, metric: str, score: float) -> None:
        market = node.account_market(evaluators[account])
        market.reviews.attest(model_id, 1, dataset_cid, metric, score)

    seed_evaluations(attest, packages, ids)
