# SPDX-License-Identifier: AGPL-3.0-only
"""Models as wallets and NFT tools see them, read with a real client: Foundry's `cast`
(npm `@foundry-rs/cast`) calls `tokenURI` and `supportsInterface` and reads the
ERC-4906 logs on a real Anvil; the metadata JSON and its card image come from the
node's own IPFS gateway and are checked against the ERC-721 metadata JSON schema."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import httpx
import pytest
from multiformats import CID

from mercato.node import Node

CAST_PACKAGES = ("cast-linux-amd64", "cast-linux-arm64", "cast-darwin-arm64", "cast-darwin-amd64")


def find_cast() -> Path:
    for folder in [Path.cwd(), *Path(__file__).resolve().parents]:
        for package in CAST_PACKAGES:
            candidate = folder / "node_modules" / "@foundry-rs" / package / "bin" / "cast"
            if candidate.is_file():
                return candidate
    pytest.fail("cast is not installed: run scripts/bootstrap (npm @foundry-rs/cast)")


def cast(*args: str) -> str:
    done = subprocess.run(
        [str(find_cast()), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _registry(node: Node) -> tuple[str, str]:
    assert node.market is not None
    return node.market.deployment.model_registry, node.market.rpc_url


def test_cast_reads_token_uri_and_the_gateway_serves_valid_metadata(
    demo_node: tuple[Node, str, list[int]],
) -> None:
    node, base, ids = demo_node
    registry, rpc = _registry(node)
    model_id = ids[0]
    uri = json.loads(
        cast("call", registry, "tokenURI(uint256)(string)", str(model_id), "--rpc-url", rpc)
    )
    assert uri.startswith("ipfs://bafkrei")
    cid = CID.decode(uri.removeprefix("ipfs://"))
    assert cid.codec.name == "raw" and cid.hashfun.name == "sha2-256"

    answer = httpx.get(f"{base}/ipfs/{cid}", timeout=30)
    assert answer.status_code == 200
    # The bytes are the ones the chain commits to, whoever served them.
    assert hashlib.sha256(answer.content).digest() == bytes(cid.raw_digest)
    document = json.loads(answer.content)
    # ERC-721 metadata JSON schema: name, description, image are strings.
    assert {"name", "description", "image", "attributes"} <= document.keys()
    assert all(isinstance(document[k], str) for k in ("name", "description", "image"))
    traits = {a["trait_type"]: a["value"] for a in document["attributes"]}
    assert set(traits) == {"task", "licence", "price", "version", "CID"}
    assert traits["version"] == 1 and traits["price"].endswith(" MCT")
    assert node.market is not None
    info = node.market.models.show(model_id)
    assert traits["CID"] == str(info.latest.artifact_cid)

    image = httpx.get(f"{base}/ipfs/{document['image'].removeprefix('ipfs://')}", timeout=30)
    assert image.status_code == 200
    assert image.content.startswith(b"<svg") and b"<script" not in image.content
    assert document["name"].encode() in image.content or len(document["name"]) > 26


def test_cast_sees_metadata_interfaces(demo_node: tuple[Node, str, list[int]]) -> None:
    node, _base, _ids = demo_node
    registry, rpc = _registry(node)
    for interface in ("0x5b5e139f", "0x49064906", "0x80ac58cd"):
        out = cast("call", registry, "supportsInterface(bytes4)(bool)", interface, "--rpc-url", rpc)
        assert out == "true"
    assert (
        cast("call", registry, "supportsInterface(bytes4)(bool)", "0xffffffff", "--rpc-url", rpc)
        == "false"
    )


def test_cast_logs_see_metadata_update_on_a_new_version_and_a_new_price(
    demo_node: tuple[Node, str, list[int]],
) -> None:
    node, base, ids = demo_node
    registry, rpc = _registry(node)
    assert node.market is not None
    market = node.market
    model_id = ids[0]
    owner = market.models.show(model_id).owner
    before = market.contracts.registry.token_uri(model_id)
    account = next(a for a in node.accounts if a.address == owner)
    owned = node.account_market(account)
    owned.models.set_price(model_id, 7 * 10**18)
    after = market.contracts.registry.token_uri(model_id)
    assert after != before

    logs = cast(
        "logs",
        "--address",
        registry,
        "--from-block",
        "0",
        "MetadataUpdate(uint256)",
        "--rpc-url",
        rpc,
        "--json",
    )
    updated = [int(log["data"], 16) for log in json.loads(logs)]
    assert model_id in updated
    document = httpx.get(f"{base}/ipfs/{after.removeprefix('ipfs://')}", timeout=30).json()
    price = {a["trait_type"]: a["value"] for a in document["attributes"]}["price"]
    assert price == "7 MCT"
