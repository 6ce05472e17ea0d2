# SPDX-License-Identifier: AGPL-3.0-only
"""The IPFS trustless-gateway endpoints: `GET|HEAD /ipfs/{cid}?format=raw|car`.

A strict trustless gateway (no deserialized responses) over the node's blockstore, so
other Mercato nodes and standard IPFS tooling can fetch and verify model bytes:

- `format=raw` or `Accept: application/vnd.ipld.raw`: the block itself;
- `format=car` or `Accept: application/vnd.ipld.car`: the DAG as a CAR v1 stream,
  depth-first, without duplicates (`dag-scope=block` sends only the root block);
- `format` wins over `Accept`; with neither, 400 (the spec's advice for strict mode);
- 404 when the root block is not in the store. Blocks are verified as they are read, so
  a corrupted store ends the stream instead of serving wrong bytes.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from multiformats import CID

from mercato.errors import BlockNotFoundError, InvalidCIDError
from mercato.storage.car import car_header, car_section, iter_car_bytes
from mercato.storage.cids import parse_cid
from mercato.storage.exporter import BlockSource

RAW_MEDIA_TYPE = "application/vnd.ipld.raw"
CAR_MEDIA_TYPE = "application/vnd.ipld.car"
CAR_CONTENT_TYPE = f"{CAR_MEDIA_TYPE}; version=1; order=dfs; dups=n"
_IMMUTABLE = "public, max-age=29030400, immutable"
_FORMATS = {"raw": RAW_MEDIA_TYPE, "car": CAR_MEDIA_TYPE}


def _wanted_format(request: Request, format_param: str | None) -> str:
    if format_param is not None:
        if format_param not in _FORMATS:
            raise HTTPException(
                400, f"Unsupported format {format_param!r}: this gateway serves raw and car."
            )
        return format_param
    accept = request.headers.get("accept", "")
    for entry in accept.split(","):
        media = entry.split(";")[0].strip().lower()
        if media == RAW_MEDIA_TYPE:
            return "raw"
        if media == CAR_MEDIA_TYPE:
            return "car"
    raise HTTPException(
        400,
        "This is a trustless gateway: ask for ?format=raw or ?format=car, or send "
        f"Accept: {RAW_MEDIA_TYPE} or {CAR_MEDIA_TYPE}.",
    )


def _parse(cid_text: str) -> CID:
    try:
        return parse_cid(cid_text)
    except InvalidCIDError as exc:
        raise HTTPException(400, str(exc)) from exc


def _common_headers(cid: CID, fmt: str, scope: str) -> dict[str, str]:
    ext = "bin" if fmt == "raw" else "car"
    etag = f'"{cid}.raw"' if fmt == "raw" else f'"{cid}.car.{scope}.dfs.n"'
    return {
        "Cache-Control": _IMMUTABLE,
        "Content-Disposition": f'attachment; filename="{cid}.{ext}"',
        "Etag": etag,
        "X-Content-Type-Options": "nosniff",
        "X-Ipfs-Path": f"/ipfs/{cid}",
        "Vary": "Accept",
    }


def create_ipfs_router(store: BlockSource) -> APIRouter:
    """Build the `/ipfs/{cid}` router over a block source (normally the node's store).

    Args:
        store: Anything with `get_block(cid)` that verifies blocks (a `Blockstore`).

    Returns:
        A router to include in the node's FastAPI app.
    """
    router = APIRouter(tags=["ipfs"])

    def _root_block(cid: CID) -> bytes:
        try:
            return store.get_block(cid)
        except BlockNotFoundError as exc:
            raise HTTPException(404, f"{cid} is not on this node.") from exc

    @router.api_route("/ipfs/{cid}", methods=["GET", "HEAD"], response_model=None)
    def get_ipfs(
        cid: str,
        request: Request,
        format_param: str | None = Query(None, alias="format"),
        scope: str = Query("all", alias="dag-scope"),
    ) -> Response:
        """Serve a block or a CAR of a DAG, per the trustless-gateway spec."""
        fmt = _wanted_format(request, format_param)
        if scope not in ("block", "entity", "all"):
            raise HTTPException(400, f"Unsupported dag-scope {scope!r}.")
        parsed = _parse(cid)
        root = _root_block(parsed)
        headers = _common_headers(parsed, fmt, scope)
        head = request.method == "HEAD"
        if fmt == "raw":
            headers["Content-Length"] = str(len(root))
            return Response(
                content=b"" if head else root, media_type=RAW_MEDIA_TYPE, headers=headers
            )
        if head:
            return Response(content=b"", media_type=CAR_CONTENT_TYPE, headers=headers)
        body: Iterator[bytes]
        if scope == "block":
            body = iter([car_header([parsed]), car_section(parsed, root)])
        else:
            # UnixFS files are whole entities, so "entity" and "all" send the same blocks.
            body = iter_car_bytes(parsed, store)
        return StreamingResponse(body, media_type=CAR_CONTENT_TYPE, headers=headers)

    return router
