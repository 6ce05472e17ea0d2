# pragma version ~=0.4.3
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title Mercato revenue splitter: a federated task's model, owned for its contributors
@custom:contract-name revenue_splitter
@notice The federation contract creates one splitter per finalized task, as a
        minimal proxy of this contract. The task's coordinator publishes the
        trained model through it once (`publish_model`): the splitter owns the
        model, lists it with the task's parent model as parent (whose royalty the
        marketplace keeps paying) and names the coordinator as the agent that
        delivers its keys. Sales are credited to the splitter on the marketplace;
        `release` takes that credit out and pays each contributor its share of
        everything the splitter ever received, by the shares fixed at `finalize`.
"""

from ethereum.ercs import IERC20
from interfaces import IFederation
from interfaces import IMarketplaceSeller
from interfaces import IProviderRegistry


event ModelPublished:
    task_id: indexed(uint256)
    model_id: indexed(uint256)


event Released:
    account: indexed(address)
    amount: uint256


BPS: constant(uint256) = 10_000
MAX_URL_LENGTH: constant(uint256) = 256
_ADDRESS: constant(uint256) = (1 << 160) - 1
# Set in the implementation itself, so nobody can initialize it.
_LOCKED: constant(uint256) = 1 << 255

TOKEN: public(immutable(address))
MARKETPLACE: public(immutable(address))
REGISTRY: public(immutable(address))

# federation (bits 0-159) | task id (160-255): one slot written when a proxy starts.
_config: uint256
model_id: public(uint256)
released: public(HashMap[address, uint256])
total_released: public(uint256)


@deploy
def __init__(token: address, marketplace: address, registry: address):
    """
    @notice Deploys the implementation every task's proxy runs; its immutables are
            read by the proxies too.
    @param token The ERC-20 sales are paid in.
    @param marketplace The marketplace the model is published and sold on.
    @param registry The model registry, where the provider URL is set.
    """
    TOKEN = token
    MARKETPLACE = marketplace
    REGISTRY = registry
    self._config = _LOCKED


@external
def initialize(task_id: uint256):
    """
    @notice Binds a fresh proxy to its task; the caller is the federation contract.
    @dev Called once, by the federation contract in the transaction that creates the proxy.
    @param task_id The task whose contributors this splitter pays.
    """
    assert self._config == 0, "revenue_splitter: already initialized"
    self._config = convert(msg.sender, uint256) | (task_id << 160)


@external
@nonreentrant
def publish_model(
    artifact_cid_digest: bytes32,
    plaintext_sha256: bytes32,
    manifest_cid_digest: bytes32,
    price: uint256,
    license_duration: uint256,
) -> uint256:
    """
    @notice Publishes and lists the task's trained model, owned by this splitter, and
            names the coordinator as the agent that delivers its keys.
    @dev Coordinator only, once.
    @custom:security The coordinator sets the price once; it can deliver keys (which
                     credits this splitter) but never move the splitter's tokens.
    @param artifact_cid_digest The sha256 digest inside the artifact's CID.
    @param plaintext_sha256 The sha256 of the decrypted artifact.
    @param manifest_cid_digest The sha256 digest inside the manifest's CID.
    @param price Price in token units; 0 makes the model free.
    @param license_duration License length in seconds; 0 means perpetual.
    @return uint256 The new model id.
    """
    federation: address = empty(address)
    task_id: uint256 = 0
    federation, task_id = self._federation()
    coordinator: address = empty(address)
    parent: uint256 = 0
    royalty: uint256 = 0
    coordinator, parent, royalty = staticcall IFederation(federation).splitter_terms(task_id)
    assert msg.sender == coordinator, "revenue_splitter: caller is not the coordinator"
    assert self.model_id == 0, "revenue_splitter: model already published"
    parents: DynArray[uint256, 3] = []
    royalties: DynArray[uint16, 3] = []
    if parent != 0:
        parents.append(parent)
        royalties.append(convert(royalty, uint16))
    model_id: uint256 = extcall IMarketplaceSeller(MARKETPLACE).publish(
        artifact_cid_digest, plaintext_sha256, manifest_cid_digest, parents, royalties, price, license_duration
    )
    self.model_id = model_id
    extcall IMarketplaceSeller(MARKETPLACE).set_agent(coordinator)
    log ModelPublished(task_id=task_id, model_id=model_id)
    return model_id


@external
def set_provider(url: String[MAX_URL_LENGTH]):
    """
    @notice Records where the coordinator's node serves tries and downloads of the model.
    @dev Coordinator only.
    @param url The provider's base URL; empty to clear it.
    """
    federation: address = empty(address)
    task_id: uint256 = 0
    federation, task_id = self._federation()
    coordinator: address = empty(address)
    parent: uint256 = 0
    royalty: uint256 = 0
    coordinator, parent, royalty = staticcall IFederation(federation).splitter_terms(task_id)
    assert msg.sender == coordinator, "revenue_splitter: caller is not the coordinator"
    extcall IProviderRegistry(REGISTRY).set_provider(url)


@external
@nonreentrant
def release(account: address) -> uint256:
    """
    @notice Takes this splitter's sales out of the marketplace and pays `account` its
            share of everything received so far, less what it was already paid.
    @dev Anyone may call it; the tokens always go to `account`.
    @custom:security Each payout is floor(received * share / 10,000) - released, so
                     the total paid never exceeds what came in; what rounding holds back
                     (under one base unit per contributor) is paid as more sales arrive.
                     The marketplace keeps one base unit of the splitter's credit.
    @param account A contributor of the task.
    @return uint256 The amount paid.
    """
    federation: address = empty(address)
    task_id: uint256 = 0
    federation, task_id = self._federation()
    if staticcall IMarketplaceSeller(MARKETPLACE).credits(self) > 1:
        extcall IMarketplaceSeller(MARKETPLACE).withdraw()
    due: uint256 = self._due(federation, task_id, account, staticcall IERC20(TOKEN).balanceOf(self))
    assert due != 0, "revenue_splitter: nothing to release"
    self.released[account] += due
    self.total_released += due
    assert extcall IERC20(TOKEN).transfer(account, due, default_return_value=True), (
        "revenue_splitter: token transfer failed"
    )
    log Released(account=account, amount=due)
    return due


@external
@view
def releasable(account: address) -> uint256:
    """
    @notice Returns what `release(account)` would pay now.
    @param account The account.
    @return uint256 The amount.
    """
    federation: address = empty(address)
    task_id: uint256 = 0
    federation, task_id = self._federation()
    held: uint256 = staticcall IERC20(TOKEN).balanceOf(self)
    credit: uint256 = staticcall IMarketplaceSeller(MARKETPLACE).credits(self)
    if credit > 1:
        held += credit - 1
    return self._due(federation, task_id, account, held)


@external
@view
def task() -> (address, uint256):
    """
    @notice Returns the federation contract and the task this splitter pays for.
    @return address The federation contract (zero in the implementation).
    @return uint256 The task id.
    """
    return self._federation()


@internal
@view
def _federation() -> (address, uint256):
    config: uint256 = self._config
    return convert(config & _ADDRESS, address), config >> 160


@internal
@view
def _due(federation: address, task_id: uint256, account: address, held: uint256) -> uint256:
    share: uint256 = staticcall IFederation(federation).share_of(task_id, account)
    earned: uint256 = (held + self.total_released) * share // BPS
    # Earned only grows (held + total_released never falls), so it never drops below released.
    return earned - self.released[account]
