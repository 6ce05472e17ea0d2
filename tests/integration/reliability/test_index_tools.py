# SPDX-License-Identifier: AGPL-3.0-only
"""`mercato index check` and `mercato index rebuild` on SQLite and PostgreSQL.

A real Anvil holds the chain; the index databases are real SQLite files and a real
throwaway PostgreSQL cluster (see tests/integration/index/conftest.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import text

from mercato.chain.anvil import AnvilSupervisor
from mercato.cli.index import EXIT_INDEX_DIFFERS
from mercato.index import Index
from mercato.index.rebuild import SCRATCH_PREFIX, check_index, index_content, rebuild_index
from tests.integration.index.conftest import Market
from tests.integration.index.scenario import PRICE, digests_for, manifest

ROOT = Path(__file__).parents[3]


def _publish(market: Market, who: int, name: str, price: int = 0) -> int:
    d = digests_for(name)
    market.metadata.add(
        d.manifest_cid_digest, manifest(name, tags=[name], task="text-generation", license="MIT")
    )
    return market.clients[who].marketplace.publish(d, price)


def _trade(market: Market) -> int:
    """Two models, a sale delivered (credits to the owner) and a review; the paid model."""
    c, a = market.clients, market.addresses
    alpha = _publish(market, 1, "alpha", PRICE)
    _publish(market, 2, "bravo")
    c[3].marketplace.purchase_with_permit(alpha, PRICE, b"\x05" * 32, c[3].token, deadline=2**40)
    c[1].marketplace.deliver(alpha, a[3], 1, b"\x01" * 80)
    c[3].reviews.review(alpha, 5, b"\x00" * 32)
    return alpha


def _tamper(index: Index, model_id: int) -> None:
    """What a bug or a bad restore could leave: a wrong price and a lost credit."""
    with index.engine.begin() as conn:
        conn.execute(text("UPDATE models SET purchases = purchases + 7 WHERE model_id = :m"),
                     {"m": model_id})  # fmt: skip
        conn.execute(text("DELETE FROM credits"))


def _scratch_leftovers(index_url: str, index: Index) -> list[str]:
    if index_url.startswith("sqlite"):
        path = Path(index_url.removeprefix("sqlite:///"))
        return sorted(p.name for p in path.parent.glob(f"{path.name}.rebuild-*"))
    with index.engine.connect() as conn:
        names = conn.execute(
            text("SELECT nspname FROM pg_namespace WHERE left(nspname, :n) = :p"),
            {"n": len(SCRATCH_PREFIX), "p": SCRATCH_PREFIX},
        ).scalars()
        return sorted(names)


def test_check_compares_at_the_index_block_and_names_what_differs(
    market: Market, index_url: str
) -> None:
    alpha = _trade(market)
    index = Index.open(index_url)
    market.indexer(index).sync_once()
    at = market.w3.eth.block_number
    _publish(market, 4, "charlie")  # the chain moves on; the index stays at `at`

    clean = check_index(index, market.w3, market.deployment, market.metadata)
    assert (clean.matches, clean.block) == (True, at)
    assert clean.rows > 0

    _tamper(index, alpha)
    found = check_index(index, market.w3, market.deployment, market.metadata)
    assert not found.matches
    by_table = {d.table: d for d in found.differences}
    assert sorted(by_table) == ["credits", "models"]
    assert (by_table["credits"].only_in_index, by_table["credits"].only_in_rebuild) == (0, 1)
    assert (by_table["models"].only_in_index, by_table["models"].only_in_rebuild) == (1, 1)
    assert _scratch_leftovers(index_url, index) == []  # the scratch index was removed


def test_rebuild_swaps_a_fresh_index_under_a_reader_that_stays_open(
    market: Market, index_url: str
) -> None:
    alpha = _trade(market)
    index = Index.open(index_url)
    market.indexer(index).sync_once()
    expected = index_content(index.engine)
    reader = Index.open(index_url)  # another process's view, e.g. the node's gateway
    assert reader.model(alpha).summary.purchases == 1
    _tamper(index, alpha)
    assert reader.model(alpha).summary.purchases == 8
    charlie = _publish(market, 4, "charlie")

    report = rebuild_index(index, market.w3, market.deployment, market.metadata)

    assert report.block == market.w3.eth.block_number and report.events > 0
    assert reader.model(alpha).summary.purchases == 1
    assert reader.model(charlie).summary.name == "charlie"
    content = index_content(index.engine)
    assert content["credits"] == expected["credits"]
    assert check_index(index, market.w3, market.deployment, market.metadata).matches
    # The follower carries on from the new index's cursor.
    assert market.indexer(index).sync_once().events == 0
    assert _scratch_leftovers(index_url, index) == []


def test_a_rebuild_killed_midway_leaves_the_old_index_usable(
    market: Market, anvil: AnvilSupervisor, index_url: str, tmp_path: Path
) -> None:
    alpha = _trade(market)
    index = Index.open(index_url)
    market.indexer(index).sync_once()
    _tamper(index, alpha)
    before = index_content(index.engine)
    deployment_file = tmp_path / "deployment.json"
    deployment_file.write_text(json.dumps(asdict(market.deployment)))
    command = [sys.executable, "-m", "tests.integration.reliability.rebuild_process",
               anvil.rpc_url, index_url, str(deployment_file)]  # fmt: skip

    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert done.returncode == -signal.SIGKILL, done.stderr
    assert _scratch_leftovers(index_url, index) != []  # killed before the swap
    assert index_content(index.engine) == before  # the old index, untouched and readable
    assert index.model(alpha).summary.purchases == 8
    rebuild_index(index, market.w3, market.deployment, market.metadata)
    assert _scratch_leftovers(index_url, index) == []
    assert index.model(alpha).summary.purchases == 1


def test_the_commands_exit_non_zero_while_the_index_differs(
    market: Market, anvil: AnvilSupervisor, index_url: str, tmp_path: Path
) -> None:
    alpha = _trade(market)
    data_dir = tmp_path / "data"
    market.deployment.save(data_dir)

    def mercato(*args: str) -> tuple[int, dict[str, Any]]:
        options = ["--data-dir", str(data_dir), "--rpc-url", anvil.rpc_url,
                   "--index-url", index_url, "--json"]  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "mercato.cli", "index", *args, *options],
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "MERCATO_DATA_DIR": str(data_dir)},
        )
        assert done.stdout, done.stderr
        return done.returncode, dict(json.loads(done.stdout))

    code, built = mercato("rebuild")
    assert code == 0 and built["block"] == market.w3.eth.block_number
    code, checked = mercato("check")
    assert (code, checked["matches"], checked["differences"]) == (0, True, [])

    index = Index.open(index_url)
    _tamper(index, alpha)
    code, checked = mercato("check")
    assert code == EXIT_INDEX_DIFFERS and checked["matches"] is False
    assert [d["table"] for d in checked["differences"]] == ["credits", "models"]

    assert mercato("rebuild")[0] == 0
    assert mercato("check")[0] == 0
    assert index.model(alpha).summary.purchases == 1
