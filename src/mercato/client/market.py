# SPDX-License-Identifier: AGPL-3.0-only
"""`Market`: the SDK's one entry point.

from mercato.client import Market

market = Market(account=my_account)          # settings from TOML + MERCATO_* vars
model = market.models.publish("iris/", price=5 * 10**18)
order = market.orders.buy(model.model_id)    # as a buyer, on another machine
market.orders.download(model.model_id, "iris-copy/")
"""

from __future__ import annotations

from typing import Any

import requests
from eth_account.signers.local import LocalAccount
from web3.exceptions import Web3Exception

from mercato.chain.contracts import MercatoContracts
from mercato.chain.deployment import LOCAL_CHAIN_IDS, Deployment
from mercato.chain.logs import event_logs
from mercato.chain.web3_backend import Web3Backend, connect
from mercato.client.artifacts import KeyStore
from mercato.config import Settings, load_settings
from mercato.errors import ChainUnavailableError, DeploymentError, NoAccountError, NoGasError
from mercato.index import Index
from mercato.storage.blockstore import Blockstore


class Market:
    """A connection to one Mercato deployment, acting as one account (or read-only).

    Attributes:
        models: Publish, version, price, show and search models.
        orders: Buy, wait for delivery, download and refund.
        reviews: Review, attest and read a model's performance history.
        wallet: Balances and the local-chain faucet.
        earnings: What sales credited the account, and withdrawing it.
        federation: Federated training tasks: create, join, rounds, shares, claims.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        account: LocalAccount | None = None,
        deployment: Deployment | None = None,
    ) -> None:
        """Connects to the chain the settings name.

        Args:
            settings: Defaults to `load_settings()`.
            account: The account that signs; None makes a read-only market.
            deployment: Where the contracts are; defaults to the record in the data
                directory for the chain's id.

        Raises:
            ChainUnavailableError: The chain's RPC URL does not answer.
            DeploymentError: No deployment is known for this chain.
        """
        self.settings = settings or load_settings()
        self.rpc_url = self.settings.rpc_url or f"http://127.0.0.1:{self.settings.anvil_port}"
        self.w3 = connect(self.rpc_url, timeout=30)
        try:
            self.chain_id = int(self.w3.eth.chain_id)
        except (requests.RequestException, Web3Exception, OSError) as exc:
            raise ChainUnavailableError(self.rpc_url, str(exc)) from exc
        found = deployment or Deployment.load(self.settings.data_dir, self.chain_id)
        if found is None:
            raise DeploymentError(
                f"No Mercato deployment is recorded for chain {self.chain_id} in "
                f"{self.settings.data_dir}. Start a node on this data directory with "
                "'mercato node up', or join a network with 'mercato node up --deployment FILE'."
            )
        self.deployment = found
        self.account = account
        self.sender = Web3Backend(self.w3, account) if account else None
        self.contracts = MercatoContracts.connect(self.w3, found, self.sender)
        self.keys = KeyStore(self.settings.data_dir)
        self._store: Blockstore | None = None
        self._index: Index | None = None

        from mercato.client.earnings import EarningsAPI
        from mercato.client.federation import FederationAPI
        from mercato.client.models import ModelsAPI
        from mercato.client.orders import OrdersAPI
        from mercato.client.reviews import ReviewsAPI
        from mercato.client.wallet import WalletAPI

        self.models = ModelsAPI(self)
        self.orders = OrdersAPI(self)
        self.reviews = ReviewsAPI(self)
        self.wallet = WalletAPI(self)
        self.earnings = EarningsAPI(self)
        self.federation = FederationAPI(self)

    @property
    def store(self) -> Blockstore:
        """This node's local blockstore (opened on first use)."""
        if self._store is None:
            self._store = Blockstore(self.settings.store_dir)
        return self._store

    @property
    def index(self) -> Index:
        """The index database named by the settings (opened, and migrated, on first use)."""
        if self._index is None:
            self._index = Index.open(self.settings.index_url, data_dir=self.settings.data_dir)
        return self._index

    @property
    def is_local_chain(self) -> bool:
        return self.chain_id in LOCAL_CHAIN_IDS

    def require_account(self, action: str) -> LocalAccount:
        """The signing account.

        Raises:
            NoAccountError: The market is read-only.
        """
        if self.account is None:
            raise NoAccountError(action)
        return self.account

    def require_signer(self, action: str) -> LocalAccount:
        """The signing account, checked to hold some native currency for gas.

        Args:
            action: What the transaction does, for the error message.

        Returns:
            The account.

        Raises:
            NoAccountError: The market is read-only.
            NoGasError: The account holds no native currency (a fresh wallet).
        """
        account = self.require_account(action)
        if int(self.w3.eth.get_balance(account.address)) == 0:
            raise NoGasError(account.address, action, self.is_local_chain)
        return account

    def synced_index(self) -> Index:
        """The index, brought up to the chain's head first.

        Raises:
            IndexingError: The index cannot be opened or brought up to date.
        """
        from mercato.client.metadata import StoreMetadataSource
        from mercato.index import Indexer, IndexerConfig

        Indexer(
            self.index,
            self.w3,
            self.deployment,
            StoreMetadataSource(self),
            IndexerConfig(confirmations=self.settings.confirmations),
        ).sync_once()
        return self.index

    def logs(self, contract: Any, event: str, **argument_filters: Any) -> list[Any]:
        """Every `event` the contract logged since the deployment, in chain order.

        Read in block ranges the RPC provider accepts (`mercato.chain.logs`), so a
        hosted provider's range and result caps, rate limits and dropped connections
        are ridden out.

        Args:
            contract: A typed contract wrapper (`market.contracts.marketplace`).
            event: The event's name.
            **argument_filters: Argument values the events must have.

        Returns:
            The decoded events.

        Raises:
            RpcRetryExhaustedError: The provider kept failing through every retry.
            LogQueryError: The provider refused the query.
        """
        return event_logs(
            contract.contract.events[event], self.deployment.deploy_block, **argument_filters
        )
