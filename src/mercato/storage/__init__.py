# SPDX-License-Identifier: AGPL-3.0-only
"""Content-addressed model storage, compatible with IPFS.

- `unixfs`: the importer; CIDs match kubo's `ipfs add` under either CID profile
  (`profiles`: unixfs-v0-2015, kubo's default, and unixfs-v1-2025).
- `directory`: directories as `ipfs add -r` imports them, HAMT-sharded when large.
- `blockstore`: the local store in the node's data directory (atomic, verified, pins, gc),
  with `blockio` (writing block files), `journal` (recovery after an unclean stop),
  `verification` (re-hashing the store) and `pinning` (pins, marking and sweeping).
- `exporter`: verified streaming reads and atomic export of a file from any block source.
- `car`: CAR v1 export and import, to move DAGs to and from any IPFS node.
- `backends`: the local store, a kubo node (HTTP RPC) and trustless gateways behind one
  protocol.
- `encrypted`: paid artifacts: encrypt while importing, export while decrypting.
"""

from mercato.storage.backends import GatewayBackend, KuboBackend, LocalBackend, StorageBackend
from mercato.storage.blockstore import Blockstore, GCResult, VerifyResult
from mercato.storage.car import export_car, import_car
from mercato.storage.cids import MAX_BLOCK_SIZE, parse_cid
from mercato.storage.directory import import_directory, only_hash_directory
from mercato.storage.encrypted import EncryptedImport, encrypt_and_import, export_and_decrypt
from mercato.storage.exporter import BlockSource, export_file, iter_file
from mercato.storage.profiles import UNIXFS_V0_2015, UNIXFS_V1_2025, CidProfile, get_profile
from mercato.storage.unixfs import ImportResult, UnixFSImporter, import_file, only_hash

__all__ = [
    "MAX_BLOCK_SIZE",
    "UNIXFS_V0_2015",
    "UNIXFS_V1_2025",
    "BlockSource",
    "Blockstore",
    "CidProfile",
    "EncryptedImport",
    "GCResult",
    "GatewayBackend",
    "ImportResult",
    "KuboBackend",
    "LocalBackend",
    "StorageBackend",
    "UnixFSImporter",
    "VerifyResult",
    "encrypt_and_import",
    "export_and_decrypt",
    "export_car",
    "export_file",
    "get_profile",
    "import_car",
    "import_directory",
    "import_file",
    "iter_file",
    "only_hash",
    "only_hash_directory",
    "parse_cid",
]
