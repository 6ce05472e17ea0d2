# SPDX-License-Identifier: AGPL-3.0-only
"""The agent's outbox journal on disk: written whole, read back, a damaged one set aside.

No chain is needed to read or write the journal, so no connection is made (`w3` is
never called in these tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from eth_account import Account

from mercato.agent.outbox import Outbox, SentTx


def _outbox(path: Path) -> Outbox:
    return Outbox(cast(Any, None), Account.create(), path)


def test_the_journal_round_trips_every_field(tmp_path: Path) -> None:
    journal = tmp_path / "agent" / "outbox-31337-0xabc.json"
    first = _outbox(journal)
    entry = SentTx(7, [(4, "0x" + "11" * 20)], "0x" + "22" * 20, "0x1234", 90_000, 30, 2)
    entry.hashes = ["0x" + "aa" * 32, "0x" + "bb" * 32]
    entry.raw = "0x02f8"
    first.entries[7] = entry
    first._save()

    again = _outbox(journal)
    assert again.entries == {7: entry}
    assert again.in_flight() == {(4, "0x" + "11" * 20)}
    assert not list(journal.parent.glob("*.tmp"))  # written through a rename, whole


def test_a_damaged_journal_is_set_aside_and_the_agent_starts_empty(tmp_path: Path) -> None:
    journal = tmp_path / "outbox.json"
    journal.write_text('[{"nonce": 1, "orders": [[1, "0x')  # cut short
    outbox = _outbox(journal)
    assert outbox.entries == {}
    assert not journal.exists()
    assert journal.with_suffix(".unreadable").read_text().startswith("[{")


def test_a_journal_with_foreign_fields_is_set_aside(tmp_path: Path) -> None:
    journal = tmp_path / "outbox.json"
    journal.write_text('[{"nonce": 1, "orders": [], "evil": true}]')
    assert _outbox(journal).entries == {}
    assert journal.with_suffix(".unreadable").exists()
