# SPDX-License-Identifier: AGPL-3.0-only
"""Compiled contracts (ABI + bytecode), committed under `artifacts/` beside this module.

Mercato runs from these files, so a node needs no Vyper compiler. `compile_all()` rebuilds
them from `contracts/` at the repository root (Vyper is a development dependency); a
test recompiles and fails on any difference, so the committed bytecode always matches
the sources.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import rlp
from eth_utils import keccak, to_canonical_address, to_checksum_address

ARTIFACTS_DIR = Path(__file__).with_name("artifacts")
# Deployed contracts, in deployment order; modules and interfaces are not listed.
CONTRACT_NAMES = (
    "token",
    "model_registry",
    "marketplace",
    "reviews",
    "reports",
    "revenue_splitter",
    "federation",
)
VYPER_VERSION = "0.4.3"


@dataclass(frozen=True)
class Artifact:
    """One compiled contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    runtime_bytecode: bytes

    def to_json(self) -> str:
        document = {
            "contract": self.name,
            "compiler": f"vyper {VYPER_VERSION}",
            "abi": self.abi,
            "bytecode": "0x" + self.bytecode.hex(),
            "runtime_bytecode": "0x" + self.runtime_bytecode.hex(),
        }
        return json.dumps(document, indent=1, sort_keys=True) + "\n"


@cache
def load_artifact(name: str) -> Artifact:
    """Reads a committed artifact.

    Args:
        name: One of `CONTRACT_NAMES`.

    Returns:
        The artifact.

    Raises:
        FileNotFoundError: No artifact of that name is committed.
    """
    document = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
    return Artifact(
        name=name,
        abi=document["abi"],
        bytecode=bytes.fromhex(document["bytecode"][2:]),
        runtime_bytecode=bytes.fromhex(document["runtime_bytecode"][2:]),
    )


def create_address(deployer: str, nonce: int) -> str:
    """The address of the contract `deployer` creates with `nonce` (the EVM's CREATE rule)."""
    digest = keccak(rlp.encode([to_canonical_address(deployer), nonce]))
    return to_checksum_address(digest[12:])


def contracts_dir() -> Path:
    """The `contracts/` folder of a source checkout."""
    return Path(__file__).resolve().parents[3] / "contracts"


def compile_contract(name: str) -> Artifact:
    """Compiles `contracts/<name>.vy` with Vyper (a development dependency).

    Args:
        name: The contract's file name without `.vy`.

    Returns:
        The freshly compiled artifact.
    """
    import vyper  # development dependency: imported only when compiling
    from vyper.compiler.input_bundle import FilesystemInputBundle

    source_dir = contracts_dir()
    # snekmate is found on sys.path (it is installed from PyPI).
    search_paths = [source_dir, *(Path(p) for p in sys.path if p)]
    bundle = FilesystemInputBundle(search_paths)
    file = bundle.load_file(source_dir / f"{name}.vy")
    output = vyper.compile_from_file_input(
        file, input_bundle=bundle, output_formats=["abi", "bytecode", "bytecode_runtime"]
    )
    return Artifact(
        name=name,
        abi=output["abi"],
        bytecode=bytes.fromhex(output["bytecode"].removeprefix("0x")),
        runtime_bytecode=bytes.fromhex(output["bytecode_runtime"].removeprefix("0x")),
    )


def compile_all() -> dict[str, Artifact]:
    """Compiles every deployed contract."""
    return {name: compile_contract(name) for name in CONTRACT_NAMES}


def write_artifacts() -> list[Path]:
    """Recompiles every contract and rewrites the committed artifacts."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    written = []
    for name, artifact in compile_all().items():
        path = ARTIFACTS_DIR / f"{name}.json"
        path.write_text(artifact.to_json())
        written.append(path)
    load_artifact.cache_clear()
    return written


if __name__ == "__main__":
    for path in write_artifacts():
        print(f"wrote {path.name}")
