# SPDX-License-Identifier: AGPL-3.0-only
"""Watches `Purchased` events for the models this node sells and delivers their keys.

Exactly once, across restarts: the chain is the record. An order is delivered only while
the marketplace still shows it pending (a delivered or refunded order is skipped), and
the agent's cursor moves past a block only once every order up to it is settled, so a
node that was down catches up on everything it missed when it comes back:

    <data dir>/agent/
    └── cursor-<chain id>.json     {"block": last block whose purchases are all settled}
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from eth_typing import ChecksumAddress

from mercato.chain.contracts import Delivery, LicenseState, ModelId
from mercato.client.market import Market
from mercato.crypto import wrap_content_key
from mercato.errors import ConfigError, ContentKeyMissingError, MercatoError
from mercato.fsutil import atomic_write_bytes

log = logging.getLogger(__name__)
MAX_BATCH = 32  # the marketplace's deliver_many limit
LOG_RANGE = 5_000  # blocks per eth_getLogs request


@dataclass(frozen=True)
class PendingOrder:
    model_id: ModelId
    buyer: ChecksumAddress
    buyer_key: bytes
    block: int


class SellerAgent:
    """Delivers keys for the models its accounts own, and for owners who made one of its
    accounts their agent (one `Market` per account)."""

    def __init__(self, markets: list[Market], data_dir: Path) -> None:
        if not markets:
            raise ConfigError("The seller's agent needs at least one account to deliver from.")
        self.markets: dict[str, Market] = {
            m.require_account("deliver keys").address: m for m in markets
        }
        self._any = markets[0]
        self.cursor_path = data_dir / "agent" / f"cursor-{self._any.chain_id}.json"

    def pending(self) -> tuple[list[PendingOrder], int]:
        """The purchases still pending for our models, and the head block scanned."""
        head = int(self._any.w3.eth.block_number)
        start = self._cursor() + 1
        marketplace = self._any.contracts.marketplace
        found: list[PendingOrder] = []
        for low in range(start, head + 1, LOG_RANGE):
            high = min(low + LOG_RANGE - 1, head)
            for entry in marketplace.contract.events.Purchased.get_logs(
                from_block=low, to_block=high
            ):
                args = entry["args"]
                found.append(
                    PendingOrder(
                        ModelId(int(args["model_id"])),
                        args["buyer"],
                        bytes(args["buyer_key"]),
                        int(entry["blockNumber"]),
                    )
                )
        now = int(self._any.w3.eth.get_block(head)["timestamp"])
        return [o for o in found if self._still_ours_and_pending(o, now)], head

    def deliver_pending(self) -> int:
        """Delivers every pending order it can; returns how many were delivered."""
        orders, head = self.pending()
        delivered = 0
        settled_until = head
        by_sender: dict[str, list[Delivery]] = {}
        for order in orders:
            sender = self._sender_for(order.model_id)
            if sender is None:
                continue
            try:
                by_sender.setdefault(sender, []).append(self._delivery(order, sender))
            except ContentKeyMissingError as exc:
                # The buyer will be refunded after the deadline; say so and move on.
                log.error("cannot deliver model %s to %s: %s", order.model_id, order.buyer, exc)
        for sender, deliveries in by_sender.items():
            market = self.markets[sender]
            for i in range(0, len(deliveries), MAX_BATCH):
                batch = deliveries[i : i + MAX_BATCH]
                try:
                    market.contracts.marketplace.deliver_many(batch)
                    delivered += len(batch)
                except MercatoError as exc:
                    # Keep these orders for the next round: the cursor stays before them.
                    log.error("delivery of %d orders failed: %s", len(batch), exc)
                    first = min(o.block for o in orders if o.buyer in {d.buyer for d in batch})
                    settled_until = min(settled_until, first - 1)
        self._save_cursor(settled_until)
        return delivered

    def run(self, stop: threading.Event, poll: float = 1.0) -> None:
        """Delivers until `stop` is set, polling every `poll` seconds."""
        while not stop.is_set():
            try:
                count = self.deliver_pending()
                if count:
                    log.info("delivered %d key(s)", count)
            except MercatoError as exc:
                log.error("agent round failed: %s", exc)
            stop.wait(poll)

    def _sender_for(self, model_id: int) -> str | None:
        """Which of our accounts may deliver for this model: its owner, or the agent the
        owner delegated to (`set_agent`), e.g. a creator who publishes from a browser."""
        contracts = self._any.contracts
        owner: str = contracts.registry.owner_of(model_id)
        if owner in self.markets:
            return owner
        agent: str = contracts.marketplace.agent_of(owner)
        return agent if agent in self.markets else None

    def _still_ours_and_pending(self, order: PendingOrder, now: int) -> bool:
        if self._sender_for(order.model_id) is None:
            return False
        contracts = self._any.contracts
        record = contracts.marketplace.license(order.buyer, order.model_id)
        return record.state is LicenseState.PENDING and record.time >= now

    def _delivery(self, order: PendingOrder, sender: str) -> Delivery:
        market = self.markets[sender]
        version = market.models.version(order.model_id)
        key = market.keys.load(version.artifact_cid)
        wrapped = wrap_content_key(key, order.buyer_key)
        return Delivery(order.model_id, order.buyer, version.version, wrapped)

    def _cursor(self) -> int:
        try:
            return int(json.loads(self.cursor_path.read_text())["block"])
        except FileNotFoundError:
            return self._any.deployment.deploy_block - 1

    def _save_cursor(self, block: int) -> None:
        self.cursor_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.cursor_path, json.dumps({"block": block}).encode())
