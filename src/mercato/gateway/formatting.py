# SPDX-License-Identifier: AGPL-3.0-only
"""How the web pages write things people read: amounts, times, shapes, card text.

Every function here is a Jinja filter (registered in `mercato.gateway.web`) or feeds
one; they take plain values and return text (or escaped markup), so they are tested
without a server.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from typing import Any

from markupsafe import Markup

TOKEN = Decimal(10**18)
SUMMARY_CHARS = 160
_MARKDOWN_MARKS = re.compile(r"[`*_]+|\[([^\]]*)\]\([^)]*\)")


def mct(amount: int | str) -> str:
    """Base units as a short MCT amount: 5000000000000000000 -> '5 MCT'."""
    value = Decimal(int(amount)) / TOKEN
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{text} MCT"


def span(seconds: int) -> str:
    """A length of time in the largest whole-ish unit: 86400 -> '1 day', 5400 -> '1.5 hours'."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            value = round(seconds / size, 1)
            return f"{value:g} {unit}{'' if value == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def duration(seconds: int) -> str:
    """A license length in words (0 is a perpetual license)."""
    return "perpetual" if seconds == 0 else span(seconds)


def ago(timestamp: int, now: float | None = None) -> str:
    """How long before `now` a Unix time was, in words: '3 minutes ago', 'in 2 hours'."""
    delta = int((time.time() if now is None else now) - timestamp)
    if abs(delta) < 45:
        return "just now"
    words = _round_span(abs(delta))
    return f"{words} ago" if delta > 0 else f"in {words}"


def _round_span(seconds: int) -> str:
    for unit, size in (("year", 365 * 86_400), ("day", 86_400), ("hour", 3_600)):
        if seconds >= size:
            value = round(seconds / size)
            return f"{value} {unit}{'' if value == 1 else 's'}"
    value = max(1, round(seconds / 60))
    return f"{value} minute{'' if value == 1 else 's'}"


def when(timestamp: int | None, now: float | None = None) -> Markup:
    """A point in time as a `<time>` element: the UTC date and time, then how long ago.

    The browser bundle rewrites the date into the reader's local time zone; without
    JavaScript the UTC text stays. None (a block the index has no time for) prints a dash.
    """
    if timestamp is None:
        return Markup('<span class="muted">\N{EN DASH}</span>')
    moment = datetime.fromtimestamp(int(timestamp), UTC)
    return Markup(
        f'<time datetime="{moment.isoformat().replace("+00:00", "Z")}" class="when">'
        f'<span class="date">{moment:%d %b %Y, %H:%M} UTC</span> '
        f'<span class="ago">({escape(ago(int(timestamp), now))})</span></time>'
    )


def short(address: str | None) -> str:
    """0x1234…abcd."""
    return f"{address[:6]}…{address[-4:]}" if address else ""


def shape(dims: Any) -> str:
    """A tensor shape as people write it: ['N', 4] -> 'N x 4' (a multiplication sign)."""
    if not isinstance(dims, list | tuple):
        return "any" if dims is None else str(dims)
    if not dims:
        return "scalar"
    return " \N{MULTIPLICATION SIGN} ".join("?" if d is None or d == -1 else str(d) for d in dims)


def card_body(text: str, name: str | None) -> str:
    """A card's free text without a leading heading that only repeats the model's name."""
    lines = text.lstrip().splitlines()
    if lines and name and lines[0].lstrip("#").strip().lower() == name.lower():
        lines = lines[1:]
    return "\n".join(lines).strip()


def summary_line(text: str, name: str | None) -> str:
    """The first paragraph of a card as one plain line, for a search result card."""
    for paragraph in re.split(r"\n\s*\n", card_body(text, name)):
        plain = " ".join(paragraph.split())
        if plain and not plain.startswith(("#", "|", "```", "---")):
            plain = _MARKDOWN_MARKS.sub(lambda m: m.group(1) or "", plain)
            if len(plain) > SUMMARY_CHARS:
                plain = plain[: SUMMARY_CHARS - 1].rsplit(" ", 1)[0] + "…"
            return plain
    return ""


def card_text(manifest: Mapping[str, Any] | None) -> str:
    """The card's own free text from a manifest (never the datasets and metrics the index
    appends to its search text)."""
    if not manifest:
        return ""
    card = manifest.get("card")
    for value in (
        card.get("text") if isinstance(card, Mapping) else None,
        card.get("description") if isinstance(card, Mapping) else None,
        manifest.get("description"),
    ):
        if isinstance(value, str) and value.strip():
            return value
    return ""


def base_model_links(
    names: Iterable[Any], parents: Mapping[str, int]
) -> list[tuple[str, int | None]]:
    """Each `base_model` entry of a card with the parent model it names, when recorded.

    Args:
        names: The card's base_model entries (free text, chosen by the creator).
        parents: Name -> id of the parent models the chain records for this model. Only
            on-chain lineage makes a link; a card cannot point a link anywhere else.

    Returns:
        (name, parent id or None) pairs, in the card's order.
    """
    out = []
    for raw in names if isinstance(names, list | tuple) else [names]:
        name = str(raw)
        tail = name.rsplit("/", 1)[-1]  # "org/name" on the Hub: the name part matches
        out.append((name, parents.get(name, parents.get(tail))))
    return out
