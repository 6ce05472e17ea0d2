# SPDX-License-Identifier: AGPL-3.0-only
"""Bringing up the chain side of a node: a local Anvil or any RPC URL, deployed once.

With no RPC URL, an Anvil process is started on loopback with its state in the data
directory. With one, nothing is started. Either way the deployment record for the
chain's id is reused when it exists; otherwise the contracts are deployed and the
record saved, so a second start finds every model, balance and order where it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import Web3Exception

from mercato.chain.anvil import AnvilSupervisor, dev_accounts
from mercato.chain.deployment import LOCAL_CHAIN_IDS, TOKEN_UNIT, Deployment, deploy
from mercato.chain.web3_backend import Web3Backend, connect
from mercato.errors import ChainUnavailableError, DeploymentError, rpc_origin

DEPLOYER_KEY_ENV = "MERCATO_DEPLOYER_KEY"
# Anvil dev accounts 1.. are the demo creators and buyers; account 0 deploys.
DEMO_ACCOUNT_COUNT = 9
DEMO_FUNDING = 10_000 * TOKEN_UNIT


@dataclass
class ChainSession:
    """A connected chain with Mercato deployed on it."""

    w3: Web3
    deployment: Deployment
    rpc_url: str
    deployed_now: bool
    anvil: AnvilSupervisor | None = field(default=None, repr=False)

    @property
    def is_local(self) -> bool:
        return self.deployment.chain_id in LOCAL_CHAIN_IDS

    def close(self) -> None:
        """Stops Anvil if this session started it (it saves its state on the way out)."""
        if self.anvil is not None:
            self.anvil.stop()


def open_chain(
    data_dir: Path,
    *,
    rpc_url: str | None = None,
    port: int = 8545,
    deployer: LocalAccount | None = None,
) -> ChainSession:
    """Starts or connects to the chain and makes sure Mercato is deployed on it.

    Args:
        data_dir: The node's data directory (chain state and deployment records).
        rpc_url: Any EVM JSON-RPC URL; None starts a local Anvil.
        port: Loopback port for the local Anvil.
        deployer: The account that deploys when no record exists. Defaults to Anvil's
            first dev account on local chains and to `$MERCATO_DEPLOYER_KEY` elsewhere.

    Returns:
        The session; call `close()` to stop a local Anvil.

    Raises:
        AnvilError: The local Anvil cannot start.
        ChainUnavailableError: The RPC URL does not answer.
        DeploymentError: Mercato must be deployed but no deployer key is available, or
            the recorded contracts are missing from the chain.
    """
    anvil = None
    if rpc_url is None:
        anvil = AnvilSupervisor(data_dir, port=port)
        rpc_url = anvil.start()
    try:
        w3 = connect(rpc_url, timeout=30)
        try:
            chain_id = int(w3.eth.chain_id)
        except (requests.RequestException, Web3Exception, OSError) as exc:
            raise ChainUnavailableError(rpc_url, str(exc)) from exc
        deployment = Deployment.load(data_dir, chain_id)
        deployed_now = False
        if deployment is not None and not w3.eth.get_code(
            Web3.to_checksum_address(deployment.marketplace)
        ):
            if anvil is None:
                raise DeploymentError(
                    f"The deployment record for chain {chain_id} names contracts that are not "
                    f"on the chain at {rpc_origin(rpc_url)}. Remove "
                    f"{data_dir}/deployments/{chain_id}.json to deploy afresh, or point "
                    "--rpc-url at the chain it was made on."
                )
            deployment = None  # the local chain was reset: deploy again
        if deployment is None:
            deployment = _deploy_fresh(w3, chain_id, deployer)
            deployment.save(data_dir)
            deployed_now = True
        return ChainSession(w3, deployment, rpc_url, deployed_now, anvil)
    except BaseException:
        if anvil is not None:
            anvil.stop()
        raise


def demo_accounts() -> list[LocalAccount]:
    """The funded demo accounts of a local chain (Anvil dev accounts 1-9)."""
    return dev_accounts(DEMO_ACCOUNT_COUNT + 1)[1:]


def _deploy_fresh(w3: Web3, chain_id: int, deployer: LocalAccount | None) -> Deployment:
    local = chain_id in LOCAL_CHAIN_IDS
    if deployer is None:
        key = os.environ.get(DEPLOYER_KEY_ENV)
        if key:
            deployer = Account.from_key(key)
        elif local:
            deployer = dev_accounts(1)[0]
        else:
            raise DeploymentError(
                f"Mercato is not deployed on chain {chain_id} yet. Set {DEPLOYER_KEY_ENV} to "
                "the private key of a funded account to deploy it."
            )
    fund = [account.address for account in demo_accounts()] if local else []
    return deploy(Web3Backend(w3, deployer), fund=fund, fund_amount=DEMO_FUNDING)
