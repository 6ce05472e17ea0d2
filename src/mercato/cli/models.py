# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato model ...`: inspect a model package, build the sample models, try a model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from mercato.cli.app import app
from mercato.cli.common import JsonOption
from mercato.cli.errors import handles_errors
from mercato.cli.trying import TryInput, read_input, show_answer

model_app = typer.Typer(
    help="Model packages: inspect (validates), samples, try.", no_args_is_help=True
)
app.add_typer(model_app, name="model")


@model_app.command("inspect")
@handles_errors
def inspect_command(
    path: Annotated[Path, typer.Argument(help="The package directory (ONNX + README.md).")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the canonical manifest bytes.")
    ] = False,
) -> None:
    """Validate PATH and print its manifest (refusals exit with code 50)."""
    from mercato.models import load_package

    package = load_package(path)
    if json_output:
        sys.stdout.buffer.write(package.manifest_bytes() + b"\n")
        return
    typer.echo(json.dumps(package.manifest, indent=2, sort_keys=True))


@model_app.command("samples")
@handles_errors
def samples_command(
    directory: Annotated[Path, typer.Argument(help="Where to write the sample packages.")],
) -> None:
    """Build the sample packages (iris, derived iris, digits, diabetes) under DIRECTORY."""
    from mercato.models.samples import build_samples

    for name, package in build_samples(directory).items():
        typer.echo(f"{name}\t{package.root}\t{package.total_size} bytes")


@model_app.command("try")
@handles_errors
def try_command(
    path: Annotated[Path, typer.Argument(help="The package directory.")],
    inputs: TryInput,
    timeout: Annotated[float, typer.Option(help="Seconds the call may run.")] = 5.0,
    json_output: JsonOption = False,
) -> None:
    """Run one try-call on a local package in a sandboxed worker (as its node would)."""
    from mercato.models import RuntimeLimits, TryPool, load_package
    from mercato.models.runtime.inputs import request_bytes

    text = read_input(inputs)
    package = load_package(path)
    request = request_bytes(text, package.manifest["inputs"])
    with TryPool(workers=1, limits=RuntimeLimits(timeout_s=timeout)) as pool:
        answer = pool.run_json(package, request)
    show_answer(answer, package.manifest, json_output)
