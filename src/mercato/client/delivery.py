# SPDX-License-Identifier: AGPL-3.0-only
"""Who delivers the keys of a model's sales.

A paid sale is delivered by a node that signs as the model's owner or as the agent the
owner named (`set_agent`), and that holds the key the owner stored for the latest
version (`mercato.client.sale_keys`). `delivery_status` says which of that is true from
where the caller stands: a data directory, and the node that may be running on it.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eth_typing import ChecksumAddress
from web3 import Web3

from mercato.chain.contracts import ModelId
from mercato.client.running_node import running_node
from mercato.wallet import Wallet, keystore_dir

if TYPE_CHECKING:
    from mercato.client.market import Market
    from mercato.client.models import VersionInfo

_ZERO = "0x0000000000000000000000000000000000000000"


class Deliverer(enum.Enum):
    """Who delivers a model's sales."""

    FREE = "free"  # nothing to deliver: a purchase grants the license at once
    THIS_NODE = "this_node"  # a node on this data directory (running or not; see node_running)
    AGENT = "agent"  # the agent the owner named, on its own node
    NOBODY = "nobody"  # no one yet: purchases wait, then are refunded


@dataclass(frozen=True)
class DeliveryStatus:
    """Who delivers a model's sales, as seen from one data directory.

    Attributes:
        model_id: The model.
        owner: Its current owner.
        by: Who delivers (see `Deliverer`).
        account: The address that signs deliveries (the owner or its agent); None when
            the model is free or nobody delivers.
        node_running: A node is running on this data directory with `account`.
        key_here: This data directory holds the key the owner stored for the latest version.
        message: One sentence for a person, saying what to do when something is missing.
    """

    model_id: ModelId
    owner: ChecksumAddress
    by: Deliverer
    account: ChecksumAddress | None
    node_running: bool
    key_here: bool
    message: str


def responsible_account(market: Market, owner: str, accounts: Collection[str]) -> str | None:
    """Which of `accounts` may deliver for a model `owner` owns: the owner itself, or
    the agent the owner named.

    Args:
        market: A market on the model's chain.
        owner: The model's current owner (checksummed).
        accounts: The checksummed addresses a node signs with.

    Returns:
        The account, or None when none of them may deliver.

    Raises:
        ChainError: The chain cannot be read.
    """
    if owner in accounts:
        return owner
    agent: str = market.contracts.marketplace.agent_of(owner)
    return agent if agent in accounts else None


def delivery_status(market: Market, model_id: int) -> DeliveryStatus:
    """Who will deliver the keys of this model's sales (see `DeliveryStatus`).

    Args:
        market: A market on the data directory to look from (its key store, keystores
            and running node record).
        model_id: The model.

    Returns:
        The status.

    Raises:
        ModelNotFoundError: No such model.
        ChainError: The chain cannot be read.
    """
    info = market.models.show(model_id)
    owner = Web3.to_checksum_address(info.owner)
    agent_address = market.contracts.marketplace.agent_of(owner)
    agent = None if agent_address == _ZERO else Web3.to_checksum_address(agent_address)
    if info.listing.price == 0:
        return DeliveryStatus(
            ModelId(model_id), owner, Deliverer.FREE, None, False, False,
            f"Model {model_id} is free: buyers get their license at once.",
        )  # fmt: skip
    record = running_node(market.settings.data_dir)
    running = {Web3.to_checksum_address(a) for a in record.accounts} if record else set()
    wallet = Wallet(keystore_dir(market.settings.data_dir))
    local = {entry.address for entry in wallet.list_accounts()} | running
    signers = [a for a in (owner, agent) if a is not None and a in local]
    key_here = _key_here(market, model_id, info.latest, owner)
    if key_here and signers:
        live = [a for a in signers if a in running]
        account = live[0] if live else signers[0]
        message = (
            f"The node running on this data directory delivers as {account}."
            if live
            else f"A node on this data directory delivers as {account} once it runs: start "
            f"it with 'mercato node up --account {account}'. Purchases made meanwhile wait "
            "for it, and are refunded if it does not run before their deadline."
        )
        return DeliveryStatus(
            ModelId(model_id), owner, Deliverer.THIS_NODE, account, bool(live), True, message
        )
    if agent is not None and agent not in local:
        return DeliveryStatus(
            ModelId(model_id), owner, Deliverer.AGENT, agent, False, key_here,
            f"The owner named {agent} as its agent: that account's node delivers, and must "
            "hold the key the owner stored through it.",
        )  # fmt: skip
    reason = (
        "this data directory does not hold the key the owner stored for its latest version"
        if not key_here
        else f"no account here can sign as {owner} or its agent"
    )
    return DeliveryStatus(
        ModelId(model_id), owner, Deliverer.NOBODY, None, False, key_here,
        f"Nobody delivers model {model_id} yet: {reason}. Run 'mercato node up --account "
        f"{owner}' on the data directory it was published from, or name an agent whose "
        "node stored the key.",
    )  # fmt: skip


def _key_here(market: Market, model_id: int, version: VersionInfo, owner: str) -> bool:
    # A look only: binding a staged key needs the chain's word (mercato.client.sale_keys).
    keys = market.keys
    registry = market.contracts.registry.address
    bound = keys.load_bound(market.chain_id, registry, model_id, version.version)
    if bound is not None:
        return bound.owner == owner and bound.artifact_cid == version.artifact_cid
    staged = keys.load_staged(version.artifact_cid, owner)
    return staged is not None or keys.load_legacy(version.artifact_cid) is not None


__all__ = ["Deliverer", "DeliveryStatus", "delivery_status", "responsible_account"]
