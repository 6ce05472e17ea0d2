# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato store ...`: check and tidy the node's local blockstore.

Like `ipfs repo verify`, `ipfs repo gc` and `ipfs pin ls|rm`: `verify` re-hashes every
block, `gc` deletes what no pin holds, `pins` lists the pinned roots and `unpin` releases
one, and `recover` re-checks only what imports cut off by an unclean stop wrote and
deletes the partial files they left (a node also does that when it starts; see
`mercato.storage.journal`).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mercato.cli.app import app
from mercato.cli.common import DataDirOption, JsonOption
from mercato.cli.errors import handles_errors
from mercato.config import load_settings

if TYPE_CHECKING:
    from mercato.storage.blockstore import Blockstore

# Exit codes of the storage commands (band 30-39, shared with `mercato cid`: 30 and 31,
# and 32 for any StorageError); stable, never reused.
EXIT_DAMAGED_BLOCKS = 33
EXIT_NO_STORE = 34
EXIT_NOT_PINNED = 37

store_app = typer.Typer(help="Check and tidy the node's local block store.", no_args_is_help=True)
app.add_typer(store_app, name="store")
err_console = Console(stderr=True)


def _open_store(data_dir: Path | None) -> Blockstore:
    """The node's blockstore, without creating one where there is none."""
    from mercato.storage.blockstore import Blockstore

    root = load_settings(data_dir=data_dir).store_dir
    if not (root / "blocks").is_dir():
        err_console.print(
            f"[bold red]error:[/bold red] there is no block store at {root}. "
            "Pass the node's --data-dir (or set MERCATO_DATA_DIR).",
            highlight=False,
        )
        raise typer.Exit(EXIT_NO_STORE)
    return Blockstore(root)


def _cid_of_key(key: str) -> str:
    """A block's key as a CID anyone can look up (`ipfs block get`).

    The store keys blocks by multihash, as kubo does, so the codec is not known: raw.
    """
    from multiformats import CID

    try:
        mh = base64.b32decode(key.upper() + "=" * (-len(key) % 8))
        return str(CID("base32", 1, "raw", mh))
    except (ValueError, KeyError):
        return key  # not a block name at all: show the file name


def _emit(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, sort_keys=True))


@store_app.command("verify")
@handles_errors
def verify_command(
    data_dir: DataDirOption = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair/--no-repair",
            help="Move damaged blocks to quarantine/ so the next import or fetch rewrites "
            "them (the default); --no-repair only reports them.",
        ),
    ] = True,
    json_output: JsonOption = False,
) -> None:
    """Re-hash every block of the store and report the damaged ones by CID.

    Exits with 33 when a block is damaged.
    """
    store = _open_store(data_dir)
    columns = (
        TextColumn("verifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("blocks"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("verify", total=None)
        result = store.verify(
            repair=repair,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    damaged = [_cid_of_key(key) for key in result.corrupted]
    if json_output:
        _emit({"checked": result.checked, "damaged": damaged, "repaired": repair})
    elif not damaged:
        typer.echo(f"Checked {result.checked} blocks: all intact.")
    else:
        typer.echo(f"Checked {result.checked} blocks: {len(damaged)} damaged.")
        for cid in damaged:
            typer.echo(f"  damaged: {cid}")
        if repair:
            typer.echo(
                "They were moved to quarantine/; import the files again (or fetch them from "
                "a gateway) to restore them."
            )
        else:
            typer.echo("Nothing was moved; run without --no-repair to quarantine them.")
    if damaged:
        raise typer.Exit(EXIT_DAMAGED_BLOCKS)


@store_app.command("gc")
@handles_errors
def gc_command(data_dir: DataDirOption = None, json_output: JsonOption = False) -> None:
    """Delete every block no pin holds, and quarantined blocks."""
    result = _open_store(data_dir).gc()
    if json_output:
        _emit({"removed_blocks": result.removed_blocks, "freed_bytes": result.freed_bytes})
    else:
        typer.echo(f"Removed {result.removed_blocks} blocks, freed {decimal(result.freed_bytes)}.")


@store_app.command("pins")
@handles_errors
def pins_command(data_dir: DataDirOption = None, json_output: JsonOption = False) -> None:
    """List the pinned roots: what `gc` keeps (published versions, fetched models,
    federation blobs)."""
    pins = sorted(str(cid) for cid in _open_store(data_dir).pins())
    if json_output:
        _emit({"pins": pins})
        return
    for cid in pins:
        typer.echo(cid)
    err_console.print(f"{len(pins)} pinned root(s).", highlight=False)


@store_app.command("unpin")
@handles_errors
def unpin_command(
    cid: Annotated[str, typer.Argument(help="The pinned root to release ('mercato store pins').")],
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Release a pin; its blocks go at the next `gc` unless another pin holds them.

    A version this node sells or a blob a task's verifiers fetch from it is no longer
    served once gc has run. Exits with 37 when the CID is not pinned here.
    """
    from mercato.storage.cids import parse_cid

    root = parse_cid(cid)
    removed = _open_store(data_dir).unpin(root)
    if json_output:
        _emit({"cid": str(root), "unpinned": removed})
    elif removed:
        typer.echo(f"Unpinned {root}; 'mercato store gc' frees its blocks.")
    else:
        err_console.print(
            f"[bold red]error:[/bold red] {root} is not pinned here; "
            "'mercato store pins' lists the pins.",
            highlight=False,
        )
    if not removed:
        raise typer.Exit(EXIT_NOT_PINNED)


@store_app.command("recover")
@handles_errors
def recover_command(data_dir: DataDirOption = None, json_output: JsonOption = False) -> None:
    """Re-check the blocks written by imports that an unclean stop cut off, and delete
    the partial files those imports left half-written."""
    result = _open_store(data_dir).recover()
    damaged = [_cid_of_key(key) for key in result.corrupted]
    if json_output:
        _emit(
            {
                "interrupted_imports": result.intents,
                "checked": result.checked,
                "damaged": damaged,
                "partial_files_removed": result.partial_files,
                "busy": result.tmp_busy,
            }
        )
        return
    if not result.intents and not result.partial_files and not result.tmp_busy:
        typer.echo("Nothing to recover: no import was cut off.")
        return
    if result.intents:
        typer.echo(
            f"Found {result.intents} interrupted import(s); re-checked {result.checked} blocks, "
            f"{len(damaged)} damaged and moved to quarantine/."
        )
        for cid in damaged:
            typer.echo(f"  damaged: {cid}")
    if result.partial_files:
        typer.echo(f"Removed {result.partial_files} partial file(s) that cut-off writes left.")
    if result.tmp_busy:
        typer.echo(
            "An import is running on this store, so its temporary files were left alone; "
            "run 'mercato store recover' again once it has finished."
        )
