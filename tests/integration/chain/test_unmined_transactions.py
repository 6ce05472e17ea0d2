# SPDX-License-Identifier: AGPL-3.0-only
"""A transaction that is sent but not mined in time is a typed error naming its hash."""

from __future__ import annotations

import pytest
from web3 import Web3

from mercato.chain.anvil import dev_accounts
from mercato.chain.web3_backend import Web3Backend
from mercato.errors import TransactionNotMinedError


def test_a_transaction_not_mined_in_time_names_its_hash_and_may_still_be_mined(w3: Web3) -> None:
    sender, receiver = dev_accounts(2)
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    backend = Web3Backend(w3, sender, receipt_timeout=0.5)
    with pytest.raises(TransactionNotMinedError) as caught:
        backend.send_ether(receiver.address, 1)
    tx_hash = caught.value.tx_hash
    assert tx_hash in str(caught.value)
    assert "before sending it again" in str(caught.value)
    # It was sent, not lost: the next block mines it.
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    assert w3.eth.get_transaction_receipt(tx_hash)["status"] == 1
