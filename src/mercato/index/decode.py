# SPDX-License-Identifier: AGPL-3.0-only
"""Decoding raw `eth_getLogs` entries with the contracts' ABIs.

The index reads logs as plain JSON-RPC dicts and decodes them here, not through
web3.py's contract event objects: those build several wrapper objects per log, which
caps ingestion far below the 10,000 events/s the index aims for. The ABIs still come
from the committed artifacts, so an event added to a contract is decoded without
changes here.

Two contracts emit a `Transfer(address,address,uint256)` with the same topic (the
ERC-20 token and the ERC-721 registry), so events are looked up by (address, topic).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from mercato.chain.artifacts import load_artifact
from mercato.chain.deployment import Deployment

# Deployment field -> artifact name.
CONTRACTS = {
    "token": "token",
    "model_registry": "model_registry",
    "marketplace": "marketplace",
    "reviews": "reviews",
    "reports": "reports",  # absent (None) from deployments recorded before it existed
    "federation": "federation",  # likewise
}


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """One contract event, decoded, with where it happened."""

    contract: str  # a CONTRACTS key: token, model_registry, ..., federation
    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    log_index: int
    tx_hash: str


@dataclass(frozen=True)
class _EventSpec:
    contract: str
    name: str
    indexed: tuple[tuple[str, str], ...]
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]


@lru_cache(maxsize=65_536)
def _address(topic_or_word: str) -> str:
    return to_checksum_address("0x" + topic_or_word[-40:])


def _topic_value(abi_type: str, topic: str) -> Any:
    if abi_type == "address":
        return _address(topic)
    if abi_type.startswith("uint"):
        return int(topic, 16)
    if abi_type.startswith("int"):
        value = int(topic, 16)
        return value - (1 << 256) if value >= 1 << 255 else value
    if abi_type == "bool":
        return int(topic, 16) != 0
    # bytes32 and hashed dynamic types are kept as the raw 32 bytes.
    return bytes.fromhex(topic[2:])


def _signature(entry: Mapping[str, Any]) -> str:
    return f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"


class LogDecoder:
    """Decodes the logs of one deployment's four contracts."""

    def __init__(self, deployment: Deployment) -> None:
        self.addresses: dict[str, str] = {}
        self._specs: dict[tuple[str, str], _EventSpec] = {}
        for field_name, artifact_name in CONTRACTS.items():
            if getattr(deployment, field_name) is None:
                continue
            address = str(getattr(deployment, field_name)).lower()
            self.addresses[field_name] = to_checksum_address(address)
            for entry in load_artifact(artifact_name).abi:
                if entry.get("type") != "event":
                    continue
                topic = "0x" + keccak(text=_signature(entry)).hex()
                indexed = tuple((i["name"], i["type"]) for i in entry["inputs"] if i["indexed"])
                data = [i for i in entry["inputs"] if not i["indexed"]]
                self._specs[(address, topic)] = _EventSpec(
                    contract=field_name,
                    name=entry["name"],
                    indexed=indexed,
                    data_names=tuple(i["name"] for i in data),
                    data_types=tuple(i["type"] for i in data),
                )

    @property
    def address_list(self) -> list[str]:
        """The four contract addresses, for one `eth_getLogs` filter."""
        return list(self.addresses.values())

    def decode(self, log: Mapping[str, Any]) -> DecodedEvent | None:
        """Decodes one raw log.

        Args:
            log: An entry of an `eth_getLogs` result, as JSON-RPC returns it.

        Returns:
            The event, or None for a log these ABIs do not describe (skipped on purpose:
            the filter only names Mercato's contracts, so that means a newer contract
            version emitted an event this index does not know yet).
        """
        topics = log["topics"]
        if not topics:
            return None
        spec = self._specs.get((log["address"].lower(), topics[0].lower()))
        if spec is None or len(topics) != len(spec.indexed) + 1:
            return None
        args: dict[str, Any] = {}
        for (name, abi_type), topic in zip(spec.indexed, topics[1:], strict=True):
            args[name] = _topic_value(abi_type, topic)
        if spec.data_types:
            values = abi_decode(spec.data_types, bytes.fromhex(log["data"][2:]))
            for name, abi_type, value in zip(spec.data_names, spec.data_types, values, strict=True):
                args[name] = to_checksum_address(value) if abi_type == "address" else value
        return DecodedEvent(
            contract=spec.contract,
            name=spec.name,
            args=args,
            block_number=int(log["blockNumber"], 16),
            block_hash=log["blockHash"],
            log_index=int(log["logIndex"], 16),
            tx_hash=log["transactionHash"],
        )
