# SPDX-License-Identifier: AGPL-3.0-only
"""Deploying Mercato's contracts, and the record of where they are.

`deploy()` is the one deployment path: unit tests run it on titanoboa's in-process
EVM, the local node and real networks run it over JSON-RPC. Each backend only knows
how to create a contract and send one transaction; the order of steps lives here.

The record of a deployment is saved as JSON in the data directory:

    <data dir>/deployments/
    └── <chain id>.json     chain id, contract addresses, deploy block
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from eth_utils import to_checksum_address

from mercato.chain.artifacts import Artifact, load_artifact
from mercato.errors import ContractRevertError, DeploymentError, EvmVersionError
from mercato.fsutil import atomic_write_bytes

# Anvil/Hardhat and Ganache/geth --dev: the chains where demo funding and the faucet apply.
LOCAL_CHAIN_IDS = frozenset({31_337, 1_337})
DEFAULT_DELIVERY_WINDOW = 24 * 60 * 60  # seconds a seller has to deliver a key
TOKEN_UNIT = 10**18
# The fixed MCT supply minted to the deployer where nobody may mint later (any chain
# but a local one); local chains mint what they need when funding accounts.
DEFAULT_FIXED_SUPPLY = 100_000_000 * TOKEN_UNIT
# Creation code that runs TSTORE, TLOAD, BLOBBASEFEE and MCOPY, four opcodes new in
# Cancun, and returns the word 1. Vyper 0.4 compiles for Cancun (memory copies are
# MCOPY), so the contracts deploy on an older EVM but fail at their first real call.
CANCUN_PROBE = bytes.fromhex(
    "600160005d"  # PUSH1 1, PUSH1 0, TSTORE: transient slot 0 = 1
    "60005c600052"  # PUSH1 0, TLOAD, PUSH1 0, MSTORE: memory word 0 = slot 0
    "4a50"  # BLOBBASEFEE, POP
    "6020600060205e"  # MCOPY: memory word 1 = word 0
    "60206020f3"  # RETURN memory word 1
)
CANCUN_PROBE_ANSWER = (1).to_bytes(32, "big")


class ChainBackend(Protocol):
    """What `deploy()` needs from a chain: create contracts and send transactions."""

    def chain_id(self) -> int: ...

    def block_number(self) -> int: ...

    def deployer(self) -> str: ...

    def future_contract_address(self, creations_ahead: int) -> str:
        """The address of the deployer's contract creation `creations_ahead` after the next."""
        ...

    def create(self, artifact: Artifact, *args: Any) -> str:
        """Deploys `artifact` with constructor `args`; returns its checksum address."""
        ...

    def transact(self, artifact: Artifact, address: str, function: str, *args: Any) -> None:
        """Calls `function` on the contract at `address` in a transaction and waits for it."""
        ...

    def simulate_creation(self, code: bytes) -> bytes:
        """Runs creation `code` without a transaction (an `eth_call` with no recipient).

        Returns:
            What the code returned.

        Raises:
            ContractRevertError: The code failed to run; the reason is the node's.
        """
        ...


@dataclass(frozen=True)
class Deployment:
    """Where Mercato's contracts live on one chain."""

    chain_id: int
    token: str
    model_registry: str
    marketplace: str
    reviews: str
    deploy_block: int
    delivery_window: int
    deployer: str
    # Added later: records saved before the reports contract existed load with None.
    reports: str | None = None
    # Likewise for federated training: the revenue splitter every finalized task gets
    # a proxy of, and the federation contract (None: `deploy()` predates them).
    revenue_splitter: str | None = None
    federation: str | None = None

    def save(self, data_dir: Path) -> Path:
        """Writes the record atomically to `<data_dir>/deployments/<chain id>.json`."""
        path = deployment_path(data_dir, self.chain_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            path, (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()
        )
        return path

    @classmethod
    def load(cls, data_dir: Path, chain_id: int) -> Deployment | None:
        """Reads the record for `chain_id`, or None when there is none.

        Raises:
            DeploymentError: The record exists but cannot be read.
        """
        path = deployment_path(data_dir, chain_id)
        if not path.exists():
            return None
        return cls.from_file(path)

    @classmethod
    def from_file(cls, path: Path) -> Deployment:
        """Reads a deployment record, e.g. one shared to join a network.

        Raises:
            DeploymentError: The file is missing, damaged or not a deployment record.
        """
        try:
            fields = json.loads(path.read_text())
            for name in ("token", "model_registry", "marketplace", "reviews", "deployer"):
                fields[name] = to_checksum_address(fields[name])
            for name in ("reports", "revenue_splitter", "federation"):
                if fields.get(name) is not None:
                    fields[name] = to_checksum_address(fields[name])
            return cls(**fields)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise DeploymentError(
                f"{path} is not a readable deployment record ({exc}). Restore it, or remove it "
                "to deploy afresh."
            ) from exc


def deployment_path(data_dir: Path, chain_id: int) -> Path:
    return data_dir / "deployments" / f"{chain_id}.json"


def _require_cancun(backend: ChainBackend, chain_id: int) -> None:
    """Raises EvmVersionError unless the chain runs `CANCUN_PROBE` as Cancun would."""
    try:
        answer = backend.simulate_creation(CANCUN_PROBE)
    except ContractRevertError as exc:
        raise EvmVersionError(chain_id, exc.reason) from exc
    if answer != CANCUN_PROBE_ANSWER:
        raise EvmVersionError(chain_id, f"the probe returned 0x{answer.hex()}")


def deploy(
    backend: ChainBackend,
    *,
    delivery_window: int = DEFAULT_DELIVERY_WINDOW,
    fund: Iterable[str] = (),
    fund_amount: int = 10_000 * TOKEN_UNIT,
    initial_supply: int | None = None,
) -> Deployment:
    """Deploys the token, registry, marketplace and reviews contracts and links them.

    On a local chain the deployer keeps the token's minter role (it funds accounts);
    on any other chain the token's whole supply is `initial_supply`, minted to the
    deployer, and nobody can ever mint more (the token's constructor sees to it).

    Args:
        backend: The chain to deploy on, with the deploying account.
        delivery_window: Seconds a seller has to deliver a key before a refund opens.
        fund: Accounts to mint `fund_amount` tokens to; only allowed on local chains.
        fund_amount: Tokens (in base units) each funded account receives.
        initial_supply: Tokens (in base units) minted once to the deployer; defaults
            to none on local chains and `DEFAULT_FIXED_SUPPLY` on others.

    Returns:
        The deployment record (not yet saved).

    Raises:
        DeploymentError: `fund` was given for a chain that is not a local development
            chain, or `initial_supply` does not fit in 256 bits.
        EvmVersionError: The chain lacks the Cancun opcodes the contracts use.
    """
    chain_id = backend.chain_id()
    accounts = list(fund)
    if accounts and chain_id not in LOCAL_CHAIN_IDS:
        raise DeploymentError(
            f"Refusing to mint demo tokens on chain {chain_id}: funding is for local chains only."
        )
    if initial_supply is None:
        initial_supply = 0 if chain_id in LOCAL_CHAIN_IDS else DEFAULT_FIXED_SUPPLY
    if not 0 <= initial_supply < 2**256:
        raise DeploymentError(
            f"The initial token supply must be between 0 and 2**256 - 1 base units, "
            f"not {initial_supply}."
        )
    _require_cancun(backend, chain_id)
    start_block = backend.block_number()
    token_artifact = load_artifact("token")
    token = backend.create(token_artifact, initial_supply)
    # The registry trusts the marketplace, which needs the registry's address: the
    # registry is told the address the marketplace will get, one creation later.
    expected_marketplace = backend.future_contract_address(1)
    registry = backend.create(load_artifact("model_registry"), expected_marketplace)
    marketplace = backend.create(load_artifact("marketplace"), token, registry, delivery_window)
    if marketplace != expected_marketplace:
        raise DeploymentError(
            f"The marketplace landed at {marketplace}, not {expected_marketplace}: another "
            "transaction from the deploying account got in between. Deploy again from an "
            "account nothing else is using."
        )
    reviews = backend.create(load_artifact("reviews"), marketplace, registry)
    reports = backend.create(load_artifact("reports"), marketplace, registry)
    splitter = backend.create(load_artifact("revenue_splitter"), token, marketplace, registry)
    federation = backend.create(load_artifact("federation"), token, registry, splitter)
    for account in accounts:
        backend.transact(token_artifact, token, "mint", account, fund_amount)
    return Deployment(
        chain_id=chain_id,
        token=token,
        model_registry=registry,
        marketplace=marketplace,
        reviews=reviews,
        deploy_block=start_block + 1,
        delivery_window=delivery_window,
        deployer=backend.deployer(),
        reports=reports,
        revenue_splitter=splitter,
        federation=federation,
    )
