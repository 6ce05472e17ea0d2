# SPDX-License-Identifier: AGPL-3.0-only
"""The seller's agent: delivers content keys for what is still pending on-chain.

Its work list is "the purchases still pending on-chain for the models my accounts may
deliver for", rebuilt from the chain, never a cursor on disk. A purchase can only be
delivered before its deadline (purchase time + the marketplace's DELIVERY_WINDOW), so
when it starts the agent reads the `Purchased` events of the last DELIVERY_WINDOW of
blocks, and after that only the new blocks (plus a few already read, in case of a
reorg). A node started late, a node whose owner named it agent after the sale, or a
node that shares a data directory with another account's node, therefore still
delivers everything it may; nothing one account does moves another account's work.

Exactly once, across restarts and crashes: the chain is the record. An order is
delivered only while the marketplace shows it pending, and the marketplace refuses a
second delivery of the same order.

One bad order never holds back another: each order's key is sealed on its own (a buyer
key libsodium refuses, or a model whose key this node may not use, skips that order
only, which stays refundable), and when a batch is refused (an order refunded or past
its deadline in between) its orders are delivered one by one.

The agent keeps nothing on disk; an older version's `agent/cursor-<chain id>.json` is
removed at start.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from eth_typing import ChecksumAddress
from web3 import Web3

from mercato.chain.contracts import Delivery, LicenseState, ModelId
from mercato.client.delivery import responsible_account
from mercato.client.market import Market
from mercato.client.sale_keys import sale_key
from mercato.crypto import wrap_content_key
from mercato.errors import (
    ConfigError,
    ContractRevertError,
    MercatoError,
)

log = logging.getLogger(__name__)
MAX_BATCH = 32  # the marketplace's deliver_many limit
LOG_RANGE = 5_000  # blocks per eth_getLogs request
REORG_MARGIN = 12  # blocks read again each round, so a purchase moved by a reorg is seen


@dataclass(frozen=True)
class PendingOrder:
    model_id: ModelId
    buyer: ChecksumAddress
    buyer_key: bytes
    block: int
    deadline: int = field(default=0, compare=False)  # purchase time + DELIVERY_WINDOW


@dataclass
class RoundReport:
    """What one round did (for tests and logs)."""

    delivered: list[PendingOrder] = field(default_factory=list)
    skipped: list[tuple[PendingOrder, str]] = field(default_factory=list)  # order, reason


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
        self._window = int(self._any.deployment.delivery_window)
        # Purchases seen and not yet settled or expired, newest per (model, buyer).
        self._orders: dict[tuple[int, str], PendingOrder] = {}
        self._scanned: int | None = None
        self._reported: set[tuple[PendingOrder, str]] = set()
        self._senders: dict[int, str | None] = {}  # per round: model id -> our account
        legacy = data_dir / "agent" / f"cursor-{self._any.chain_id}.json"
        legacy.unlink(missing_ok=True)  # nothing reads it any more

    def pending(self) -> tuple[list[PendingOrder], int]:
        """The purchases still pending on-chain that this agent may deliver, and the
        head block read.

        Raises:
            ChainError: The chain cannot be read.
        """
        head = int(self._any.w3.eth.block_number)
        now = int(self._any.w3.eth.get_block(head)["timestamp"])
        self._read_purchases(head, now)
        owners: dict[int, str | None] = {}
        ours: list[PendingOrder] = []
        marketplace = self._any.contracts.marketplace
        for key, order in list(self._orders.items()):
            if order.deadline < now:
                del self._orders[key]  # past its deadline: only a refund is left
                continue
            if order.model_id not in owners:
                try:
                    owners[order.model_id] = self._sender_for(order.model_id)
                except ContractRevertError as exc:
                    # A model the registry will not answer for stops only its own orders.
                    log.warning("model %s: no owner to deliver for (%s)", order.model_id, exc)
                    owners[order.model_id] = None
            if owners[order.model_id] is None:
                continue  # kept: its owner may still name us agent before the deadline
            record = marketplace.license(order.buyer, order.model_id)
            if record.state is not LicenseState.PENDING or record.time < now:
                del self._orders[key]
                continue
            ours.append(order)
        self._senders = owners
        live = set(self._orders.values())
        self._reported = {r for r in self._reported if r[0] in live}
        return ours, head

    def deliver_pending(self) -> int:
        """Delivers every pending order it can; returns how many were delivered."""
        return len(self.deliver_round().delivered)

    def deliver_round(self) -> RoundReport:
        """One round: read new purchases, deliver what is pending and ours.

        Returns:
            The orders delivered and those skipped, with the reason.

        Raises:
            ChainError: The chain cannot be read.
        """
        report = RoundReport()
        orders, _head = self.pending()
        by_sender: dict[str, list[tuple[PendingOrder, Delivery]]] = {}
        models: dict[int, tuple[str, int, bytes] | MercatoError] = {}
        for order in orders:
            sender = self._senders.get(order.model_id)
            if sender is None:
                continue
            if order.model_id not in models:
                models[order.model_id] = self._sale(order.model_id, sender)
            sale = models[order.model_id]
            try:
                if isinstance(sale, MercatoError):
                    raise sale
                _owner, version, key = sale
                wrapped = wrap_content_key(key, order.buyer_key)
            except MercatoError as exc:
                # A key this node may not use, a buyer key libsodium refuses, a model the
                # chain would not describe: this order stays pending and refundable.
                self._skip(report, order, exc)
                continue
            delivery = Delivery(order.model_id, order.buyer, version, wrapped)
            by_sender.setdefault(sender, []).append((order, delivery))
        for sender, items in by_sender.items():
            market = self.markets[sender]
            for i in range(0, len(items), MAX_BATCH):
                self._send(market, items[i : i + MAX_BATCH], report)
        return report

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

    def _read_purchases(self, head: int, now: int) -> None:
        deploy_block = self._any.deployment.deploy_block
        if self._scanned is None:
            start = self._window_start(head, now)
        else:
            start = max(deploy_block, self._scanned + 1 - REORG_MARGIN)
        marketplace = self._any.contracts.marketplace
        times: dict[int, int] = {}
        for low in range(start, head + 1, LOG_RANGE):
            high = min(low + LOG_RANGE - 1, head)
            for entry in marketplace.contract.events.Purchased.get_logs(
                from_block=low, to_block=high
            ):
                args = entry["args"]
                block = int(entry["blockNumber"])
                if block not in times:
                    times[block] = int(self._any.w3.eth.get_block(block)["timestamp"])
                order = PendingOrder(
                    ModelId(int(args["model_id"])),
                    Web3.to_checksum_address(args["buyer"]),
                    bytes(args["buyer_key"]),
                    block,
                    times[block] + self._window,
                )
                key = (order.model_id, order.buyer)
                known = self._orders.get(key)
                if known is None or known.block <= order.block:
                    self._orders[key] = order
        self._scanned = head

    def _window_start(self, head: int, now: int) -> int:
        """The first block mined within the last DELIVERY_WINDOW (no earlier purchase
        can still be delivered), found by bisection on block times."""
        low = self._any.deployment.deploy_block
        if low > head:
            return head + 1
        oldest = now - self._window
        high = head
        get_block = self._any.w3.eth.get_block
        while low < high:
            middle = (low + high) // 2
            if int(get_block(middle)["timestamp"]) < oldest:
                low = middle + 1
            else:
                high = middle
        return low

    def _sender_for(self, model_id: int) -> str | None:
        """Which of our accounts may deliver for this model: its owner, or the agent the
        owner delegated to (`set_agent`), e.g. a creator who publishes from a browser."""
        owner = Web3.to_checksum_address(self._any.contracts.registry.owner_of(model_id))
        return responsible_account(self._any, owner, self.markets)

    def _sale(self, model_id: int, sender: str) -> tuple[str, int, bytes] | MercatoError:
        """The owner, latest version and key to deliver, or why this model is refused."""
        market = self.markets[sender]
        try:
            info = market.models.show(model_id)
            owner = Web3.to_checksum_address(info.owner)
            key = sale_key(market, model_id, info.latest, owner)
        except MercatoError as exc:  # this model's orders wait; the others go on
            return exc
        return owner, info.latest.version, key

    def _send(
        self, market: Market, items: list[tuple[PendingOrder, Delivery]], report: RoundReport
    ) -> None:
        try:
            market.contracts.marketplace.deliver_many([d for _o, d in items])
            report.delivered.extend(o for o, _d in items)
            return
        except MercatoError as exc:
            if len(items) == 1:
                self._skip(report, items[0][0], exc)
                return
            log.warning("a batch of %d deliveries was refused (%s); one by one", len(items), exc)
        # One refused order (refunded or past its deadline in between) must not hold
        # back the others.
        for order, delivery in items:
            try:
                market.contracts.marketplace.deliver_many([delivery])
                report.delivered.append(order)
            except MercatoError as exc:
                self._skip(report, order, exc)

    def _skip(self, report: RoundReport, order: PendingOrder, exc: MercatoError) -> None:
        reason = getattr(exc, "code", "error")
        report.skipped.append((order, reason))
        if (order, reason) not in self._reported:  # once per order, not every second
            self._reported.add((order, reason))
            log.error("cannot deliver model %s to %s: %s", order.model_id, order.buyer, exc)
