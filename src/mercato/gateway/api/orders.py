# SPDX-License-Identifier: AGPL-3.0-only
"""`/v1/orders`: an account's purchases, one order's live state, and its delivery.

Lists come from the index; the state of one order and its delivered (wrapped) key are
read from the chain through the SDK, so a buyer waiting for delivery sees it at once.
"""

from __future__ import annotations

from eth_utils import is_address, to_checksum_address
from fastapi import APIRouter
from pydantic import BaseModel

from mercato.client.artifacts import cid_from_digest
from mercato.errors import InvalidSearchQueryError, LicenseRequiredError
from mercato.gateway.api.schemas import ErrorOut, OrderOut
from mercato.gateway.dependencies import ModelId, RequiredSession, State

router = APIRouter(prefix="/v1/orders", tags=["orders"], responses={422: {"model": ErrorOut}})


class OrderStateOut(BaseModel):
    model_id: int
    buyer: str
    state: str  # none | pending | delivered | refunded
    price: str
    time: int  # delivery deadline while pending, expiry once delivered (0 = perpetual)
    licensed: bool


class DeliveryOut(BaseModel):
    model_id: int
    buyer: str
    version: int
    encrypted: bool
    wrapped_key: str | None  # 0x-hex sealed box, for the buyer's X25519 key
    artifact_cid: str
    artifact_cid_digest: str
    plaintext_sha256: str
    manifest_cid_digest: str


def _address(value: str) -> str:
    if not is_address(value):
        raise InvalidSearchQueryError(f"{value!r} is not an Ethereum address (0x + 40 hex digits).")
    return to_checksum_address(value)


@router.get("", response_model=list[OrderOut])
def list_orders(buyer: str, state: State) -> list[OrderOut]:
    """Every purchase and free license of `buyer`, newest first."""
    return [OrderOut.of(o) for o in state.index.orders(buyer)]


@router.get("/mine", response_model=list[OrderOut], responses={401: {"model": ErrorOut}})
def my_orders(session: RequiredSession, state: State) -> list[OrderOut]:
    """The signed-in wallet's orders."""
    return [OrderOut.of(o) for o in state.index.orders(session.address)]


@router.get("/{buyer}/{model_id}", response_model=OrderStateOut)
def order_state(buyer: str, model_id: ModelId, state: State) -> OrderStateOut:
    """The order's state as the marketplace contract holds it right now."""
    order = state.market.orders.status(model_id, _address(buyer))
    return OrderStateOut(
        model_id=model_id,
        buyer=order.buyer,
        state=order.state.name.lower(),
        price=str(order.price),
        time=order.time,
        licensed=order.licensed,
    )


@router.get(
    "/{buyer}/{model_id}/delivery", response_model=DeliveryOut, responses={403: {"model": ErrorOut}}
)
def delivery(buyer: str, model_id: ModelId, state: State) -> DeliveryOut:
    """What a licensed buyer needs to download and decrypt: the version and wrapped key.

    Everything here is public on-chain; only the buyer's wallet can open the key.
    """
    address = _address(buyer)
    market = state.market
    if not market.contracts.marketplace.has_license(address, model_id):
        raise LicenseRequiredError(model_id, address)
    versions = {v.version: v for v in state.index.model(model_id).versions}
    logs = market.logs(market.contracts.marketplace, "Delivered", model_id=model_id, buyer=address)
    if logs:
        args = logs[-1]["args"]
        number, wrapped = int(args["version"]), "0x" + bytes(args["wrapped_key"]).hex()
    else:  # a free license: the artifact is stored in the clear
        number, wrapped = max(versions), None
    version = versions[number]
    return DeliveryOut(
        model_id=model_id,
        buyer=address,
        version=number,
        encrypted=wrapped is not None,
        wrapped_key=wrapped,
        artifact_cid=str(cid_from_digest(bytes.fromhex(version.artifact_cid_digest))),
        artifact_cid_digest=version.artifact_cid_digest,
        plaintext_sha256=version.plaintext_sha256,
        manifest_cid_digest=version.manifest_cid_digest,
    )
