# SPDX-License-Identifier: AGPL-3.0-only
"""`market.orders`: buy, wait for the key, download, refund."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_typing import ChecksumAddress
from web3 import Web3

from mercato.chain.contracts import NO_DIGEST, TERMS_SHIFT, LicenseState, ModelId, TokenAmount
from mercato.client.artifacts import Progress, restore_package
from mercato.client.fetching import artifact_limit, car_limit, fetch_policy
from mercato.client.license_terms import LicenseTerms, manifest_terms, terms_digest
from mercato.crypto import derive_buyer_key, validate_buyer_key
from mercato.errors import (
    AlreadyLicensedError,
    ContractRevertError,
    DeliveryTimeoutError,
    DownloadError,
    FetchTooLargeError,
    InsufficientBalanceError,
    LicenseRequiredError,
    LicenseTermsChangedError,
    ListingChangedError,
    NoAccountError,
    NotForSaleError,
    OwnModelError,
    ProviderUnavailableError,
    RefundTooEarlyError,
    StorageBackendError,
    StorageError,
    UnsafeURLError,
    VersionDeprecatedError,
)
from mercato.storage.backends import GatewayBackend
from mercato.storage.remote import origin_of

if TYPE_CHECKING:
    from mercato.client.market import Market
    from mercato.client.models import ModelInfo, VersionInfo

PERMIT_LIFETIME = 3_600  # seconds a purchase permit stays valid


@dataclass(frozen=True)
class Order:
    """A buyer's order/license for one model, as the marketplace records it."""

    model_id: ModelId
    buyer: ChecksumAddress
    state: LicenseState
    price: TokenAmount
    time: int  # the delivery deadline while pending, the expiry once delivered (0 = perpetual)
    licensed: bool  # a current license, by the chain's clock
    # sha256 of the licence terms bought (zero bytes: the listing stated none); None
    # when not looked up (`status` does not, `list` and `terms_bought` do).
    terms_digest: bytes | None = None


@dataclass(frozen=True)
class Quote:
    """How a purchase at the current price would be split once delivered."""

    model_id: ModelId
    owner: str
    price: TokenAmount
    royalties: builtins.list[tuple[ModelId, TokenAmount]]  # (parent model, amount)
    fee_bps: int
    fee: TokenAmount
    owner_share: TokenAmount


class OrdersAPI:
    def __init__(self, market: Market) -> None:
        self._market = market

    def terms(self, model_id: int) -> LicenseTerms | None:
        """The licence terms a buyer of the model agrees to, read from its latest
        version's manifest (checked against the digest the chain holds).

        Args:
            model_id: The model.

        Returns:
            The terms, or None when the manifest cannot be read or states none.

        Raises:
            ModelNotFoundError: No such model.
        """
        return manifest_terms(self._market.models.manifest(model_id))

    def buy(
        self,
        model_id: int,
        *,
        max_price: int | None = None,
        terms: LicenseTerms | None = None,
    ) -> Order:
        """Buys a license: the price goes into escrow until the seller's node delivers the key.

        A first purchase signs an EIP-2612 permit, so it is one transaction. The purchase
        commits to the licence terms the buyer read: the marketplace refuses it if the
        listing commits to other ones.

        Args:
            model_id: The model.
            max_price: The most to pay (defaults to the current price); protects against
                a price raised between reading and buying.
            terms: The licence terms shown to the buyer (`terms(model_id)`); None reads
                them here from the latest version's manifest, and when no manifest can
                be read, commits to the listing's terms as the chain holds them.

        Returns:
            The order: pending for paid models, delivered at once for free ones.

        Raises:
            NoAccountError: The market is read-only.
            NoGasError: The account holds no native currency to pay for the transaction.
            ModelNotFoundError: No such model.
            OwnModelError: The account owns the model.
            VersionDeprecatedError: The model's latest version is deprecated.
            NotForSaleError: The model is not listed.
            AlreadyLicensedError: A license is held or a purchase is pending.
            InsufficientBalanceError: Not enough MCT for the price.
            InvalidKeyMaterialError: The account's derived X25519 key cannot receive a
                sealed content key (nothing is sent).
            ListingChangedError: The price is above max_price, or the owner changed the
                license duration or fee before the purchase was mined (nothing was paid).
            LicenseTermsChangedError: The listing commits to other licence terms than
                the ones read (checked before sending, and by the marketplace at mining).
            ContractRevertError: The marketplace refused for another reason.
        """
        account = self._market.require_account("buy a model")
        info = self._market.models.show(model_id)
        if info.owner == account.address:
            raise OwnModelError(model_id, info.owner)
        if info.latest.deprecated:
            raise VersionDeprecatedError(model_id, info.latest.version)
        if not info.listing.for_sale:
            raise NotForSaleError(model_id)
        current = self.status(model_id)
        if current.state is LicenseState.PENDING or current.licensed:
            raise AlreadyLicensedError(model_id, pending=current.state is LicenseState.PENDING)
        price = info.listing.price
        contracts = self._market.contracts
        read = terms if terms is not None else self.terms(model_id)
        listed = contracts.marketplace.listing_terms(model_id)
        if read is None:
            # No card could be read (no store or provider has the manifest): nothing was
            # shown, so the purchase takes the listing's terms as the chain holds them,
            # and `terms_bought` says which they were.
            digest = listed
        else:
            digest = terms_digest(read)
            if _prefix(digest) != listed:
                raise LicenseTermsChangedError(model_id, digest)
        # The purchase commits to the listing read here and the licence terms read: a
        # duration, fee or licence the owner changes before it is mined makes the
        # marketplace refuse it.
        word = info.listing.terms(max_price, digest)
        if price == 0:
            self._market.require_signer("buy a model")
            with _listing_checked(model_id, digest):
                contracts.marketplace.purchase(model_id, word, bytes(32))
            return self.status(model_id)
        balance = contracts.token.balance_of(account.address)
        if balance < price:
            raise InsufficientBalanceError(balance, price, self._market.is_local_chain)
        self._market.require_signer("buy a model")
        buyer_key = derive_buyer_key(account, self._market.chain_id).public_key
        # A key no content key can be sealed to would pay for an undeliverable order.
        validate_buyer_key(buyer_key)
        with _listing_checked(model_id, digest):
            if contracts.token.allowance(account.address, contracts.marketplace.address) >= price:
                contracts.marketplace.purchase(model_id, word, buyer_key)
            else:
                # The chain's clock, not this machine's, decides whether the permit expired.
                now = int(self._market.w3.eth.get_block("latest")["timestamp"])
                contracts.marketplace.purchase_with_permit(
                    model_id, word, buyer_key, contracts.token, now + PERMIT_LIFETIME
                )
        return self.status(model_id)

    def decline(self, model_id: int, buyer: str, reason_code: int = 0) -> Order:
        """Refuses a pending purchase of a model the account owns (or delivers for as
        its agent): the buyer gets the whole price back at once, and the marketplace
        logs `Declined` with the reason.

        Args:
            model_id: The model.
            buyer: The buyer of the pending purchase.
            reason_code: Why (Mercato's report reasons: 1 illegal content, 2 malware,
                3 licence violation, 4 personal data, 5 other; 0 unspecified).

        Returns:
            The buyer's order, now refunded.

        Raises:
            NoAccountError: The market is read-only.
            NoGasError: The account holds no native currency to pay for the transaction.
            LicenseRequiredError: No purchase of the model by `buyer` is pending.
            ContractRevertError: The account is neither the model's owner nor its agent.
        """
        self._market.require_signer("decline a purchase")
        if self.status(model_id, buyer).state is not LicenseState.PENDING:
            raise LicenseRequiredError(model_id, buyer)
        self._market.contracts.marketplace.decline(model_id, buyer, reason_code)
        return self.status(model_id, buyer)

    def terms_bought(self, model_id: int, buyer: str | None = None) -> bytes | None:
        """The digest of the licence terms a buyer's latest purchase of a model was made
        under: the model's last `TermsSet` before that purchase (the marketplace checked
        the purchase's terms against it).

        Args:
            model_id: The model.
            buyer: The buyer; defaults to the market's account.

        Returns:
            The 32-byte digest (zero bytes: the listing stated no terms), or None when
            the buyer never bought the model.

        Raises:
            NoAccountError: No buyer given and the market is read-only.
        """
        address = buyer or self._market.require_account("read orders").address
        marketplace = self._market.contracts.marketplace
        bought = [
            log
            for event in ("Purchased", "LicenseGranted")
            for log in self._market.logs(marketplace, event, model_id=model_id, buyer=address)
        ]
        if not bought:
            return None
        when = max(_position(log) for log in bought)
        digest = NO_DIGEST
        for log in self._market.logs(marketplace, "TermsSet", model_id=model_id):
            if _position(log) < when:
                digest = bytes(log["args"]["terms_digest"])
        return digest

    def quote(self, model_id: int) -> Quote:
        """How the current price of a model would be split if bought now.

        Args:
            model_id: The model.

        Returns:
            The price, each parent's royalty, the protocol fee and the owner's share.

        Raises:
            ModelNotFoundError: No such model.
        """
        info = self._market.models.show(model_id)
        price = info.listing.price
        fee_bps = self._market.contracts.marketplace.protocol_fee_bps()
        # The marketplace's own arithmetic: each share rounds down, the owner gets the rest.
        fee = price * fee_bps // 10_000
        royalties = [(parent, price * bps // 10_000) for parent, bps in info.parents]
        owner_share = price - fee - sum(amount for _, amount in royalties)
        return Quote(
            ModelId(model_id),
            info.owner,
            TokenAmount(price),
            [(ModelId(p), TokenAmount(a)) for p, a in royalties],
            fee_bps,
            TokenAmount(fee),
            TokenAmount(owner_share),
        )

    def status(self, model_id: int, buyer: str | None = None) -> Order:
        """The order/license of a buyer for a model.

        Args:
            model_id: The model.
            buyer: The buyer; defaults to the market's account.

        Returns:
            The order (state NONE when the buyer never bought it).

        Raises:
            NoAccountError: No buyer given and the market is read-only.
        """
        address = Web3.to_checksum_address(
            buyer or self._market.require_account("read orders").address
        )
        marketplace = self._market.contracts.marketplace
        record = marketplace.license(address, model_id)
        licensed = marketplace.has_license(address, model_id)
        return Order(ModelId(model_id), address, record.state, record.price, record.time, licensed)

    def list(self, buyer: str | None = None) -> builtins.list[Order]:
        """Every order and license of a buyer, newest first.

        Args:
            buyer: The buyer; defaults to the market's account.

        Returns:
            One order per model the buyer ever bought or was granted.

        Raises:
            NoAccountError: No buyer given and the market is read-only.
        """
        address = buyer or self._market.require_account("list orders").address
        marketplace = self._market.contracts.marketplace
        seen: dict[int, None] = {}
        for event in ("Purchased", "LicenseGranted"):
            for log in self._market.logs(marketplace, event, buyer=address):
                seen[int(log["args"]["model_id"])] = None
        return [
            replace(
                self.status(model_id, address),
                terms_digest=self.terms_bought(model_id, address),
            )
            for model_id in reversed(list(seen))
        ]

    def wait_for_delivery(
        self, model_id: int, *, timeout: float = 60.0, poll: float = 0.5
    ) -> Order:
        """Waits until the seller's node has delivered the key.

        Args:
            model_id: The model.
            timeout: Seconds to wait at most.
            poll: Seconds between looks at the chain.

        Returns:
            The delivered order.

        Raises:
            DeliveryTimeoutError: Not delivered within `timeout` seconds.
            LicenseRequiredError: There is no purchase to wait for (none, or refunded).
        """
        deadline = time.monotonic() + timeout
        while True:
            order = self.status(model_id)
            if order.state is LicenseState.DELIVERED:
                return order
            if order.state is not LicenseState.PENDING:
                raise LicenseRequiredError(model_id, order.buyer)
            if time.monotonic() >= deadline:
                raise DeliveryTimeoutError(model_id, order.time)
            time.sleep(poll)

    def refund(self, model_id: int) -> Order:
        """Takes back the escrow of a purchase the seller did not deliver before its deadline.

        Args:
            model_id: The model.

        Returns:
            The order, now refunded.

        Raises:
            NoAccountError: The market is read-only.
            NoGasError: The account holds no native currency to pay for the transaction.
            LicenseRequiredError: No purchase of the model is pending.
            RefundTooEarlyError: The seller may still deliver; says until when.
            ContractRevertError: The marketplace refused.
        """
        account = self._market.require_signer("take a refund")
        order = self.status(model_id)
        if order.state is not LicenseState.PENDING:
            raise LicenseRequiredError(model_id, account.address)
        # The chain's clock decides, not this machine's: the deadline must be behind it.
        now = int(self._market.w3.eth.get_block("latest")["timestamp"])
        if now <= order.time:
            raise RefundTooEarlyError(model_id, order.time)
        self._market.contracts.marketplace.refund(model_id, account.address)
        return self.status(model_id)

    def download(
        self,
        model_id: int,
        dest: str | Path,
        *,
        gateway: str | None = None,
        progress: Progress | None = None,
    ) -> Path:
        """Downloads a licensed model, verifies every block and the plaintext sha256, and
        unpacks it into `dest`. Nothing is written to `dest` unless everything checks out.

        No purchase is needed for a free model (its bytes are public; a read-only market
        downloads it) or by the model's owner (the key this data directory stored for it).
        Files get the time of the download as their modification time.

        Args:
            model_id: The model.
            dest: A directory that does not exist yet (or is empty).
            gateway: Fetch from this IPFS gateway instead of the creator's provider URL.
            progress: Told how many artifact bytes were verified and decrypted, as they are.

        Returns:
            `dest`.

        Raises:
            LicenseRequiredError: The account holds no license (paid models).
            NoAccountError: The model is paid and the market is read-only.
            ContentKeyMissingError: The owner downloads, but this data directory does not
                hold the model's key.
            ProviderUnavailableError: The provider is down or returned other bytes.
            CryptoError: The delivered key does not open the artifact, or the sha256 differs.
            DownloadError: `dest` is not empty, or the package cannot be unpacked
                (ArtifactTooLargeError: larger than its manifest or the global limit
                allows; UnsafeArchiveError: links, devices or paths outside it).
        """
        target = Path(dest)
        if target.exists() and any(target.iterdir()):
            raise DownloadError(f"{target} is not empty; choose a new folder for the download.")
        info = self._market.models.show(model_id)
        key, version = self._download_key(info)
        source = gateway or info.provider_url
        # What the manifest declares bounds the fetch and the restore (None: the global cap).
        limit = artifact_limit(self._market.store, version, encrypted=key is not None)
        self.fetch_artifact(version, source, limit, chosen_by_caller=gateway is not None)
        restore_package(
            self._market.store,
            version.artifact_cid,
            key,
            version.plaintext_sha256,
            target,
            progress,
            max_size=limit,
        )
        _touch_tree(target)
        return target

    def _download_key(self, info: ModelInfo) -> tuple[bytes | None, VersionInfo]:
        """The key and version a download opens: the buyer's delivered key, the owner's
        own key, or none for a free model."""
        model_id, account = info.model_id, self._market.account
        if account is not None and info.owner == account.address:
            from mercato.client.sale_keys import sale_key

            return sale_key(self._market, model_id, info.latest, info.owner), info.latest
        licensed = account is not None and self._market.contracts.marketplace.has_license(
            account.address, model_id
        )
        if info.listing.price == 0 and not licensed:
            return None, info.latest  # free: the artifact is not encrypted
        if account is None:
            raise NoAccountError(f"download paid model {model_id}")
        return self._delivered_key(model_id, account.address, info.versions)

    def _delivered_key(
        self, model_id: int, buyer: str, versions: builtins.list[VersionInfo]
    ) -> tuple[bytes | None, VersionInfo]:
        if not self._market.contracts.marketplace.has_license(buyer, model_id):
            raise LicenseRequiredError(model_id, buyer)
        delivered = self._market.logs(
            self._market.contracts.marketplace, "Delivered", model_id=model_id, buyer=buyer
        )
        if not delivered:  # a free license: the artifact is not encrypted
            return None, versions[-1]
        args = delivered[-1]["args"]
        version = next(v for v in versions if v.version == int(args["version"]))
        account = self._market.require_account("open the delivered key")
        buyer_key = derive_buyer_key(account, self._market.chain_id)
        return buyer_key.unwrap(bytes(args["wrapped_key"])), version

    def fetch_artifact(
        self, version: VersionInfo, source: str, limit: int | None, *, chosen_by_caller: bool
    ) -> None:
        """Brings a version's artifact into the node's store (pinned), every block
        verified, unless it is pinned there already.

        Args:
            version: The version whose `artifact_cid` is fetched.
            source: The gateway to fetch from (the provider URL, or one the caller named).
            limit: The artifact's byte cap (`artifact_limit`; None: the global cap).
            chosen_by_caller: The caller named `source` (it may then be on a private
                network); a provider URL is the owner's choice and gets the node's policy.

        Raises:
            ProviderUnavailableError: No source, the source is down or refused by the
                fetch policy, or it returned other bytes.
        """
        store = self._market.store
        if store.is_pinned(version.artifact_cid):
            return
        if not source:
            raise ProviderUnavailableError("(none)", "the creator has not recorded a provider URL")
        # A gateway the caller named may be on their own network; a provider URL is the
        # owner's choice and gets the node's policy. Neither is followed through redirects.
        policy = fetch_policy(self._market)
        if chosen_by_caller:
            policy = replace(policy, allow_private=True)
        try:
            GatewayBackend(source, policy=policy).fetch_car(
                version.artifact_cid, store, max_bytes=car_limit(limit)
            )
        except (StorageBackendError, UnsafeURLError, FetchTooLargeError) as exc:
            raise ProviderUnavailableError(origin_of(source), str(exc)) from exc
        except StorageError as exc:
            raise ProviderUnavailableError(
                source, f"it returned bytes that do not match {version.artifact_cid}: {exc}"
            ) from exc


def _touch_tree(root: Path) -> None:
    """Gives every unpacked file the current time: the deterministic tar stores 0 (1970)."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.utime(path)


# The marketplace's reasons for a purchase whose terms no longer match the listing.
_LISTING_CHANGED = (
    "marketplace: listing terms differ from the buyer's",
    "marketplace: price is above the buyer's maximum",
)


_TERMS_CHANGED = "marketplace: licence terms differ from the buyer's"


@contextmanager
def _listing_checked(model_id: int, terms_digest: bytes) -> Iterator[None]:
    """Turns the marketplace's refusal of stale terms into a typed, actionable error."""
    try:
        yield
    except ContractRevertError as exc:
        if exc.reason in _LISTING_CHANGED:
            raise ListingChangedError(model_id) from exc
        if exc.reason == _TERMS_CHANGED:
            raise LicenseTermsChangedError(model_id, terms_digest) from exc
        raise


def _prefix(digest: bytes) -> bytes:
    """What a listing keeps of a terms digest: its first 104 bits, the rest zero."""
    return ((int.from_bytes(digest, "big") >> TERMS_SHIFT) << TERMS_SHIFT).to_bytes(32, "big")


def _position(log: Any) -> tuple[int, int]:
    """Where a log is in the chain, to order logs of different events."""
    return int(log["blockNumber"]), int(log["logIndex"])
