# SPDX-License-Identifier: AGPL-3.0-only
"""What `mercato try` and `mercato model try` share: reading the input, showing the answer.

Both take the same input (see `mercato.models.runtime.inputs`) and print the same way:
a table of labelled probabilities, best first, for people; with `--json`, the answer
as JSON at full precision, with no colour or progress, so it pipes anywhere.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mercato.cli.common import console

TRY_INPUT_HELP = (
    "Inputs: '{\"X\": [[5.1, 3.5, 1.4, 0.2]]}', or for a model with one input "
    "'5.1, 3.5, 1.4, 0.2' or '[[...]]'; - reads standard input."
)
TryInput = Annotated[str, typer.Argument(help=TRY_INPUT_HELP, show_default=False)]


def read_input(text: str) -> str:
    """The try input text, read from standard input when it is ``-``."""
    return sys.stdin.read() if text == "-" else text


def show_answer(answer: bytes, manifest: Mapping[str, Any] | None, json_output: bool) -> None:
    """Print a try answer: JSON as it came (re-encoded), or labelled tables.

    Args:
        answer: The try answer's JSON.
        manifest: The model's manifest, for class names; None if unknown.
        json_output: Print JSON instead of tables.

    Raises:
        TryAnswerError: the answer is not shaped as the try API answers.
    """
    from mercato.models.runtime.answers import clean_label, present, read_answer

    outputs = read_answer(answer)
    if json_output:
        # Re-encoded, never echoed: a provider's bytes could hold terminal escapes.
        document = json.loads(answer)
        typer.echo(json.dumps(document, indent=2, ensure_ascii=True))
        return
    model = document_name(answer)
    if model:
        console.print(Text(f"model {clean_label(model)}", style="bold"))
    for view in present(outputs, manifest):
        if not view.rows:
            console.print(Text(f"{view.name}: ", style="bold") + Text(view.text))
            continue
        table = Table("row", "label", "probability", title=Text(view.name), title_justify="left")
        for index, row in enumerate(view.rows):
            for rank, score in enumerate(row):
                table.add_row(str(index) if rank == 0 else "", Text(score.label), score.shown)
        console.print(table)
        if view.more_rows:
            console.print(f"… and {view.more_rows} more rows (--json shows them all)")


def document_name(answer: bytes) -> str:
    """The model name a try answer gives, or "" (the answer is already checked JSON)."""
    document = json.loads(answer)
    name = document.get("model") if isinstance(document, dict) else None
    return name if isinstance(name, str) else ""
