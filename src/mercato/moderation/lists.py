# SPDX-License-Identifier: AGPL-3.0-only
"""A node's denylists on disk: the operator's own list and the lists it subscribes to.

    <data dir>/moderation/
    ├── local.deny             the operator's rules ('mercato moderation deny|allow')
    ├── subscriptions.json     subscribed sources (URL or CID), in the order added
    └── subscriptions/
        └── <sha256 of source>.deny   the last copy of each list that parsed whole

Every file is an IPIP-383 compact denylist that kubo or NOpfs can also read. Lists
apply in order: the subscriptions first, as added, then `local.deny`, so the
operator's own allow rule (`!rule`) overrides a subscribed deny. A subscription
refresh replaces its copy only when the new list parsed within the limits; a failed
refresh keeps the last good copy and records the error.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from eth_utils import is_address
from multiformats import CID

from mercato.errors import (
    DenylistFormatError,
    MercatoError,
    ModerationError,
    ModerationTargetError,
    SubscriptionNotFoundError,
)
from mercato.fsutil import atomic_write_bytes
from mercato.moderation.denylist import (
    MAX_REASON_CHARS,
    Denylist,
    Rule,
    RuleKind,
    b58_multihash,
    cid_rule,
    creator_rule,
    dump,
    model_rule,
    parse,
)
from mercato.moderation.matcher import Matcher

LOCAL_SOURCE = "local"
MAX_SUBSCRIPTIONS = 32  # each is read whole into memory; a node needs a handful
LOCAL_HEADER = {
    "version": 1,
    "name": "Mercato node denylist",
    "description": "Rules this node's operator set with 'mercato moderation'.",
}

Fetcher = Callable[[str], bytes]
"""Reads a subscription's source (a URL or a CID) into bytes, within the list limits."""


@dataclass
class Subscription:
    source: str
    added_at: int
    refreshed_at: int = 0
    rules: int = 0
    skipped_lines: int = 0
    error: str = ""


def parse_target(target: str, reason: str = "", *, allow: bool = False) -> Rule:
    """The rule for what an operator names: a model id, a creator address or a CID.

    Args:
        target: "42", "0xAbC...", or "bafy..." / "Qm..." (optionally `/ipfs/`-prefixed).
        reason: Why, stored as the rule's `reason` hint.
        allow: Make it an allow rule.

    Returns:
        The rule.

    Raises:
        ModerationTargetError: `target` is none of those.
    """
    text = target.strip()
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS]
    if text.isdigit() and len(text) <= 78:
        return model_rule(int(text), reason, allow=allow)
    if is_address(text):
        return creator_rule(text, reason, allow=allow)
    try:
        return cid_rule(text.removeprefix("/ipfs/").removeprefix("ipfs://"), reason, allow=allow)
    except DenylistFormatError as exc:
        raise ModerationTargetError(target) from exc


def _same_target(a: Rule, b: Rule) -> bool:
    return (a.kind, a.key) == (b.kind, b.key)


class NodeDenylists:
    """The denylists of one data directory, reloaded when their files change."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "moderation"
        self.local_path = self.root / "local.deny"
        self.subscriptions_path = self.root / "subscriptions.json"
        self._stamp: tuple[tuple[int, int], ...] | None = None
        self._matcher = Matcher(())

    # --- reading ---------------------------------------------------------------------

    def _copy_path(self, source: str) -> Path:
        return self.root / "subscriptions" / f"{hashlib.sha256(source.encode()).hexdigest()}.deny"

    def subscriptions(self) -> list[Subscription]:
        """The subscriptions, in the order they were added.

        Raises:
            ModerationError: The subscriptions file is damaged.
        """
        if not self.subscriptions_path.exists():
            return []
        try:
            return [
                Subscription(**entry) for entry in json.loads(self.subscriptions_path.read_text())
            ]
        except (OSError, ValueError, TypeError) as exc:
            raise ModerationError(
                f"{self.subscriptions_path} is damaged ({exc}); remove it and subscribe again."
            ) from exc

    def local(self) -> Denylist:
        """The operator's own list (empty when there is none yet).

        Raises:
            DenylistFormatError, DenylistTooLargeError: The file cannot be read as a list.
        """
        if not self.local_path.exists():
            return Denylist(header=dict(LOCAL_HEADER))
        return parse(self.local_path.read_bytes())

    def _lists(self) -> list[tuple[str, Denylist]]:
        lists = []
        for subscription in self.subscriptions():
            path = self._copy_path(subscription.source)
            if path.exists():
                lists.append((subscription.source, parse(path.read_bytes())))
        lists.append((LOCAL_SOURCE, self.local()))
        return lists

    def stamp(self) -> tuple[tuple[int, int], ...]:
        """Each list file's modification time and size; writing a list changes it.

        Checked on every request: stat calls only, no file is read.
        """
        paths = [self.subscriptions_path, self.local_path]
        copies = self.root / "subscriptions"
        if copies.is_dir():
            paths.extend(sorted(copies.iterdir()))
        stamp = []
        for path in paths:
            try:
                info = path.stat()
                stamp.append((info.st_mtime_ns, info.st_size))
            except FileNotFoundError:
                stamp.append((0, -1))
        return tuple(stamp)

    def matcher(self) -> Matcher:
        """The rules of every list, reloaded when a file changed since the last call.

        Raises:
            ModerationError: A list or the subscriptions file cannot be read.
        """
        stamp = self.stamp()
        if stamp != self._stamp:
            self._matcher = Matcher(
                (rule, source) for source, denylist in self._lists() for rule in denylist.rules
            )
            self._stamp = stamp
        return self._matcher

    def rules(self) -> list[tuple[str, Rule]]:
        """Every rule with the list it comes from, in precedence order (last wins)."""
        return [(source, rule) for source, denylist in self._lists() for rule in denylist.rules]

    # --- the operator's list ---------------------------------------------------------

    def _save_local(self, denylist: Denylist) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.local_path, dump(denylist))

    def deny(self, target: str, reason: str = "") -> Rule:
        """Adds a deny rule to the operator's list (replacing its rules for the same target).

        Args:
            target: A model id, a creator address or a CID.
            reason: Why; shown in the node's 410 answers.

        Returns:
            The rule added.

        Raises:
            ModerationTargetError: `target` is not a model id, address or CID.
        """
        rule = parse_target(target, reason)
        denylist = self.local()
        denylist.rules = [r for r in denylist.rules if not _same_target(r, rule)] + [rule]
        self._save_local(denylist)
        return rule

    def allow(self, target: str) -> Rule:
        """Serves a target whatever the subscribed lists or reports say: replaces the
        operator's rules for it with an allow rule (`!rule`), which comes last and so
        wins (`deny` replaces it again).

        Args:
            target: A model id, a creator address or a CID.

        Returns:
            The allow rule.

        Raises:
            ModerationTargetError: `target` is not a model id, address or CID.
        """
        allow_rule = parse_target(target, allow=True)
        denylist = self.local()
        denylist.rules = [r for r in denylist.rules if not _same_target(r, allow_rule)]
        denylist.rules.append(allow_rule)
        self._save_local(denylist)
        return allow_rule

    def forget(self, target: str) -> bool:
        """Drops the operator's own rules for a target (deny or allow), leaving the
        subscribed lists and reports to decide.

        Returns:
            Whether there was a rule to drop.

        Raises:
            ModerationTargetError: `target` is not a model id, address or CID.
        """
        rule = parse_target(target)
        denylist = self.local()
        kept = [r for r in denylist.rules if not _same_target(r, rule)]
        if len(kept) == len(denylist.rules):
            return False
        denylist.rules = kept
        self._save_local(denylist)
        return True

    # --- subscriptions ---------------------------------------------------------------

    def _save_subscriptions(self, subscriptions: list[Subscription]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = json.dumps([asdict(s) for s in subscriptions], indent=1) + "\n"
        atomic_write_bytes(self.subscriptions_path, data.encode())

    def subscribe(self, source: str, fetch: Fetcher) -> Subscription:
        """Subscribes to a published list and reads it now.

        Args:
            source: An http(s) URL, or a CID (`bafy...`, `ipfs://bafy...`).
            fetch: Reads the source within the list limits.

        Returns:
            The subscription, refreshed.

        Raises:
            ModerationError: The node already has `MAX_SUBSCRIPTIONS` subscriptions.
            DenylistFormatError, DenylistTooLargeError: The list cannot be used; the
                subscription is not kept.
            StorageError: The source cannot be read (UnsafeURLError, FetchTooLargeError,
                StorageBackendError, BlockNotFoundError); the subscription is not kept.
        """
        source = normalize_source(source)
        subscriptions = self.subscriptions()
        existing = next((s for s in subscriptions if s.source == source), None)
        if existing is None and len(subscriptions) >= MAX_SUBSCRIPTIONS:
            raise ModerationError(
                f"This node already has {MAX_SUBSCRIPTIONS} denylist subscriptions; "
                "unsubscribe from one first."
            )
        subscription = existing or Subscription(source=source, added_at=int(time.time()))
        self._refresh_one(subscription, fetch, keep_on_error=False)
        if existing is None:
            subscriptions.append(subscription)
        self._save_subscriptions(subscriptions)
        return subscription

    def unsubscribe(self, source: str) -> None:
        """Drops a subscription and its copy.

        Raises:
            SubscriptionNotFoundError: There is no such subscription.
        """
        source = normalize_source(source)
        subscriptions = self.subscriptions()
        kept = [s for s in subscriptions if s.source != source]
        if len(kept) == len(subscriptions):
            raise SubscriptionNotFoundError(source)
        self._save_subscriptions(kept)
        self._copy_path(source).unlink(missing_ok=True)

    def refresh(self, fetch: Fetcher) -> list[Subscription]:
        """Reads every subscribed list again; a failure keeps that list's last good copy.

        Args:
            fetch: Reads a source within the list limits.

        Returns:
            The subscriptions, each with its refresh time or last error.
        """
        subscriptions = self.subscriptions()
        for subscription in subscriptions:
            self._refresh_one(subscription, fetch, keep_on_error=True)
        self._save_subscriptions(subscriptions)
        return subscriptions

    def _refresh_one(
        self, subscription: Subscription, fetch: Fetcher, *, keep_on_error: bool
    ) -> None:
        try:
            data = fetch(subscription.source)
            denylist = parse(data)
        except MercatoError as exc:  # a list or fetch failure: keep the last good copy
            if not keep_on_error:
                raise
            subscription.error = str(exc)[:500]
            return
        path = self._copy_path(subscription.source)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
        subscription.refreshed_at = int(time.time())
        subscription.rules = len(denylist.rules)
        subscription.skipped_lines = denylist.error_count
        subscription.error = ""


def normalize_source(source: str) -> str:
    """A subscription's source as stored: the URL as given, or `ipfs://<CID>`.

    Raises:
        ModerationTargetError: Neither an http(s) URL nor a CID.
    """
    text = source.strip()
    if text.startswith(("http://", "https://")):
        return text
    bare = text.removeprefix("ipfs://").removeprefix("/ipfs/").strip("/")
    try:
        b58_multihash(bare)
        return f"ipfs://{CID.decode(bare)}"
    except (ValueError, KeyError) as exc:
        raise ModerationTargetError(source) from exc


def describe(rule: Rule) -> str:
    """What a rule names, for a person: "model 42", "creator 0x...", "/ipfs/bafy..."."""
    if rule.kind is RuleKind.MODEL:
        return f"model {rule.key}"
    if rule.kind is RuleKind.CREATOR:
        return f"creator {rule.key}"
    return rule.raw
