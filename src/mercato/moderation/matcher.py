# SPDX-License-Identifier: AGPL-3.0-only
"""Deciding whether a model or a CID is denied, from rules in precedence order.

The last rule that matches wins, within a list and across lists (later lists win), as
IPIP-383 says: an allow rule (`!rule`) after a deny rule lets the item through again,
and a deny rule after an allow rule blocks it again. Lookups are by key (a multihash,
a double hash, a model id, an address), so a list of a million rules answers in the
time of a few dictionary reads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from eth_utils import to_checksum_address
from multiformats import CID

from mercato.moderation.denylist import Rule, RuleKind, b58_multihash, double_hashes


@dataclass(frozen=True)
class Decision:
    """A matching deny rule, and the list it came from."""

    rule: Rule
    source: str  # "local", a subscription's URL or CID, or "reports"

    @property
    def reason(self) -> str:
        return self.rule.reason


class Matcher:
    """Rules indexed for lookup; `rules` are given lowest precedence first."""

    def __init__(self, rules: Iterable[tuple[Rule, str]]) -> None:
        self._keyed: dict[tuple[RuleKind, str], tuple[int, Rule, str]] = {}
        self._paths: dict[str, list[tuple[int, Rule, str]]] = defaultdict(list)
        self.count = 0
        for position, (rule, source) in enumerate(rules):
            self.count += 1
            entry = (position, rule, source)
            if rule.kind is RuleKind.CID_PATH:
                self._paths[rule.key].append(entry)
            else:
                # A later rule with the same key replaces the earlier: it wins anyway.
                self._keyed[(rule.kind, rule.key)] = entry

    def _cid_matches(self, cid: CID) -> list[tuple[int, Rule, str]]:
        found = []
        mh = b58_multihash(cid)
        if (hit := self._keyed.get((RuleKind.CID, mh))) is not None:
            found.append(hit)
        # A prefix rule with an empty path (`/ipfs/CID/*`) covers the CID itself; this
        # gateway serves no paths under a CID, so other path rules never match here.
        found.extend(e for e in self._paths.get(mh, ()) if e[1].prefix or not e[1].path)
        for key in double_hashes(cid):
            if (hit := self._keyed.get((RuleKind.DOUBLE_HASH, key))) is not None:
                found.append(hit)
        return found

    @staticmethod
    def _winner(found: list[tuple[int, Rule, str]]) -> Decision | None:
        if not found:
            return None
        _, rule, source = max(found, key=lambda entry: entry[0])
        return None if rule.allow else Decision(rule, source)

    def check_cid(self, cid: CID) -> Decision | None:
        """The deny decision for a CID (by multihash, `/ipfs/CID/*`, or double hash).

        Args:
            cid: The CID.

        Returns:
            The rule that denies it, or None when it may be served.
        """
        return self._winner(self._cid_matches(cid))

    def check_model(
        self, model_id: int, creator: str | None = None, cids: Iterable[CID] = ()
    ) -> Decision | None:
        """The deny decision for a model: by id, by its creator, or by any of its CIDs.

        Args:
            model_id: The model.
            creator: The address that minted it (checksummed), when known.
            cids: Its versions' artifact and manifest CIDs.

        Returns:
            The rule that denies it, or None when it may be served.
        """
        found = []
        if (hit := self._keyed.get((RuleKind.MODEL, str(model_id)))) is not None:
            found.append(hit)
        creator_key = to_checksum_address(creator) if creator else ""
        if creator_key and (hit := self._keyed.get((RuleKind.CREATOR, creator_key))) is not None:
            found.append(hit)
        for cid in cids:
            found.extend(self._cid_matches(cid))
        return self._winner(found)

    def allowed_model(self, model_id: int) -> bool:
        """Whether the last rule naming this model id is an allow rule."""
        hit = self._keyed.get((RuleKind.MODEL, str(model_id)))
        return hit is not None and hit[1].allow

    def denied_model_ids(self) -> set[int]:
        """The model ids that deny rules name directly."""
        return {
            int(rule.key)
            for (kind, _), (_, rule, _) in self._keyed.items()
            if kind is RuleKind.MODEL and not rule.allow
        }

    def denied_creators(self) -> set[str]:
        """The creator addresses that deny rules name."""
        return {
            rule.key
            for (kind, _), (_, rule, _) in self._keyed.items()
            if kind is RuleKind.CREATOR and not rule.allow
        }

    @property
    def has_content_rules(self) -> bool:
        """Whether any rule names content (a CID, a path under one, a double hash)."""
        return bool(self._paths) or any(
            kind in (RuleKind.CID, RuleKind.DOUBLE_HASH) for kind, _ in self._keyed
        )
