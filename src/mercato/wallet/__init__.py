# SPDX-License-Identifier: AGPL-3.0-only
"""Mercato's wallets: Web3 Secret Storage v3 keystores that geth and MetaMask share.

from mercato.wallet import PasswordSource, Wallet

wallet = Wallet.from_settings(load_settings())
address = wallet.create(PasswordSource())          # prompts twice on a terminal
account = wallet.unlock(None, PasswordSource())    # the default account, ready to sign
"""

from mercato.wallet.keyfile import parse_address
from mercato.wallet.keystore import AccountEntry, Wallet, keystore_dir
from mercato.wallet.passwords import PASSWORD_ENV, PasswordSource

__all__ = [
    "PASSWORD_ENV",
    "AccountEntry",
    "PasswordSource",
    "Wallet",
    "keystore_dir",
    "parse_address",
]
