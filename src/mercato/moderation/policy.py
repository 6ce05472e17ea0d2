# SPDX-License-Identifier: AGPL-3.0-only
"""What this node serves: its denylists, plus the reports its operator chose to heed.

`ModerationPolicy` answers one question for every route that serves a model or a CID:
is it denied here, and why? A model is denied by its id, by the address that minted
it, by any of its versions' artifact or manifest CIDs, or — when the node's
`moderation_report_threshold` is set — by reports from at least that many distinct
accounts that held a license of it. A CID is denied by itself, or by the model that
names it. Only this node is affected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from multiformats import CID
from sqlalchemy import select

from mercato.index import schema as s
from mercato.index.reports import license_holder_reports
from mercato.index.store import Index
from mercato.moderation.denylist import Rule, RuleKind, model_anchor
from mercato.moderation.lists import NodeDenylists
from mercato.moderation.matcher import Decision

REPORTS_SOURCE = "reports"
REPORTS_TTL = 2.0  # seconds the reported-models answer is reused (one query, all models)
_SHA256_DAG_PB_V0 = (0, 0x70, 0x12)

ModelsNaming = Callable[[CID], Iterable[int]]
"""The ids of the models whose versions name a CID (as artifact or manifest)."""


def _cid_of_digest(hex_digest: str) -> CID:
    # Versions commit to sha2-256 digests of CIDv0 (dag-pb) roots.
    return CID("base58btc", 0, "dag-pb", ("sha2-256", bytes.fromhex(hex_digest)))


class ModerationPolicy:
    """The node's moderation decisions, from its lists and (optionally) reports."""

    def __init__(
        self,
        denylists: NodeDenylists,
        index: Index | None = None,
        *,
        report_threshold: int = 0,
        models_naming: ModelsNaming | None = None,
    ) -> None:
        """Args:
        denylists: The node's lists.
        index: The index, for a model's creator, CIDs and reports (None: lists only).
        report_threshold: Deny a model reported by at least this many distinct license
            holders; 0 turns reports off.
        models_naming: Finds the models that name a CID, for `/ipfs/` requests.
        """
        self.denylists = denylists
        self.index = index
        self.report_threshold = report_threshold
        self.models_naming = models_naming
        self._reported: dict[int, int] = {}
        self._reported_at = float("-inf")
        self._denied: frozenset[int] = frozenset()
        self._denied_for: object = None
        self._denied_at = float("-inf")
        self._lock = threading.Lock()

    def reported(self) -> dict[int, int]:
        """Models over the report threshold -> distinct reporting license holders."""
        if self.index is None or self.report_threshold <= 0:
            return {}
        with self._lock:
            if time.monotonic() - self._reported_at > REPORTS_TTL:
                self._reported = license_holder_reports(self.index, self.report_threshold)
                self._reported_at = time.monotonic()
            return self._reported

    def _model_facts(self, model_id: int) -> tuple[str | None, list[CID]]:
        if self.index is None:
            return None, []
        with self.index.engine.connect() as conn:
            creator = conn.execute(
                select(s.Model.creator).where(s.Model.model_id == model_id)
            ).scalar_one_or_none()
            rows = conn.execute(
                select(s.Version.artifact_cid_digest, s.Version.manifest_cid_digest).where(
                    s.Version.model_id == model_id
                )
            ).all()
        return creator, [_cid_of_digest(d) for row in rows for d in row]

    def check_model(self, model_id: int) -> Decision | None:
        """Whether this node denies a model, and by which rule.

        Args:
            model_id: The model.

        Returns:
            The deciding rule, or None when the node serves it.

        Raises:
            ModerationError: A list cannot be read.
        """
        creator, cids = self._model_facts(model_id)
        decision = self.denylists.matcher().check_model(model_id, creator, cids)
        if decision is not None:
            return decision
        holders = self.reported().get(model_id)
        if holders is None:
            return None
        reason = f"reported by {holders} license holders"
        rule = Rule(
            RuleKind.MODEL,
            str(model_id),
            hints={"reason": reason},
            raw="//" + model_anchor(model_id),
        )
        # An operator's allow rule for the model still wins over the reports.
        allowed = self.denylists.matcher().allowed_model(model_id)
        return None if allowed else Decision(rule, REPORTS_SOURCE)

    def check_cid(self, cid: CID) -> Decision | None:
        """Whether this node denies a CID: by the lists, or through a model naming it.

        Args:
            cid: The CID.

        Returns:
            The deciding rule, or None when the node serves it.
        """
        matcher = self.denylists.matcher()
        decision = matcher.check_cid(cid)
        if decision is not None or self.models_naming is None:
            return decision
        if matcher.count == 0 and not self.reported():
            return None  # nothing could deny the model naming it: spare the lookup
        for model_id in self.models_naming(cid):
            decision = self.check_model(model_id)
            if decision is not None:
                return decision
        return None

    def denied_ids(self) -> frozenset[int]:
        """Every model this node denies, for search to leave out.

        Reused for `REPORTS_TTL` seconds while the lists are unchanged. Models named by
        id or creator are found by key; content rules (CIDs, double hashes) are checked
        against every indexed version, so a node with such rules pays one scan of the
        versions table per refresh.
        """
        matcher = self.denylists.matcher()
        with self._lock:
            fresh = time.monotonic() - self._denied_at <= REPORTS_TTL
            if fresh and self._denied_for is matcher:
                return self._denied
        candidates = matcher.denied_model_ids() | set(self.reported())
        if self.index is not None:
            with self.index.engine.connect() as conn:
                creators = matcher.denied_creators()
                if creators:
                    candidates |= set(
                        conn.execute(
                            select(s.Model.model_id).where(s.Model.creator.in_(creators))
                        ).scalars()
                    )
                if matcher.has_content_rules:
                    rows = conn.execute(
                        select(
                            s.Version.model_id,
                            s.Version.artifact_cid_digest,
                            s.Version.manifest_cid_digest,
                        )
                    )
                    for model_id, artifact, manifest in rows:
                        if model_id in candidates:
                            continue
                        for digest in (artifact, manifest):
                            if matcher.check_cid(_cid_of_digest(digest)) is not None:
                                candidates.add(model_id)
                                break
        denied = frozenset(m for m in candidates if self.check_model(m) is not None)
        with self._lock:
            self._denied, self._denied_for, self._denied_at = denied, matcher, time.monotonic()
        return denied

    def denied_models(self, model_ids: Iterable[int]) -> dict[int, Decision]:
        """The models among `model_ids` this node denies."""
        found = {}
        for model_id in model_ids:
            decision = self.check_model(model_id)
            if decision is not None:
                found[model_id] = decision
        return found
