# SPDX-License-Identifier: AGPL-3.0-only
"""Reading a subscribed denylist from its source: a URL or a CID.

A URL is someone else's choice, so it is read like every such URL (`FetchPolicy`: no
private targets outside local mode, no redirects, a byte cap, a time cap). A CID is
read from the node's own store; when the store lacks it and a gateway is named, its
DAG is fetched as a CAR, every block checked against its CID, under the same policy.
"""

from __future__ import annotations

import httpx

from mercato.errors import BlockNotFoundError, DenylistTooLargeError
from mercato.moderation.denylist import MAX_LIST_BYTES
from mercato.moderation.lists import Fetcher
from mercato.storage.backends import GatewayBackend
from mercato.storage.blockstore import Blockstore
from mercato.storage.cids import parse_cid
from mercato.storage.exporter import declared_size, iter_file
from mercato.storage.remote import (
    FetchPolicy,
    capped,
    check_length,
    check_status,
    unreachable,
)

FETCH_TIMEOUT = httpx.Timeout(10.0, read=30.0)
FETCH_SECONDS = 120.0  # the most one list may take to arrive, however it trickles
# A CAR carries the list's blocks plus their framing and the DAG's inner nodes.
CAR_LIMIT = 2 * MAX_LIST_BYTES


def list_fetcher(policy: FetchPolicy, store: Blockstore, gateway: str | None = None) -> Fetcher:
    """A fetcher for subscriptions.

    Args:
        policy: The node's policy for URLs others chose.
        store: The node's block store (where CID lists are read from).
        gateway: An IPFS trustless gateway to fetch CID lists from when the store
            lacks them (None: the store only).

    Returns:
        A function from source to the list's bytes. It raises UnsafeURLError,
        FetchTooLargeError, StorageBackendError (the URL failed or redirected),
        BlockNotFoundError (a CID neither in the store nor at the gateway) and the
        CAR and DAG errors of a gateway that sent wrong blocks.
    """

    def fetch(source: str) -> bytes:
        if source.startswith("ipfs://"):
            return _from_cid(source.removeprefix("ipfs://"), policy, store, gateway)
        return _from_url(source, policy)

    return fetch


def _from_url(url: str, policy: FetchPolicy) -> bytes:
    limit = min(MAX_LIST_BYTES, policy.max_bytes)
    with policy.client(FETCH_TIMEOUT) as client:
        try:
            with client.stream("GET", url) as response:
                check_status(response, url)
                check_length(response, limit, url)
                return b"".join(capped(response.iter_raw(), limit, url, FETCH_SECONDS))
        except httpx.HTTPError as exc:
            raise unreachable(exc, url) from exc


def _from_cid(text: str, policy: FetchPolicy, store: Blockstore, gateway: str | None) -> bytes:
    cid = parse_cid(text)
    if not store.is_pinned(cid):
        if gateway is None:
            raise BlockNotFoundError(
                f"The denylist {cid} is not in this node's store; name a gateway to fetch it "
                "from (--gateway URL).",
                cid=str(cid),
            )
        GatewayBackend(gateway, policy=policy).fetch_car(
            cid, store, max_bytes=CAR_LIMIT, max_seconds=FETCH_SECONDS
        )
    if declared_size(cid, store) > MAX_LIST_BYTES:
        raise DenylistTooLargeError(f"the file {cid}", f"{MAX_LIST_BYTES} bytes")
    return b"".join(bytes(piece) for piece in iter_file(cid, store))
