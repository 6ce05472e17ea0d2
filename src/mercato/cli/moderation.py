# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato moderation ...`: what this node refuses to serve.

The lists live in `<data dir>/moderation/` as IPFS compact denylists (IPIP-383); a
running node picks up every change at its next request. Nothing here touches the chain
or any other node: other nodes serve what they choose, and the chain keeps the record.
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mercato.cli.app import app
from mercato.cli.common import (
    AccountOption,
    DataDirOption,
    JsonOption,
    PasswordFileOption,
    RpcUrlOption,
    console,
    open_market,
)
from mercato.cli.errors import handles_errors
from mercato.config import Settings, load_settings
from mercato.moderation.lists import NodeDenylists, Subscription, describe

moderation_app = typer.Typer(
    help="Deny or allow models, creators and CIDs on this node; subscribe to shared denylists.",
    no_args_is_help=True,
)
app.add_typer(moderation_app, name="moderation")

TargetArgument = Annotated[
    str,
    typer.Argument(help="A model id (42), a creator address (0x...) or a CID (bafy..., Qm...)."),
]
SourceArgument = Annotated[
    str, typer.Argument(help="An http(s) URL of a .deny list, or its CID (bafy..., ipfs://...).")
]


def _lists(data_dir: Any) -> tuple[Settings, NodeDenylists]:
    settings = load_settings(data_dir=data_dir)
    return settings, NodeDenylists(settings.data_dir)


def _fetcher(settings: Settings, gateway: str | None) -> Any:
    from mercato.moderation.sources import list_fetcher
    from mercato.storage.blockstore import Blockstore
    from mercato.storage.remote import FetchPolicy

    # Private addresses are fetched from only when this data directory runs its own
    # local chain (no RPC URL set), as the node's own policy allows.
    policy = FetchPolicy.from_settings(
        local_chain=settings.rpc_url is None, allow=settings.fetch_allow_networks
    )
    return list_fetcher(
        policy, Blockstore(settings.store_dir), gateway or settings.moderation_gateway
    )


def _subscription_dict(s: Subscription) -> dict[str, Any]:
    return {
        "source": s.source,
        "rules": s.rules,
        "skipped_lines": s.skipped_lines,
        "refreshed_at": s.refreshed_at,
        "error": s.error or None,
    }


@moderation_app.command("deny")
@handles_errors
def deny(
    target: TargetArgument,
    reason: Annotated[
        str, typer.Option(help="Why; shown in this node's answers (HTTP 410) and lists.")
    ] = "",
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Stop serving a model, every model of a creator, or a CID on this node."""
    _, lists = _lists(data_dir)
    rule = lists.deny(target, reason)
    if json_output:
        typer.echo(json.dumps({"denied": describe(rule), "reason": rule.reason}))
        return
    console.print(
        escape(f"Denied {describe(rule)} on this node{': ' + rule.reason if rule.reason else ''}.")
    )


@moderation_app.command("allow")
@handles_errors
def allow(
    target: TargetArgument, data_dir: DataDirOption = None, json_output: JsonOption = False
) -> None:
    """Serve a model, creator or CID whatever subscribed lists or reports say."""
    _, lists = _lists(data_dir)
    rule = lists.allow(target)
    if json_output:
        typer.echo(json.dumps({"allowed": describe(rule)}))
        return
    console.print(f"Allowed {escape(describe(rule))} on this node, whatever lists or reports say.")


@moderation_app.command("forget")
@handles_errors
def forget(
    target: TargetArgument, data_dir: DataDirOption = None, json_output: JsonOption = False
) -> None:
    """Drop this node's own rule for a target; subscribed lists and reports decide again."""
    _, lists = _lists(data_dir)
    dropped = lists.forget(target)
    if json_output:
        typer.echo(json.dumps({"forgotten": dropped}))
        return
    console.print(
        f"Dropped this node's rule for {escape(target)}."
        if dropped
        else f"This node had no rule of its own for {escape(target)}."
    )


@moderation_app.command("list")
@handles_errors
def list_rules(data_dir: DataDirOption = None, json_output: JsonOption = False) -> None:
    """Show this node's rules, where each comes from, and its subscriptions."""
    _, lists = _lists(data_dir)
    rules = lists.rules()
    subscriptions = lists.subscriptions()
    if json_output:
        payload = {
            "rules": [
                {
                    "target": describe(rule),
                    "kind": rule.kind.value,
                    "action": "allow" if rule.allow else "deny",
                    "reason": rule.reason,
                    "source": source,
                }
                for source, rule in rules
            ],
            "subscriptions": [_subscription_dict(s) for s in subscriptions],
        }
        typer.echo(json.dumps(payload))
        return
    table = Table("target", "action", "reason", "from", title="Rules (the last that matches wins)")
    for source, rule in rules[-200:]:
        # Reasons and sources come from lists others publish: never read as markup.
        table.add_row(
            escape(describe(rule)),
            "allow" if rule.allow else "deny",
            escape(rule.reason),
            escape(source),
        )
    console.print(table if rules else "No rules: this node serves every model it can.")
    if len(rules) > 200:
        console.print(f"(the last 200 of {len(rules)} rules; --json lists all)")
    for s in subscriptions:
        state = f"error: {s.error}" if s.error else f"{s.rules} rules"
        console.print(f"subscribed: {escape(s.source)} ({escape(state)})", highlight=False)


@moderation_app.command("subscribe")
@handles_errors
def subscribe(
    source: SourceArgument,
    gateway: Annotated[
        str | None,
        typer.Option(help="IPFS gateway to fetch a list given by CID from (when not stored here)."),
    ] = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Follow a published denylist; the node refreshes it every moderation_refresh_seconds."""
    settings, lists = _lists(data_dir)
    subscription = lists.subscribe(source, _fetcher(settings, gateway))
    if json_output:
        typer.echo(json.dumps(_subscription_dict(subscription)))
        return
    skipped = f", {subscription.skipped_lines} unreadable lines skipped" * bool(
        subscription.skipped_lines
    )
    console.print(
        escape(f"Subscribed to {subscription.source}: {subscription.rules} rules{skipped}."),
        highlight=False,
    )


@moderation_app.command("unsubscribe")
@handles_errors
def unsubscribe(
    source: SourceArgument, data_dir: DataDirOption = None, json_output: JsonOption = False
) -> None:
    """Stop following a denylist and drop its rules."""
    _, lists = _lists(data_dir)
    lists.unsubscribe(source)
    if json_output:
        typer.echo(json.dumps({"unsubscribed": source}))
        return
    console.print(f"Unsubscribed from {escape(source)}.", highlight=False)


@moderation_app.command("refresh")
@handles_errors
def refresh(
    gateway: Annotated[
        str | None, typer.Option(help="IPFS gateway for lists given by CID.")
    ] = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Read every subscribed list again now (a failure keeps the last good copy)."""
    settings, lists = _lists(data_dir)
    subscriptions = lists.refresh(_fetcher(settings, gateway))
    if json_output:
        typer.echo(json.dumps([_subscription_dict(s) for s in subscriptions]))
        return
    for s in subscriptions:
        state = f"kept the last copy: {s.error}" if s.error else f"{s.rules} rules"
        console.print(f"{escape(s.source)}: {escape(state)}", highlight=False)


class Reason(enum.StrEnum):
    """Reason codes of the reports contract, by name."""

    illegal_content = "illegal-content"
    malware = "malware"
    license_violation = "license-violation"
    personal_data = "personal-data"
    other = "other"


@moderation_app.command("report")
@handles_errors
def report(
    model_id: Annotated[int, typer.Argument(help="The model.", min=0)],
    reason: Annotated[Reason, typer.Argument(help="Why.")],
    evidence: Annotated[
        str | None, typer.Option(help="CID of the evidence (only its digest goes on-chain).")
    ] = None,
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
    json_output: JsonOption = False,
) -> None:
    """File a report on a model on-chain; each node's operator decides what it means."""
    from mercato.chain.contracts import ReportReason
    from mercato.client.reports import file_report
    from mercato.storage.cids import parse_cid

    evidence_cid = parse_cid(evidence) if evidence else None
    market = open_market(data_dir, rpc_url, account, password_file)
    code = ReportReason[reason.name.upper()]
    tx_hash = file_report(market, model_id, code, evidence_cid)
    if json_output:
        typer.echo(json.dumps({"model_id": model_id, "reason": reason.value, "tx_hash": tx_hash}))
        return
    console.print(f"Model {model_id}: reported ({reason.value}) in {tx_hash}.", highlight=False)
