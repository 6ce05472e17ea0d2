# SPDX-License-Identifier: AGPL-3.0-only
"""A hosted provider's RPC URL carries its API key; the node never prints it whole."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from mercato.chain.anvil import AnvilSupervisor
from mercato.chain.deployment import Deployment
from mercato.chain.session import open_chain
from mercato.cli import node as node_cli
from mercato.cli.common import console
from mercato.errors import DeploymentError

SECRET = "k3y-0f-th3-0p3rat0r"


def _secret_url(anvil: AnvilSupervisor) -> str:
    # Anvil answers only on `/`, so the key rides in the user part and the query here
    # (providers also use the path; `rpc_origin` drops all three).
    scheme, _, host = anvil.rpc_url.partition("://")
    return f"{scheme}://mercato:{SECRET}@{host}/?apikey={SECRET}"


def test_missing_contracts_error_names_the_origin_not_the_key(
    anvil: AnvilSupervisor, tmp_path: Path
) -> None:
    data_dir = tmp_path / "elsewhere"
    stale = Deployment(
        chain_id=31_337,
        token="0x" + "11" * 20,
        model_registry="0x" + "22" * 20,
        marketplace="0x" + "33" * 20,
        reviews="0x" + "44" * 20,
        deploy_block=1,
        delivery_window=3600,
        deployer="0x" + "55" * 20,
    )
    stale.save(data_dir)
    with pytest.raises(DeploymentError) as caught:
        open_chain(data_dir, rpc_url=_secret_url(anvil))
    assert SECRET not in str(caught.value)
    assert anvil.rpc_url in str(caught.value)


def test_node_summary_prints_the_origin_not_the_key(anvil: AnvilSupervisor, tmp_path: Path) -> None:
    session = open_chain(tmp_path / "fresh", rpc_url=_secret_url(anvil))
    node = SimpleNamespace(
        session=session,
        market=object(),
        accounts=[],
        settings=SimpleNamespace(data_dir=tmp_path / "fresh", public_url="http://127.0.0.1:1"),
    )
    with console.capture() as captured:
        node_cli._print_summary(node, demo=False)  # type: ignore[arg-type]
    printed = captured.get()
    assert f"chain 31337 at {anvil.rpc_url}" in printed
    assert SECRET not in printed
