# SPDX-License-Identifier: AGPL-3.0-only
"""A chain without the Cancun EVM: deploy() says so in a sentence and deploys nothing.

The chain is a real Anvil started with `--hardfork shanghai` (the last fork before
Cancun), through the same supervisor the node uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from mercato.chain.anvil import AnvilSupervisor, dev_accounts, find_anvil, free_port
from mercato.chain.deployment import CANCUN_PROBE, CANCUN_PROBE_ANSWER, deploy
from mercato.chain.web3_backend import Web3Backend
from mercato.errors import ChainError, EvmVersionError


@pytest.fixture
def shanghai(tmp_path: Path) -> Iterator[AnvilSupervisor]:
    """A real Anvil running the Shanghai rules, which lack MCOPY, TSTORE and TLOAD."""
    wrapper = tmp_path / "anvil-shanghai"
    wrapper.write_text(f'#!/bin/sh\nexec "{find_anvil()}" --hardfork shanghai "$@"\n')
    wrapper.chmod(0o755)
    # A folder of its own: a start stops any Anvil left running on the same chain folder.
    supervisor = AnvilSupervisor(tmp_path / "shanghai", port=free_port(), binary=wrapper)
    supervisor.start()
    yield supervisor
    supervisor.stop()


def test_deploy_on_a_chain_without_cancun_is_a_typed_error(shanghai: AnvilSupervisor) -> None:
    w3 = Web3(Web3.HTTPProvider(shanghai.rpc_url))
    deployer = dev_accounts(1)[0]
    with pytest.raises(EvmVersionError) as caught:
        deploy(Web3Backend(w3, deployer), fund=[deployer.address])
    assert caught.value.chain_id == 31_337
    assert caught.value.code == "evm_version_unsupported"
    assert "does not run the Cancun EVM" in str(caught.value)
    assert "NotActivated" in caught.value.detail  # Anvil's own words travel with it
    # Checked before the first transaction (without the check, the token's creation
    # fails with the node's raw JSON-RPC error): nothing was deployed, no nonce spent.
    assert w3.eth.get_transaction_count(deployer.address) == 0


def test_the_probe_tells_the_forks_apart(shanghai: AnvilSupervisor, w3: Web3) -> None:
    deployer = dev_accounts(1)[0]
    assert Web3Backend(w3, deployer).simulate_creation(CANCUN_PROBE) == CANCUN_PROBE_ANSWER
    old = Web3Backend(Web3(Web3.HTTPProvider(shanghai.rpc_url)), deployer)
    with pytest.raises(ChainError):
        old.simulate_creation(CANCUN_PROBE)


def test_node_up_on_a_chain_without_cancun_exits_with_its_code(
    shanghai: AnvilSupervisor, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "MERCATO_DATA_DIR": str(tmp_path / "data"),
        "MERCATO_DEPLOYER_KEY": dev_accounts(1)[0].key.hex(),
    }
    done = subprocess.run(
        [sys.executable, "-m", "mercato.cli", "node", "up", "--rpc-url", shanghai.rpc_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 27, done.stderr
    assert "Cancun" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "deployments" / "31337.json").exists()
