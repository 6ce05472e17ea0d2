# SPDX-License-Identifier: AGPL-3.0-only
"""The CLI's exit-code table: unique codes, bands respected, no class shadowed."""

from __future__ import annotations

import inspect

from mercato import errors
from mercato.cli import index, storage, store
from mercato.cli.errors import EXIT_CODES, exit_code_for

# Codes single commands exit with on their own, outside the error table.
COMMAND_CODES = [
    storage.EXIT_FILE_NOT_READABLE,
    storage.EXIT_BAD_OPTION,
    store.EXIT_DAMAGED_BLOCKS,
    store.EXIT_NO_STORE,
    store.EXIT_NOT_PINNED,
    index.EXIT_INDEX_DIFFERS,
]


def test_every_code_is_used_once() -> None:
    codes = [code for _, code in EXIT_CODES] + COMMAND_CODES
    assert len(codes) == len(set(codes))


def test_no_class_is_shadowed_by_a_base_listed_before_it() -> None:
    for i, (kind, _) in enumerate(EXIT_CODES):
        for earlier, _ in EXIT_CODES[:i]:
            assert not issubclass(kind, earlier), f"{kind.__name__} is hidden by {earlier.__name__}"


def test_every_error_class_maps_to_a_code_outside_the_reserved_ones() -> None:
    classes = [
        c
        for _, c in inspect.getmembers(errors, inspect.isclass)
        if issubclass(c, errors.MercatoError)
    ]
    for kind in classes:
        code = next(code for k, code in EXIT_CODES if issubclass(kind, k))
        assert code not in (0, 2), kind.__name__


def test_specific_errors_get_their_own_code() -> None:
    assert exit_code_for(errors.ModelNotFoundError(7)) == 61
    assert exit_code_for(errors.InsufficientBalanceError(1, 2, True)) == 65
    assert exit_code_for(errors.ProviderUnavailableError("http://x", "down")) == 81
    assert exit_code_for(errors.NoAccountError("buy")) == 10
