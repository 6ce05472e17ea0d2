# SPDX-License-Identifier: AGPL-3.0-only
"""Options every market command shares, and turning them into a `Market`."""

from __future__ import annotations

import json
import sys
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

from mercato.config import Settings, load_settings
from mercato.errors import ConfigError, NotConfirmedError

if TYPE_CHECKING:
    from mercato.client import Market

console = Console()
# Prompts, quotes and progress go to standard error, so --json output stays clean.
err_console = Console(stderr=True)

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
AddressOption = Annotated[
    str | None,
    typer.Option(
        help="Whose records to read (default: --account, else the wallet's default account; "
        "no password is asked)."
    ),
]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (scripts).")
]


def command_settings(
    data_dir: Path | None, rpc_url: str | None, account: str | None = None
) -> Settings:
    """The settings a command runs with, completed by the node running on the data dir.

    A node started with `mercato node up` records its chain and gateway addresses in
    the data directory; they fill in whatever no flag, variable or config.toml names,
    so commands talk to that node's chain and record its gateway as the provider.

    Raises:
        ConfigError: The settings file or a setting is malformed.
    """
    from mercato.client.running_node import running_node

    settings = load_settings(data_dir=data_dir, rpc_url=rpc_url, account=account)
    node = running_node(settings.data_dir)
    if node is None:
        return settings
    update: dict[str, Any] = {}
    if settings.rpc_url is None:
        update["rpc_url"] = node.rpc_url
    if settings.provider_url is None:
        update["provider_url"] = node.gateway_url
    return settings.model_copy(update=update) if update else settings


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

    settings = command_settings(data_dir, rpc_url, account)
    signer = None
    if signing:
        signer = Wallet.from_settings(settings).unlock(account, PasswordSource(password_file))
    return Market(settings, account=signer)


def unlock(market: Market, account: str | None, password_file: Path | None) -> Market:
    """The same market, now signing as the account (asks its password).

    Commands open a read-only market first and unlock only once every local check passed.

    Raises:
        KeystoreNotFoundError, NoDefaultAccountError, WrongPasswordError,
        PasswordUnavailableError: as `Wallet.unlock` raises them.
    """
    from mercato.client import Market
    from mercato.wallet import PasswordSource, Wallet

    signer = Wallet.from_settings(market.settings).unlock(account, PasswordSource(password_file))
    return Market(market.settings, account=signer, deployment=market.deployment)


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


def read_address(market: Market, address: str | None) -> str:
    """The account a read command reads for: `address`, else the configured or default
    account, taken from the keystore without decrypting it (no password asked).

    Raises:
        InvalidAddressError: `address` is not an address.
        NoDefaultAccountError: No address given and no default account is set.
    """
    from mercato.wallet import Wallet, parse_address

    if address is not None:
        return parse_address(address)
    return Wallet.from_settings(market.settings).resolve(None)


def confirm(question: str, action: str, *, yes: bool) -> None:
    """Asks a yes/no question on the terminal, unless --yes was given.

    Raises:
        NotConfirmedError: The user said no, or there is no terminal and no --yes.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise NotConfirmedError(action, asked=False)
    if not typer.confirm(question, default=False):
        raise NotConfirmedError(action, asked=True)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True, default=str))
