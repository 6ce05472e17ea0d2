# SPDX-License-Identifier: AGPL-3.0-only
"""Following the chain: logs in block batches, confirmations, reorgs, resumption.

Each poll:

1. checks that the last block the index recorded still has the same hash on the
   chain; if not, walks down the recorded hashes to the fork point and removes
   everything above it (a reorg deeper than the kept hashes rebuilds from scratch);
2. fetches logs of all four contracts with one `eth_getLogs` filter per batch of
   blocks, up to `confirmations` blocks below the head, through a
   `mercato.chain.logs.LogFetcher`: a batch shrinks to what the RPC provider accepts
   and transient provider failures are retried with back-off;
3. writes each batch's rows, its block hashes and the new cursor in one transaction,
   so a crash or kill at any point resumes exactly after the last committed batch;
4. asks the metadata source again for manifests that had not arrived.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from web3 import Web3

from mercato.chain.deployment import Deployment
from mercato.chain.logs import LogFetcher
from mercato.config import default_confirmations
from mercato.errors import (
    IndexDeploymentMismatchError,
    IndexRpcError,
    LogQueryError,
    RpcRetryExhaustedError,
)
from mercato.index import schema as s
from mercato.index.decode import LogDecoder
from mercato.index.federation import apply_arrived_specs
from mercato.index.metadata import MetadataSource
from mercato.index.projector import Projector
from mercato.index.state import apply_arrived_metadata, rollback_above
from mercato.index.store import Index


@dataclass(frozen=True)
class IndexerConfig:
    """How the indexer follows the chain.

    Attributes:
        confirmations: Blocks below the head left alone until they are this deep; None
            means the chain's default (`mercato.config.default_confirmations`).
        batch_blocks: Most blocks per `eth_getLogs` call (halved while the provider
            refuses a range as too large, grown back after).
        reorg_window: Recent block hashes kept to find a fork point.
        poll_interval: Seconds between polls in `run()`.
    """

    confirmations: int | None = None
    batch_blocks: int = 5_000
    reorg_window: int = 256
    poll_interval: float = 0.2


@dataclass
class SyncReport:
    """What one `sync_once()` did."""

    head: int = 0
    indexed_to: int = 0
    events: int = 0
    batches: int = 0
    rolled_back_to: int | None = None
    metadata_applied: int = 0
    touched_models: set[int] = field(default_factory=set)


class Indexer:
    """Keeps an `Index` in step with one Mercato deployment."""

    def __init__(
        self,
        index: Index,
        w3: Web3,
        deployment: Deployment,
        metadata: MetadataSource,
        config: IndexerConfig | None = None,
    ) -> None:
        self.index = index
        self.w3 = w3
        self.deployment = deployment
        self.metadata = metadata
        self.config = config or IndexerConfig()
        self.decoder = LogDecoder(deployment)
        self._fetcher = LogFetcher(w3, max_range=self.config.batch_blocks)
        self.confirmations = (
            self.config.confirmations
            if self.config.confirmations is not None
            else default_confirmations(deployment.chain_id)
        )

    # --- JSON-RPC ------------------------------------------------------------------

    def _rpc(self, method: str, params: list[Any]) -> Any:
        try:
            response = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        except (OSError, ValueError) as exc:
            raise IndexRpcError(
                f"{method} failed: {exc}. Check that the chain's RPC endpoint is up."
            ) from exc
        if "error" in response:
            raise IndexRpcError(f"{method} was refused by the node: {response['error']}.")
        return response["result"]

    def _head(self) -> int:
        return int(self._rpc("eth_blockNumber", []), 16)

    def _block_hash(self, number: int) -> str | None:
        block = self._rpc("eth_getBlockByNumber", [hex(number), False])
        return None if block is None else str(block["hash"])

    def _logs(self, first: int, last: int) -> list[dict[str, Any]]:
        try:
            return self._fetcher.get({"address": self.decoder.address_list}, first, last)
        except (RpcRetryExhaustedError, LogQueryError) as exc:
            raise IndexRpcError(f"eth_getLogs failed: {exc}") from exc

    # --- cursor ----------------------------------------------------------------------

    def _contracts_json(self) -> str:
        return json.dumps(self.decoder.addresses, sort_keys=True)

    def _cursor(self, conn: Connection) -> Any:
        row = conn.execute(select(s.Cursor).where(s.Cursor.id == 1)).first()
        if row is None:
            start = self.deployment.deploy_block - 1
            conn.execute(
                insert(s.Cursor).values(
                    id=1,
                    chain_id=self.deployment.chain_id,
                    contracts=self._contracts_json(),
                    start_block=start,
                    last_block=start,
                    last_hash=None,
                    events=0,
                )
            )
            row = conn.execute(select(s.Cursor).where(s.Cursor.id == 1)).one()
        if row.chain_id != self.deployment.chain_id or row.contracts != self._contracts_json():
            raise IndexDeploymentMismatchError(
                f"This index was built for chain {row.chain_id} and contracts {row.contracts}, "
                f"not chain {self.deployment.chain_id} and {self._contracts_json()}. Use another "
                "index database, or delete this one to rebuild it from the chain."
            )
        return row

    # --- reorgs ----------------------------------------------------------------------

    def _fork_point(self, conn: Connection, cursor: Any) -> int | None:
        """The highest recorded block the chain still agrees with, or None when all agree."""
        if cursor.last_hash is None or self._block_hash(cursor.last_block) == cursor.last_hash:
            return None
        recorded = conn.execute(
            select(s.Block.number, s.Block.hash)
            .where(s.Block.number < cursor.last_block)
            .order_by(s.Block.number.desc())
        ).all()
        for number, block_hash in recorded:
            if self._block_hash(number) == block_hash:
                return int(number)
        return cursor.start_block  # deeper than the kept hashes: rebuild from the start

    def _rollback(self, conn: Connection, cursor: Any, fork: int) -> set[int]:
        affected = rollback_above(conn, fork)
        fork_hash = None if fork <= cursor.start_block else self._block_hash(fork)
        conn.execute(
            update(s.Cursor).where(s.Cursor.id == 1).values(last_block=fork, last_hash=fork_hash)
        )
        return affected

    # --- polling ---------------------------------------------------------------------

    def sync_once(self, max_batches: int | None = None, to_block: int | None = None) -> SyncReport:
        """Brings the index up to the confirmed head (or `max_batches` batches closer).

        Args:
            max_batches: Stop after this many batches (None: until caught up).
            to_block: Go no further than this block (`mercato index check` compares
                two indexes at one block).

        Returns:
            What was done.

        Raises:
            IndexRpcError: The node failed to answer.
            IndexDeploymentMismatchError: The database belongs to another deployment.
        """
        report = SyncReport()
        head = self._head()
        report.head = head
        target = head - self.confirmations
        if to_block is not None:
            target = min(target, to_block)
        with self.index.engine.begin() as conn:
            cursor = self._cursor(conn)
            fork = self._fork_point(conn, cursor)
            if fork is not None:
                report.touched_models |= self._rollback(conn, cursor, fork)
                report.rolled_back_to = fork
            last = fork if fork is not None else cursor.last_block
        while last < target and (max_batches is None or report.batches < max_batches):
            end = min(last + self._fetcher.span, target)
            done = self._ingest_batch(last + 1, end, report)
            if done is None:
                break  # the chain changed under the batch: the next poll sees the reorg
            last = done
            report.batches += 1
        report.indexed_to = last
        with self.index.engine.begin() as conn:
            report.metadata_applied = apply_arrived_metadata(conn, self.metadata)
            apply_arrived_specs(conn, self.metadata)
        return report

    def _ingest_batch(self, first: int, last: int, report: SyncReport) -> int | None:
        end_hash = self._block_hash(last)
        logs = self._logs(first, last)
        if end_hash is None or self._block_hash(last) != end_hash:
            return None
        hashes: dict[int, str] = {last: end_hash}
        times: dict[int, int | None] = {}
        with self.index.engine.begin() as conn:
            # Another writer on this index (a second replica leading for a moment, see
            # mercato.leader) may have taken these blocks since the cursor was read: the
            # row lock orders the writers, and a batch that no longer follows the cursor
            # is dropped (the next poll starts from where the other one stopped).
            at = conn.execute(
                select(s.Cursor.last_block).where(s.Cursor.id == 1).with_for_update()
            ).scalar_one()
            if at != first - 1:
                return None
            projector = Projector(conn, self.metadata)
            for raw in logs:
                if raw.get("removed"):
                    continue
                event = self.decoder.decode(raw)
                if event is None:
                    continue
                hashes[event.block_number] = event.block_hash
                stamp = raw.get("blockTimestamp")
                times[event.block_number] = int(stamp, 16) if stamp else None
                projector.apply(event)
            if hashes.get(last, end_hash) != end_hash:
                conn.rollback()
                return None
            projector.finish()
            self._record_times(conn, times)
            conn.execute(delete(s.Block).where(s.Block.number >= first))
            conn.execute(insert(s.Block), [{"number": n, "hash": h} for n, h in hashes.items()])
            conn.execute(delete(s.Block).where(s.Block.number < last - self.config.reorg_window))
            conn.execute(
                update(s.Cursor)
                .where(s.Cursor.id == 1)
                .values(
                    last_block=last, last_hash=end_hash, events=s.Cursor.events + projector.events
                )
            )
        report.events += projector.events
        report.touched_models |= projector.touched
        return last

    def _record_times(self, conn: Connection, times: dict[int, int | None]) -> None:
        """Stores when each block with an event was made (pages show dates, not numbers)."""
        if not times:
            return
        rows = []
        for number, stamp in times.items():
            if stamp is None:  # a node that leaves blockTimestamp out of its logs
                block = self._rpc("eth_getBlockByNumber", [hex(number), False])
                stamp = int(block["timestamp"], 16) if block else 0
            rows.append({"number": number, "timestamp": stamp})
        conn.execute(delete(s.BlockTime).where(s.BlockTime.number.in_(list(times))))
        conn.execute(insert(s.BlockTime), rows)

    def run(self, stop: threading.Event) -> None:
        """Polls until `stop` is set.

        Args:
            stop: Set it (from another thread or a signal handler) to return.

        Raises:
            IndexDeploymentMismatchError: The database belongs to another deployment.
        """
        while not stop.is_set():
            try:
                report = self.sync_once()
            except IndexRpcError:
                report = None  # the node is down or restarting: try again next poll
            if report is None or report.indexed_to >= report.head - self.confirmations:
                stop.wait(self.config.poll_interval)
