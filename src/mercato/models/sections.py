# SPDX-License-Identifier: AGPL-3.0-only
"""The sections of a model card a buyer must read before paying.

A paid listing's card must say what the model is for and where it fails, under the
headings the Hugging Face Hub's card template uses: `## Uses` (or its `### Direct Use`),
`## Bias, Risks, and Limitations`, or the single `## Intended uses & limitations` that
cards written by `transformers`' Trainer carry. A section counts when it holds text
other than the template's `[More Information Needed]` placeholder, its own or in its
sub-sections. Headings inside code blocks are not headings (the Markdown is parsed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markdown_it import MarkdownIt

INTENDED_USES = "intended uses"
LIMITATIONS = "limitations"
REQUIRED = (INTENDED_USES, LIMITATIONS)

_PLACEHOLDER = re.compile(r"\[more information needed\]|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_WORDS = re.compile(r"[^a-z&]+")
_PARSER = MarkdownIt("commonmark", {"html": False})


@dataclass(frozen=True)
class _Heading:
    level: int
    title: str
    start: int  # line where the heading is
    end: int  # line after it


def _headings(text: str) -> list[_Heading]:
    tokens = _PARSER.parse(text)
    found = []
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.map is not None:
            inline = tokens[index + 1]
            found.append(_Heading(int(token.tag[1]), inline.content, token.map[0], token.map[1]))
    return found


def _kinds(title: str) -> set[str]:
    words = _WORDS.sub(" ", title.lower().replace("[optional]", "")).split()
    heading = " ".join(words)
    kinds = set()
    if heading in ("uses", "use", "direct use") or "intended use" in heading:
        kinds.add(INTENDED_USES)
    if any(word.startswith("limitation") for word in words):
        kinds.add(LIMITATIONS)
    return kinds


def present_sections(text: str) -> set[str]:
    """Which of the buyer's sections a card's text has, with something written in them.

    Args:
        text: The card's Markdown (after the front matter).

    Returns:
        A subset of `REQUIRED`.
    """
    lines = text.splitlines()
    headings = _headings(text)
    present: set[str] = set()
    for i, heading in enumerate(headings):
        kinds = _kinds(heading.title) - present
        if not kinds:
            continue
        # The section runs to the next heading of the same or a higher level.
        end = next((h.start for h in headings[i + 1 :] if h.level <= heading.level), len(lines))
        body = "\n".join(
            line
            for n, line in enumerate(lines[heading.end : end], start=heading.end)
            if not any(h.start <= n < h.end for h in headings)  # sub-headings are not text
        )
        if _PLACEHOLDER.sub("", body).strip():
            present |= kinds
    return present


def missing_sections(text: str) -> tuple[str, ...]:
    """The buyer's sections a card's text lacks (or leaves empty), in `REQUIRED` order.

    Args:
        text: The card's Markdown (after the front matter).

    Returns:
        `intended uses`, `limitations`, both or neither.
    """
    present = present_sections(text)
    return tuple(name for name in REQUIRED if name not in present)
