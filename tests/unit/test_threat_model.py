# SPDX-License-Identifier: AGPL-3.0-only
"""docs/threat-model.md stays true: every test it names exists, and no attack row is
left without the test that proves its check."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "threat-model.md"
# `path/to/test_file.py::test_name` or a whole `path/to/test_file.py`
REFERENCE = re.compile(r"`((?:unit|integration|e2e)/[\w/]+\.py)(?:::(\w+))?`")


def references() -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)) for m in REFERENCE.finditer(DOC.read_text())]


def test_every_test_the_threat_model_names_exists() -> None:
    found = references()
    assert len(found) > 50  # the pattern still matches how the page names tests
    missing = []
    for path, name in found:
        file = ROOT / "tests" / path
        if not file.is_file():
            missing.append(path)
        elif name is not None and not re.search(rf"^(async )?def {name}\b", file.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert missing == []


def test_every_attack_row_names_a_test() -> None:
    rows = [
        line
        for line in DOC.read_text().splitlines()
        if line.startswith("| ") and not line.startswith(("| ---", "| attacker", "| asset"))
    ]
    attack_rows = [row for row in rows if row.count("|") == 5]
    assert attack_rows
    untested = [row for row in attack_rows if not REFERENCE.search(row.rsplit("|", 2)[1])]
    assert untested == []
