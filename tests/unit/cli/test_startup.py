# SPDX-License-Identifier: AGPL-3.0-only
"""The command line starts fast: registering commands imports none of the heavy stack."""

from __future__ import annotations

import subprocess
import sys

from mercato.cli.market import SortOrder
from mercato.index import Sort

HEAVY = ("web3", "eth_account", "sqlalchemy", "onnx", "onnxruntime", "fastapi", "nacl")


def test_registering_every_command_imports_no_heavy_package() -> None:
    probe = (
        "import sys\n"
        "from mercato.cli.app import _register_commands\n"
        "_register_commands()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_the_cli_sort_choices_are_the_index_sorts() -> None:
    assert [s.value for s in SortOrder] == [s.value for s in Sort]
