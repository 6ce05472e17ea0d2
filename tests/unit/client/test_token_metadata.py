# SPDX-License-Identifier: AGPL-3.0-only
"""ERC-721 metadata documents and card images, and licence terms digests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from xml.etree import ElementTree

from multiformats import CID

from mercato.client.license_terms import manifest_terms, page_terms_digest, terms_digest
from mercato.client.token_metadata import card_image, metadata_cid, store_token_metadata
from mercato.storage.blockstore import Blockstore

ARTIFACT = CID.decode("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")


def _manifest(name: str = "iris", license_id: str = "apache-2.0") -> dict[str, object]:
    return {
        "name": name,
        "card": {"license": license_id, "pipeline_tag": "tabular-classification",
                 "text": "# Iris\n\nClassifies iris flowers from four measurements."},
    }  # fmt: skip


def test_store_token_metadata_is_one_raw_block_with_the_schema(tmp_path: Path) -> None:
    store = Blockstore(tmp_path / "store")
    digest = store_token_metadata(
        store, _manifest(), price=5 * 10**18, version=2, artifact_cid=ARTIFACT
    )
    cid = metadata_cid(digest)
    document_bytes = store.get(cid)
    assert hashlib.sha256(document_bytes).digest() == digest
    document = json.loads(document_bytes)
    assert document["name"] == "iris"
    assert document["description"] == "Classifies iris flowers from four measurements."
    traits = {a["trait_type"]: a["value"] for a in document["attributes"]}
    assert traits == {
        "task": "tabular-classification",
        "licence": traits["licence"],
        "price": "5 MCT",
        "version": 2,
        "CID": str(ARTIFACT),
    }
    assert "Apache" in traits["licence"]
    image = store.get(CID.decode(document["image"].removeprefix("ipfs://")))
    assert ElementTree.fromstring(image).tag.endswith("svg")
    assert store.is_pinned(cid)


def test_card_image_escapes_hostile_names() -> None:
    svg = card_image('<script>alert(1)</script>"&', "t<x>", "l", "free", 1)
    root = ElementTree.fromstring(svg)  # still well-formed XML
    assert b"<script" not in svg
    texts = "".join(t.text or "" for t in root.iter() if t.text)
    assert "<script>" in texts  # shown as text, not markup


def test_terms_digest_changes_with_the_licence() -> None:
    apache = manifest_terms(_manifest())
    nc = manifest_terms(_manifest(license_id="cc-by-nc-4.0"))
    assert apache is not None and nc is not None
    assert terms_digest(apache) != terms_digest(nc)
    assert terms_digest(apache) == hashlib.sha256(apache.canonical_bytes()).digest()
    assert page_terms_digest(_manifest()) == "0x" + terms_digest(apache).hex()


def test_no_card_states_no_terms() -> None:
    assert manifest_terms({"name": "x"}) is None
    assert page_terms_digest({"card": "not a mapping"}) == "0x" + "00" * 32
