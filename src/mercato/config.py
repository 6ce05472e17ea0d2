# SPDX-License-Identifier: AGPL-3.0-only
"""Settings every component shares, from defaults, a TOML file and the environment.

Later sources win: built-in defaults < the TOML file (`$MERCATO_CONFIG`, else
`<data dir>/config.toml`) < `MERCATO_<FIELD>` environment variables < arguments given
in code (the CLI's flags). The data directory itself comes from `$MERCATO_DATA_DIR`
or the platform's user data folder.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mercato.errors import ConfigError

DATA_DIR_ENV = "MERCATO_DATA_DIR"
CONFIG_ENV = "MERCATO_CONFIG"
ENV_PREFIX = "MERCATO_"


def default_data_dir() -> Path:
    """The data directory: `$MERCATO_DATA_DIR`, else the platform's user data folder."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("mercato", appauthor=False))


# Confirmations by chain id when the `confirmations` setting is unset: deep enough that
# a reorg past it has not been seen on that chain, shallow enough that a new model shows
# within minutes. Set `confirmations` to wait longer (64 on Ethereum is finality).
ETHEREUM_CONFIRMATIONS = 12  # 12 s slots: ~2.4 minutes; finality is 64 blocks
OP_STACK_CONFIRMATIONS = 30  # 2 s blocks: a minute for the sequencer's batch to reach L1
ARBITRUM_CONFIRMATIONS = 120  # 0.25 s blocks: 30 seconds
POLYGON_POS_CONFIRMATIONS = 64  # 2 s blocks, and reorgs of dozens of blocks have happened
UNKNOWN_CHAIN_CONFIRMATIONS = 12
CHAIN_CONFIRMATIONS: dict[int, int] = {
    1: ETHEREUM_CONFIRMATIONS,  # Ethereum
    11_155_111: ETHEREUM_CONFIRMATIONS,  # Sepolia
    17_000: ETHEREUM_CONFIRMATIONS,  # Holesky
    560_048: ETHEREUM_CONFIRMATIONS,  # Hoodi
    10: OP_STACK_CONFIRMATIONS,  # OP Mainnet
    8_453: OP_STACK_CONFIRMATIONS,  # Base
    11_155_420: OP_STACK_CONFIRMATIONS,  # OP Sepolia
    84_532: OP_STACK_CONFIRMATIONS,  # Base Sepolia
    42_161: ARBITRUM_CONFIRMATIONS,  # Arbitrum One
    42_170: ARBITRUM_CONFIRMATIONS,  # Arbitrum Nova
    421_614: ARBITRUM_CONFIRMATIONS,  # Arbitrum Sepolia
    137: POLYGON_POS_CONFIRMATIONS,  # Polygon PoS
    80_002: POLYGON_POS_CONFIRMATIONS,  # Polygon Amoy
}


def default_confirmations(chain_id: int) -> int:
    """Blocks below the head the index waits for on this chain when none is set.

    Args:
        chain_id: The chain's EIP-155 id.

    Returns:
        0 on local development chains (one miner, no reorgs), the chain's own depth
        for known chains (`CHAIN_CONFIRMATIONS`), and 12 for any other.
    """
    from mercato.chain.deployment import LOCAL_CHAIN_IDS  # config loads before chain

    if chain_id in LOCAL_CHAIN_IDS:
        return 0
    return CHAIN_CONFIRMATIONS.get(chain_id, UNKNOWN_CHAIN_CONFIRMATIONS)


class Settings(BaseModel):
    """A node's or a client's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
    rpc_url: str | None = Field(
        default=None, description="EVM JSON-RPC URL; unset runs a local Anvil"
    )
    anvil_port: int = Field(default=8545, ge=1, le=65_535)
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8700, ge=1, le=65_535)
    provider_url: str | None = Field(
        default=None,
        description="The public base URL of this node's gateway, recorded on-chain for buyers",
    )
    account: str | None = Field(default=None, description="The default account's address")
    index_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the index; unset uses SQLite in the data dir"
    )
    confirmations: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Blocks below the head before the index trusts an event (None: the chain's "
            "default, see default_confirmations)"
        ),
    )
    try_per_minute: int = Field(default=30, ge=1, description="Try calls per wallet per minute")
    agent_max_fee_gwei: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Highest max fee per gas (gwei) the seller's agent offers when it raises the fees "
            "of a stuck delivery (None: no limit)"
        ),
    )
    moderation_report_threshold: int = Field(
        default=0,
        ge=0,
        description=(
            "Stop serving a model reported on-chain by at least this many distinct license "
            "holders (0: reports never deny a model on this node)"
        ),
    )
    moderation_refresh_seconds: int = Field(
        default=3600, ge=60, description="Seconds between refreshes of subscribed denylists"
    )
    moderation_gateway: str | None = Field(
        default=None,
        description="IPFS gateway URL that denylists subscribed by CID are fetched from",
    )
    fetch_allow_networks: tuple[str, ...] = Field(
        default=(),
        description=(
            "Networks (CIDR, comma-separated in MERCATO_FETCH_ALLOW_NETWORKS) that provider "
            "URLs may point into although they are private; a local chain allows all"
        ),
    )
    cid_profile: Literal["unixfs-v0-2015", "unixfs-v1-2025"] = Field(
        default="unixfs-v0-2015",
        description=(
            "UnixFS CID profile `mercato cid` computes with unless --profile says otherwise "
            "(kubo's names; see mercato.storage.profiles). Model versions stay "
            "unixfs-v0-2015: the chain records a dag-pb root's digest"
        ),
    )

    @field_validator("fetch_allow_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        # An environment variable holds the list as one comma-separated string.
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def store_dir(self) -> Path:
        """The node's local block store (`mercato.storage.blockstore` draws its layout)."""
        return self.data_dir / "store"

    @property
    def public_url(self) -> str:
        """Where buyers reach this node's gateway."""
        return self.provider_url or f"http://{self.gateway_host}:{self.gateway_port}"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Builds the settings from every source.

    Args:
        config_file: A TOML file to read instead of the default one.
        **overrides: Values that win over every other source; None values are ignored.

    Returns:
        The settings.

    Raises:
        ConfigError: The TOML file cannot be parsed, or a value is invalid.
    """
    values: dict[str, Any] = {}
    data_dir = overrides.get("data_dir") or os.environ.get(DATA_DIR_ENV)
    path = config_file or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    if path is None:
        path = (
            Path(data_dir).expanduser() / "config.toml"
            if data_dir
            else default_data_dir() / "config.toml"
        )
    if path.exists():
        try:
            values.update(tomllib.loads(path.read_text()))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"Cannot read the settings file {path}: {exc}. Fix or remove it."
            ) from exc
    for name in Settings.model_fields:
        env_value = os.environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(
            f"Invalid settings ({problems}). Check {path} and MERCATO_* variables."
        ) from exc
