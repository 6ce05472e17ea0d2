# SPDX-License-Identifier: AGPL-3.0-only
"""Random sequences of marketplace activity against a Python model of the contracts.

After every step: the token supply is unchanged; the marketplace holds exactly the
open escrows plus every credit; each account's credit and balance is what the model
says, so royalties and fees are paid exactly; every order's record matches the
model. At the end of each run every paid purchase is settled and must have ended
delivered or refunded, never both. Buyers sometimes commit to terms the listing no
longer has, deliveries sometimes name a version that does not exist, and owners try
to review their own models: each must be refused with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tests.unit.contracts.chain import (
    BUYER_KEY,
    DELIVERY_WINDOW,
    FUNDED,
    WRAPPED_KEY,
    digests,
    mercato,
    reverts,
)

NONE, PENDING, DELIVERED, REFUNDED = 0, 1, 2, 3
BPS = 10_000
UNIT = 10**18
PRICES = [0, 1, 3, 9_999, UNIT + 7, 100 * UNIT]
DURATIONS = [0, 600, DELIVERY_WINDOW * 3]
WAITS = [1, 600, DELIVERY_WINDOW, DELIVERY_WINDOW + 1, DELIVERY_WINDOW * 4]


@dataclass
class Listing:
    price: int
    duration: int
    for_sale: bool
    fee_bps: int


@dataclass
class Order:
    """The model of one (buyer, model) license slot."""

    state: int = NONE
    price: int = 0
    time: int = 0  # deadline while pending, expiry once delivered
    fee_bps: int = 0
    duration: int = 0
    purchase: int = -1  # index into `outcomes` of the paid purchase in this slot


@dataclass
class ModelEntry:
    owner: str
    parents: list[tuple[int, int]]
    listing: Listing


@dataclass
class World:
    models: dict[int, ModelEntry] = field(default_factory=dict)
    orders: dict[tuple[str, int], Order] = field(default_factory=dict)
    credits: dict[str, int] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    agents: dict[str, str] = field(default_factory=dict)
    ratings: dict[tuple[int, str], int] = field(default_factory=dict)
    # One set per paid purchase: the ways it ended ("delivered", "refunded").
    outcomes: list[set[str]] = field(default_factory=list)
    fee_bps: int = 0
    # Settings changes so far; capped so that they do not crowd out the sales
    # (Hypothesis favours rules that take fewer arguments).
    admin_changes: int = 0


class MarketplaceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        chain = mercato()  # deployed by the session fixture, outside this anchor
        self._anchor = boa.env.anchor()
        self._anchor.__enter__()
        self.token: Any = chain.token
        self.registry: Any = chain.registry
        self.market: Any = chain.marketplace
        self.reviews: Any = chain.reviews
        self.protocol = chain.deployer
        self.accounts = list(chain.accounts[:4])
        self.supply = self.token.totalSupply()
        self.world = World(balances=dict.fromkeys(self.accounts, FUNDED))
        for account in self.accounts:
            with boa.env.prank(account):
                self.token.approve(self.market.address, 2**256 - 1)

    def teardown(self) -> None:
        try:
            self._settle_everything()
        finally:
            self._anchor.__exit__(None, None, None)

    # -- helpers -------------------------------------------------------------

    def _now(self) -> int:
        return int(boa.env.timestamp)

    def _order(self, buyer: str, model_id: int) -> Order:
        return self.world.orders.setdefault((buyer, model_id), Order())

    def _licensed(self, buyer: str, model_id: int) -> bool:
        order = self.world.orders.get((buyer, model_id))
        if order is None or order.state != DELIVERED:
            return False
        return order.time == 0 or self._now() < order.time

    def _credit(self, account: str, amount: int) -> None:
        self.world.credits[account] = self.world.credits.get(account, 0) + amount

    def _pending(self) -> list[tuple[str, int]]:
        return sorted(k for k, o in self.world.orders.items() if o.state == PENDING)

    def _deliverable(self) -> list[tuple[str, int]]:
        now = self._now()
        return [k for k in self._pending() if now <= self.world.orders[k].time]

    def _waiting_matters(self) -> bool:
        """A deadline or a license expiry lies ahead."""
        now = self._now()
        return any(
            o.state in (PENDING, DELIVERED) and o.time > now for o in self.world.orders.values()
        )

    def _settle(self, buyer: str, model_id: int) -> None:
        """Model of a successful delivery: exact fee, royalties and owner's rest."""
        order = self.world.orders[(buyer, model_id)]
        entry = self.world.models[model_id]
        rest = order.price
        fee = order.price * order.fee_bps // BPS
        if order.fee_bps:
            self._credit(self.protocol, fee)
            rest -= fee
        for parent, share in entry.parents:
            royalty = order.price * share // BPS
            self._credit(self.world.models[parent].owner, royalty)
            rest -= royalty
        assert rest >= 0
        self._credit(entry.owner, rest)
        order.state = DELIVERED
        order.time = self._now() + order.duration if order.duration else 0
        self.world.outcomes[order.purchase].add("delivered")

    def _settle_everything(self) -> None:
        boa.env.time_travel(seconds=DELIVERY_WINDOW + 1)
        for buyer, model_id in self._pending():
            self.market.refund(model_id, buyer)
            order = self.world.orders[(buyer, model_id)]
            order.state = REFUNDED
            self.world.outcomes[order.purchase].add("refunded")
            self.world.balances[buyer] += order.price
        self.check_money()
        for ended in self.world.outcomes:
            assert len(ended) == 1, ended

    # -- rules ----------------------------------------------------------------

    @initialize(
        prices=st.tuples(st.sampled_from(PRICES[1:]), st.sampled_from(PRICES)),
        shares=st.tuples(st.integers(0, 2_500), st.integers(0, 2_500)),
    )
    def seed_models(self, prices: tuple[int, int], shares: tuple[int, int]) -> None:
        """Two models by different creators and a paid model derived from both, so
        that runs start with royalties to pay."""
        for creator, price in ((0, prices[1]), (1, prices[1])):
            with boa.env.prank(self.accounts[creator]):
                self.market.publish(*digests(creator + 1), [], [], price, 0)
        with boa.env.prank(self.accounts[2]):
            self.market.publish(*digests(3), [1, 2], list(shares), prices[0], 0)
        for model_id, creator, price in ((1, 0, prices[1]), (2, 1, prices[1])):
            self.world.models[model_id] = ModelEntry(
                self.accounts[creator], [], Listing(price, 0, True, 0)
            )
        self.world.models[3] = ModelEntry(
            self.accounts[2], [(1, shares[0]), (2, shares[1])], Listing(prices[0], 0, True, 0)
        )

    @rule(
        data=st.data(),
        creator=st.integers(0, 3),
        price=st.sampled_from(PRICES),
        duration=st.sampled_from(DURATIONS),
    )
    def publish(self, data: st.DataObject, creator: int, price: int, duration: int) -> None:
        existing = sorted(self.world.models)
        parents: list[int] = []
        if existing:
            parents = data.draw(st.lists(st.sampled_from(existing), max_size=3, unique=True))
        shares = [data.draw(st.integers(0, 5_000 // max(len(parents), 1))) for _ in parents]
        account = self.accounts[creator]
        with boa.env.prank(account):
            model_id = int(
                self.market.publish(*digests(len(existing) + 1), parents, shares, price, duration)
            )
        assert model_id == len(existing) + 1
        self.world.models[model_id] = ModelEntry(
            owner=account,
            parents=list(zip(parents, shares, strict=True)),
            listing=Listing(price, duration, True, self.world.fee_bps),
        )

    @precondition(lambda self: self.world.models)
    @rule(
        data=st.data(),
        price=st.sampled_from(PRICES),
        duration=st.sampled_from(DURATIONS),
        for_sale=st.booleans(),
    )
    def set_listing(self, data: st.DataObject, price: int, duration: int, for_sale: bool) -> None:
        model_id = data.draw(st.sampled_from(sorted(self.world.models)))
        entry = self.world.models[model_id]
        with boa.env.prank(entry.owner):
            self.market.set_listing(model_id, price, duration, for_sale)
        entry.listing = Listing(price, duration, for_sale, self.world.fee_bps)

    @precondition(lambda self: self.world.models)
    @rule(data=st.data(), buyer_index=st.integers(0, 3))
    def purchase(self, data: st.DataObject, buyer_index: int) -> None:
        model_id = data.draw(st.sampled_from(sorted(self.world.models)))
        stingy = data.draw(st.sampled_from([False, False, False, True]))
        # The buyer may have seen other terms: a duration or fee the listing no longer has.
        duration = data.draw(st.sampled_from([None, None, None, *DURATIONS]))
        fee_bps = data.draw(st.sampled_from([None, None, None, 0, 250]))
        buyer = self.accounts[buyer_index]
        listing = self.world.models[model_id].listing
        order = self._order(buyer, model_id)
        max_price = listing.price - 1 if stingy and listing.price > 0 else listing.price
        duration = listing.duration if duration is None else duration
        fee_bps = listing.fee_bps if fee_bps is None else fee_bps
        terms = max_price | (duration << 96) | (fee_bps << 136)
        reason = None
        if not listing.for_sale:
            reason = "marketplace: model is not for sale"
        elif (duration, fee_bps) != (listing.duration, listing.fee_bps):
            reason = "marketplace: listing terms differ from the buyer's"
        elif listing.price > max_price:
            reason = "marketplace: price is above the buyer's maximum"
        elif order.state == PENDING:
            reason = "marketplace: a purchase of this model is already pending"
        elif order.state == DELIVERED and (order.time == 0 or self._now() < order.time):
            reason = "marketplace: buyer already holds a license"
        if reason is not None:
            with boa.env.prank(buyer), reverts(reason):
                self.market.purchase(model_id, terms, BUYER_KEY)
            return
        with boa.env.prank(buyer):
            self.market.purchase(model_id, terms, BUYER_KEY)
        now = self._now()
        if listing.price == 0:
            expiry = now + listing.duration if listing.duration else 0
            self.world.orders[(buyer, model_id)] = Order(DELIVERED, 0, expiry, 0, listing.duration)
            return
        self.world.outcomes.append(set())
        self.world.orders[(buyer, model_id)] = Order(
            PENDING,
            listing.price,
            now + DELIVERY_WINDOW,
            listing.fee_bps,
            listing.duration,
            len(self.world.outcomes) - 1,
        )
        self.world.balances[buyer] -= listing.price

    @precondition(lambda self: self._pending())
    @rule(data=st.data(), caller_kind=st.sampled_from(["owner", "agent", "other"]))
    def deliver(self, data: st.DataObject, caller_kind: str) -> None:
        buyer, model_id = data.draw(st.sampled_from(self._pending()))
        owner = self.world.models[model_id].owner
        if caller_kind == "owner":
            caller = owner
        elif caller_kind == "agent":
            caller = self.world.agents.get(owner, owner)
        else:
            caller = data.draw(st.sampled_from(self.accounts))
        version = data.draw(st.sampled_from([1, 1, 1, 0, 2]))  # every model has one version
        order = self.world.orders[(buyer, model_id)]
        reason = None
        if self._now() > order.time:
            reason = "marketplace: delivery deadline passed"
        elif caller not in (owner, self.world.agents.get(owner)):
            reason = "marketplace: caller is not the model owner or its agent"
        elif version != 1:
            reason = "marketplace: version does not exist"
        if reason is not None:
            with boa.env.prank(caller), reverts(reason):
                self.market.deliver(model_id, buyer, version, WRAPPED_KEY)
            return
        with boa.env.prank(caller):
            self.market.deliver(model_id, buyer, version, WRAPPED_KEY)
        self._settle(buyer, model_id)

    @precondition(lambda self: self._deliverable())
    @rule(data=st.data())
    def deliver_many(self, data: st.DataObject) -> None:
        owner = data.draw(
            st.sampled_from(sorted({self.world.models[m].owner for _, m in self._deliverable()}))
        )
        batch = [(b, m) for b, m in self._deliverable() if self.world.models[m].owner == owner]
        with boa.env.prank(owner):
            self.market.deliver_many([(m, b, 1, WRAPPED_KEY) for b, m in batch])
        for buyer, model_id in batch:
            self._settle(buyer, model_id)

    @precondition(lambda self: self._pending())
    @rule(data=st.data(), late=st.booleans())
    def refund(self, data: st.DataObject, late: bool) -> None:
        buyer, model_id = data.draw(st.sampled_from(self._pending()))
        if late:  # let the deadline pass first, or refunds would rarely come due
            boa.env.time_travel(seconds=DELIVERY_WINDOW + 1)
        order = self.world.orders[(buyer, model_id)]
        if self._now() <= order.time:
            with reverts("marketplace: delivery deadline not reached"):
                self.market.refund(model_id, buyer)
            return
        self.market.refund(model_id, buyer)
        order.state = REFUNDED
        self.world.outcomes[order.purchase].add("refunded")
        self.world.balances[buyer] += order.price

    @precondition(lambda self: self._waiting_matters())
    @rule(seconds=st.sampled_from(WAITS))
    def wait(self, seconds: int) -> None:
        boa.env.time_travel(seconds=seconds)

    @precondition(lambda self: self.world.models)
    @rule(data=st.data(), reviewer=st.integers(0, 3), rating=st.integers(0, 6))
    def review(self, data: st.DataObject, reviewer: int, rating: int) -> None:
        model_id = data.draw(st.sampled_from(sorted(self.world.models)))
        account = self.accounts[reviewer]
        reason = None
        if not 1 <= rating <= 5:
            reason = "reviews: rating must be between 1 and 5"
        elif account == self.world.models[model_id].owner:
            reason = "reviews: the model's owner cannot review it"
        elif not self._licensed(account, model_id):
            reason = "reviews: only license holders can review this model"
        if reason is not None:
            with boa.env.prank(account), reverts(reason):
                self.reviews.review(model_id, rating, bytes(32))
            return
        with boa.env.prank(account):
            self.reviews.review(model_id, rating, bytes(32))
        (event,) = [e for e in self.reviews.get_logs() if type(e).__name__ == "Reviewed"]
        assert event.updated == ((model_id, account) in self.world.ratings)
        self.world.ratings[(model_id, account)] = rating
        assert self.reviews.rating_of(model_id, account) == rating

    @precondition(lambda self: any(c > 1 for c in self.world.credits.values()))
    @rule(index=st.integers(0, 4))
    def withdraw(self, index: int) -> None:
        account = [*self.accounts, self.protocol][index]
        credited = self.world.credits.get(account, 0)
        if credited <= 1:
            with boa.env.prank(account), reverts("marketplace: nothing to withdraw"):
                self.market.withdraw()
            return
        with boa.env.prank(account):
            assert self.market.withdraw() == credited - 1
        self.world.credits[account] = 1
        self.world.balances[account] = self.world.balances.get(account, 0) + credited - 1

    @precondition(lambda self: self.world.models)
    @rule(data=st.data(), to=st.integers(0, 3))
    def transfer_model(self, data: st.DataObject, to: int) -> None:
        model_id = data.draw(st.sampled_from(sorted(self.world.models)))
        entry = self.world.models[model_id]
        with boa.env.prank(entry.owner):
            self.registry.transferFrom(entry.owner, self.accounts[to], model_id)
        entry.owner = self.accounts[to]

    @precondition(lambda self: self.world.admin_changes < 4)
    @rule(owner=st.integers(0, 3), agent=st.integers(0, 3))
    def set_agent(self, owner: int, agent: int) -> None:
        with boa.env.prank(self.accounts[owner]):
            self.market.set_agent(self.accounts[agent])
        self.world.agents[self.accounts[owner]] = self.accounts[agent]
        self.world.admin_changes += 1

    @precondition(lambda self: self.world.admin_changes < 4)
    @rule(fee_bps=st.sampled_from([0, 1, 250, 1_000]))
    def set_protocol_fee(self, fee_bps: int) -> None:
        with boa.env.prank(self.protocol):
            self.market.set_protocol_fee(fee_bps)
        self.world.fee_bps = fee_bps
        self.world.admin_changes += 1

    # -- invariants -------------------------------------------------------------

    @invariant()
    def check_money(self) -> None:
        assert self.token.totalSupply() == self.supply
        escrow = sum(o.price for o in self.world.orders.values() if o.state == PENDING)
        assert self.token.balanceOf(self.market.address) == escrow + sum(
            self.world.credits.values()
        )
        for account in [*self.accounts, self.protocol]:
            assert self.market.credits(account) == self.world.credits.get(account, 0)
            assert self.token.balanceOf(account) == self.world.balances.get(account, 0)

    @invariant()
    def check_orders(self) -> None:
        for (buyer, model_id), order in self.world.orders.items():
            if order.state == NONE:
                continue
            assert self.market.license(buyer, model_id) == (
                order.state,
                order.price,
                order.time,
                order.fee_bps,
            )
            assert self.market.has_license(buyer, model_id) == self._licensed(buyer, model_id)
        for ended in self.world.outcomes:
            assert len(ended) <= 1, ended

    @invariant()
    def check_owners(self) -> None:
        for model_id, entry in self.world.models.items():
            assert self.registry.ownerOf(model_id) == entry.owner


MarketplaceMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMarketplaceInvariants = MarketplaceMachine.TestCase
