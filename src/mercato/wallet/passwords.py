# SPDX-License-Identifier: AGPL-3.0-only
"""Where a keystore password comes from: a file, the environment, or a prompt.

The order is fixed and the first source present wins:

1. an explicit password file (`--password-file PATH`): its first line, as geth reads it;
2. the `MERCATO_PASSWORD` environment variable (for scripts and CI);
3. an interactive prompt (no echo), asking twice for a new password.

With none of them and no terminal, asking fails at once with a typed error instead of
waiting on a standard input nobody will write to.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mercato.errors import PasswordUnavailableError

PASSWORD_ENV = "MERCATO_PASSWORD"


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        # A closed or replaced stdin (as under some test runners) is no terminal.
        return False


@dataclass(frozen=True)
class PasswordSource:
    """Finds a password; holds where to look, never the password itself.

    Attributes:
        password_file: A file whose first line is the password, or None.
        environ: The environment to read `MERCATO_PASSWORD` from (default: the process's).
        prompt: Reads a password without echo (default: `getpass.getpass`).
        is_interactive: Whether a person can answer a prompt (default: stdin is a TTY).
    """

    password_file: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)
    prompt: Callable[[str], str] = field(default=getpass.getpass, repr=False)
    is_interactive: Callable[[], bool] = field(default=_stdin_is_terminal, repr=False)

    def existing(self, label: str = "Password") -> str:
        """A password to open an existing keystore (an empty one is allowed: geth allows it).

        Args:
            label: What the prompt asks for, e.g. "Password for 0xabc…".

        Returns:
            The password.

        Raises:
            PasswordUnavailableError: The password file cannot be read, or no source is
                given and no terminal is attached.
        """
        found = self._from_file_or_env()
        if found is not None:
            return found
        self._require_terminal()
        return self.prompt(f"{label}: ")

    def new(self, label: str = "New password") -> str:
        """A password for a new keystore: never empty; typed twice when prompted.

        Args:
            label: What the prompt asks for.

        Returns:
            The password.

        Raises:
            PasswordUnavailableError: No source is available, the password is empty, or
                the two prompted entries differ.
        """
        found = self._from_file_or_env()
        if found is None:
            self._require_terminal()
            found = self.prompt(f"{label}: ")
            if found and self.prompt("Repeat it: ") != found:
                raise PasswordUnavailableError(
                    "The two passwords differ; nothing was written. Run the command again."
                )
        return require_new_password(found)

    def _from_file_or_env(self) -> str | None:
        if self.password_file is not None:
            try:
                text = self.password_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                detail = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
                raise PasswordUnavailableError(
                    f"Cannot read the password file {self.password_file}: {detail}. "
                    "Check the path given to --password-file."
                ) from None
            # Like geth's --password: the first line, without its line ending.
            return text.splitlines()[0] if text else ""
        # An empty variable counts as unset, as with most MERCATO_* variables.
        return self.environ.get(PASSWORD_ENV) or None

    def _require_terminal(self) -> None:
        if not self.is_interactive():
            raise PasswordUnavailableError(
                "A password is needed and there is no terminal to ask on. Pass "
                f"--password-file PATH or set {PASSWORD_ENV}."
            )


def require_new_password(password: str) -> str:
    """Refuses an empty password for a new keystore.

    Args:
        password: The candidate.

    Returns:
        The password, unchanged.

    Raises:
        PasswordUnavailableError: It is empty.
    """
    if not password:
        raise PasswordUnavailableError(
            "An empty password would leave the key unprotected; nothing was written. "
            f"Choose a password (prompt, --password-file or {PASSWORD_ENV})."
        )
    return password
