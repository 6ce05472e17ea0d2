# SPDX-License-Identifier: AGPL-3.0-only
"""The IPFS gateway endpoints: `GET|HEAD /ipfs/{cid}[?format=raw|car]`.

A trustless gateway over the node's blockstore, so other Mercato nodes and standard
IPFS tooling can fetch and verify model bytes:

- `format=raw` or `Accept: application/vnd.ipld.raw`: the block itself;
- `format=car` or `Accept: application/vnd.ipld.car`: the DAG as a CAR v1 stream,
  depth-first, without duplicates (`dag-scope=block` sends only the root block;
  `entity-bytes=from:to` only the blocks that hold that byte range of a UnixFS file);
- `format` wins over `Accept`;
- neither: the file's bytes, as any IPFS gateway answers for a UnixFS file (single
  files only: there are no `/ipfs/{cid}/{path}` directories to walk); 501 for a CID that
  is not a UnixFS file. A single `Range: bytes=a-b | a- | -n` gets 206 with only the
  blocks holding the range read (and verified); an unsatisfiable one 416 with
  `Content-Range: bytes */size`; several ranges, a malformed header or a stale
  `If-Range` get the whole file (200), as RFC 9110 allows;
- 404 when the root block is not in the store. Blocks are verified as they are read, so
  a corrupted store ends the stream instead of serving wrong bytes.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from multiformats import CID

from mercato.errors import BlockNotFoundError, DagFormatError, InvalidCIDError
from mercato.storage.car import car_header, car_section, iter_car_bytes
from mercato.storage.cids import CODEC_DAG_PB, CODEC_RAW, parse_cid
from mercato.storage.dagpb import UNIXFS_FILE, UNIXFS_RAW, decode_node, decode_unixfs
from mercato.storage.exporter import BlockSource, iter_file, iter_file_range_bytes

RAW_MEDIA_TYPE = "application/vnd.ipld.raw"
CAR_MEDIA_TYPE = "application/vnd.ipld.car"
CAR_CONTENT_TYPE = f"{CAR_MEDIA_TYPE}; version=1; order=dfs; dups=n"
# Model files are opaque bytes; no content sniffing (it would need the first bytes
# before the headers, and a gateway must not guess types for downloads anyway).
FILE_MEDIA_TYPE = "application/octet-stream"
_IMMUTABLE = "public, max-age=29030400, immutable"
_FORMATS = {"raw": RAW_MEDIA_TYPE, "car": CAR_MEDIA_TYPE}
_FILE = "file"


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
    return _FILE


def _file_size(cid: CID, root: bytes) -> int:
    """The size of the UnixFS file under `root`, from the root block alone."""
    if cid.codec.code == CODEC_RAW:
        return len(root)
    if cid.codec.code == CODEC_DAG_PB:
        try:
            node = decode_node(root, str(cid))
            meta = decode_unixfs(node.data, str(cid)) if node.data is not None else None
        except DagFormatError as exc:
            raise HTTPException(501, f"{cid} is not a UnixFS file: {exc}") from exc
        if meta is not None and meta.type in (UNIXFS_FILE, UNIXFS_RAW):
            if meta.filesize is not None:
                return meta.filesize
            if not node.links:
                return len(meta.data) if meta.data is not None else 0
    raise HTTPException(
        501,
        f"{cid} is not a single UnixFS file; ask for ?format=car to fetch the DAG.",
    )


def _parse(cid_text: str) -> CID:
    try:
        return parse_cid(cid_text)
    except InvalidCIDError as exc:
        raise HTTPException(400, str(exc)) from exc


def _parse_entity_bytes(value: str, size: int) -> tuple[int, int]:
    """Resolve `from:to` (inclusive, negatives count from the end, `to` may be `*`)."""
    first_text, sep, last_text = value.partition(":")
    try:
        if not sep:
            raise ValueError(value)
        first = int(first_text)
        last = size - 1 if last_text == "*" else int(last_text)
    except ValueError as exc:
        raise HTTPException(
            400, f"entity-bytes must look like 'from:to' or 'from:*', not {value[:40]!r}."
        ) from exc
    if first < 0:
        first = max(size + first, 0)
    if last < 0:
        last = size + last
    if last_text != "*" and int(last_text) >= 0 and first > last:
        raise HTTPException(400, f"entity-bytes {value!r}: 'from' is after 'to'.")
    return first, min(last, size - 1)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Resolve a single `bytes=` range of RFC 9110 to inclusive (first, last) offsets.

    Returns:
        The range clamped to the file; None when the header is to be ignored (not
        bytes, several ranges, malformed), which means answering with the whole file.

    Raises:
        HTTPException: 416 when the range lies past the end of the file.
    """
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    digits = first_text + last_text
    if not dash or not (digits.isascii() and digits.isdigit()):
        return None  # also refuses signs and blanks inside the numbers
    if first_text:
        first = _offset(first_text)
        last = _offset(last_text) if last_text else size - 1
        if last_text and last < first:
            return None  # invalid: ignored, not unsatisfiable
        if first >= size:
            raise _unsatisfiable(size)
        return first, min(last, size - 1)
    suffix = _offset(last_text)
    if suffix == 0 or size == 0:
        raise _unsatisfiable(size)
    return max(size - suffix, 0), size - 1


def _offset(digits: str) -> int:
    """A byte offset from a Range header; past 19 digits it is beyond any file anyway
    (and Python refuses to convert numbers of more than 4,300 digits)."""
    return int(digits) if len(digits) <= 19 else 10**19


def _unsatisfiable(size: int) -> HTTPException:
    return HTTPException(
        416,
        f"The range starts past the end of the file ({size} bytes).",
        headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
    )


def _common_headers(cid: CID, fmt: str, scope: str) -> dict[str, str]:
    if fmt == _FILE:
        return {
            "Cache-Control": _IMMUTABLE,
            "Etag": f'"{cid}"',
            "X-Content-Type-Options": "nosniff",
            "X-Ipfs-Path": f"/ipfs/{cid}",
            "X-Ipfs-Roots": str(cid),
            "Accept-Ranges": "bytes",
            "Vary": "Accept",
        }
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

    def _file_response(
        cid: CID, root: bytes, request: Request, headers: dict[str, str]
    ) -> Response:
        size = _file_size(cid, root)
        byte_range = None
        range_header = request.headers.get("range")
        if_range = request.headers.get("if-range")
        # The content never changes, but a client's If-Range names what it holds.
        if range_header is not None and (if_range is None or if_range == headers["Etag"]):
            byte_range = _parse_range(range_header, size)
        status = 200
        body: Iterator[bytes | memoryview]
        if byte_range is None:
            headers["Content-Length"] = str(size)
            # Streamed block by block, each verified against its CID as it is read.
            body = iter_file(cid, store)
        else:
            first, last = byte_range
            status = 206
            headers["Content-Length"] = str(last - first + 1)
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
            body = iter_file_range_bytes(cid, store, first, last)
        if request.method == "HEAD":
            return Response(
                content=b"", status_code=status, media_type=FILE_MEDIA_TYPE, headers=headers
            )
        return StreamingResponse(
            body, status_code=status, media_type=FILE_MEDIA_TYPE, headers=headers
        )

    def _root_block(cid: CID) -> bytes:
        try:
            return store.get_block(cid)
        except BlockNotFoundError as exc:
            raise HTTPException(404, f"{cid} is not on this node.") from exc

    # One handler, two routes: each method needs its own OpenAPI operation id.
    @router.head("/ipfs/{cid}", response_model=None, operation_id="head_ipfs")
    @router.get("/ipfs/{cid}", response_model=None, operation_id="get_ipfs")
    def get_ipfs(
        cid: str,
        request: Request,
        format_param: str | None = Query(None, alias="format"),
        scope: str = Query("all", alias="dag-scope"),
        entity_bytes: str | None = Query(None, alias="entity-bytes"),
    ) -> Response:
        """Serve a block, a CAR of a DAG, or the verified bytes of a UnixFS file."""
        fmt = _wanted_format(request, format_param)
        if scope not in ("block", "entity", "all"):
            raise HTTPException(400, f"Unsupported dag-scope {scope!r}.")
        parsed = _parse(cid)
        root = _root_block(parsed)
        headers = _common_headers(parsed, fmt, scope)
        head = request.method == "HEAD"
        if fmt == _FILE:
            return _file_response(parsed, root, request, headers)
        if fmt == "raw":
            headers["Content-Length"] = str(len(root))
            return Response(
                content=b"" if head else root, media_type=RAW_MEDIA_TYPE, headers=headers
            )
        byte_range = None
        if entity_bytes is not None and scope != "block":
            byte_range = _parse_entity_bytes(entity_bytes, _file_size(parsed, root))
            headers["Etag"] = f'"{parsed}.car.{scope}.dfs.n.{byte_range[0]}-{byte_range[1]}"'
        if head:
            return Response(content=b"", media_type=CAR_CONTENT_TYPE, headers=headers)
        body: Iterator[bytes]
        if byte_range is not None:
            body = iter_car_bytes(parsed, store, byte_range)
        elif scope == "block":
            body = iter([car_header([parsed]), car_section(parsed, root)])
        else:
            # UnixFS files are whole entities, so "entity" and "all" send the same blocks.
            body = iter_car_bytes(parsed, store)
        return StreamingResponse(body, media_type=CAR_CONTENT_TYPE, headers=headers)

    return router
