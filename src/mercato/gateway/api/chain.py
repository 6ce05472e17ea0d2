# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/chain`: what a browser wallet needs to build transactions itself.

The contracts' addresses, the chain id and the fee come from the deployment the node
runs; the permit's EIP-712 typed data is the SDK's own (`Token.permit_message`), so a
browser signs exactly what the Python client would.
"""

from __future__ import annotations

from typing import Annotated, Any

from eth_utils import is_address, to_checksum_address
from fastapi import APIRouter, Query
from pydantic import BaseModel

from mercato.errors import InvalidSearchQueryError
from mercato.gateway.api.schemas import ErrorOut
from mercato.gateway.dependencies import State

router = APIRouter(prefix="/v1/chain", tags=["chain"])


class ChainOut(BaseModel):
    chain_id: int
    token: str
    model_registry: str
    marketplace: str
    reviews: str
    protocol_fee_bps: int
    provider_url: str
    # The account this node delivers keys from (name it with set_agent), or null.
    delivery_agent: str | None


@router.get("", response_model=ChainOut)
def chain(state: State) -> ChainOut:
    """The deployment this node serves."""
    d = state.market.deployment
    return ChainOut(
        chain_id=state.chain_id,
        token=d.token,
        model_registry=d.model_registry,
        marketplace=d.marketplace,
        reviews=d.reviews,
        protocol_fee_bps=state.fees.fee_bps(),
        provider_url=state.market.settings.public_url,
        delivery_agent=state.delivery_agent,
    )


Uint256 = Annotated[int, Query(ge=0, le=2**256 - 1)]


@router.get("/permit", responses={422: {"model": ErrorOut}})
def permit(owner: str, amount: Uint256, deadline: Uint256, state: State) -> dict[str, Any]:
    """EIP-712 typed data of a permit letting the marketplace take `amount` from `owner`.

    Sign it with `eth_signTypedData_v4`; the token's current nonce for `owner` is in it.

    Raises:
        InvalidSearchQueryError: `owner` is not an Ethereum address.
    """
    if not is_address(owner):
        raise InvalidSearchQueryError(f"{owner[:80]!r} is not an Ethereum address.")
    contracts = state.market.contracts
    data = contracts.token.permit_message(
        to_checksum_address(owner), contracts.marketplace.address, amount, deadline
    )
    # uint256 values as strings: JSON numbers lose precision above 2**53.
    data["message"] = {k: str(v) for k, v in data["message"].items()}
    return data
