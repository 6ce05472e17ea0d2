# SPDX-License-Identifier: AGPL-3.0-only
"""Manifest field extraction (lenient by design) and raw log decoding."""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

from mercato.chain.deployment import Deployment
from mercato.index.decode import LogDecoder
from mercato.index.metadata import DictMetadataSource, extract_metadata

DEPLOYMENT = Deployment(
    chain_id=31_337,
    token="0x" + "11" * 20,
    model_registry="0x" + "22" * 20,
    marketplace="0x" + "33" * 20,
    reviews="0x" + "44" * 20,
    deploy_block=1,
    delivery_window=60,
    deployer="0x" + "55" * 20,
)


def test_extracts_card_fields_and_ignores_unknown_ones() -> None:
    meta = extract_metadata(
        {
            "name": "resnet-tiny",
            "card": {
                "license": "MIT",
                "tags": ["vision", "vision", 3],
                "pipeline_tag": "image-classification",
                "text": "Classifies cats.",
                "datasets": ["cifar10"],
                "new_field": [1],
            },
            "something_new": True,
        }
    )
    assert (meta.valid, meta.name, meta.license, meta.task) == (
        True,
        "resnet-tiny",
        "MIT",
        "image-classification",
    )
    assert meta.tags == ("vision",)
    assert "Classifies cats." in meta.text and "cifar10" in meta.text


def test_malformed_documents_are_marked_invalid_not_raised() -> None:
    assert not extract_metadata(["not", "an", "object"]).valid
    meta = extract_metadata({"name": 42, "card": "oops"})
    assert not meta.valid and meta.tags == () and meta.license is None


def test_dict_source_answers_none_until_added() -> None:
    source = DictMetadataSource()
    assert source.manifest(b"\x01" * 32) is None
    source.add(b"\x01" * 32, {"name": "x"})
    assert source.manifest(b"\x01" * 32) == {"name": "x"}


def _log(address: str, signature: str, topics: list[bytes], data: bytes) -> dict[str, object]:
    return {
        "address": address,
        "topics": ["0x" + keccak(text=signature).hex(), *("0x" + t.hex() for t in topics)],
        "data": "0x" + data.hex(),
        "blockNumber": "0x10",
        "blockHash": "0x" + "ab" * 32,
        "logIndex": "0x2",
        "transactionHash": "0x" + "cd" * 32,
    }


def test_same_transfer_topic_decodes_per_contract() -> None:
    decoder = LogDecoder(DEPLOYMENT)
    sender, receiver = b"\x00" * 12 + b"\x01" * 20, b"\x00" * 12 + b"\x02" * 20
    nft = decoder.decode(
        _log(
            DEPLOYMENT.model_registry,
            "Transfer(address,address,uint256)",
            [sender, receiver, (7).to_bytes(32, "big")],
            b"",
        )
    )
    erc20 = decoder.decode(
        _log(
            DEPLOYMENT.token,
            "Transfer(address,address,uint256)",
            [sender, receiver],
            encode(["uint256"], [10**30]),
        )
    )
    assert nft is not None and (nft.contract, nft.args["token_id"], nft.block_number) == (
        "model_registry",
        7,
        16,
    )
    assert erc20 is not None and (erc20.contract, erc20.args["value"]) == ("token", 10**30)
    assert nft.args["receiver"] == "0x" + "02" * 20


def test_dynamic_and_signed_fields_decode() -> None:
    decoder = LogDecoder(DEPLOYMENT)
    lineage = decoder.decode(
        _log(
            DEPLOYMENT.model_registry,
            "LineageRecorded(uint256,uint256[],uint16[])",
            [(5).to_bytes(32, "big")],
            encode(["uint256[]", "uint16[]"], [[1, 2], [100, 200]]),
        )
    )
    assert lineage is not None and lineage.args == {
        "model_id": 5,
        "parents": (1, 2),
        "royalty_bps": (100, 200),
    }
    evaluation = decoder.decode(
        _log(
            DEPLOYMENT.reviews,
            "EvaluationAttested(uint256,address,uint256,bytes32,bytes32,int256)",
            [(5).to_bytes(32, "big"), b"\x00" * 12 + b"\x09" * 20],
            encode(
                ["uint256", "bytes32", "bytes32", "int256"],
                [1, b"\x01" * 32, b"f1".ljust(32, b"\0"), -3],
            ),
        )
    )
    assert evaluation is not None and evaluation.args["score"] == -3


def test_unknown_logs_are_skipped() -> None:
    decoder = LogDecoder(DEPLOYMENT)
    assert decoder.decode(_log(DEPLOYMENT.reviews, "Nope(uint256)", [], b"")) is None
    assert (
        decoder.decode(_log("0x" + "99" * 20, "Transfer(address,address,uint256)", [], b"")) is None
    )


def test_hub_fields_of_newer_manifests_are_searchable_and_bounded() -> None:
    from mercato.index.metadata import MAX_TAGS, extract_metadata

    results = [
        {"dataset": {"name": f"set-{i}", "type": "librispeech_asr"}, "metrics": [{"type": "wer"}]}
        for i in range(MAX_TAGS + 10)
    ]
    meta = extract_metadata(
        {
            "name": "whisper",
            "card": {
                "license": "other",
                "license_name": "qwen-research",
                "model-index": [{"results": [*results, "junk", {"dataset": 3}]}, "junk"],
            },
        }
    )
    assert meta.license == "other"
    assert "qwen-research" in meta.text and "librispeech_asr" in meta.text and "wer" in meta.text
    assert "set-0" in meta.text and f"set-{MAX_TAGS + 5}" not in meta.text
