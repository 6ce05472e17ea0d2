# SPDX-License-Identifier: AGPL-3.0-only
"""UnixFS CID profiles (IPIP-499): the import parameters that decide a CID.

The same bytes give different CIDs under different chunk sizes, DAG widths, leaf
kinds or directory sharding rules. A profile names one set of them, so two tools that
agree on the name agree on the CID. kubo applies them with `ipfs config profile apply
NAME` (or `ipfs init --profile NAME`):

| parameter                  | unixfs-v0-2015 (kubo's default) | unixfs-v1-2025            |
| -------------------------- | ------------------------------- | ------------------------- |
| CID version, multibase     | 0, base58btc                    | 1, base32                 |
| hash                       | sha2-256                        | sha2-256                  |
| chunker                    | fixed, 256 KiB (`size-262144`)  | fixed, 1 MiB (`size-1048576`) |
| layout, links per node     | balanced, 174                   | balanced, 1,024           |
| leaves                     | dag-pb                          | raw                       |
| HAMT fanout                | 256                             | 256                       |
| HAMT threshold             | 256 KiB of link names + CIDs    | 256 KiB of the whole block |

Both profiles agree on the rest: a directory becomes a HAMT only when its estimate is
strictly above the threshold; empty files and directories are kept; hidden entries
(names starting with ".") are left out; symlinks are kept as UnixFS symlink nodes, never
followed; no mode and no mtime.

`--cid-version=1` alone (what kubo's `test-cid-v1` profile sets) is a third mix:
unixfs-v0-2015's chunks and width with CIDv1 raw leaves. `profile_for` keeps it for the
callers that ask for a CID version rather than a profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mercato.errors import ConfigError

ProfileName = Literal["unixfs-v0-2015", "unixfs-v1-2025"]
"""The profile names, spelled as kubo and IPIP-499 spell them."""

_KUBO_BUILTIN_MAX_LINKS = 174
_KUBO_BUILTIN_FANOUT = 256

HamtEstimation = Literal["links", "block"]
"""How a directory's size is estimated against the HAMT threshold: `links` sums link
names and CIDs (kubo's legacy estimate), `block` is the serialized dag-pb node."""


@dataclass(frozen=True)
class CidProfile:
    """One set of UnixFS import parameters.

    Attributes:
        name: The profile's name (a custom mix is named after what it changes).
        cid_version: 0 or 1; dag-pb nodes use it, raw leaves are always CIDv1.
        raw_leaves: Chunks are raw blocks (True) or dag-pb UnixFS file leaves (False).
        chunk_size: Fixed chunk size in bytes.
        max_links: Links per file node in the balanced layout.
        hamt_threshold: A directory whose estimate is above this many bytes is sharded.
        hamt_estimation: How that estimate is made.
        hamt_fanout: Children per HAMT shard node (a power of two; 256 in both profiles).
    """

    name: str
    cid_version: int
    raw_leaves: bool
    chunk_size: int
    max_links: int
    hamt_threshold: int = 262_144
    hamt_estimation: HamtEstimation = "links"
    hamt_fanout: int = 256

    def kubo_add_params(self) -> dict[str, str]:
        """The `/api/v0/add` parameters that make kubo import with this profile.

        `max-file-links` and `max-hamt-fanout` are add options since kubo 0.40 (the
        release that brought the profiles); they are sent only when they differ from
        kubo's built-in 174 and 256, so an older kubo still takes the legacy profile.
        kubo has no add option for the HAMT size estimate: a kubo whose directories must
        match needs `ipfs config profile apply NAME`. Files do not depend on it.

        Returns:
            Query parameters, e.g. {"cid-version": "1", "raw-leaves": "true", ...}.
        """
        params = {
            "cid-version": str(self.cid_version),
            "raw-leaves": "true" if self.raw_leaves else "false",
            "chunker": f"size-{self.chunk_size}",
            "hash": "sha2-256",
            "trickle": "false",
        }
        if self.max_links != _KUBO_BUILTIN_MAX_LINKS:
            params["max-file-links"] = str(self.max_links)
        if self.hamt_fanout != _KUBO_BUILTIN_FANOUT:
            params["max-hamt-fanout"] = str(self.hamt_fanout)
        return params


UNIXFS_V0_2015 = CidProfile(
    name="unixfs-v0-2015",
    cid_version=0,
    raw_leaves=False,
    chunk_size=262_144,
    max_links=174,
    hamt_estimation="links",
)
"""kubo's default through 0.39 (and still its default): CIDv0, 256 KiB, 174 links."""

UNIXFS_V1_2025 = CidProfile(
    name="unixfs-v1-2025",
    cid_version=1,
    raw_leaves=True,
    chunk_size=1_048_576,
    max_links=1_024,
    hamt_estimation="block",
)
"""IPIP-499's modern profile: CIDv1, raw leaves, 1 MiB chunks, 1,024 links."""

CID_V1_LEGACY = CidProfile(
    name="cid-version-1",
    cid_version=1,
    raw_leaves=True,
    chunk_size=UNIXFS_V0_2015.chunk_size,
    max_links=UNIXFS_V0_2015.max_links,
    hamt_estimation="links",
)
"""What `ipfs add --cid-version=1` gives on a kubo with default settings."""

PROFILES: dict[str, CidProfile] = {p.name: p for p in (UNIXFS_V0_2015, UNIXFS_V1_2025)}
"""The named profiles, by name."""

DEFAULT_PROFILE = UNIXFS_V0_2015


def get_profile(name: str) -> CidProfile:
    """The named profile.

    Args:
        name: "unixfs-v0-2015" or "unixfs-v1-2025".

    Returns:
        The profile.

    Raises:
        ConfigError: If no profile has that name.
    """
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ConfigError(f"Unknown CID profile {name!r}. Use one of: {known}.") from None


def profile_for(
    profile: CidProfile | str | None = None, cid_version: int | None = None
) -> CidProfile:
    """Resolve what a caller asked for into one profile.

    Args:
        profile: A profile or its name; None for kubo's default.
        cid_version: The older way to ask: 0 is unixfs-v0-2015, 1 what `ipfs add
            --cid-version=1` gives (256 KiB chunks, 174 links, raw leaves). With a
            profile it must agree with the profile's version.

    Returns:
        The profile to import with.

    Raises:
        ConfigError: If the name is unknown, `cid_version` is not 0 or 1, or it
            contradicts the profile.
    """
    if cid_version is not None and cid_version not in (0, 1):
        raise ConfigError(f"cid_version must be 0 or 1, not {cid_version!r}.")
    if profile is None:
        return CID_V1_LEGACY if cid_version == 1 else DEFAULT_PROFILE
    chosen = get_profile(profile) if isinstance(profile, str) else profile
    if cid_version is not None and cid_version != chosen.cid_version:
        raise ConfigError(
            f"The {chosen.name} profile makes CIDv{chosen.cid_version}, not CIDv{cid_version}. "
            "Pass the profile alone."
        )
    return chosen


__all__ = [
    "CID_V1_LEGACY",
    "DEFAULT_PROFILE",
    "PROFILES",
    "UNIXFS_V0_2015",
    "UNIXFS_V1_2025",
    "CidProfile",
    "HamtEstimation",
    "ProfileName",
    "get_profile",
    "profile_for",
]
