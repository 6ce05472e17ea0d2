# SPDX-License-Identifier: AGPL-3.0-only
"""ERC-721 metadata for a model: the JSON document `tokenURI` names, and its card image.

Wallets and NFT tools read `tokenURI(model_id)` (`ipfs://<CID>`) and fetch the document
from any IPFS gateway, the node's own included. Both the document and its SVG image are
single raw blocks (CIDv1, sha2-256, what `ipfs add --cid-version 1` gives for a small
file), so the registry stores only the document's sha256:

    tokenURI -> ipfs://bafkrei…  metadata JSON (ERC-721 metadata JSON schema)
                 ├─ name, description
                 ├─ image: ipfs://bafkrei…  SVG card (name, task, licence, price, version)
                 └─ attributes: task, licence, price, version, CID (the artifact's)

Everything in them comes from the model's card and listing, which its owner writes: a
client showing them treats them as untrusted text, and the image is plain SVG text
generated here, with every string escaped and no script, link or external reference.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from multiformats import CID

from mercato.client.license_terms import manifest_terms, terms_label
from mercato.errors import StorageError
from mercato.storage.blockstore import Blockstore
from mercato.storage.unixfs import import_file

PROFILE = "unixfs-v1-2025"  # CIDv1 with raw leaves: a small document is one raw block
MAX_FIELD = 200  # characters of a name, task or licence shown in the document
MAX_DESCRIPTION = 1_000
MAX_DOCUMENT = 256 * 1024  # far below one block: the document stays one raw block


def format_price(units: int) -> str:
    """Base units as MCT ("5 MCT"), or "free"."""
    if units == 0:
        return "free"
    return f"{(Decimal(units) / 10**18).normalize():f} MCT"


def _clip(value: object, limit: int = MAX_FIELD) -> str:
    text = " ".join(str(value).split())  # no control characters or line breaks
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _description(manifest: Mapping[str, Any]) -> str:
    """The card's first paragraph of prose, else a sentence naming the model."""
    card = manifest.get("card")
    text = card.get("text") if isinstance(card, Mapping) else None
    if isinstance(text, str):
        for paragraph in text.split("\n\n"):
            line = paragraph.strip()
            if line and not line.startswith(("#", "<", "|", "```", "---")):
                return _clip(line, MAX_DESCRIPTION)
    return _clip(f"{manifest.get('name') or 'A model'}, sold on Mercato.", MAX_DESCRIPTION)


def card_image(name: str, task: str, licence: str, price: str, version: int) -> bytes:
    """A 400 by 400 SVG card for wallets: the model's name, task, licence, price, version.

    Args:
        name: The model's name.
        task: Its task (the card's `pipeline_tag`).
        licence: Its licence, as people read it.
        price: Its price, formatted.
        version: Its latest version.

    Returns:
        The SVG document's bytes; every string is escaped and clipped.
    """
    rows = [
        ("task", _clip(task, 40)),
        ("licence", _clip(licence, 40)),
        ("price", _clip(price, 40)),
        ("version", str(version)),
    ]
    lines = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="400" viewBox="0 0 400 400">',
        '<rect width="400" height="400" rx="24" fill="#14213d"/>',
        '<text x="28" y="64" font-family="sans-serif" font-size="15" fill="#fca311">'
        "MERCATO MODEL</text>",
        f'<text x="28" y="112" font-family="sans-serif" font-size="26" fill="#ffffff">'
        f"{escape(_clip(name, 26))}</text>",
    ]
    for i, (label, value) in enumerate(rows):
        y = 190 + 48 * i
        lines.append(
            f'<text x="28" y="{y}" font-family="sans-serif" font-size="14" fill="#a8b2c8">'
            f"{label}</text>"
            f'<text x="130" y="{y}" font-family="sans-serif" font-size="18" fill="#ffffff">'
            f"{escape(value)}</text>"
        )
    lines.append("</svg>")
    return ("\n".join(lines) + "\n").encode()


def token_metadata(
    manifest: Mapping[str, Any], *, price: int, version: int, artifact_cid: CID, image_cid: CID
) -> bytes:
    """The ERC-721 metadata JSON of a model (EIP-721's metadata JSON schema, with
    OpenSea-style `attributes`).

    Args:
        manifest: The latest version's published manifest (name, card).
        price: The listing's price in base units.
        version: The latest version's number.
        artifact_cid: That version's artifact CID.
        image_cid: The card image's CID.

    Returns:
        The document's bytes: compact, key-sorted JSON in UTF-8.
    """
    card = manifest.get("card")
    task = card.get("pipeline_tag") if isinstance(card, Mapping) else None
    terms = manifest_terms(manifest)
    document = {
        "name": _clip(manifest.get("name") or "Unnamed model"),
        "description": _description(manifest),
        "image": f"ipfs://{image_cid}",
        "attributes": [
            {"trait_type": "task", "value": _clip(task or "unspecified")},
            {"trait_type": "licence", "value": _clip(terms_label(terms) if terms else "unstated")},
            {"trait_type": "price", "value": format_price(price)},
            {"trait_type": "version", "display_type": "number", "value": version},
            {"trait_type": "CID", "value": str(artifact_cid)},
        ],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def store_token_metadata(
    store: Blockstore,
    manifest: Mapping[str, Any],
    *,
    price: int,
    version: int,
    artifact_cid: CID,
) -> bytes:
    """Builds the card image and metadata document, stores and pins both.

    Args:
        store: The node's blockstore (its gateway serves them at `/ipfs/<CID>`).
        manifest: The latest version's published manifest.
        price: The listing's price in base units.
        version: The latest version's number.
        artifact_cid: That version's artifact CID.

    Returns:
        The document's sha256: the digest `tokenURI`'s CID carries.

    Raises:
        StorageError: The document did not come out as one raw block.
        BlockWriteError: A block could not be written.
    """
    card = manifest.get("card")
    task = card.get("pipeline_tag") if isinstance(card, Mapping) else None
    terms = manifest_terms(manifest)
    image = card_image(
        str(manifest.get("name") or "Unnamed model"),
        str(task or "unspecified"),
        terms_label(terms) if terms else "unstated",
        format_price(price),
        version,
    )
    image_cid = import_file([image], store, profile=PROFILE).cid
    document = token_metadata(
        manifest, price=price, version=version, artifact_cid=artifact_cid, image_cid=image_cid
    )
    if len(document) > MAX_DOCUMENT:
        raise StorageError(f"The model's metadata document is {len(document)} bytes, over 256 KiB.")
    cid = import_file([document], store, profile=PROFILE).cid
    digest = hashlib.sha256(document).digest()
    if cid.codec.name != "raw" or bytes(cid.raw_digest) != digest:
        raise StorageError(f"The model's metadata document was stored as {cid}, not one raw block.")
    return digest


def metadata_cid(digest: bytes) -> CID:
    """The CID `tokenURI` names for a metadata digest."""
    from multiformats import multihash

    return CID("base32", 1, "raw", multihash.wrap(digest, "sha2-256"))
