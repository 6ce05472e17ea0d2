# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/artifacts/{cid}`: a version's artifact as one byte stream, for browsers.

A browser cannot easily walk a UnixFS DAG, so the node does: it fetches the blocks from
the provider of the model that names the CID when it lacks them (verifying each against
its CID) and streams the file. The browser then checks what matters without trusting
this node: the secretstream AEAD of every chunk and the plaintext sha256 the chain
commits to.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from mercato.client.fetching import fetch_version_artifact
from mercato.gateway.api.schemas import ErrorOut
from mercato.gateway.dependencies import State
from mercato.storage.cids import parse_cid
from mercato.storage.exporter import iter_file

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"], responses={404: {"model": ErrorOut}})


@router.get("/{cid}", response_class=StreamingResponse)
def artifact(cid: str, state: State) -> StreamingResponse:
    """Streams the file with this CID, from this node's store.

    When the store lacks it, the node fetches it only if some model version names it as
    its artifact, and only from the provider URL that model's current owner recorded,
    under the node's fetch policy (see `mercato.client.fetching`). Which URL to fetch
    from is never taken from the request.

    Raises:
        BlockNotFoundError: No version names the CID, or no provider has it.
        ProviderUnavailableError: The blocks are not here and every provider failed.
    """
    parsed = parse_cid(cid)
    store = state.market.store
    if not store.is_pinned(parsed):
        fetch_version_artifact(state.market, parsed)

    first = iter_file(parsed, store)
    head = bytes(next(first, b""))  # fails here, as JSON, when the root block is missing

    def body() -> Iterator[bytes]:
        yield head
        for piece in first:
            yield bytes(piece)

    return StreamingResponse(
        body(),
        media_type="application/octet-stream",
        headers={
            "Cache-Control": "public, max-age=29030400, immutable",
            "X-Ipfs-Path": f"/ipfs/{cid}",
        },
    )
