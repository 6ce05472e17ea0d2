# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato index ...`: operators' tools for the node's index of the chain's events.

`check` compares the index with a fresh rebuild from the chain, made in a scratch
database beside it; `rebuild` replaces it with one, swapped in within one transaction
(see `mercato.index.rebuild`). Both work while the node runs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mercato.cli.app import app
from mercato.cli.common import DataDirOption, JsonOption, RpcUrlOption, command_settings
from mercato.cli.errors import handles_errors

if TYPE_CHECKING:
    from mercato.client import Market

# Exit code of `mercato index check` when the index differs from a rebuild (band 70-79,
# index and gateway); stable, never reused.
EXIT_INDEX_DIFFERS = 72

index_app = typer.Typer(
    help="Check or rebuild the node's index of the chain.", no_args_is_help=True
)
app.add_typer(index_app, name="index")

IndexUrlOption = Annotated[
    str | None,
    typer.Option(
        help="SQLAlchemy URL of the index (default: the settings' index_url, else the "
        "SQLite file in the data directory)."
    ),
]


def _market(data_dir: Any, rpc_url: str | None, index_url: str | None) -> Market:
    from mercato.client import Market

    settings = command_settings(data_dir, rpc_url)
    if index_url is not None:
        settings = settings.model_copy(update={"index_url": index_url})
    return Market(settings)


def _rebuild_inputs(market: Market) -> tuple[Any, ...]:
    """What a check or a rebuild reads: the index, the chain, the deployment, where
    manifests come from, and the confirmations this chain needs."""
    from mercato.client.metadata import StoreMetadataSource
    from mercato.index import IndexerConfig

    config = IndexerConfig(confirmations=market.settings.confirmations)
    return market.index, market.w3, market.deployment, StoreMetadataSource(market), config


def _emit(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, sort_keys=True))


@index_app.command("check")
@handles_errors
def check_command(
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    index_url: IndexUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Compare the index with a fresh rebuild from the chain, up to the same block.

    Exits with 72 when they differ; 'mercato index rebuild' then replaces it.
    """
    from mercato.index.rebuild import check_index

    result = check_index(*_rebuild_inputs(_market(data_dir, rpc_url, index_url)))
    if json_output:
        _emit(
            {
                "block": result.block,
                "rows": result.rows,
                "matches": result.matches,
                "differences": [
                    {
                        "table": d.table,
                        "only_in_index": d.only_in_index,
                        "only_in_rebuild": d.only_in_rebuild,
                        "examples": d.examples,
                    }
                    for d in result.differences
                ],
            }
        )
    elif result.matches:
        typer.echo(f"The index matches a rebuild from the chain at block {result.block}.")
    else:
        typer.echo(f"The index differs from a rebuild from the chain at block {result.block}:")
        for d in result.differences:
            typer.echo(
                f"  {d.table}: {d.only_in_index} row(s) only in the index, "
                f"{d.only_in_rebuild} only in a rebuild"
            )
            for example in d.examples:
                typer.echo(f"    {example}")
        typer.echo("Run 'mercato index rebuild' to replace it with a rebuild.")
    if not result.matches:
        raise typer.Exit(EXIT_INDEX_DIFFERS)


@index_app.command("rebuild")
@handles_errors
def rebuild_command(
    data_dir: DataDirOption = None,
    rpc_url: RpcUrlOption = None,
    index_url: IndexUrlOption = None,
    json_output: JsonOption = False,
) -> None:
    """Rebuild the index from the chain beside the old one, then swap it in at once.

    The old index stays usable until the swap; a crash before it changes nothing.
    """
    from mercato.index.rebuild import rebuild_index

    report = rebuild_index(*_rebuild_inputs(_market(data_dir, rpc_url, index_url)))
    if json_output:
        _emit({"block": report.block, "events": report.events, "rows": report.rows})
    else:
        typer.echo(
            f"Rebuilt the index from the chain: {report.events} events up to block "
            f"{report.block}, {report.rows} rows."
        )
