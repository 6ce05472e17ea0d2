# SPDX-License-Identifier: AGPL-3.0-only
"""Directory import, giving the CIDs `ipfs add -r` gives under either CID profile.

A directory becomes one dag-pb node, or a HAMT of them when it is large::

    dir (Data{Type: Directory})             HAMT root (Data{Type: HAMTShard, Data: bitfield,
    ├── "a.onnx"  -> file root                          hashType: 0x22, fanout: 256})
    ├── "empty"   -> dir                    ├── "1Fa.onnx" -> file root   (slot 0x1F, one entry)
    └── "link"    -> symlink node           └── "A3"       -> HAMT shard  (slot 0xA3, several)
                                                ├── "07b.bin" -> file root
                                                └── "C2c.bin" -> file root

- A plain directory's links are sorted by name bytes (canonical dag-pb), each with
  `Tsize` = the child's whole DAG, and its Data is `Type: Directory` alone (no mode, no
  mtime).
- It is sharded when its size estimate is strictly above the profile's threshold
  (256 KiB): the link names plus CIDs (unixfs-v0-2015), or the whole encoded node
  (unixfs-v1-2025).
- In a HAMT, each name is hashed with murmur3-x64-64 (h1, the first half of murmur3's
  x64 128-bit hash); a node at depth d takes the d-th 8 bits of h1, most significant
  first, as its slot (fanout 256). A slot holding one entry links to it directly under the
  slot's two upper-case hex digits followed by the name; a slot several entries share
  links to a child shard named by the two digits alone. The bitfield marks the occupied
  slots, big-endian, without leading zero bytes.
- Entries whose name starts with "." are left out (as `ipfs add` does without
  `--hidden`); empty files and directories are kept; symlinks are recorded as UnixFS
  symlink nodes (`Type: Symlink, Data: target`) and never followed, so an import never
  reads outside the directory it was given.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from multiformats import CID

from mercato.errors import UnsupportedImportEntryError
from mercato.storage.blockstore import Blockstore
from mercato.storage.cids import CODEC_DAG_PB, cid_from_bytes, sha256_cid_bytes
from mercato.storage.dagpb import (
    UNIXFS_DIRECTORY,
    UNIXFS_HAMT_SHARD,
    UNIXFS_SYMLINK,
    PBLink,
    UnixFSData,
    encode_node,
    encode_unixfs,
)
from mercato.storage.profiles import CidProfile, profile_for
from mercato.storage.unixfs import ImportResult, UnixFSImporter

HAMT_HASH_MURMUR3 = 0x22
"""The multicodec of murmur3-x64-64, the hash every UnixFS HAMT uses."""

MAX_DIRECTORY_DEPTH = 256
"""Deeper nesting is refused (it would only exhaust the importer's stack)."""

_MASK64 = (1 << 64) - 1


def murmur3_x64_64(data: bytes) -> int:
    """The first 64 bits (h1) of MurmurHash3's x64 128-bit hash with seed 0.

    UnixFS HAMTs place names by this value (multicodec 0x22, murmur3-x64-64).

    Args:
        data: The bytes to hash (a UTF-8 entry name).

    Returns:
        h1 as an unsigned integer.
    """
    c1, c2 = 0x87C37B91114253D5, 0x4CF5AD432745937F
    h1 = h2 = 0
    length = len(data)
    blocks = length // 16
    for i in range(blocks):
        k1 = int.from_bytes(data[16 * i : 16 * i + 8], "little")
        k2 = int.from_bytes(data[16 * i + 8 : 16 * i + 16], "little")
        h1 ^= _mix_k1(k1, c1, c2)
        h1 = (_rotl(h1, 27) + h2) & _MASK64
        h1 = (h1 * 5 + 0x52DCE729) & _MASK64
        h2 ^= _mix_k2(k2, c1, c2)
        h2 = (_rotl(h2, 31) + h1) & _MASK64
        h2 = (h2 * 5 + 0x38495AB5) & _MASK64
    tail = data[16 * blocks :]
    if len(tail) > 8:
        h2 ^= _mix_k2(int.from_bytes(tail[8:], "little"), c1, c2)
    if tail:
        h1 ^= _mix_k1(int.from_bytes(tail[:8], "little"), c1, c2)
    h1 ^= length
    h2 ^= length
    h1 = (h1 + h2) & _MASK64
    h2 = (h2 + h1) & _MASK64
    h1 = _fmix64(h1)
    h2 = _fmix64(h2)
    return (h1 + h2) & _MASK64


def _hamt_key(name: str) -> int:
    """The 64 bits a HAMT consumes, most significant first, level by level."""
    return murmur3_x64_64(name.encode())


def _rotl(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & _MASK64


def _mix_k1(k1: int, c1: int, c2: int) -> int:
    return (_rotl((k1 * c1) & _MASK64, 31) * c2) & _MASK64


def _mix_k2(k2: int, c1: int, c2: int) -> int:
    return (_rotl((k2 * c2) & _MASK64, 33) * c1) & _MASK64


def _fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _MASK64
    return k ^ (k >> 33)


@dataclass(frozen=True)
class _Entry:
    """A named child of a directory, ready to be linked."""

    name: str
    cid: bytes  # binary CID
    tsize: int  # the child's whole DAG, in block bytes
    filesize: int  # file bytes under it


class _DirectoryBuilder:
    """Builds directory, HAMT and symlink nodes for one import under one profile."""

    def __init__(self, store: Blockstore | None, profile: CidProfile) -> None:
        self.store = store
        self.profile = profile
        self.bits = profile.hamt_fanout.bit_length() - 1
        if profile.hamt_fanout < 2 or 1 << self.bits != profile.hamt_fanout:
            raise UnsupportedImportEntryError(
                f"A HAMT fanout must be a power of two, not {profile.hamt_fanout}.", path=""
            )
        self.pad = len(f"{profile.hamt_fanout - 1:X}")

    def put(self, block: bytes) -> bytes:
        digest = hashlib.sha256(block).digest()
        if self.store is not None:
            self.store.put_hashed(b"\x12\x20" + digest, [block])
        return sha256_cid_bytes(self.profile.cid_version, CODEC_DAG_PB, digest)

    def symlink(self, name: str, target: str) -> _Entry:
        block = encode_node(
            [], encode_unixfs(UnixFSData(type=UNIXFS_SYMLINK, data=target.encode()))
        )
        return _Entry(name, self.put(block), len(block), 0)

    def directory(self, name: str, entries: list[_Entry], path: str) -> _Entry:
        entries = sorted(entries, key=lambda e: e.name.encode())
        links = [PBLink(hash=e.cid, name=e.name, tsize=e.tsize) for e in entries]
        block = encode_node(links, encode_unixfs(UnixFSData(type=UNIXFS_DIRECTORY)))
        filesize = sum(e.filesize for e in entries)
        if self._estimate(links, block) > self.profile.hamt_threshold:
            hashed = [(_hamt_key(e.name), e) for e in entries]
            cid, tsize = self._shard(hashed, 0, path)
            return _Entry(name, cid, tsize, filesize)
        tsize = len(block) + sum(e.tsize for e in entries)
        return _Entry(name, self.put(block), tsize, filesize)

    def _estimate(self, links: list[PBLink], block: bytes) -> int:
        if self.profile.hamt_estimation == "block":
            return len(block)
        return sum(len((link.name or "").encode()) + len(link.hash) for link in links)

    def _shard(self, hashed: list[tuple[int, _Entry]], level: int, path: str) -> tuple[bytes, int]:
        """One HAMT node over `hashed`, whose hashes agree on the first `level` slots."""
        shift = 64 - self.bits * (level + 1)
        if shift < 0:
            raise UnsupportedImportEntryError(
                f"Names in {path} collide in all 64 bits of their HAMT hash; rename one of "
                f"{', '.join(repr(e.name) for _, e in hashed[:2])}.",
                path=path,
            )
        slots: dict[int, list[tuple[int, _Entry]]] = {}
        for value, entry in hashed:
            slots.setdefault((value >> shift) & (self.profile.hamt_fanout - 1), []).append(
                (value, entry)
            )
        links: list[PBLink] = []
        children = 0
        bitfield = 0
        for slot in sorted(slots):
            bitfield |= 1 << slot
            label = f"{slot:0{self.pad}X}"
            members = slots[slot]
            if len(members) == 1:
                entry = members[0][1]
                links.append(PBLink(hash=entry.cid, name=label + entry.name, tsize=entry.tsize))
                children += entry.tsize
            else:
                cid, tsize = self._shard(members, level + 1, path)
                links.append(PBLink(hash=cid, name=label, tsize=tsize))
                children += tsize
        data = UnixFSData(
            type=UNIXFS_HAMT_SHARD,
            data=bitfield.to_bytes(self.profile.hamt_fanout // 8, "big").lstrip(b"\x00"),
            hash_type=HAMT_HASH_MURMUR3,
            fanout=self.profile.hamt_fanout,
        )
        block = encode_node(links, encode_unixfs(data))
        return self.put(block), len(block) + children


def _import_tree(
    path: Path, builder: _DirectoryBuilder, name: str, depth: int, workers: int | None
) -> _Entry:
    if depth > MAX_DIRECTORY_DEPTH:
        raise UnsupportedImportEntryError(
            f"{path} is nested more than {MAX_DIRECTORY_DEPTH} directories deep.", path=str(path)
        )
    entries: list[_Entry] = []
    with os.scandir(path) as listing:
        children = sorted(listing, key=lambda e: os.fsencode(e.name))
    for child in children:
        if child.name.startswith("."):
            continue  # hidden, as `ipfs add` leaves it out without --hidden
        child_name = _utf8_name(child.name, child.path)
        mode = child.stat(follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            target = os.readlink(child.path)
            entries.append(builder.symlink(child_name, _utf8_name(target, child.path)))
        elif stat.S_ISDIR(mode):
            entries.append(_import_tree(Path(child.path), builder, child_name, depth + 1, workers))
        elif stat.S_ISREG(mode):
            entries.append(_import_one(Path(child.path), builder, child_name, workers))
        else:
            raise UnsupportedImportEntryError(
                f"{child.path} is not a file, a directory or a symlink (a device, socket or "
                "FIFO); UnixFS cannot record it. Move it out of the directory.",
                path=child.path,
            )
    return builder.directory(name, entries, str(path))


def _import_one(path: Path, builder: _DirectoryBuilder, name: str, workers: int | None) -> _Entry:
    with (
        open(path, "rb", buffering=0) as fh,
        UnixFSImporter(builder.store, profile=builder.profile, workers=workers) as importer,
    ):
        while piece := fh.read(builder.profile.chunk_size):
            importer.update(piece)
        cid, tsize = importer.finish_raw()
    return _Entry(name, cid, tsize, importer.size)


def _utf8_name(name: str, path: str) -> str:
    # os.scandir decodes undecodable bytes as surrogates; dag-pb names must be UTF-8.
    try:
        name.encode()
    except UnicodeEncodeError:
        raise UnsupportedImportEntryError(
            f"{path!r} has a name that is not UTF-8; UnixFS names are UTF-8. Rename it.",
            path=repr(path),
        ) from None
    return name


def import_directory(
    path: Path | str,
    store: Blockstore | None,
    *,
    profile: CidProfile | str | None = None,
    cid_version: int | None = None,
    pin: bool = True,
    workers: int | None = None,
) -> ImportResult:
    """Import a directory as UnixFS, like `ipfs add -r` (or `--only-hash` without a store).

    Args:
        path: The directory.
        store: Where to write blocks, or None to only compute the CID.
        profile: A CID profile or its name (default "unixfs-v0-2015").
        cid_version: The older way to ask (see `UnixFSImporter`).
        pin: With a store, pin the root so `gc` keeps it.
        workers: Hashing/writing threads per file (see `UnixFSImporter`).

    Returns:
        The root CID, the bytes of all files, and the whole DAG's size.

    Raises:
        ConfigError: If the profile is unknown or disagrees with `cid_version`.
        NotADirectoryError: If `path` is not a directory.
        FileNotFoundError: If `path` does not exist.
        UnsupportedImportEntryError: If an entry is a device, socket or FIFO, has a name
            that is not UTF-8, is nested too deep, or names collide in their HAMT hash.
        BlockWriteError: If a block could not be written (StorageFullError when the
            disk is full); the root is then not pinned.
    """
    chosen = profile_for(profile, cid_version)
    root = Path(path)
    if not root.is_dir():
        if root.exists():
            raise NotADirectoryError(f"{root} is not a directory.")
        raise FileNotFoundError(f"{root} does not exist.")
    builder = _DirectoryBuilder(store, chosen)
    if store is None:
        top = _import_tree(root, builder, "", 0, workers)
    else:
        with store.writing():
            top = _import_tree(root, builder, "", 0, workers)
            cid = cid_from_bytes(top.cid)
            if pin:
                store.pin(cid, check_complete=False)
            else:
                store.flush()
    return ImportResult(cid=cid_from_bytes(top.cid), size=top.filesize, dag_size=top.tsize)


def only_hash_directory(path: Path | str, *, profile: CidProfile | str | None = None) -> CID:
    """The CID `ipfs add -r --only-hash -Q` prints for a directory, storing nothing.

    Args:
        path: The directory.
        profile: A CID profile or its name (default "unixfs-v0-2015").

    Returns:
        The root CID.

    Raises:
        ConfigError: If the profile is unknown.
        NotADirectoryError: If `path` is not a directory.
        FileNotFoundError: If `path` does not exist.
        UnsupportedImportEntryError: See `import_directory`.
    """
    return import_directory(path, None, profile=profile).cid


__all__ = [
    "HAMT_HASH_MURMUR3",
    "MAX_DIRECTORY_DEPTH",
    "import_directory",
    "murmur3_x64_64",
    "only_hash_directory",
]
