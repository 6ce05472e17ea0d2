# SPDX-License-Identifier: AGPL-3.0-only
"""What a buyer agrees to and must read: a card's licence terms and required sections.

Both read a parsed `ModelCard` or the `card` mapping of a manifest (perhaps another
node's, so read defensively); `mercato.models.card` re-exports them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from mercato.errors import CardSectionsMissingError
from mercato.models.hub_fields import is_package_path, is_web_link
from mercato.models.licenses import OTHER, hub_license, spdx_link
from mercato.models.sections import missing_sections

if TYPE_CHECKING:
    from mercato.models.card import ModelCard

CardLike: TypeAlias = "ModelCard | Mapping[str, Any]"


@dataclass(frozen=True)
class LicenseTerms:
    """The licence terms a card names: what a buyer agrees to.

    Attributes:
        id: The licence id as the Hub writes it (`apache-2.0`, `llama3.1`, `other`), or
            the SPDX expression (`MIT OR Apache-2.0`).
        name: Its name (`Apache license 2.0`; the card's `license_name` for `other`).
        link: Where its text is: an http(s) address, a file of the package, or None.
        text: A custom licence's own text (`other` with a licence file), else "".
    """

    id: str
    name: str
    link: str | None
    text: str = ""

    def canonical_bytes(self) -> bytes:
        """The terms as bytes that are the same wherever they are computed.

        Returns:
            UTF-8 JSON of `id`, `link`, `name` and `text`, keys sorted, no spaces.
        """
        document = {"id": self.id, "link": self.link, "name": self.name, "text": self.text}
        return json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")


def _card_value(card: CardLike, key: str) -> str | None:
    value = card.get(key) if isinstance(card, Mapping) else getattr(card, key, None)
    return value if isinstance(value, str) and value.strip() else None


def license_terms(card: CardLike) -> LicenseTerms:
    """The licence terms of a card, or of a manifest's `card` (perhaps another node's).

    A licence the Hub documents is named and linked from Mercato's own table, whatever
    the card says, so a card cannot show a well-known name over other terms; only
    `other` takes the card's `license_name`, `license_link` and licence text.

    Args:
        card: A parsed card, or the `card` mapping of a manifest.

    Returns:
        The terms; spelled one way (`Apache-2.0` and `apache-2.0` give the same bytes).
    """
    written = _card_value(card, "license") or "unknown"
    known = hub_license(written)
    if known is not None and known.id != OTHER:
        return LicenseTerms(known.id, known.name, known.link)
    if known is not None:  # other: the card's own licence
        name = _card_value(card, "license_name") or "Other"
        link = _card_value(card, "license_link")
        if link is not None and not (is_web_link(link) or is_package_path(link)):
            link = None  # a manifest from elsewhere may hold anything
        return LicenseTerms(OTHER, name, link, _card_value(card, "license_text") or "")
    # An SPDX expression: one id has its SPDX page, a compound one has none.
    single = written if " " not in written.strip() and "(" not in written else None
    return LicenseTerms(written, written, spdx_link(single) if single else None)


def require_buyer_sections(card: CardLike, *, path: str = "", model_id: int | None = None) -> None:
    """Refuse a paid listing whose card does not tell buyers its uses and limitations.

    Args:
        card: A parsed card, or the `card` mapping of a published manifest.
        path: The card's path, for the error.
        model_id: The model, when it is published already.

    Raises:
        CardSectionsMissingError: intended uses or limitations are missing or empty.
    """
    text = _card_value(card, "text")
    missing = missing_sections(text or "")
    if missing:
        raise CardSectionsMissingError(missing, path=path, model_id=model_id)
