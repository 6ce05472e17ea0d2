# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato cid PATH [--profile NAME]`: print the CID `ipfs add --only-hash -Q` would print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mercato.cli.app import app
from mercato.errors import ConfigError

# Exit codes of the storage commands (band 30-39); stable, never reused. The others in
# the band: 32 any StorageError (`mercato.cli.errors`), 33 damaged blocks and 34 no store
# (`mercato store`, in `mercato.cli.store`).
EXIT_FILE_NOT_READABLE = 30
EXIT_BAD_OPTION = 31


@app.command("cid")
def cid_command(
    path: Annotated[Path, typer.Argument(help="The file to hash; nothing is stored.")],
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help=(
                "UnixFS CID profile, named as kubo names it: unixfs-v0-2015 (kubo's default: "
                "CIDv0, 256 KiB chunks, 174 links per node, dag-pb leaves) or unixfs-v1-2025 "
                "(CIDv1, 1 MiB chunks, 1,024 links, raw leaves). Default: the cid_profile "
                "setting, unixfs-v0-2015 unless set."
            ),
        ),
    ] = None,
    cid_version: Annotated[
        int | None,
        typer.Option(
            "--cid-version",
            help=(
                "0: kubo's default (CIDv0, dag-pb leaves); 1: CIDv1 with raw leaves (base32) "
                "and the default's chunks, like 'ipfs add --cid-version=1'."
            ),
        ),
    ] = None,
) -> None:
    """Print the CID `ipfs add --only-hash -Q` prints for PATH (with kubo's --profile or
    --cid-version)."""
    from mercato.config import load_settings
    from mercato.storage.unixfs import only_hash

    if cid_version is not None and cid_version not in (0, 1):
        typer.echo(f"--cid-version must be 0 or 1, not {cid_version}.", err=True)
        raise typer.Exit(EXIT_BAD_OPTION)
    try:
        if profile is None and cid_version is None:
            profile = load_settings().cid_profile
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_BAD_OPTION) from exc
    if not path.is_file():
        typer.echo(f"{path} is not a readable file. Pass the path of a file.", err=True)
        raise typer.Exit(EXIT_FILE_NOT_READABLE)
    try:
        cid = only_hash(path, cid_version=cid_version, profile=profile)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_BAD_OPTION) from exc
    except OSError as exc:
        typer.echo(f"Could not read {path}: {exc.strerror or exc}.", err=True)
        raise typer.Exit(EXIT_FILE_NOT_READABLE) from exc
    typer.echo(str(cid))
