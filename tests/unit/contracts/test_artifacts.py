# SPDX-License-Identifier: AGPL-3.0-only
"""The committed artifacts are exactly what the sources compile to."""

from __future__ import annotations

import pytest

from mercato.chain.artifacts import CONTRACT_NAMES, compile_contract, load_artifact

HOW_TO_FIX = "run python -m mercato.chain.artifacts and commit the result"


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_committed_artifact_matches_the_source(name: str) -> None:
    committed = load_artifact(name)
    compiled = compile_contract(name)
    assert compiled.abi == committed.abi, f"{name}: ABI differs; {HOW_TO_FIX}"
    assert compiled.bytecode == committed.bytecode, f"{name}: bytecode differs; {HOW_TO_FIX}"
    assert compiled.runtime_bytecode == committed.runtime_bytecode, (
        f"{name}: runtime bytecode differs; {HOW_TO_FIX}"
    )
