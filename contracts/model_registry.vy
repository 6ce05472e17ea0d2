# pragma version ~=0.4.3
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title Mercato model registry
@custom:contract-name model_registry
@notice Every model is an ERC-721 token owned by its creator. A model has
        append-only versions; each version commits three digests: the
        artifact's CID digest, the plaintext's sha256 and the manifest's CID
        digest. Storage keeps one keccak256 over the three (a slot costs 20,000
        gas, a log byte 8); `VersionAdded` carries the digests themselves, and
        `version_commitment` lets anyone check an event against storage.
        Lineage: up to `MAX_PARENTS` parent model ids, each with a royalty share
        in basis points, fixed at publication. Each account records the
        provider URL where its node serves tries and downloads.

        Wallets and NFT tools read a model through ERC-721 metadata: `tokenURI`
        names `ipfs://<CID>` of a JSON document (name, description, a card
        image, attributes) whose sha256 the owner records, and ERC-4906's
        `MetadataUpdate` says when to read it again.
"""

from modules import erc721_lean

initializes: erc721_lean

exports: (
    erc721_lean.balanceOf,
    erc721_lean.ownerOf,
    erc721_lean.getApproved,
    erc721_lean.isApprovedForAll,
    erc721_lean.approve,
    erc721_lean.setApprovalForAll,
    erc721_lean.transferFrom,
    erc721_lean.safeTransferFrom,
)


# A new model shows as the ERC-721 `Transfer` from the zero address plus its
# `VersionAdded` for version 1; a derived model also logs its lineage.
event LineageRecorded:
    model_id: indexed(uint256)
    parents: DynArray[uint256, MAX_PARENTS]
    royalty_bps: DynArray[uint16, MAX_PARENTS]


event VersionAdded:
    model_id: indexed(uint256)
    version: indexed(uint256)
    artifact_cid_digest: bytes32
    plaintext_sha256: bytes32
    manifest_cid_digest: bytes32


event VersionDeprecated:
    model_id: indexed(uint256)
    version: indexed(uint256)


# ERC-4906: the metadata `tokenURI` names has changed; wallets read it again.
event MetadataUpdate:
    _tokenId: uint256


event ProviderSet:
    account: indexed(address)
    url: String[MAX_URL_LENGTH]


MAX_PARENTS: public(constant(uint256)) = 3
MAX_ROYALTY_BPS: public(constant(uint256)) = 5_000
MAX_URL_LENGTH: constant(uint256) = 256
name: public(constant(String[13])) = "Mercato Model"
symbol: public(constant(String[4])) = "MCTM"

# Lineage of one model packed in one slot: bits 0-7 hold the parent count, then
# each parent takes 80 bits: a 64-bit model id followed by a 16-bit royalty share.
_LINEAGE_ENTRY_BITS: constant(uint256) = 80
_MODEL_ID_MASK: constant(uint256) = (1 << 64) - 1
_BPS_MASK: constant(uint256) = (1 << 16) - 1
_COUNT_MASK: constant(uint256) = (1 << 8) - 1
# The ERC-721 aux data of a model holds its version count.
_VERSION_COUNT_MASK: constant(uint256) = (1 << 32) - 1

_SUPPORTED_INTERFACES: constant(bytes4[4]) = [
    0x01FFC9A7,  # ERC-165
    0x80AC58CD,  # ERC-721
    0x5B5E139F,  # ERC-721 metadata
    0x49064906,  # ERC-4906 metadata updates
]
# A metadata document is one raw IPFS block: CIDv1, codec raw (0x55), sha2-256, in
# base32 ("b"). Its first 30 bits (0x01 0x55 0x12 0x20) always read "afkrei".
_URI_PREFIX: constant(Bytes[14]) = b"ipfs://bafkrei"
_LOW_253: constant(uint256) = (1 << 253) - 1

# The marketplace, allowed to publish on a creator's behalf so that "publish and
# list" is one transaction. Immutable: the trust link can never be moved, and
# checking it reads no storage.
PUBLISHER: public(immutable(address))
total_models: public(uint256)
provider_url: public(HashMap[address, String[MAX_URL_LENGTH]])
_lineage: HashMap[uint256, uint256]
_versions: HashMap[uint256, HashMap[uint256, bytes32]]
_deprecated: HashMap[uint256, HashMap[uint256, bool]]
_metadata: HashMap[uint256, bytes32]


@deploy
def __init__(publisher: address):
    """
    @param publisher The marketplace, which may publish on behalf of creators. It is
           deployed right after this contract, at an address known in advance.
    """
    assert publisher != empty(address), "model_registry: publisher is the zero address"
    erc721_lean.__init__()
    PUBLISHER = publisher


@external
def publish(
    artifact_cid_digest: bytes32,
    plaintext_sha256: bytes32,
    manifest_cid_digest: bytes32,
    parents: DynArray[uint256, MAX_PARENTS],
    royalty_bps: DynArray[uint16, MAX_PARENTS],
    metadata_digest: bytes32 = empty(bytes32),
) -> uint256:
    """
    @notice Mints a new model to the caller with its first version.
    @param artifact_cid_digest The sha256 digest inside the artifact's CID.
    @param plaintext_sha256 The sha256 of the decrypted artifact.
    @param manifest_cid_digest The sha256 digest inside the manifest's CID.
    @param parents Ids of the models this one was built on.
    @param royalty_bps Each parent's share of every sale, in basis points.
    @param metadata_digest sha256 of the model's ERC-721 metadata JSON; zero for none yet.
    @return uint256 The new model id.
    """
    return self._publish(
        msg.sender, artifact_cid_digest, plaintext_sha256, manifest_cid_digest, parents, royalty_bps, metadata_digest
    )


@external
def publish_for(
    creator: address,
    artifact_cid_digest: bytes32,
    plaintext_sha256: bytes32,
    manifest_cid_digest: bytes32,
    parents: DynArray[uint256, MAX_PARENTS],
    royalty_bps: DynArray[uint16, MAX_PARENTS],
    metadata_digest: bytes32,
) -> uint256:
    """
    @notice Mints a new model to `creator`; the marketplace's half of "publish and list".
    @dev Publisher only.
    @custom:security The publisher is trusted to pass its own caller as `creator`.
    @param creator The account that will own the model.
    @param artifact_cid_digest The sha256 digest inside the artifact's CID.
    @param plaintext_sha256 The sha256 of the decrypted artifact.
    @param manifest_cid_digest The sha256 digest inside the manifest's CID.
    @param parents Ids of the models this one was built on.
    @param royalty_bps Each parent's share of every sale, in basis points.
    @param metadata_digest sha256 of the model's ERC-721 metadata JSON; zero for none yet.
    @return uint256 The new model id.
    """
    assert msg.sender == PUBLISHER, "model_registry: caller is not the publisher"
    return self._publish(
        creator, artifact_cid_digest, plaintext_sha256, manifest_cid_digest, parents, royalty_bps, metadata_digest
    )


@external
def add_version(
    model_id: uint256,
    artifact_cid_digest: bytes32,
    plaintext_sha256: bytes32,
    manifest_cid_digest: bytes32,
    metadata_digest: bytes32 = empty(bytes32),
) -> uint256:
    """
    @notice Appends a version to a model; earlier versions stay as they are.
    @dev Model owner only. Logs ERC-4906 `MetadataUpdate`: the document shows the version.
    @param model_id The model.
    @param artifact_cid_digest The sha256 digest inside the artifact's CID.
    @param plaintext_sha256 The sha256 of the decrypted artifact.
    @param manifest_cid_digest The sha256 digest inside the manifest's CID.
    @param metadata_digest sha256 of the model's new ERC-721 metadata JSON; zero keeps it.
    @return uint256 The new version number (versions count from 1).
    """
    self._check_model_owner(model_id)
    version: uint256 = self._add_version(model_id, artifact_cid_digest, plaintext_sha256, manifest_cid_digest)
    if metadata_digest != empty(bytes32):
        self._metadata[model_id] = metadata_digest
    log MetadataUpdate(_tokenId=model_id)
    return version


@external
def set_metadata(model_id: uint256, metadata_digest: bytes32):
    """
    @notice Points `tokenURI` at a new metadata document.
    @dev Model owner only.
    @param model_id The model.
    @param metadata_digest sha256 of the ERC-721 metadata JSON, a raw IPFS block.
    """
    self._check_model_owner(model_id)
    self._set_metadata(model_id, metadata_digest)


@external
def set_metadata_for(model_id: uint256, metadata_digest: bytes32):
    """
    @notice Points `tokenURI` at a new metadata document; the marketplace's half of
            a listing change, whose owner it has checked.
    @dev Publisher only.
    @param model_id The model.
    @param metadata_digest sha256 of the ERC-721 metadata JSON, a raw IPFS block.
    """
    assert msg.sender == PUBLISHER, "model_registry: caller is not the publisher"
    self._set_metadata(model_id, metadata_digest)


@external
def deprecate_version(model_id: uint256, version: uint256):
    """
    @notice Marks a version as deprecated; it stays readable, is never rewritten, and
            the mark cannot be undone.
    @dev Model owner only.
    @param model_id The model.
    @param version The version to deprecate.
    """
    self._check_model_owner(model_id)
    assert version >= 1 and version <= self._version_count(model_id), "model_registry: version does not exist"
    assert not self._deprecated[model_id][version], "model_registry: version already deprecated"
    self._deprecated[model_id][version] = True
    log VersionDeprecated(model_id=model_id, version=version)


@external
def set_provider(url: String[MAX_URL_LENGTH]):
    """
    @notice Records where the caller's node serves tries and downloads of its models.
    @param url The provider's base URL; empty to clear it.
    """
    self.provider_url[msg.sender] = url
    log ProviderSet(account=msg.sender, url=url)


@external
@view
def supportsInterface(interface_id: bytes4) -> bool:
    """
    @notice Tells whether this contract implements an interface (ERC-165).
    @param interface_id The 4-byte interface identifier.
    @return bool True for ERC-165, ERC-721, ERC-721 metadata and ERC-4906.
    """
    return interface_id in _SUPPORTED_INTERFACES


@external
@view
def tokenURI(token_id: uint256) -> String[66]:
    """
    @notice Returns `ipfs://<CID>` of the model's ERC-721 metadata JSON (name,
            description, image, attributes), or "" before its owner recorded one.
    @dev The CID is CIDv1, raw codec, sha2-256, base32: what `ipfs add --cid-version 1`
         prints for a document under 256 KiB. The node's gateway serves it at
         `/ipfs/<CID>`.
    @custom:security The document is the owner's word, like the card: clients must
                     treat its text and image as untrusted (see docs/threat-model.md).
    @param token_id The model; it must exist.
    @return String The URI.
    """
    erc721_lean._require_owned(token_id)
    digest: uint256 = convert(self._metadata[token_id], uint256)
    if digest == 0:
        return ""
    # After "afkrei" come 2 zero bits, the digest's 256 bits and 2 bits of padding:
    # 52 more characters of 5 bits. The first takes the digest's top 3 bits.
    rest: uint256 = (digest & _LOW_253) << 2
    high: uint256 = 0
    low: uint256 = 0
    for i: uint256 in range(52):
        c: uint256 = digest >> 253
        if i != 0:
            c = (rest >> (255 - 5 * i)) & 31
        # RFC 4648 base32, lower case: a-z for 0-25, 2-7 for 26-31.
        if c < 26:
            c += 97
        else:
            c += 24
        if i < 32:
            high |= c << (8 * (31 - i))
        else:
            low |= c << (8 * (63 - i))
    uri: Bytes[66] = concat(_URI_PREFIX, convert(high, bytes32), slice(convert(low, bytes32), 0, 20))
    return convert(uri, String[66])


@external
@view
def metadata_digest(model_id: uint256) -> bytes32:
    """
    @notice Returns the sha256 of the model's ERC-721 metadata JSON.
    @param model_id The model.
    @return bytes32 The digest; zero when none was recorded.
    """
    return self._metadata[model_id]


@external
@view
def version_count(model_id: uint256) -> uint256:
    """
    @notice Counts a model's versions (0 when the model does not exist).
    @param model_id The model.
    @return uint256 The number of versions.
    """
    return self._version_count(model_id)


@external
@view
def version_commitment(model_id: uint256, version: uint256) -> bytes32:
    """
    @notice Returns keccak256(artifact CID digest ‖ plaintext sha256 ‖ manifest CID digest)
            of a version, to check a `VersionAdded` event against storage.
    @param model_id The model.
    @param version The version number.
    @return bytes32 The commitment; zero when the version does not exist.
    """
    return self._versions[model_id][version]


@external
@view
def is_deprecated(model_id: uint256, version: uint256) -> bool:
    """
    @notice Tells whether a version is deprecated.
    @param model_id The model.
    @param version The version number.
    @return bool True when deprecated.
    """
    return self._deprecated[model_id][version]


@external
@view
def lineage(model_id: uint256) -> (DynArray[uint256, MAX_PARENTS], DynArray[uint16, MAX_PARENTS]):
    """
    @notice Returns a model's parents and their royalty shares.
    @param model_id The model.
    @return DynArray The parent model ids.
    @return DynArray Each parent's royalty share in basis points.
    """
    return self._lineage_of(model_id)


@external
@view
def payout_info(model_id: uint256) -> (address, uint256, address[MAX_PARENTS], uint256[MAX_PARENTS]):
    """
    @notice Returns who is paid for a sale of `model_id`: its owner, and each
            parent's current owner with its royalty share; and how many versions
            it has, so a delivery can check its version.
    @dev Fixed-size arrays (unused entries are zero) decode cheaper than dynamic ones
         in the marketplace's per-delivery call. The version count shares the owner's
         slot, so it costs no extra storage read.
    @param model_id The model; it must exist.
    @return address The model's owner.
    @return uint256 The model's version count.
    @return address[3] The parents' owners.
    @return uint256[3] Each parent's royalty share in basis points.
    """
    owner_data: uint256 = erc721_lean._owner_data[model_id]
    owner: address = convert(owner_data & erc721_lean._ADDRESS_MASK, address)
    assert owner != empty(address), "erc721: token does not exist"
    packed: uint256 = self._lineage[model_id]
    parent_owners: address[MAX_PARENTS] = empty(address[MAX_PARENTS])
    shares: uint256[MAX_PARENTS] = empty(uint256[MAX_PARENTS])
    offset: uint256 = 8
    for i: uint256 in range(MAX_PARENTS):
        if i == packed & _COUNT_MASK:
            break
        entry: uint256 = packed >> offset
        parent_owners[i] = erc721_lean._owner_of(entry & _MODEL_ID_MASK)
        shares[i] = (entry >> 64) & _BPS_MASK
        offset += _LINEAGE_ENTRY_BITS
    return owner, (owner_data >> erc721_lean._AUX_SHIFT) & _VERSION_COUNT_MASK, parent_owners, shares


@external
@view
def provider_of(model_id: uint256) -> String[MAX_URL_LENGTH]:
    """
    @notice Returns the provider URL of a model's current owner.
    @param model_id The model; it must exist.
    @return String The URL, empty when the owner has not set one.
    """
    return self.provider_url[erc721_lean._require_owned(model_id)]


@internal
def _publish(
    creator: address,
    artifact_cid_digest: bytes32,
    plaintext_sha256: bytes32,
    manifest_cid_digest: bytes32,
    parents: DynArray[uint256, MAX_PARENTS],
    royalty_bps: DynArray[uint16, MAX_PARENTS],
    metadata_digest: bytes32,
) -> uint256:
    assert len(parents) == len(royalty_bps), "model_registry: parents and royalty shares differ in length"
    model_id: uint256 = self.total_models + 1
    packed: uint256 = len(parents)
    total_bps: uint256 = 0
    offset: uint256 = 8
    for i: uint256 in range(MAX_PARENTS):
        if i == len(parents):
            break
        parent: uint256 = parents[i]
        assert erc721_lean._owner_of(parent) != empty(address), "model_registry: parent model does not exist"
        for j: uint256 in range(MAX_PARENTS):
            if j == i:
                break
            assert parents[j] != parent, "model_registry: parent listed twice"
        total_bps += convert(royalty_bps[i], uint256)
        # Parents exist, so their ids are below `model_id` and fit in 64 bits.
        packed |= (parent | (convert(royalty_bps[i], uint256) << 64)) << offset
        offset += _LINEAGE_ENTRY_BITS
    assert total_bps <= MAX_ROYALTY_BPS, "model_registry: royalty shares exceed 50%"

    self.total_models = model_id
    erc721_lean._mint(creator, model_id, 0)
    if len(parents) > 0:
        self._lineage[model_id] = packed
        log LineageRecorded(model_id=model_id, parents=parents, royalty_bps=royalty_bps)
    self._add_version(model_id, artifact_cid_digest, plaintext_sha256, manifest_cid_digest)
    if metadata_digest != empty(bytes32):
        self._metadata[model_id] = metadata_digest
    return model_id


@internal
def _add_version(
    model_id: uint256, artifact_cid_digest: bytes32, plaintext_sha256: bytes32, manifest_cid_digest: bytes32
) -> uint256:
    assert artifact_cid_digest != empty(bytes32), "model_registry: artifact CID digest is empty"
    assert plaintext_sha256 != empty(bytes32), "model_registry: plaintext sha256 is empty"
    assert manifest_cid_digest != empty(bytes32), "model_registry: manifest CID digest is empty"
    version: uint256 = self._version_count(model_id) + 1
    assert version <= _VERSION_COUNT_MASK, "model_registry: too many versions"
    erc721_lean._set_aux(model_id, version)
    self._versions[model_id][version] = keccak256(concat(artifact_cid_digest, plaintext_sha256, manifest_cid_digest))
    log VersionAdded(
        model_id=model_id,
        version=version,
        artifact_cid_digest=artifact_cid_digest,
        plaintext_sha256=plaintext_sha256,
        manifest_cid_digest=manifest_cid_digest,
    )
    return version


@internal
def _set_metadata(model_id: uint256, metadata_digest: bytes32):
    assert metadata_digest != empty(bytes32), "model_registry: metadata digest is empty"
    erc721_lean._require_owned(model_id)
    self._metadata[model_id] = metadata_digest
    log MetadataUpdate(_tokenId=model_id)


@internal
@view
def _check_model_owner(model_id: uint256):
    assert erc721_lean._require_owned(model_id) == msg.sender, "model_registry: caller is not the model owner"


@internal
@view
def _version_count(model_id: uint256) -> uint256:
    return erc721_lean._aux(model_id) & _VERSION_COUNT_MASK


@internal
@view
def _lineage_of(model_id: uint256) -> (DynArray[uint256, MAX_PARENTS], DynArray[uint16, MAX_PARENTS]):
    packed: uint256 = self._lineage[model_id]
    parents: DynArray[uint256, MAX_PARENTS] = []
    shares: DynArray[uint16, MAX_PARENTS] = []
    offset: uint256 = 8
    for i: uint256 in range(MAX_PARENTS):
        if i == packed & _COUNT_MASK:
            break
        entry: uint256 = packed >> offset
        parents.append(entry & _MODEL_ID_MASK)
        shares.append(convert((entry >> 64) & _BPS_MASK, uint16))
        offset += _LINEAGE_ENTRY_BITS
    return parents, shares
