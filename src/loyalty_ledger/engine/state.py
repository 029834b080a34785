"""One customer's decision state, its copy-on-write clone, and its snapshot form (JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

# PROGRAM.md "Bounds": no point total of a customer goes beyond 10^15 in absolute value.
# Paired with CHECKs on ledger.points and on the balance projection's columns.
POINTS_LIMIT: Final = 10**15


@dataclass(frozen=True, slots=True)
class Lot:
    """Points credited together; consumed first-to-expire, then first-created."""

    remaining: int
    expires_at: datetime | None  # None: never
    n: int  # creation order within the customer

    def __post_init__(self) -> None:
        assert self.remaining > 0, self


@dataclass(frozen=True, slots=True)
class Order:
    total: Decimal
    refunded: Decimal
    points_earned: int
    points_reversed: int

    def __post_init__(self) -> None:
        assert Decimal(0) <= self.refunded <= self.total, self
        assert 0 <= self.points_reversed <= self.points_earned, self


@dataclass(slots=True)
class CustomerState:
    """Mutable only inside one decision, on a clone; the engine never touches its input."""

    customer_id: str
    version: int = 0  # number of ledger entries so far
    clock: datetime | None = None
    ticks_seen: int = 0  # ticks of the stream already folded into `clock`
    enrolled: bool = False
    signed_up_on: date | None = None  # local date in the program's timezone
    birth_date: date | None = None
    referrer_id: str | None = None
    referral_settled: bool = False
    tier: str | None = None
    debt: int = 0
    lots_made: int = 0
    referrals_qualified: int = 0
    # Lifetime point totals, the sums of the ledger's credit, redemption, reversal and
    # expiry entries: what the points limit is checked on. `earned` bounds the others
    # (nothing takes more points than were credited) and the balance (between -reversed
    # and earned): while it is within the limit, every total is.
    earned: int = 0
    redeemed: int = 0
    reversed: int = 0
    expired: int = 0
    lots: list[Lot] = field(default_factory=list)
    orders: dict[str, Order] = field(default_factory=dict)
    spend: list[tuple[datetime, Decimal]] = field(default_factory=list)  # in window, sorted
    spend_total: Decimal = Decimal(0)  # sum of `spend`, kept as it changes (derived on load)
    actions: dict[str, int] = field(default_factory=dict)
    stamps: dict[str, int] = field(default_factory=dict)
    birthday_years: list[int] = field(default_factory=list)
    redemption_ids: set[str] = field(default_factory=set)

    @property
    def balance(self) -> int:
        return sum(lot.remaining for lot in self.lots) - self.debt

    def credit_room(self) -> int:
        """The most points a credit may add before a total would pass POINTS_LIMIT.

        Only `earned` can: a credit adds as much to the balance, which is never above it."""
        return max(0, POINTS_LIMIT - self.earned)

    def clone(self) -> CustomerState:
        """A copy the engine may change. Lots and spend (small, changed by most events) are
        copied here; the containers that grow with history and change rarely (orders,
        actions, stamps, birthdays, redemptions) are shared, and copied by `own` right
        before a rule changes one of them."""
        return CustomerState(
            customer_id=self.customer_id,
            version=self.version,
            clock=self.clock,
            ticks_seen=self.ticks_seen,
            enrolled=self.enrolled,
            signed_up_on=self.signed_up_on,
            birth_date=self.birth_date,
            referrer_id=self.referrer_id,
            referral_settled=self.referral_settled,
            tier=self.tier,
            debt=self.debt,
            lots_made=self.lots_made,
            referrals_qualified=self.referrals_qualified,
            earned=self.earned,
            redeemed=self.redeemed,
            reversed=self.reversed,
            expired=self.expired,
            lots=list(self.lots),
            orders=self.orders,
            spend=list(self.spend),
            spend_total=self.spend_total,
            actions=self.actions,
            stamps=self.stamps,
            birthday_years=self.birthday_years,
            redemption_ids=self.redemption_ids,
        )

    def own_orders(self) -> dict[str, Order]:
        self.orders = dict(self.orders)
        return self.orders

    def own_actions(self) -> dict[str, int]:
        self.actions = dict(self.actions)
        return self.actions

    def own_stamps(self) -> dict[str, int]:
        self.stamps = dict(self.stamps)
        return self.stamps

    def own_birthday_years(self) -> list[int]:
        self.birthday_years = list(self.birthday_years)
        return self.birthday_years

    def own_redemption_ids(self) -> set[str]:
        self.redemption_ids = set(self.redemption_ids)
        return self.redemption_ids


def new_customer(customer_id: str, tier: str | None) -> CustomerState:
    return CustomerState(customer_id=customer_id, tier=tier)


# Instants in snapshots are integer microseconds since the Unix epoch, UTC: exact, and
# several times cheaper to write and read than ISO strings (a snapshot per customer per batch).
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _instant(value: datetime | None) -> int | None:
    return (value - _EPOCH) // _MICROSECOND if value is not None else None


def _parse_instant(value: int | None) -> datetime | None:
    return _EPOCH + timedelta(microseconds=value) if value is not None else None


def to_snapshot(state: CustomerState) -> dict[str, Any]:
    """A JSON-ready dict; `from_snapshot` inverts it exactly."""
    return {
        "v": state.version,
        "clock": _instant(state.clock),
        "ticks": state.ticks_seen,
        "enrolled": state.enrolled,
        "signed_up_on": state.signed_up_on.isoformat() if state.signed_up_on else None,
        "birth_date": state.birth_date.isoformat() if state.birth_date else None,
        "referrer": state.referrer_id,
        "settled": state.referral_settled,
        "tier": state.tier,
        "debt": state.debt,
        "lots_made": state.lots_made,
        "qualified": state.referrals_qualified,
        "earned": state.earned,
        "redeemed": state.redeemed,
        "reversed": state.reversed,
        "expired": state.expired,
        "lots": [[lot.remaining, _instant(lot.expires_at), lot.n] for lot in state.lots],
        "orders": {
            oid: [str(o.total), str(o.refunded), o.points_earned, o.points_reversed]
            for oid, o in state.orders.items()
        },
        "spend": [[_instant(s), str(a)] for s, a in state.spend],
        "actions": dict(state.actions),
        "stamps": dict(state.stamps),
        "birthdays": list(state.birthday_years),
        "redemptions": sorted(state.redemption_ids),
    }


def from_snapshot(customer_id: str, data: dict[str, Any]) -> CustomerState:
    """The state `to_snapshot` gave. Snapshots from before the lifetime totals got them from
    migration 0006, which summed the ledger."""
    spend = [(_EPOCH + timedelta(microseconds=s), Decimal(a)) for s, a in data["spend"]]
    return CustomerState(
        customer_id=customer_id,
        version=data["v"],
        clock=_parse_instant(data["clock"]),
        ticks_seen=data["ticks"],
        enrolled=data["enrolled"],
        signed_up_on=date.fromisoformat(data["signed_up_on"]) if data["signed_up_on"] else None,
        birth_date=date.fromisoformat(data["birth_date"]) if data["birth_date"] else None,
        referrer_id=data["referrer"],
        referral_settled=data["settled"],
        tier=data["tier"],
        debt=data["debt"],
        lots_made=data["lots_made"],
        referrals_qualified=data["qualified"],
        earned=data["earned"],
        redeemed=data["redeemed"],
        reversed=data["reversed"],
        expired=data["expired"],
        lots=[Lot(r, _parse_instant(e), n) for r, e, n in data["lots"]],
        orders={
            oid: Order(Decimal(t), Decimal(r), pe, pr)
            for oid, (t, r, pe, pr) in data["orders"].items()
        },
        spend=spend,
        spend_total=sum((a for _, a in spend), Decimal(0)),
        actions=dict(data["actions"]),
        stamps=dict(data["stamps"]),
        birthday_years=list(data["birthdays"]),
        redemption_ids=set(data["redemptions"]),
    )
