# SPDX-License-Identifier: AGPL-3.0-only
"""Options every market command shares, and turning them into a `Market`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mercato.config import load_settings
from mercato.errors import ConfigError

if TYPE_CHECKING:
    from mercato.client import Market

console = Console()

DataDirOption = Annotated[
    Path | None,
    typer.Option(help="Data directory (default: $MERCATO_DATA_DIR or the user data folder)."),
]
RpcUrlOption = Annotated[
    str | None, typer.Option(help="EVM JSON-RPC URL (default: the local node's chain).")
]
AccountOption = Annotated[
    str | None, typer.Option(help="The account to act as (default: the wallet's default account).")
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        help="A file holding the keystore password (else $MERCATO_PASSWORD, else a prompt)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def open_market(
    data_dir: Path | None,
    rpc_url: str | None,
    account: str | None = None,
    password_file: Path | None = None,
    *,
    signing: bool = True,
) -> Market:
    """A Market from the command's options; unlocks the account when the command signs.

    Raises:
        ConfigError, KeystoreNotFoundError, WrongPasswordError, ChainUnavailableError,
        DeploymentError: as the settings, wallet and `Market` raise them.
    """
    # Imported here: web3 and friends take seconds to import, and `--help` needs none of it.
    from mercato.client import Market
    from mercato.wallet import PasswordSource, Wallet

    settings = load_settings(data_dir=data_dir, rpc_url=rpc_url, account=account)
    signer = None
    if signing:
        signer = Wallet.from_settings(settings).unlock(account, PasswordSource(password_file))
    return Market(settings, account=signer)


@contextmanager
def byte_progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar over bytes; yields the callback the SDK reports bytes to."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda size: bar.advance(task, size)


def parse_tokens(text: str) -> int:
    """Parses an MCT amount such as "5" or "0.25" into base units (10**18 per token).

    Raises:
        ConfigError: Not a non-negative number with at most 18 decimals.
    """
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ConfigError(f"{text!r} is not an amount of MCT; write it like 5 or 0.25.") from exc
    units = value * 10**18
    if value < 0 or units != units.to_integral_value():
        raise ConfigError(
            f"{text!r} is not a valid MCT amount (at most 18 decimals, not negative)."
        )
    return int(units)


def format_tokens(units: int) -> str:
    """Base units as MCT, e.g. 5000000000000000000 -> "5 MCT"."""
    return f"{(Decimal(units) / 10**18).normalize():f} MCT"


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True, default=str))
