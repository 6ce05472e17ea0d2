# SPDX-License-Identifier: AGPL-3.0-only
"""Which content key a node may use to sell one model version, if any.

A version's digests are public, so anyone can publish a model committing to another
model's artifact. A key is therefore never looked up by its artifact CID alone: it is
used for a model only when the model's *current owner* stored it, and only for a version
*that owner* published. The key store (`mercato.client.artifacts.KeyStore`) keeps keys
in three places, and this module decides how a key moves from one to the next:

- staged (`keys/staged/<owner>/<CID>.key`): written when `owner` stored a package,
  before any model id exists. It is bound to (chain, registry, model, version) the first
  time that version is sold or tried, and only if the transaction that added the
  version was sent by `owner` (or, for an owner that is a contract, such as a federated
  task's revenue splitter, by the agent it named) and `owner` still owns the model. A
  copycat's transaction comes from the copycat, so a copycat listing never binds the
  victim's key, even if the copycat then hands the model to the victim.
- bound (`keys/<chain id>/<registry>/<model id>/<version>.key`): used while the owner
  it records owns the model. After a transfer the old owner's key is not used for the
  new owner: the new owner publishes a new version through their own node.
- the older layout (`keys/<CID>.key`, no owner recorded): migrated once, only to the
  first version ever published with that artifact, only when that version's sender
  owns the model and has a keystore in this data directory. Anything else is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from web3 import Web3

from mercato.client.artifacts import StoredKey, cid_digest
from mercato.errors import ContentKeyMissingError, ContentKeyNotBoundError
from mercato.wallet import Wallet, keystore_dir

if TYPE_CHECKING:
    from mercato.client.market import Market
    from mercato.client.models import VersionInfo


def sale_key(market: Market, model_id: int, version: VersionInfo, owner: str) -> bytes:
    """The content key this node may use to sell `version` of a model owned by `owner`.

    Binds a staged (or older-layout) key on first use when the chain shows that `owner`
    published this version; see the module docstring.

    Args:
        market: A market on this node's data directory and chain.
        model_id: The model.
        version: The version to sell (its artifact CID is checked against the key's).
        owner: The model's current owner, as the registry says now.

    Returns:
        The 32-byte content key.

    Raises:
        ContentKeyNotBoundError: A key for this artifact exists here, but not one stored
            by `owner` for this model (a copycat listing, or a model that changed hands).
        ContentKeyMissingError: This node holds no key for the artifact at all.
    """
    owner = Web3.to_checksum_address(owner)
    cid = version.artifact_cid
    keys = market.keys
    registry = market.contracts.registry.address
    refused = ContentKeyNotBoundError(str(cid), model_id, version.version, owner)
    bound = keys.load_bound(market.chain_id, registry, model_id, version.version)
    if bound is not None:
        if bound.owner != owner or bound.artifact_cid != cid:
            raise refused
        return bound.key
    staged = keys.load_staged(cid, owner)
    if staged is not None and staged.artifact_cid == cid:
        if not _sent_for(market, owner, version_publisher(market, model_id, version)):
            raise refused
        keys.bind(market.chain_id, registry, model_id, version.version, staged)
        return staged.key
    legacy = keys.load_legacy(cid)
    if legacy is not None:
        if not _legacy_key_is_theirs(market, model_id, version, owner):
            raise refused
        record = StoredKey(owner, cid, legacy)
        keys.bind(market.chain_id, registry, model_id, version.version, record)
        return legacy
    if _staged_by_anyone(market, str(cid)):
        raise refused
    raise ContentKeyMissingError(str(cid))


def version_publisher(market: Market, model_id: int, version: VersionInfo) -> str | None:
    """Who sent the transaction that added a version with this artifact.

    Returns:
        The checksummed sender, or None when the chain shows no such version (or more
        than one, which the registry never emits).
    """
    found = market.logs(
        market.contracts.registry, "VersionAdded", model_id=model_id, version=version.version
    )
    if len(found) != 1:
        return None
    entry = found[0]
    if bytes(entry["args"]["artifact_cid_digest"]) != cid_digest(version.artifact_cid):
        return None
    sender = market.w3.eth.get_transaction(entry["transactionHash"])["from"]
    return str(Web3.to_checksum_address(sender))


def _sent_for(market: Market, owner: str, publisher: str | None) -> bool:
    """Whether a version sent by `publisher` counts as `owner`'s: it is the owner, or the
    owner is a contract (a federated task's revenue splitter, which sends no transaction
    of its own) and named `publisher` its agent on the marketplace. A copycat that hands
    its model to the contract sent the version itself, and is not the contract's agent."""
    if publisher is None:
        return False
    if publisher == owner:
        return True
    if not market.w3.eth.get_code(Web3.to_checksum_address(owner)):
        return False
    return bool(market.contracts.marketplace.agent_of(owner) == publisher)


def _legacy_key_is_theirs(market: Market, model_id: int, version: VersionInfo, owner: str) -> bool:
    # An older key records no owner. It is the owner's only if this data directory
    # holds the owner's keystore (they published from here), the owner sent the
    # version, and it is the first version ever to commit to this artifact (a copycat
    # can only commit to it after seeing it on-chain).
    wallet = Wallet(keystore_dir(market.settings.data_dir))
    local = {entry.address for entry in wallet.list_accounts()}
    if owner not in local or version_publisher(market, model_id, version) != owner:
        return False
    digest = cid_digest(version.artifact_cid)
    for entry in market.logs(market.contracts.registry, "VersionAdded"):
        if bytes(entry["args"]["artifact_cid_digest"]) == digest:
            first = (int(entry["args"]["model_id"]), int(entry["args"]["version"]))
            return first == (model_id, version.version)
    return False


def _staged_by_anyone(market: Market, cid: str) -> bool:
    staged = market.keys.directory / "staged"
    return staged.is_dir() and any(staged.glob(f"*/{cid}.key"))


__all__ = ["sale_key", "version_publisher"]
