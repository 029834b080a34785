"""CustomerState.clone: every field copied, the small lists owned, the big containers shared;
and every field through a snapshot and back."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson

from loyalty_ledger.engine.state import (
    CustomerState,
    Lot,
    Order,
    Pending,
    from_snapshot,
    to_snapshot,
)

_AT = datetime(2024, 5, 1, tzinfo=UTC)


def _full() -> CustomerState:
    """A state whose every field differs from its default."""
    return CustomerState(
        customer_id="c1", version=7, clock=_AT, ticks_seen=3, enrolled=True,
        signed_up_on=date(2024, 1, 2), birth_date=date(1990, 2, 3), referrer_id="c2",
        referral_settled=True, tier="gold", debt=5, lots_made=4, referrals_qualified=2,
        earned=900, redeemed=100, reversed=10, expired=20, lots=[Lot(50, _AT, 4)],
        orders={"o1": Order(Decimal("10.5"), Decimal(0), 10, 0)},
        spend=[(_AT, Decimal("10.5"))], spend_total=Decimal("10.5"), actions={"a": 1},
        stamps={"s": 2}, birthday_years=[2024], redemption_ids={"r1"}, adjusted=-3,
        transferred_in=8, transferred_out=9, pending=[Pending(_AT, 1, "o1", 6)],
        pending_made=1, campaigns={"k": 1}, membership=("plus", _AT),
    )  # fmt: skip


def test_every_field_differs_from_its_default() -> None:
    # Guards the test itself: a new field must be given a value in _full().
    state, blank = _full(), CustomerState("c1")
    names = [f.name for f in dataclasses.fields(CustomerState) if f.name != "customer_id"]
    same = [name for name in names if getattr(state, name) == getattr(blank, name)]
    assert same == []


def test_clone_copies_every_field() -> None:
    state = _full()
    copy = state.clone()
    assert copy == state
    for f in dataclasses.fields(CustomerState):
        assert getattr(copy, f.name) == getattr(state, f.name), f.name


def test_clone_owns_lots_spend_and_pending_and_shares_the_rest() -> None:
    state = _full()
    copy = state.clone()
    assert copy.lots is not state.lots
    assert copy.spend is not state.spend
    assert copy.pending is not state.pending
    assert copy.orders is state.orders
    assert copy.redemption_ids is state.redemption_ids
    copy.own_orders()["o2"] = Order(Decimal(1), Decimal(0), 1, 0)
    assert "o2" not in state.orders


def test_every_field_survives_a_snapshot() -> None:
    state = _full()
    back = from_snapshot("c1", orjson.loads(orjson.dumps(to_snapshot(state))))
    for f in dataclasses.fields(CustomerState):
        assert getattr(back, f.name) == getattr(state, f.name), f.name


def test_a_version_1_snapshot_gives_version_2_defaults() -> None:
    state = CustomerState("c1", version=2, lots=[Lot(5, None, 1)], earned=5)
    back = from_snapshot("c1", orjson.loads(orjson.dumps(to_snapshot(state))))
    assert back == state
    assert back.pending == [] and back.campaigns == {} and back.membership is None
