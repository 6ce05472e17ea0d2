# SPDX-License-Identifier: AGPL-3.0-only
"""The web wallet's buyer-key check (web/crypto.js, libsodium.js under node) refuses
exactly the keys `mercato.crypto.validate_buyer_key` refuses."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from eth_account import Account

from mercato.crypto import derive_buyer_key, validate_buyer_key
from mercato.errors import InvalidKeyMaterialError

from ...unit.crypto.test_keys import LOW_ORDER_POINTS

REPO = Path(__file__).resolve().parents[3]
CHECK = """
import { validateBuyerKey, hexToBytes } from "./web/crypto.js";
const verdicts = [];
for (const hex of JSON.parse(process.argv[1])) {
  try { await validateBuyerKey(hexToBytes(hex)); verdicts.push("ok"); }
  catch (e) { verdicts.push(e.message.includes("low-order") ? "low-order" : e.message); }
}
console.log(JSON.stringify(verdicts));
"""


def _python_verdict(key: bytes) -> str:
    try:
        validate_buyer_key(key)
    except InvalidKeyMaterialError:
        return "low-order"
    return "ok"


def test_web_wallet_refuses_the_same_buyer_keys_as_the_sdk() -> None:
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "libsodium-wrappers-sumo").is_dir():
        pytest.fail("node and the npm packages are needed: run scripts/bootstrap")
    real = [derive_buyer_key(Account.create(), 31337).public_key for _ in range(3)]
    keys = [*LOW_ORDER_POINTS, *real]
    done = subprocess.run(
        [node, "--input-type=module", "-e", CHECK, json.dumps([k.hex() for k in keys])],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    verdicts = json.loads(done.stdout.strip().splitlines()[-1])
    assert verdicts == [_python_verdict(k) for k in keys]
    assert verdicts == ["low-order"] * len(LOW_ORDER_POINTS) + ["ok"] * len(real)
