# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato node ...`: run a Mercato node."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mercato.chain.contracts import MercatoContracts
from mercato.chain.deployment import TOKEN_UNIT
from mercato.chain.session import ChainSession, demo_accounts, open_chain
from mercato.cli.app import app
from mercato.config import default_data_dir
from mercato.errors import MercatoError

node_app = typer.Typer(help="Run a Mercato node.", no_args_is_help=True)
app.add_typer(node_app, name="node")
console = Console()


@node_app.command("up")
def up(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data directory (default: $MERCATO_DATA_DIR or the user data folder)."),
    ] = None,
    rpc_url: Annotated[
        str | None,
        typer.Option(help="Use this EVM JSON-RPC endpoint instead of starting a local Anvil."),
    ] = None,
    port: Annotated[int, typer.Option(help="Loopback port of the local Anvil.")] = 8545,
    demo: Annotated[
        bool, typer.Option(help="Show the funded demo accounts of a local chain.")
    ] = False,
    setup_only: Annotated[
        bool, typer.Option(help="Set everything up, print the summary and exit.")
    ] = False,
) -> None:
    """Start (or connect to) the chain, deploy Mercato once, and serve until Ctrl-C.

    Restarting keeps every model, balance and order: the local chain's state and the
    deployment record live in the data directory.
    """
    folder = data_dir or default_data_dir()
    # Installed first, so a stop request during set-up still shuts Anvil down cleanly.
    stopped = _stop_requested()
    try:
        session = open_chain(folder, rpc_url=rpc_url, port=port)
    except MercatoError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    try:
        _print_summary(session, folder, demo)
        if not setup_only:
            console.print("[green]ready[/green]: node is up; press Ctrl-C to stop.")
            stopped.wait()
    finally:
        session.close()


def _print_summary(session: ChainSession, folder: Path, demo: bool) -> None:
    d = session.deployment
    state = "deployed now" if session.deployed_now else "reused from the deployment record"
    console.print(f"chain {d.chain_id} at {session.rpc_url} · contracts {state}")
    console.print(f"data directory: {folder}")
    table = Table("contract", "address")
    for name in ("token", "model_registry", "marketplace", "reviews"):
        table.add_row(name, getattr(d, name))
    console.print(table)
    if demo and session.is_local:
        token = MercatoContracts.connect(session.w3, d).token
        accounts = Table("demo account", "MCT", title="Anvil dev accounts (public test keys)")
        for account in demo_accounts():
            balance = token.balance_of(account.address) / TOKEN_UNIT
            accounts.add_row(account.address, f"{balance:,.2f}")
        console.print(accounts)


def _stop_requested() -> threading.Event:
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    return stopped
