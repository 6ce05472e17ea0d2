# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato node up`: run a Mercato node."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mercato.cli.app import app
from mercato.cli.common import (
    AccountOption,
    DataDirOption,
    PasswordFileOption,
    RpcUrlOption,
    console,
    format_tokens,
)
from mercato.cli.errors import handles_errors
from mercato.config import load_settings

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from mercato.chain.deployment import Deployment
    from mercato.config import Settings
    from mercato.node import Node

node_app = typer.Typer(help="Run a Mercato node.", no_args_is_help=True)
app.add_typer(node_app, name="node")


@node_app.command("up")
@handles_errors
def up(
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    port: Annotated[int | None, typer.Option(help="Loopback port of the local Anvil.")] = None,
    gateway_port: Annotated[
        int | None, typer.Option(help="Port of the node's HTTP gateway.")
    ] = None,
    provider_url: Annotated[
        str | None, typer.Option(help="The public URL buyers reach this gateway at.")
    ] = None,
    deployment: Annotated[
        Path | None, typer.Option(help="A deployment record to join an existing network.")
    ] = None,
    index_url: Annotated[
        str | None,
        typer.Option(
            help="SQLAlchemy URL of the index (postgresql://…); replicas sharing one "
            "PostgreSQL index elect one leader to follow the chain and deliver."
        ),
    ] = None,
    account: AccountOption = None,
    password_file: PasswordFileOption = None,
    demo: Annotated[
        bool,
        typer.Option(
            help="Sell from two demo creators and publish the sample models (local chains)."
        ),
    ] = False,
    setup_only: Annotated[
        bool, typer.Option(help="Set everything up, print the summary and exit.")
    ] = False,
) -> None:
    """Start (or connect to) the chain, deploy Mercato once, serve blocks and try calls,
    and deliver keys for the accounts this node sells from, until Ctrl-C.

    Restarting keeps every model, balance and order: the local chain's state, the
    deployment record, the store and the keys live in the data directory.
    """
    # Installed first, so a stop request during set-up still shuts Anvil down cleanly.
    stopped = _stop_requested()
    # Imported here: the node's stack takes seconds to import, and `--help` needs none of it.
    from mercato.chain.deployment import Deployment
    from mercato.node import Node, seed_demo, seed_demo_federation

    settings = load_settings(
        data_dir=data_dir,
        rpc_url=rpc_url,
        anvil_port=port,
        gateway_port=gateway_port,
        provider_url=provider_url,
        account=account,
        index_url=index_url,
    )
    if deployment is not None:
        _import_deployment(settings, Deployment.from_file(deployment))
    sellers = _seller_accounts(settings, account, password_file, demo)
    node = Node(settings, sellers)
    node.start()
    try:
        if demo and node.session is not None and node.session.is_local:
            with console.status("Publishing the demo models…"):
                published = seed_demo(node, sellers)
            if published:
                with console.status("Training the demo federated task…"):
                    seed_demo_federation(node, sellers)
        _print_summary(node, demo)
        if not setup_only:
            console.print("[green]ready[/green]: node is up; press Ctrl-C to stop.")
            stopped.wait()
    finally:
        node.stop()


def _seller_accounts(
    settings: Settings, account: str | None, password_file: Path | None, demo: bool
) -> list[LocalAccount]:
    from mercato.chain.session import demo_accounts
    from mercato.wallet import PasswordSource, Wallet

    if demo:
        return demo_accounts()[:2]  # the demo creators (public test keys)
    wallet = Wallet.from_settings(settings)
    if not wallet.list_accounts():
        logging.getLogger(__name__).warning("no wallet account: this node sells nothing")
        return []
    return [wallet.unlock(account, PasswordSource(password_file))]


def _import_deployment(settings: Settings, record: Deployment) -> None:
    from mercato.chain.deployment import deployment_path

    if not deployment_path(settings.data_dir, record.chain_id).exists():
        record.save(settings.data_dir)


def _print_summary(node: Node, demo: bool) -> None:
    from mercato.chain.session import demo_accounts
    from mercato.errors import rpc_origin

    session, market = node.session, node.market
    if session is None or market is None:
        return
    d = session.deployment
    state = "deployed now" if session.deployed_now else "reused from the deployment record"
    # Only the origin: hosted providers put the API key in the URL's path or query.
    console.print(f"chain {d.chain_id} at {rpc_origin(session.rpc_url)} · contracts {state}")
    console.print(f"data directory: {node.settings.data_dir}")
    console.print(f"gateway: {node.settings.public_url}")
    table = Table("contract", "address")
    for name in ("token", "model_registry", "marketplace", "reviews"):
        table.add_row(name, getattr(d, name))
    console.print(table)
    if node.accounts:
        console.print("selling from: " + ", ".join(a.address for a in node.accounts))
    if demo and session.is_local:
        token = market.contracts.token
        accounts = Table(
            "demo account", "role", "balance", title="Anvil dev accounts (public test keys)"
        )
        for i, account in enumerate(demo_accounts()):
            role = "creator" if i < 2 else "buyer"
            accounts.add_row(
                account.address, role, format_tokens(token.balance_of(account.address))
            )
        console.print(accounts)
        models = Table("model", "owner", "price", title="Models on this chain")
        for model_id in range(1, market.contracts.registry.total_models() + 1):
            listing = market.contracts.marketplace.listing(model_id)
            owner = market.contracts.registry.owner_of(model_id)
            models.add_row(str(model_id), owner, format_tokens(listing.price))
        console.print(models)


def _stop_requested() -> threading.Event:
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    return stopped
