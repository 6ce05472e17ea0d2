# SPDX-License-Identifier: AGPL-3.0-only
"""Guards benchmarks/gas-snapshot.json: gas is deterministic, so a rise must be committed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARK = Path(__file__).resolve().parents[3] / "benchmarks" / "gas.py"
TARGETS = {
    "publish": 150_000,
    "sale_steady": 100_000,
    "sale_first_buyer": 140_000,
    "report": 50_000,
    "fl_join": 90_000,
    "fl_claim": 60_000,
    "fl_finalize_10": 250_000,
}


def _load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gas_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def measured() -> dict[str, int]:
    return dict(_load_benchmark().measure_on_fresh_anvil())


@pytest.fixture(scope="module")
def snapshot() -> dict[str, int]:
    return dict(json.loads((BENCHMARK.parent / "gas-snapshot.json").read_text()))


def test_no_operation_costs_more_than_its_snapshot(
    measured: dict[str, int], snapshot: dict[str, int]
) -> None:
    assert set(measured) == set(snapshot), "run python benchmarks/gas.py and commit the snapshot"
    rises = {op: (snapshot[op], gas) for op, gas in measured.items() if gas > snapshot[op]}
    assert not rises, f"gas rose above the snapshot (before, now): {rises}"


def test_snapshot_meets_the_gas_targets(snapshot: dict[str, int]) -> None:
    for operation, target in TARGETS.items():
        assert snapshot[operation] <= target, f"{operation}: {snapshot[operation]:,} > {target:,}"
