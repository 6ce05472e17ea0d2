# SPDX-License-Identifier: AGPL-3.0-only
"""PasswordSource: file, then MERCATO_PASSWORD, then a prompt; never a hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from mercato.errors import PasswordUnavailableError
from mercato.wallet import PASSWORD_ENV, PasswordSource
from mercato.wallet.passwords import require_new_password


def _prompter(*answers: str) -> tuple[list[str], PasswordSource]:
    asked: list[str] = []
    queue = list(answers)

    def prompt(label: str) -> str:
        asked.append(label)
        return queue.pop(0)

    return asked, PasswordSource(environ={}, prompt=prompt, is_interactive=lambda: True)


def test_file_wins_over_environment(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("from-file\nsecond line is ignored\n")
    source = PasswordSource(password_file=path, environ={PASSWORD_ENV: "from-env"})
    assert source.existing() == "from-file"
    assert source.new() == "from-file"


def test_file_keeps_inner_spaces_and_drops_crlf(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_bytes(b" two words \r\n")
    assert PasswordSource(password_file=path, environ={}).existing() == " two words "


def test_environment_wins_over_prompt() -> None:
    asked, prompting = _prompter("typed")
    source = PasswordSource(environ={PASSWORD_ENV: "from-env"}, prompt=prompting.prompt)
    assert source.existing() == "from-env"
    assert asked == []


def test_prompt_for_existing_asks_once() -> None:
    asked, source = _prompter("typed")
    assert source.existing("Password for 0xabc") == "typed"
    assert asked == ["Password for 0xabc: "]


def test_prompt_for_new_asks_twice() -> None:
    asked, source = _prompter("typed", "typed")
    assert source.new() == "typed"
    assert len(asked) == 2


def test_prompt_for_new_refuses_a_mismatch() -> None:
    _, source = _prompter("typed", "tpyed")
    with pytest.raises(PasswordUnavailableError, match="differ"):
        source.new()


def test_new_refuses_empty_from_every_source(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("\n")
    with pytest.raises(PasswordUnavailableError, match="empty password"):
        PasswordSource(password_file=path, environ={}).new()
    _, source = _prompter("")
    with pytest.raises(PasswordUnavailableError, match="empty password"):
        source.new()
    with pytest.raises(PasswordUnavailableError, match="empty password"):
        require_new_password("")


def test_existing_allows_an_empty_password_from_a_file(tmp_path: Path) -> None:
    # geth lets a keystore have an empty password; opening one must stay possible.
    path = tmp_path / "pw"
    path.write_text("")
    assert PasswordSource(password_file=path, environ={}).existing() == ""


def test_no_terminal_and_no_source_fails_at_once(no_tty_source: PasswordSource) -> None:
    with pytest.raises(PasswordUnavailableError) as caught:
        no_tty_source.existing()
    assert "--password-file" in str(caught.value)
    assert PASSWORD_ENV in str(caught.value)
    with pytest.raises(PasswordUnavailableError):
        no_tty_source.new()


def test_empty_environment_variable_counts_as_unset(no_tty_source: PasswordSource) -> None:
    source = PasswordSource(
        environ={PASSWORD_ENV: ""}, prompt=no_tty_source.prompt, is_interactive=lambda: False
    )
    with pytest.raises(PasswordUnavailableError, match="no terminal"):
        source.existing()


def test_default_source_under_pytest_does_not_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest's captured stdin is no terminal: the real defaults must refuse, not block.
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(PasswordUnavailableError):
        PasswordSource().existing()


def test_unreadable_password_file_is_typed(tmp_path: Path) -> None:
    with pytest.raises(PasswordUnavailableError, match="Cannot read the password file"):
        PasswordSource(password_file=tmp_path / "missing").existing()


def test_repr_shows_no_password(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("hunter2-secret\n")
    source = PasswordSource(password_file=path, environ={PASSWORD_ENV: "env-secret"})
    source.existing()
    assert "hunter2-secret" not in repr(source)
    assert "env-secret" not in repr(source)
