# SPDX-License-Identifier: AGPL-3.0-only
"""The seller's agent: delivers content keys for what is still pending on-chain.

Its work list is "the purchases still pending on-chain for the models my accounts may
deliver for", rebuilt from the chain, never a cursor on disk. A purchase can only be
delivered before its deadline (purchase time + the marketplace's DELIVERY_WINDOW), so
when it starts the agent reads the `Purchased` events of the last DELIVERY_WINDOW of
blocks, and after that only the new blocks. A node started late, a node whose owner
named it agent after the sale, or a node that shares a data directory with another
account's node, therefore still delivers everything it may; nothing one account does
moves another account's work.

Reorgs: like the index, the agent remembers the hash of each head it read. When the
chain no longer has one of them, it walks down to the highest it still agrees with,
reads the purchases above it again, and rechecks every order it had seen settled
above it: a delivery a reorg removed leaves the order pending, so it is delivered
again; one still on-chain leaves it delivered, so it is never sent twice.

Exactly once, across restarts and crashes: the chain is the record. An order is
delivered only while the marketplace shows it pending, the marketplace refuses a second
delivery of the same order, and each delivery transaction is followed until mined
(`mercato.agent.outbox`: nonces, fee bumps, replacements), so an order whose delivery
is already in the mempool is not sent again, even by a restarted agent.

One bad order never holds back another: each order's key is sealed on its own (a buyer
key libsodium refuses, or a model whose key this node may not use, skips that order
only, which stays refundable), and when a batch is refused (an order refunded or past
its deadline in between) its orders are delivered one by one.

A failing chain never stops it: `run` retries every round with back-off, for ever,
and `status()` tells the health endpoint when the last round succeeded, the last
error and how many orders are pending.

On disk it keeps only its outbox of sent transactions; an older version's
`agent/cursor-<chain id>.json` is removed at start.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.exceptions import BlockNotFound, Web3Exception
from web3.types import EventData

from mercato.agent.outbox import OrderKey, Outbox, SentTx, Settled
from mercato.chain.contracts import Delivery, LicenseState, ModelId
from mercato.chain.logs import event_logs
from mercato.client.delivery import responsible_account
from mercato.client.market import Market
from mercato.client.sale_keys import sale_key
from mercato.crypto import wrap_content_key
from mercato.errors import (
    ChainUnavailableError,
    ConfigError,
    ContractRevertError,
    DeniedError,
    MercatoError,
)
from mercato.moderation.policy import ModerationPolicy

log = logging.getLogger(__name__)
MAX_BATCH = 32  # the marketplace's deliver_many limit
HASH_WINDOW = 256  # head hashes remembered to find a fork point; deeper reorgs rescan all
MAX_BACKOFF = 30.0  # seconds between rounds at most while the chain keeps failing
# A decline in the outbox is told from a delivery by its function selector.
DECLINE_SELECTOR = "0x" + Web3.keccak(text="decline(uint256,address,uint256)")[:4].hex()
DECLINE_REASON_UNSPECIFIED = 0  # the node's reason is free text, shown in its 410 answers


@dataclass(frozen=True)
class PendingOrder:
    model_id: ModelId
    buyer: ChecksumAddress
    buyer_key: bytes
    block: int
    deadline: int = field(default=0, compare=False)  # purchase time + DELIVERY_WINDOW

    @property
    def key(self) -> OrderKey:
        return (int(self.model_id), str(self.buyer))


@dataclass
class RoundReport:
    """What one round did (for tests and logs)."""

    delivered: list[PendingOrder] = field(default_factory=list)
    skipped: list[tuple[PendingOrder, str]] = field(default_factory=list)  # order, reason
    declined: list[PendingOrder] = field(default_factory=list)  # refunded: model denied here


@dataclass(frozen=True)
class AgentStatus:
    """A snapshot of the agent's health, safe to read from any thread.

    Attributes:
        running: `run` is looping (False before it starts and after it stops).
        last_round_at: Unix time the last round finished without error (None: never).
        last_error: The last round's error, as a sentence (None once a round succeeds).
        last_error_code: Its stable code (`MercatoError.code`; "unexpected" for a bug).
        last_error_at: Unix time of that error.
        failures: Rounds failed in a row (0 after a success).
        pending: Orders pending on-chain that this agent may deliver, at the last round.
        unmined: Delivery transactions sent and not yet mined.
        reorgs: Reorgs seen since the agent started.
    """

    running: bool = False
    last_round_at: float | None = None
    last_error: str | None = None
    last_error_code: str | None = None
    last_error_at: float | None = None
    failures: int = 0
    pending: int = 0
    unmined: int = 0
    reorgs: int = 0


class SellerAgent:
    """Delivers keys for the models its accounts own, and for owners who made one of its
    accounts their agent (one `Market` per account)."""

    def __init__(
        self,
        markets: list[Market],
        data_dir: Path,
        *,
        bump_after: float = 60.0,
        receipt_wait: float = 30.0,
        moderation: ModerationPolicy | None = None,
    ) -> None:
        """
        Args:
            markets: One market per account the agent delivers from.
            data_dir: The node's data directory (for the outbox journals).
            bump_after: Seconds a delivery may stay unmined before its fees are raised.
            receipt_wait: Seconds a round waits for the deliveries it sent to be mined
                (an unmined one is followed by the next rounds).
            moderation: The node's moderation: a model it denies is never delivered,
                and its pending buyers are declined.

        Raises:
            ConfigError: No market, or a market without an account.
        """
        if not markets:
            raise ConfigError("The seller's agent needs at least one account to deliver from.")
        self.markets: dict[str, Market] = {
            m.require_account("deliver keys").address: m for m in markets
        }
        self._any = markets[0]
        self._window = int(self._any.deployment.delivery_window)
        self._receipt_wait = receipt_wait
        self._moderation = moderation
        chain_id = self._any.chain_id
        self.outboxes: dict[str, Outbox] = {
            address: Outbox(
                m.w3,
                m.require_account("deliver keys"),
                data_dir / "agent" / f"outbox-{chain_id}-{address}.json",
                bump_after=bump_after,
                max_fee_cap=_gwei_to_wei(m.settings.agent_max_fee_gwei),
            )
            for address, m in self.markets.items()
        }
        # Purchases seen and not yet settled or expired, newest per (model, buyer).
        self._orders: dict[OrderKey, PendingOrder] = {}
        # Orders seen settled (delivered, refunded), with the head they were seen at:
        # rechecked when a reorg forks below that head, dropped past their deadline.
        self._settled: dict[OrderKey, tuple[PendingOrder, int]] = {}
        self._scanned: int | None = None
        self._hashes: dict[int, str] = {}  # head number -> hash, for the last HASH_WINDOW
        self._times: dict[int, int] = {}  # block number -> timestamp of purchase blocks
        self._reported: set[tuple[PendingOrder, str]] = set()
        self._senders: dict[int, str | None] = {}  # per round: model id -> our account
        self._lock = threading.Lock()
        self._status = AgentStatus()
        legacy = data_dir / "agent" / f"cursor-{chain_id}.json"
        legacy.unlink(missing_ok=True)  # nothing reads it any more

    def status(self) -> AgentStatus:
        """The agent's health now (thread-safe; for the node's health endpoint)."""
        with self._lock:
            return self._status

    def pending(self) -> tuple[list[PendingOrder], int]:
        """The purchases still pending on-chain that this agent may deliver, and the
        head block read.

        Raises:
            ChainError: The chain cannot be read.
        """
        w3 = self._any.w3
        latest = w3.eth.get_block("latest")
        head, head_hash = int(latest["number"]), Web3.to_hex(latest["hash"])
        now = int(latest["timestamp"])
        self._follow_reorgs()
        start = self._window_start(head, now) if self._scanned is None else self._scanned + 1
        self._read_purchases(start, head)
        if self._hash_of(head) == head_hash:
            self._scanned = head
            self._hashes[head] = head_hash
            for old in [n for n in self._hashes if n <= head - HASH_WINDOW]:
                del self._hashes[old]
        # else the chain changed while we read: the next round finds the fork point.
        owners: dict[int, str | None] = {}
        ours: list[PendingOrder] = []
        settled: list[PendingOrder] = []
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
                settled.append(order)
                continue
            ours.append(order)
        if settled:
            # Seen settled at some block up to the head now (the reads above may have
            # seen blocks after `head`).
            seen = max(head, int(w3.eth.block_number))
            for order in settled:
                self._settled[order.key] = (order, seen)
        for key, (order, _seen) in list(self._settled.items()):
            if order.deadline < now:
                del self._settled[key]
        self._senders = owners
        live = set(self._orders.values())
        self._reported = {r for r in self._reported if r[0] in live}
        return ours, head

    def deliver_pending(self) -> int:
        """Delivers every pending order it can; returns how many were delivered."""
        return len(self.deliver_round().delivered)

    def deliver_round(self) -> RoundReport:
        """One round: follow what was sent, read new purchases, deliver what is pending
        and ours and not already on its way.

        Returns:
            The orders delivered (their transaction mined) and those skipped, with the
            reason.

        Raises:
            ChainError: The chain cannot be read.
            Web3RPCError, OSError: The chain did not answer (`run` retries).
        """
        report = RoundReport()
        orders, head = self.pending()
        pending_keys = {o.key for o in orders}
        for outbox in self.outboxes.values():
            self._record(outbox.settle(head), report)
            outbox.follow(pending_keys)
        in_flight = set().union(*(o.in_flight() for o in self.outboxes.values()))
        by_sender: dict[str, list[tuple[PendingOrder, Delivery]]] = {}
        models: dict[int, tuple[str, int, bytes] | MercatoError] = {}
        for order in orders:
            sender = self._senders.get(order.model_id)
            if sender is None or order.key in in_flight:
                continue
            if order.model_id not in models:
                denied = self._denied(order.model_id)
                models[order.model_id] = denied or self._sale(order.model_id, sender)
            if isinstance(refused := models[order.model_id], DeniedError):
                self._decline(self.markets[sender], order, refused, report)
                continue
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
        delivered = {o.key for o in report.delivered}
        with self._lock:
            self._status = AgentStatus(
                running=self._status.running,
                last_round_at=time.time(),
                pending=sum(1 for o in orders if o.key not in delivered),
                unmined=sum(o.unmined() for o in self.outboxes.values()),
                reorgs=self._status.reorgs,
            )
        return report

    def run(self, stop: threading.Event, poll: float = 1.0) -> None:
        """Delivers until `stop` is set, a round every `poll` seconds.

        Nothing ends it but `stop`: a round that fails (the chain down, an RPC error, a
        bug) is logged, shown in `status()`, and tried again after a back-off that
        doubles up to MAX_BACKOFF seconds.
        """
        self._update(running=True)
        try:
            while not stop.is_set():
                try:
                    count = self.deliver_pending()
                    if count:
                        log.info("delivered %d key(s)", count)
                    delay = poll
                except Exception as exc:  # the thread must outlive any failing round
                    failures = self._failed(exc)
                    delay = min(MAX_BACKOFF, poll * 2 ** min(failures, 10))
                stop.wait(delay)
        finally:
            self._update(running=False)

    # --- status --------------------------------------------------------------------

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._status = AgentStatus(**{**self._status.__dict__, **changes})

    def _failed(self, exc: Exception) -> int:
        """Records a failed round; returns how many failed in a row."""
        if isinstance(exc, MercatoError):
            error: Exception = exc
        elif isinstance(exc, requests.RequestException | OSError | Web3Exception):
            error = ChainUnavailableError(self._any.rpc_url, type(exc).__name__)
        else:
            error = exc
        with self._lock:
            failures = self._status.failures + 1
            self._status = AgentStatus(
                **{
                    **self._status.__dict__,
                    "last_error": str(error) or type(exc).__name__,
                    "last_error_code": getattr(error, "code", "unexpected"),
                    "last_error_at": time.time(),
                    "failures": failures,
                }
            )
        if error is exc and not isinstance(exc, MercatoError):
            log.exception("agent round failed (retrying): %s", exc)
        elif failures == 1 or failures % 10 == 0:  # not every second while the chain is down
            log.error("agent round failed (retrying, %d in a row): %s", failures, error)
        return failures

    # --- the chain -----------------------------------------------------------------

    def _hash_of(self, number: int) -> str | None:
        try:
            return Web3.to_hex(self._any.w3.eth.get_block(number)["hash"])
        except BlockNotFound:
            return None

    def _follow_reorgs(self) -> None:
        """Finds whether the chain still has the heads read before; if not, reads again
        above the highest it still has and rechecks the orders seen settled above it."""
        if not self._hashes:
            return
        known = sorted(self._hashes, reverse=True)
        if self._hash_of(known[0]) == self._hashes[known[0]]:
            return
        fork = next((n for n in known[1:] if self._hash_of(n) == self._hashes[n]), None)
        log.warning(
            "agent: reorg below block %d; reading again from %s",
            known[0],
            "the delivery window" if fork is None else f"block {fork + 1}",
        )
        self._update(reorgs=self._status.reorgs + 1)
        self._scanned = fork
        for number in [n for n in self._hashes if fork is None or n > fork]:
            del self._hashes[number]
        for key, (order, seen) in list(self._settled.items()):
            if fork is None or seen > fork:
                del self._settled[key]
                known_order = self._orders.get(key)
                if known_order is None or known_order.block <= order.block:
                    self._orders[key] = order

    def _purchase_logs(self, first: int, last: int) -> list[EventData]:
        """The `Purchased` events of blocks first..last (the agent's one log query)."""
        # Ranges a hosted provider refuses are split, and its 429s retried (chain.logs).
        return event_logs(self._any.contracts.marketplace.contract.events.Purchased, first, last)

    def _read_purchases(self, start: int, head: int) -> None:
        start = max(start, self._any.deployment.deploy_block)
        if start > head:
            return
        for entry in self._purchase_logs(start, head):
            args = entry["args"]
            block = int(entry["blockNumber"])
            if block not in self._times:
                stamp = entry.get("blockTimestamp")
                self._times[block] = (
                    int(stamp, 16)
                    if isinstance(stamp, str)
                    else int(self._any.w3.eth.get_block(block)["timestamp"])
                )
            order = PendingOrder(
                ModelId(int(args["model_id"])),
                Web3.to_checksum_address(args["buyer"]),
                bytes(args["buyer_key"]),
                block,
                self._times[block] + self._window,
            )
            known = self._orders.get(order.key)
            if known is None or known.block <= order.block:
                self._orders[order.key] = order
                self._settled.pop(order.key, None)
        for old in [b for b in self._times if b < start - HASH_WINDOW]:
            del self._times[old]

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

    def _denied(self, model_id: int) -> MercatoError | None:
        """Why this node's moderation refuses to deliver a model, or None.

        Lists that cannot be read refuse too (the order waits, refundable): a list the
        operator broke must not let a denied model's keys out.
        """
        if self._moderation is None:
            return None
        try:
            decision = self._moderation.check_model(model_id)
        except MercatoError as exc:
            return exc
        if decision is None:
            return None
        return DeniedError(f"model {model_id}", decision.reason, model_id=model_id)

    def _decline(
        self, market: Market, order: PendingOrder, denied: DeniedError, report: RoundReport
    ) -> None:
        """Refuses a pending order of a denied model: it is never delivered, and the
        marketplace's `decline` gives the buyer the whole price back at once.

        The decline goes through the outbox like a delivery (nonces, fee bumps, sent
        again if lost), so it is sent once; a marketplace that refuses it (the order was
        refunded in between, say) leaves the order skipped, never delivered.
        """
        sender = market.require_account("decline a purchase").address
        outbox = self.outboxes[sender]
        try:
            tx = market.contracts.marketplace.decline_tx(
                order.model_id, order.buyer, DECLINE_REASON_UNSPECIFIED
            )
            sent = outbox.send(tx, [order.key])
        except MercatoError as exc:
            log.warning("cannot decline model %s for %s: %s", order.model_id, order.buyer, exc)
            self._skip(report, order, denied)
            return
        log.info("model %s is denied here (%s): declined %s", order.model_id, denied, order.buyer)
        outbox.wait([sent], self._receipt_wait)
        self._record(outbox.settle(int(market.w3.eth.block_number)), report)

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

    # --- sending -------------------------------------------------------------------

    def _send(
        self, market: Market, items: list[tuple[PendingOrder, Delivery]], report: RoundReport
    ) -> None:
        """Sends one batch (one by one when the marketplace refuses the batch), waits
        a while for it to be mined, and records what was delivered."""
        sender = market.require_account("deliver keys").address
        outbox = self.outboxes[sender]
        marketplace = market.contracts.marketplace
        sent: list[SentTx] = []
        try:
            tx = marketplace.deliver_many_tx([d for _o, d in items])
            sent.append(outbox.send(tx, [o.key for o, _d in items]))
        except MercatoError as exc:
            if len(items) == 1:
                self._skip(report, items[0][0], exc)
                return
            log.warning("a batch of %d deliveries was refused (%s); one by one", len(items), exc)
            # One refused order (refunded or past its deadline in between) must not hold
            # back the others.
            for order, delivery in items:
                try:
                    sent.append(outbox.send(marketplace.deliver_many_tx([delivery]), [order.key]))
                except MercatoError as one:
                    self._skip(report, order, one)
        if not sent:
            return
        outbox.wait(sent, self._receipt_wait)
        self._record(outbox.settle(int(market.w3.eth.block_number)), report)

    def _record(self, settled: list[Settled], report: RoundReport) -> None:
        for done in settled:
            orders = [self._order(key) for key in done.tx.orders]
            if done.outcome == "delivered" and done.tx.data.startswith(DECLINE_SELECTOR):
                report.declined.extend(o for o in orders if o is not None)
            elif done.outcome == "delivered":
                report.delivered.extend(o for o in orders if o is not None)
            elif done.outcome == "reverted":
                for order in orders:
                    if order is not None:
                        report.skipped.append((order, "transaction_failed"))
                log.error(
                    "delivery transaction %s reverted; its orders are tried again", done.tx_hash
                )

    def _order(self, key: OrderKey) -> PendingOrder | None:
        if key in self._orders:
            return self._orders[key]
        return self._settled[key][0] if key in self._settled else None

    def _skip(self, report: RoundReport, order: PendingOrder, exc: MercatoError) -> None:
        reason = getattr(exc, "code", "error")
        report.skipped.append((order, reason))
        if (order, reason) not in self._reported:  # once per order, not every second
            self._reported.add((order, reason))
            log.error("cannot deliver model %s to %s: %s", order.model_id, order.buyer, exc)


def _gwei_to_wei(gwei: float | None) -> int | None:
    return None if gwei is None else int(gwei * 10**9)
