# SPDX-License-Identifier: AGPL-3.0-only
"""`deploy()` on titanoboa's in-process EVM, for fast unit tests.

titanoboa is a development dependency; nothing outside tests imports this module.
"""

from __future__ import annotations

import json
from typing import Any

import boa
from eth_abi import encode
from eth_utils import to_checksum_address

from mercato.chain.artifacts import Artifact, create_address


class BoaBackend:
    """Deploys from the committed artifacts into boa's current environment."""

    def __init__(self, deployer: str | None = None) -> None:
        self._deployer = deployer or str(boa.env.eoa)

    def chain_id(self) -> int:
        return int(boa.env.evm.patch.chain_id)

    def block_number(self) -> int:
        return int(boa.env.evm.patch.block_number)

    def deployer(self) -> str:
        return to_checksum_address(self._deployer)

    def future_contract_address(self, creations_ahead: int) -> str:
        # boa's nonces count contract creations only, as the EVM's CREATE does.
        nonce = boa.env.evm.vm.state.get_nonce(bytes.fromhex(self._deployer[2:]))
        return create_address(self._deployer, nonce + creations_ahead)

    def create(self, artifact: Artifact, *args: Any) -> str:
        constructor = next((f for f in artifact.abi if f["type"] == "constructor"), None)
        encoded = b""
        if constructor is not None:
            types = [i["type"] for i in constructor["inputs"]]
            encoded = encode(types, list(args))
        with boa.env.prank(self._deployer):
            address, _ = boa.env.deploy_code(bytecode=artifact.bytecode + encoded)
        return to_checksum_address(str(address))

    def simulate_creation(self, code: bytes) -> bytes:
        # boa's EVM runs the latest fork the compiler targets; the anchor drops the creation.
        with boa.env.anchor(), boa.env.prank(self._deployer):
            _, output = boa.env.deploy_code(bytecode=code)
        return bytes(output)

    def transact(self, artifact: Artifact, address: str, function: str, *args: Any) -> None:
        contract = self.at(artifact, address)
        with boa.env.prank(self._deployer):
            getattr(contract, function)(*args)

    @staticmethod
    def at(artifact: Artifact, address: str) -> Any:
        """A boa handle on a deployed contract, for tests to call."""
        return boa.loads_abi(json.dumps(artifact.abi), name=artifact.name).at(address)
