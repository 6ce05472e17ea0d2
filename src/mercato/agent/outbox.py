# SPDX-License-Identifier: AGPL-3.0-only
"""The delivery transactions one agent account sent, tracked until they are mined.

A delivery is signed here with an explicit nonce, written to a journal before it is
sent, and followed until its nonce is used on-chain:

    <data dir>/agent/
    └── outbox-<chain id>-<account>.json   every delivery sent and not yet settled:
                                           nonce, orders, fees, each signed variant

- Nonces: a new transaction takes the chain's pending count for the account, or the
  next after the journal's, whichever is higher; a restarted agent therefore neither
  reuses a nonce nor sends a second delivery for an order already in the mempool.
- Stuck: a transaction still unmined `bump_after` seconds after it was sent is signed
  again with the same nonce and at least 12.5% higher EIP-1559 fees (nodes ask 10%),
  and never less than the current base fee needs, up to the operator's cap
  (`agent_max_fee_gwei`): a fee spike or a spammer can delay a delivery (the buyer may
  then refund) but cannot drain the agent's gas money.
- Lost: one the node no longer knows (a reorg, or a node that dropped it from its
  mempool) is sent again, the same signed bytes while its nonce is unused, signed
  again with higher fees when the node refuses those.
- Races: every variant of a nonce is remembered, and whichever of them is mined
  settles it; variants of one nonce can never both be mined, so a replacement and
  its original never deliver twice.
- Reorgs: a settled transaction is kept for `KEEP_BLOCKS` blocks; if its nonce is
  unused again (a reorg removed it), it is followed again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from web3 import Web3
from web3.exceptions import TimeExhausted, TransactionNotFound, Web3RPCError
from web3.types import TxParams, Wei

log = logging.getLogger(__name__)

KEEP_BLOCKS = 64  # a settled transaction is forgotten this many blocks later
BUMP_NUMERATOR, BUMP_DENOMINATOR = 9, 8  # +12.5% per replacement; nodes ask at least +10%
OrderKey = tuple[int, str]  # (model id, buyer)


@dataclass
class SentTx:
    """One nonce the agent used, with every variant it signed for it."""

    nonce: int
    orders: list[OrderKey]
    to: str
    data: str
    gas: int
    max_fee: int
    priority_fee: int
    hashes: list[str] = field(default_factory=list)  # oldest first
    raw: str = ""  # the newest variant, signed
    sent_at: float = 0.0  # wall-clock time of the last send, for bumping
    outcome: str | None = None  # None while unmined, else "delivered" | "reverted" | "taken"
    settled_head: int | None = None


@dataclass(frozen=True)
class Settled:
    """A nonce found used this round, and what it did."""

    tx: SentTx
    outcome: str  # "delivered": a variant mined and succeeded; "reverted"; "taken": not ours
    tx_hash: str | None


class Outbox:
    """Sends one account's deliveries and follows them until mined (module docstring)."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        journal: Path,
        *,
        bump_after: float = 60.0,
        max_fee_cap: int | None = None,
    ) -> None:
        """Loads the journal of `account`'s deliveries.

        Args:
            w3: The chain.
            account: The agent account that signs deliveries.
            journal: The journal file.
            bump_after: Seconds a delivery may stay unmined before its fees are raised.
            max_fee_cap: Highest max fee per gas (wei) a replacement offers; None: no cap.
        """
        self.w3 = w3
        self.account = account
        self.journal = journal
        self.bump_after = bump_after
        self.max_fee_cap = max_fee_cap
        self.entries: dict[int, SentTx] = self._load()

    # --- public ------------------------------------------------------------------------

    def in_flight(self) -> set[OrderKey]:
        """Orders a transaction not yet mined is delivering: none of them is sent again."""
        return {key for e in self.entries.values() if e.outcome is None for key in e.orders}

    def unmined(self) -> int:
        return sum(1 for e in self.entries.values() if e.outcome is None)

    def settle(self, head: int) -> list[Settled]:
        """Settles every transaction whose nonce is now used, and follows again those a
        reorg took out of the chain.

        Args:
            head: The chain's head block number.

        Returns:
            The nonces found used since the last call, with what each did.

        Raises:
            Web3RPCError, OSError: The chain did not answer (the caller retries).
        """
        used = int(self.w3.eth.get_transaction_count(self.account.address, "latest"))
        settled: list[Settled] = []
        changed = False
        for nonce in sorted(self.entries):
            entry = self.entries[nonce]
            if nonce < used:
                if entry.outcome is None:
                    settled.append(self._settle(entry, head))
                    changed = True
                elif entry.settled_head is not None and head - entry.settled_head > KEEP_BLOCKS:
                    del self.entries[nonce]
                    changed = True
            elif entry.outcome is not None:  # a reorg took it out of the chain
                log.warning("agent: the delivery with nonce %d was removed by a reorg", nonce)
                entry.outcome, entry.settled_head = None, None
                changed = True
        if changed:
            self._save()
        return settled

    def follow(self, pending: set[OrderKey]) -> None:
        """Sends again the unmined transactions the node lost, and bumps the fees of
        those unmined for `bump_after` seconds.

        Args:
            pending: Orders still pending on-chain: a lost transaction for none of them,
                with no later nonce waiting behind it, is dropped instead.

        Raises:
            Web3RPCError, OSError: The chain did not answer (the caller retries).
        """
        changed = False
        for nonce in sorted(self.entries):
            entry = self.entries[nonce]
            if entry.outcome is not None:
                continue
            if not any(self._known(h) for h in entry.hashes):
                if not set(entry.orders) & pending and nonce == max(self.entries):
                    del self.entries[nonce]
                    changed = True
                    continue
                log.warning("agent: the node lost the delivery with nonce %d; sent again", nonce)
                try:
                    self._broadcast(entry)
                except Web3RPCError as exc:
                    # Its fees fell below the base fee (nodes drop such transactions):
                    # signed again with today's fees.
                    log.warning("agent: the node refused it again (%s); raising its fees", exc)
                    self._bump(entry)
                changed = True
            elif time.time() - entry.sent_at >= self.bump_after:
                self._bump(entry)
                changed = True
        if changed:
            self._save()

    def send(self, tx: TxParams, orders: list[OrderKey]) -> SentTx:
        """Signs `tx` with the next nonce, journals it, then sends it.

        Args:
            tx: An unsigned transaction with `to`, `data` and `gas` (from a contract
                client's builder).
            orders: The orders it delivers.

        Returns:
            The tracked transaction (unmined).

        Raises:
            Web3RPCError, OSError: The node refused it or did not answer; it stays in the
                journal and is sent again by a later `check`.
        """
        nonce = max(self._pending_count(), max(self.entries, default=-1) + 1)
        priority, max_fee = self._fees()
        entry = SentTx(
            nonce=nonce,
            orders=list(orders),
            to=str(tx["to"]),
            data=Web3.to_hex(hexstr=HexStr(str(tx["data"]))),
            gas=int(tx["gas"]),
            max_fee=max_fee,
            priority_fee=priority,
        )
        self._sign(entry)
        self.entries[nonce] = entry
        self._save()  # before sending: a kill right after must not lose the nonce
        self._broadcast(entry)
        self._save()
        return entry

    def wait(self, entries: list[SentTx], timeout: float) -> None:
        """Waits up to `timeout` seconds in all for these transactions to be mined."""
        deadline = time.monotonic() + timeout
        for entry in entries:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self.w3.eth.wait_for_transaction_receipt(
                    cast(Any, entry.hashes[-1]), timeout=left, poll_latency=0.1
                )
            except TimeExhausted:
                return  # still unmined: a later round follows it

    # --- internals ---------------------------------------------------------------------

    def _pending_count(self) -> int:
        return int(self.w3.eth.get_transaction_count(self.account.address, "pending"))

    def _fees(self) -> tuple[int, int]:
        """(max priority fee, max fee) a wallet would offer now: room for the base fee to
        double before the transaction is mined."""
        priority = int(self.w3.eth.max_priority_fee)
        base_fee = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        return priority, 2 * base_fee + priority

    def _sign(self, entry: SentTx) -> None:
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": int(self.w3.eth.chain_id),
            "nonce": entry.nonce,
            "to": Web3.to_checksum_address(entry.to),
            "data": entry.data,
            "gas": entry.gas,
            "value": Wei(0),
            "maxFeePerGas": entry.max_fee,
            "maxPriorityFeePerGas": entry.priority_fee,
        }
        signed = self.account.sign_transaction(tx)
        entry.raw = Web3.to_hex(signed.raw_transaction)
        tx_hash = Web3.to_hex(signed.hash)
        if tx_hash not in entry.hashes:
            entry.hashes.append(tx_hash)

    def _broadcast(self, entry: SentTx) -> None:
        entry.sent_at = time.time()
        try:
            self.w3.eth.send_raw_transaction(HexStr(entry.raw))
        except Web3RPCError as exc:
            message = str(exc).lower()
            if "already known" in message or "already imported" in message:
                return  # the node has it: nothing to do
            if "nonce too low" in message:
                return  # the nonce is used: the next check settles it
            raise

    def _bump(self, entry: SentTx) -> None:
        """Signs the same call again, same nonce, with higher fees (up to the cap)."""
        priority, max_fee = self._fees()
        new_priority = max(priority, _bumped(entry.priority_fee))
        new_max_fee = max(max_fee, _bumped(entry.max_fee), new_priority)
        cap = self.max_fee_cap
        if cap is not None and new_max_fee > cap:
            if _bumped(entry.max_fee) > cap:
                # A replacement must offer ~10% more than the last variant: at the cap
                # there is none to send. It waits for fees to fall, or for a refund.
                entry.sent_at = time.time()
                log.warning(
                    "agent: delivery with nonce %d is stuck at the fee cap (%d wei per gas)",
                    entry.nonce,
                    cap,
                )
                return
            new_max_fee = cap
            new_priority = min(new_priority, cap)
        entry.priority_fee, entry.max_fee = new_priority, new_max_fee
        self._sign(entry)
        log.info(
            "agent: delivery with nonce %d unmined after %.0f s; replaced with max fee %d wei",
            entry.nonce,
            self.bump_after,
            entry.max_fee,
        )
        try:
            self._broadcast(entry)
        except Web3RPCError as exc:
            # "replacement underpriced" and the like: the next bump offers more.
            log.warning("agent: the node refused the replacement of nonce %d: %s", entry.nonce, exc)

    def _known(self, tx_hash: str) -> bool:
        try:
            self.w3.eth.get_transaction(cast(Any, tx_hash))
        except TransactionNotFound:
            return False
        return True

    def _settle(self, entry: SentTx, head: int) -> Settled:
        entry.settled_head = head
        for tx_hash in reversed(entry.hashes):
            try:
                receipt = self.w3.eth.get_transaction_receipt(cast(Any, tx_hash))
            except TransactionNotFound:
                continue
            entry.outcome = "delivered" if receipt["status"] == 1 else "reverted"
            return Settled(entry, entry.outcome, tx_hash)
        # Another transaction from this account used the nonce (the owner's wallet
        # elsewhere): these orders go back to the work list.
        entry.outcome = "taken"
        return Settled(entry, "taken", None)

    def _load(self) -> dict[int, SentTx]:
        if not self.journal.exists():
            return {}
        try:
            rows = json.loads(self.journal.read_text())
            entries = {}
            for row in rows:
                row["orders"] = [(int(m), str(b)) for m, b in row["orders"]]
                entry = SentTx(**row)
                entries[entry.nonce] = entry
            return entries
        except (ValueError, TypeError, KeyError) as exc:
            # Unreadable (cut by a crash mid-write is not possible: writes are atomic):
            # set it aside; the chain's pending count still keeps nonces apart.
            aside = self.journal.with_suffix(".unreadable")
            os.replace(self.journal, aside)
            log.error("agent: outbox journal unreadable (%s); moved to %s", exc, aside)
            return {}

    def _save(self) -> None:
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.journal.with_name(self.journal.name + ".tmp")
        rows = [asdict(e) for e in sorted(self.entries.values(), key=lambda e: e.nonce)]
        tmp.write_text(json.dumps(rows))
        os.replace(tmp, self.journal)


def _bumped(value: int) -> int:
    return value * BUMP_NUMERATOR // BUMP_DENOMINATOR + 1
