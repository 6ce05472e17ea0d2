# SPDX-License-Identifier: AGPL-3.0-only
"""The digest of the licence terms a listing and a purchase commit to.

The terms are what `mercato.models.card.license_terms` reads from a card: the licence
id plus its name, link and any custom text. Their digest is the sha256 of the terms'
`canonical_bytes()`, so the seller's client, the buyer's client and the web page,
reading the same published manifest, compute the same 32 bytes. The listing keeps the
digest's first 104 bits and `TermsSet` logs all of it (see docs/contracts.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from mercato.models.card import LicenseTerms, license_terms

__all__ = ["LicenseTerms", "manifest_terms", "page_terms_digest", "terms_digest", "terms_label"]


def terms_digest(terms: LicenseTerms) -> bytes:
    """sha256 of the terms' canonical bytes: what a listing and a purchase commit to."""
    return hashlib.sha256(terms.canonical_bytes()).digest()


def terms_label(terms: LicenseTerms) -> str:
    """One line for people: the licence's name and, when known, where its text is."""
    return f"{terms.name} ({terms.link})" if terms.link else terms.name


def manifest_terms(manifest: Mapping[str, Any]) -> LicenseTerms | None:
    """The terms a published manifest's card states, or None without a readable card.

    Args:
        manifest: A published manifest (perhaps another node's: nothing is trusted).

    Returns:
        The terms, or None when the manifest has no card with a licence.
    """
    card = manifest.get("card")
    if not isinstance(card, Mapping) or not isinstance(card.get("license"), str):
        return None
    return license_terms(card)


def page_terms_digest(manifest: Mapping[str, Any]) -> str:
    """The terms digest a web page's purchase commits to, as 0x-prefixed hex.

    Args:
        manifest: The manifest of the model's latest version, which the page shows.

    Returns:
        The digest of its card's licence terms; 32 zero bytes when it states none.
    """
    terms = manifest_terms(manifest)
    return "0x" + (terms_digest(terms) if terms is not None else bytes(32)).hex()
