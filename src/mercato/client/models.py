# SPDX-License-Identifier: AGPL-3.0-only
"""`market.models`: publish models and versions, set prices, read models from the chain."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from multiformats import CID

from mercato.chain.contracts import NO_DIGEST, TERMS_SHIFT, Listing, ModelId, VersionDigests
from mercato.client.artifacts import (
    Progress,
    cid_digest,
    cid_from_digest,
    counted,
    package_tar_stream,
)
from mercato.client.license_terms import manifest_terms, terms_digest
from mercato.client.metadata import StoreMetadataSource
from mercato.client.token_metadata import store_token_metadata
from mercato.crypto import StreamEncryptor, generate_content_key
from mercato.crypto.stream import MAGIC as CIPHER_MAGIC
from mercato.errors import (
    ContractRevertError,
    EncryptedVersionError,
    ModelNotFoundError,
    ModelPackageError,
    StorageError,
    UnencryptedVersionError,
    UnsafeURLError,
    VersionNotFoundError,
)
from mercato.index import Indexer, IndexerConfig, SearchPage, SearchQuery
from mercato.models.card import CARD_FILENAME, ModelCard, load_card, require_buyer_sections
from mercato.models.package import ModelPackage, load_package
from mercato.storage.encrypted import ENCRYPTION_CHUNK_SIZE
from mercato.storage.exporter import iter_file
from mercato.storage.unixfs import import_file

if TYPE_CHECKING:
    from mercato.client.delivery import DeliveryStatus
    from mercato.client.market import Market


@dataclass(frozen=True)
class PublishedVersion:
    """What a published version commits to, and where its bytes are."""

    model_id: ModelId
    version: int
    artifact_cid: CID
    manifest_cid: CID
    plaintext_sha256: bytes
    encrypted: bool


@dataclass(frozen=True)
class VersionInfo:
    version: int
    artifact_cid: CID
    manifest_cid: CID
    plaintext_sha256: bytes
    deprecated: bool


@dataclass(frozen=True)
class ModelInfo:
    """A model as the chain knows it."""

    model_id: ModelId
    owner: str
    listing: Listing
    versions: list[VersionInfo]
    parents: list[tuple[ModelId, int]]
    provider_url: str

    @property
    def latest(self) -> VersionInfo:
        return self.versions[-1]


class ModelsAPI:
    def __init__(self, market: Market) -> None:
        self._market = market

    def publish(
        self,
        path: str | Path | ModelPackage,
        *,
        price: int,
        name: str | None = None,
        license_duration: int = 0,
        parents: Sequence[int] = (),
        royalty_bps: Sequence[int] = (),
        progress: Progress | None = None,
    ) -> PublishedVersion:
        """Validates a model package, stores it (encrypted when paid) and publishes it.

        Args:
            path: The package directory (ONNX + README.md model card), or a package
                `load_named_package` already validated.
            price: Price in MCT base units (10**18 per token); 0 publishes a free model.
            name: The model's name; defaults to the card's title (see `card_name`),
                never the folder's name.
            license_duration: License length in seconds; 0 is perpetual.
            parents: Ids of the models this one was built on.
            royalty_bps: Each parent's share of every sale, in basis points.
            progress: Told how many package bytes were hashed (and encrypted) and
                stored, as they are; the total is `load_package(path).total_size`.

        Returns:
            The new model's id, version 1 and its CIDs.

        Raises:
            NoAccountError: The market is read-only.
            NoGasError: The account holds no native currency to pay for the transactions.
            ModelPackageError: The package is invalid (each refusal has its own subclass),
                or it has no name.
            CardSectionsMissingError: The price is above 0 and the card says nothing of
                the model's intended uses or limitations. Nothing is stored or sent.
            StorageError: The package or its ERC-721 metadata could not be stored.
            ContractRevertError: The registry or marketplace refused (bad lineage, price).

        The listing commits to the card's licence terms (buyers commit to the same
        digest), and the model's ERC-721 metadata document and card image are stored
        here for `tokenURI`.
        """
        package = path if isinstance(path, ModelPackage) else load_named_package(path, name)
        if price > 0:
            require_buyer_sections(package.card, path=str(package.root))
        account = self._market.require_signer("publish a model")
        stored = self._store_package(
            package, encrypt=price > 0, progress=progress, owner=account.address
        )
        metadata = store_token_metadata(
            self._market.store,
            package.manifest,
            price=price,
            version=1,
            artifact_cid=stored.artifact_cid,
        )
        self._ensure_provider_url(account.address)
        model_id = self._market.contracts.marketplace.publish(
            stored.digests,
            price,
            license_duration=license_duration,
            parents=list(parents),
            royalty_bps=list(royalty_bps),
            terms_digest=_terms_digest(package.manifest),
            metadata_digest=metadata,
        )
        return stored.published(model_id, 1)

    def add_version(
        self,
        model_id: int,
        path: str | Path | ModelPackage,
        progress: Progress | None = None,
        *,
        encrypt: bool | None = None,
    ) -> PublishedVersion:
        """Publishes a new version of a model the account owns; encrypted when the model is paid.

        The version keeps the model's published name, whatever its card's title.

        Args:
            model_id: The model.
            path: The new version's package directory, or a package loaded with
                `version_package`.
            progress: Told how many package bytes were stored, as they are.
            encrypt: Encrypt the version (its key stays in this data directory);
                None encrypts when the model is paid. A free model about to be priced
                needs an encrypted version first (see `set_price`).

        Returns:
            The new version's number and CIDs.

        Raises:
            NoAccountError: The market is read-only.
            NoGasError: The account holds no native currency to pay for the transaction.
            ModelNotFoundError: No such model.
            ModelPackageError: The package is invalid, or it would rename the model.
            CardSectionsMissingError: The model is paid and the new card says nothing of
                its intended uses or limitations. Nothing is stored or sent.
            StorageError: The package or its ERC-721 metadata could not be stored.
            ContractRevertError: The account does not own the model.

        The model's ERC-721 metadata is replaced to show the new version (the registry
        logs ERC-4906 `MetadataUpdate`). When the new card states other licence terms,
        the listing is set again (same price and duration) to commit to them, in a
        second transaction: buyers read the latest version's card.
        """
        account = self._market.require_signer("add a version")
        info = self.show(model_id)
        listing = info.listing
        package = self.version_package(model_id, path)
        if listing.price > 0:
            require_buyer_sections(package.card, path=str(package.root), model_id=model_id)
        stored = self._store_package(
            package,
            encrypt=listing.price > 0 if encrypt is None else encrypt,
            progress=progress,
            owner=account.address,
        )
        metadata = store_token_metadata(
            self._market.store,
            package.manifest,
            price=listing.price,
            version=len(info.versions) + 1,
            artifact_cid=stored.artifact_cid,
        )
        contracts = self._market.contracts
        version = contracts.registry.add_version(model_id, stored.digests, metadata)
        digest = _terms_digest(package.manifest)
        if _prefix(digest) != contracts.marketplace.listing_terms(model_id):
            contracts.marketplace.set_listing(
                model_id, listing.price, listing.license_duration, listing.for_sale, digest
            )
        return stored.published(ModelId(model_id), version)

    def version_package(self, model_id: int, path: str | Path | ModelPackage) -> ModelPackage:
        """Validates a new version's package under the model's published name.

        Args:
            model_id: The model.
            path: The package directory, or a package already loaded.

        Returns:
            The package, named as the model's latest published manifest names it (the
            card's title when no published manifest can be read).

        Raises:
            ModelNotFoundError: No such model.
            ModelPackageError: The package is invalid, or a loaded one is named otherwise.
        """
        published = self.manifest(model_id).get("name")
        name = published if isinstance(published, str) else None
        if isinstance(path, ModelPackage):
            if name is not None and path.name != name:
                raise ModelPackageError(
                    f"Model {model_id} is named {name!r}; a new version cannot rename it "
                    f"to {path.name!r}.",
                    path=str(path.root),
                )
            return path
        return load_named_package(path, name)

    def manifest(self, model_id: int, version: int | None = None) -> dict[str, Any]:
        """A version's published manifest: name, card, inputs and outputs, files.

        Read from this data directory's store, else fetched from the providers recorded
        on-chain and checked against the digest the chain holds.

        Args:
            model_id: The model.
            version: The version; None for the latest.

        Returns:
            The manifest, or {} when no store or provider has it (or it is unreadable).

        Raises:
            ModelNotFoundError: No such model.
            VersionNotFoundError: No such version.
        """
        found = self.version(model_id, version)
        document = StoreMetadataSource(self._market).manifest(cid_digest(found.manifest_cid))
        return dict(document) if document else {}

    def provider_reachable(self, url: str, timeout: float = 5.0) -> bool:
        """Whether a seller's node answers its health check now.

        Args:
            url: The provider URL the chain records. Untrusted: asked under the node's
                fetch policy (no private targets off a local chain, no redirects), and
                the answer's body is not read.
            timeout: Seconds to wait.

        Returns:
            True when `url/v1/health` answers 200; False when it does not answer, answers
            otherwise, or may not be asked.

        Raises:
            ConfigError: The `fetch_allow_networks` setting is malformed.
        """
        from mercato.client.fetching import fetch_policy

        policy = fetch_policy(self._market)
        try:
            with policy.client(httpx.Timeout(timeout)) as client:
                response = client.get(f"{url.rstrip('/')}/v1/health")
        except (httpx.HTTPError, ValueError, UnsafeURLError):
            return False
        return response.status_code == 200

    def set_price(
        self, model_id: int, price: int, *, license_duration: int = 0, for_sale: bool = True
    ) -> Listing:
        """Sets a model's price and license terms.

        Args:
            model_id: The model.
            price: MCT base units (10**18 per token); 0 makes it free.
            license_duration: License length in seconds; 0 is perpetual.
            for_sale: False stops new purchases.

        Returns:
            The listing as the marketplace now records it.

        Raises:
            NoAccountError: The market is read-only.
            NoGasError: The account holds no native currency to pay for the transaction.
            ModelNotFoundError: No such model.
            UnencryptedVersionError: The price is above 0 but the latest version is not
                known to be encrypted (it was published free): buyers would pay for
                public bytes and never get a key. Nothing is sent.
            EncryptedVersionError: The price is 0 but the latest version is encrypted: a
                free license delivers no key. Nothing is sent.
            CardSectionsMissingError: The price is above 0 and the latest version's card
                says nothing of the model's intended uses or limitations. Nothing is sent.
            StorageError: The latest version's manifest cannot be read, so neither the
                licence terms the listing commits to nor the model's ERC-721 metadata
                (which shows the price) can be written. Nothing is sent.
            ContractRevertError: The account does not own the model, or the price is too large.
        """
        self._market.require_signer("set a price")
        info = self.show(model_id)
        encrypted = self._is_encrypted(info.owner, info.latest)
        if price > 0 and not encrypted:
            raise UnencryptedVersionError(model_id, info.latest.version)
        card = self.manifest(model_id).get("card") if price > 0 else None
        if isinstance(card, dict):  # unreadable manifests are the store's concern, not this
            require_buyer_sections(card, model_id=model_id)
        if price == 0 and encrypted:
            raise EncryptedVersionError(model_id, info.latest.version)
        manifest = self.manifest(model_id)
        if not manifest:
            raise StorageError(
                f"The manifest of model {model_id}'s version {info.latest.version} is not in "
                "this data directory's store and no provider served it, and the listing's "
                "licence terms and the model's metadata come from it. Run this on the node "
                "that published the model."
            )
        metadata = store_token_metadata(
            self._market.store,
            manifest,
            price=price,
            version=info.latest.version,
            artifact_cid=info.latest.artifact_cid,
        )
        self._market.contracts.marketplace.set_listing(
            model_id, price, license_duration, for_sale, _terms_digest(manifest), metadata
        )
        return self._market.contracts.marketplace.listing(model_id)

    def deprecate(self, model_id: int, version: int) -> None:
        """Marks a version deprecated (it stays readable and is never rewritten).

        Args:
            model_id: The model.
            version: The version to deprecate.

        Returns:
            Nothing; the registry logs `VersionDeprecated`.

        Raises:
            NoAccountError: The market is read-only.
            NoGasError: The account holds no native currency to pay for the transaction.
            ContractRevertError: Not the owner, no such version, or already deprecated.
        """
        self._market.require_signer("deprecate a version")
        self._market.contracts.registry.deprecate_version(model_id, version)

    def show(self, model_id: int) -> ModelInfo:
        """Reads a model from the chain: owner, listing, versions, lineage, provider.

        Args:
            model_id: The model.

        Returns:
            The model as the chain records it, versions oldest first.

        Raises:
            ModelNotFoundError: No such model.
        """
        contracts = self._market.contracts
        try:
            owner = contracts.registry.owner_of(model_id)
        except ContractRevertError as exc:
            raise ModelNotFoundError(model_id) from exc
        versions = []
        for log in self._market.logs(contracts.registry, "VersionAdded", model_id=model_id):
            args = log["args"]
            versions.append(
                VersionInfo(
                    version=int(args["version"]),
                    artifact_cid=cid_from_digest(args["artifact_cid_digest"]),
                    manifest_cid=cid_from_digest(args["manifest_cid_digest"]),
                    plaintext_sha256=bytes(args["plaintext_sha256"]),
                    deprecated=contracts.registry.is_deprecated(model_id, int(args["version"])),
                )
            )
        versions.sort(key=lambda v: v.version)
        return ModelInfo(
            model_id=ModelId(model_id),
            owner=owner,
            listing=contracts.marketplace.listing(model_id),
            versions=versions,
            parents=contracts.registry.lineage(model_id),
            provider_url=contracts.registry.provider_of(model_id),
        )

    def version(self, model_id: int, version: int | None = None) -> VersionInfo:
        """One version of a model.

        Args:
            model_id: The model.
            version: The version number; None for the latest.

        Returns:
            The version's CIDs, plaintext sha256 and deprecation mark.

        Raises:
            ModelNotFoundError: No such model.
            VersionNotFoundError: No such version.
        """
        info = self.show(model_id)
        if version is None:
            return info.latest
        for candidate in info.versions:
            if candidate.version == version:
                return candidate
        raise VersionNotFoundError(model_id, version, len(info.versions))

    def delivery_status(self, model_id: int) -> DeliveryStatus:
        """Who will deliver the keys of this model's sales, seen from this data directory:
        a node here (running or not), the agent the owner named, or nobody yet.

        Args:
            model_id: The model.

        Returns:
            The status, with a sentence to print (see `mercato.client.delivery`).

        Raises:
            ModelNotFoundError: No such model.
            ChainError: The chain cannot be read.
        """
        from mercato.client.delivery import delivery_status

        return delivery_status(self._market, model_id)

    def search(self, query: SearchQuery | None = None, *, sync: bool = True) -> SearchPage:
        """Searches the index: full text, filters, sorts and cursor pagination.

        Args:
            query: What to find; None lists the newest models.
            sync: Bring the index up to the chain's head first (a running node keeps it
                current already; without one this catches up from where it stopped).

        Returns:
            One page of results.

        Raises:
            InvalidSearchQueryError: A filter is out of range or the cursor is malformed.
            IndexingError: The index cannot be opened or brought up to date.
        """
        index = self._market.index
        if sync:
            Indexer(
                index,
                self._market.w3,
                self._market.deployment,
                StoreMetadataSource(self._market),
                IndexerConfig(confirmations=self._market.settings.confirmations),
            ).sync_once()
        return index.search(query or SearchQuery())

    def lineage(self, model_id: int) -> list[tuple[ModelId, int]]:
        """The model's parents with their royalty shares.

        Args:
            model_id: The model.

        Returns:
            (parent model id, royalty in basis points) pairs; empty for a root model.

        Raises:
            ChainError: The chain cannot be read.
        """
        return self._market.contracts.registry.lineage(model_id)

    def _store_package(
        self, package: ModelPackage, *, encrypt: bool, progress: Progress | None, owner: str
    ) -> _StoredPackage:
        store = self._market.store
        plaintext = counted(package_tar_stream(package), progress)
        manifest = import_file([package.manifest_bytes()], store)
        if encrypt:
            key = generate_content_key()
            # The storage layer's chunk size: fewer, larger secretstream messages.
            encryptor = StreamEncryptor(key, chunk_size=ENCRYPTION_CHUNK_SIZE)
            artifact = import_file(encryptor.encrypt(plaintext), store)
            # The encryptor hashed the plaintext on the way through.
            sha256 = encryptor.result.plaintext_sha256 if encryptor.result else b""
            # Staged for the publishing account; bound to the model once the chain shows
            # this account published it (mercato.client.sale_keys).
            self._market.keys.stage(artifact.cid, key, owner)
        else:
            digest = hashlib.sha256()
            artifact = import_file(_hashing(plaintext, digest), store)
            sha256 = digest.digest()
        return _StoredPackage(artifact.cid, manifest.cid, sha256, encrypt)

    def _is_encrypted(self, owner: str, version: VersionInfo) -> bool:
        """Whether this data directory knows a version to be encrypted: it holds the key
        the owner stored for it, or the artifact's first bytes carry the cipher's magic.
        Unknown counts as not encrypted, so a price is never set on a guess."""
        if self._market.keys.load_staged(version.artifact_cid, owner) is not None:
            return True
        store = self._market.store
        if not store.has(version.artifact_cid):
            return False
        head = b""
        for piece in iter_file(version.artifact_cid, store):
            head += bytes(piece)
            if len(head) >= len(CIPHER_MAGIC):
                break
        return head.startswith(CIPHER_MAGIC)

    def _ensure_provider_url(self, account: str) -> None:
        url = self._market.settings.public_url
        if self._market.contracts.registry.provider_url(account) != url:
            self._market.contracts.registry.set_provider(url)


def card_name(card: ModelCard) -> str | None:
    """The model name a card gives: its first `# ` title, spaces turned into '-'.

    Args:
        card: The parsed model card.

    Returns:
        The name, or None when the card has no title.
    """
    for line in card.text.splitlines():
        if line.startswith("# "):
            title = line[2:].strip().strip("#").strip()
            return "-".join(title.split()) or None
    return None


def load_named_package(path: str | Path, name: str | None = None) -> ModelPackage:
    """Validates a package and names it: `name`, else the card's title, never the folder.

    Args:
        path: The package directory.
        name: The model's name; None takes the card's first `# ` title.

    Returns:
        The validated package with its manifest.

    Raises:
        ModelPackageError: The package is invalid (each refusal has its own subclass),
            or it has no name (no `name` given and no title in the card).
    """
    if name is None:
        name = card_name(load_card(Path(path) / CARD_FILENAME))
        if name is None:
            raise ModelPackageError(
                f"{path}: the model has no name. Give one with --name (SDK: name=...), or "
                "start the card's text with a title line such as '# iris-classifier'.",
                path=str(path),
            )
    return load_package(path, name=name)


def _terms_digest(manifest: dict[str, Any]) -> bytes:
    """The digest of the licence terms a manifest's card states (zero bytes for none)."""
    terms = manifest_terms(manifest)
    return terms_digest(terms) if terms is not None else NO_DIGEST


def _prefix(digest: bytes) -> bytes:
    """What a listing keeps of a terms digest: its first 104 bits, the rest zero."""
    kept = (int.from_bytes(digest, "big") >> TERMS_SHIFT) << TERMS_SHIFT
    return kept.to_bytes(32, "big")


def _hashing(pieces: Iterator[bytes], digest: hashlib._Hash) -> Iterator[bytes]:
    for piece in pieces:
        digest.update(piece)
        yield piece


@dataclass(frozen=True)
class _StoredPackage:
    artifact_cid: CID
    manifest_cid: CID
    plaintext_sha256: bytes
    encrypted: bool

    @property
    def digests(self) -> VersionDigests:
        return VersionDigests(
            cid_digest(self.artifact_cid), self.plaintext_sha256, cid_digest(self.manifest_cid)
        )

    def published(self, model_id: ModelId, version: int) -> PublishedVersion:
        return PublishedVersion(
            model_id,
            version,
            self.artifact_cid,
            self.manifest_cid,
            self.plaintext_sha256,
            self.encrypted,
        )
