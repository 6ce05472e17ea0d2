# SPDX-License-Identifier: AGPL-3.0-only
"""No raw traceback reaches a CLI user: an unexpected error is one sentence and exit code
1, unless debugging is on; confirmations refuse to guess without a terminal."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import mercato.cli.market as market_commands
from mercato.cli import main
from mercato.cli.app import DEBUG_ENV
from mercato.cli.common import confirm
from mercato.cli.errors import exit_code_for
from mercato.errors import NotConfirmedError


def _explode(*_args: object, **_kwargs: object) -> None:
    raise KeyError("an internal bug")


def _run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["mercato", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    code = exited.value.code
    return code if isinstance(code, int) else 1


def test_an_unexpected_error_is_one_sentence_and_exit_code_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.setattr(market_commands, "open_market", _explode)
    code = _run_main(monkeypatch, "show", "1", "--data-dir", str(tmp_path))
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "unexpected internal error (KeyError)" in lines[0]
    assert "--debug" in lines[0]


def test_json_output_gets_the_error_as_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.setattr(market_commands, "open_market", _explode)
    code = _run_main(monkeypatch, "show", "1", "--json", "--data-dir", str(tmp_path))
    assert code == 1
    assert '"error": "internal_error"' in capsys.readouterr().err


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debugging_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, how: str
) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.setattr(market_commands, "open_market", _explode)
    args = ["show", "1", "--data-dir", str(tmp_path)]
    if how == "flag":
        args.insert(0, "--debug")
    else:
        monkeypatch.setenv(DEBUG_ENV, "1")
    monkeypatch.setattr(sys, "argv", ["mercato", *args])
    with pytest.raises(KeyError, match="an internal bug"):
        main()


def test_a_confirmation_without_a_terminal_asks_for_yes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    with pytest.raises(NotConfirmedError) as refused:
        confirm("Pay 5 MCT?", "buy model 4 for 5 MCT", yes=False)
    assert "--yes" in str(refused.value)
    assert exit_code_for(refused.value) == 93
    confirm("Pay 5 MCT?", "buy model 4 for 5 MCT", yes=True)  # --yes: nothing asked
