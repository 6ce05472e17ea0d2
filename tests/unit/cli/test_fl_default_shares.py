# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato fl finalize` without --shares: who is paid by default. A private task pays
only the seats in every committed round (a drop-out's share is 0, so it forfeits its
stake on-chain); any other unscored task pays every seat that contributed at all."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from mercato.cli.federation import _default_shares
from mercato.errors import ConfigError
from mercato.index.tasks import TaskDetail


def _detail(privacy: str, rounds: list[list[int]], seats: int = 3) -> TaskDetail:
    """The fields `_default_shares` reads, as the index gives them."""
    detail: Any = SimpleNamespace(
        summary=SimpleNamespace(task_id=7),
        spec={"privacy": privacy},
        participants=[object()] * seats,
        rounds=[SimpleNamespace(contributors=seats_in) for seats_in in rounds],
    )
    return cast(TaskDetail, detail)


def test_a_private_tasks_drop_out_gets_nothing() -> None:
    assert _default_shares(_detail("private", [[0, 1, 2], [0, 1]])) == [5000, 5000, 0]


def test_an_unscored_task_pays_every_seat_that_contributed_once() -> None:
    assert _default_shares(_detail("none", [[0, 1, 2], [0, 1]])) == [3334, 3333, 3333]


def test_a_private_task_where_nobody_completed_every_round_is_refused() -> None:
    with pytest.raises(ConfigError, match="every committed round"):
        _default_shares(_detail("private", [[0, 1], [2]]))
