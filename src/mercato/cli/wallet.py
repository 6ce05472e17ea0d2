# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato wallet ...`: create, import, list, export and choose accounts.

Private keys are never taken as command-line arguments (they would end up in the shell
history and in `ps`): they come from a file. Passwords come from `--password-file`,
`MERCATO_PASSWORD` or a prompt, in that order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mercato.cli.app import app
from mercato.cli.errors import handles_errors
from mercato.config import load_settings

if TYPE_CHECKING:
    from mercato.wallet import Wallet

wallet_app = typer.Typer(help="Manage the accounts this machine holds.", no_args_is_help=True)
app.add_typer(wallet_app, name="wallet")
console = Console()
err_console = Console(stderr=True)

DataDirOption = Annotated[
    Path | None,
    typer.Option(help="Data directory (default: $MERCATO_DATA_DIR or the user data folder)."),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        help="Read the password from the first line of this file "
        "(else $MERCATO_PASSWORD, else a prompt).",
        dir_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def _open_wallet(data_dir: Path | None) -> Wallet:
    # Imported here: eth-account takes a second to import, and `--help` needs none of it.
    from mercato.wallet import Wallet

    return Wallet.from_settings(load_settings(data_dir=data_dir))


def _emit(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload))


def _report_added(wallet: Wallet, address: str, verb: str, json_output: bool) -> None:
    path = wallet.keystore_path(address)
    is_default = wallet.default_account() == address
    if json_output:
        _emit({"address": address, "keystore": str(path), "default": is_default})
        return
    # soft_wrap: addresses and paths must stay copyable, never broken across lines.
    console.print(f"{verb} account [bold]{address}[/bold]", highlight=False, soft_wrap=True)
    console.print(f"keystore: {path}", highlight=False, soft_wrap=True)
    if is_default:
        console.print("It is the default account.")


@wallet_app.command("new")
@handles_errors
def new(
    password_file: PasswordFileOption = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create an account with a fresh random key, in an encrypted keystore.

    The first account becomes the default one. Back the keystore up together with its
    password: neither can be recovered.
    """
    wallet = _open_wallet(data_dir)
    from mercato.wallet import PasswordSource

    address = wallet.create(PasswordSource(password_file=password_file))
    _report_added(wallet, address, "Created", json_output)


@wallet_app.command("import")
@handles_errors
def import_(
    private_key_file: Annotated[
        Path | None,
        typer.Option(help="A file holding the hex private key (and nothing else).", dir_okay=False),
    ] = None,
    keystore: Annotated[
        Path | None,
        typer.Option(
            help="A JSON keystore exported by geth, MetaMask or another wallet.", dir_okay=False
        ),
    ] = None,
    password_file: PasswordFileOption = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Add an existing account, from a private-key file or a keystore file.

    With --private-key-file the key is encrypted under a new password. With --keystore
    the password is the keystore's own; the file is checked to open before it is kept.
    """
    wallet = _open_wallet(data_dir)
    from mercato.wallet import PasswordSource

    source = PasswordSource(password_file=password_file)
    if keystore is not None and private_key_file is None:
        address = wallet.import_keystore(keystore, source)
    elif private_key_file is not None and keystore is None:
        address = wallet.import_private_key_file(private_key_file, source)
    else:
        raise typer.BadParameter("Give exactly one of --private-key-file and --keystore.")
    _report_added(wallet, address, "Imported", json_output)


@wallet_app.command("list")
@handles_errors
def list_(data_dir: DataDirOption = None, json_output: JsonOption = False) -> None:
    """List the accounts in the keystore directory; the default one is marked."""
    wallet = _open_wallet(data_dir)
    accounts = wallet.list_accounts()
    default = wallet.default_account()
    if json_output:
        _emit(
            {
                "keystore_dir": str(wallet.keystore_dir),
                "default": default,
                "accounts": [
                    {"address": a.address, "keystore": str(a.path), "default": a.address == default}
                    for a in accounts
                ],
            }
        )
        return
    if not accounts:
        console.print(
            f"No accounts in {wallet.keystore_dir}. Run 'mercato wallet new' or "
            "'mercato wallet import'.",
            highlight=False,
        )
        return
    table = Table(title=str(wallet.keystore_dir))
    table.add_column("")
    table.add_column("address", no_wrap=True, min_width=42)
    table.add_column("keystore", overflow="fold")
    for entry in accounts:
        table.add_row("*" if entry.address == default else "", entry.address, entry.path.name)
    console.print(table)


@wallet_app.command("export")
@handles_errors
def export(
    address: Annotated[str, typer.Argument(help="The account to export.")],
    dest: Annotated[
        Path, typer.Argument(help="A new file, or a directory to write the keystore into.")
    ],
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Copy an account's keystore (still encrypted) for geth or MetaMask.

    MetaMask: "Import account", type "JSON file", then this file and its password.
    """
    wallet = _open_wallet(data_dir)
    target = wallet.export_keystore(address, dest)
    if json_output:
        _emit({"address": wallet.resolve(address), "keystore": str(target)})
    else:
        console.print(
            f"Wrote {target} (encrypted; it opens with the account's password).", soft_wrap=True
        )


@wallet_app.command("default")
@handles_errors
def default(
    address: Annotated[
        str | None, typer.Argument(help="The account to make the default; omit to show it.")
    ] = None,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the default account, or make ADDRESS the default."""
    settings = load_settings(data_dir=data_dir)
    from mercato.wallet import Wallet

    wallet = Wallet.from_settings(settings)
    if address is not None:
        chosen = wallet.set_default(address)
        if settings.account and settings.account.lower() != chosen.lower():
            err_console.print(
                f"Note: the 'account' setting ({settings.account}) still takes precedence "
                "for commands run with it (config.toml or MERCATO_ACCOUNT).",
                highlight=False,
                style="yellow",
            )
    current = wallet.default_account()
    if json_output:
        _emit({"default": current})
    elif current is None:
        console.print("No default account. Run 'mercato wallet default ADDRESS'.")
    else:
        typer.echo(current)
