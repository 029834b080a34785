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


@dataclass(frozen=True, slots=True)
class Pending:
    """An order's points waiting out the return window (PROGRAM.md version 2)."""

    matures_at: datetime
    n: int  # creation order within the customer
    order_id: str
    points: int  # what is left of it

    def __post_init__(self) -> None:
        assert self.points > 0, self


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
    # Version 2: adjustments (signed), transfers, pending amounts, campaign counts by id,
    # and the membership (plan, end instant) while it has not been seen to end.
    adjusted: int = 0
    transferred_in: int = 0
    transferred_out: int = 0
    pending: list[Pending] = field(default_factory=list)  # by (matures_at, n)
    pending_made: int = 0
    campaigns: dict[str, int] = field(default_factory=dict)
    membership: tuple[str, datetime] | None = None

    @property
    def balance(self) -> int:
        # A list, not a generator: resuming a generator per lot cost several times as much,
        # and the balance is read for most inputs (rules, limits, the input's outcome).
        return sum([lot.remaining for lot in self.lots]) - self.debt

    @property
    def pending_points(self) -> int:
        return sum(p.points for p in self.pending)

    def within_limit(self) -> bool:
        """Every point total within POINTS_LIMIT (PROGRAM.md "Bounds"). Pending points are
        counted as if they had matured already, so a maturity never crosses the limit."""
        if not (self.pending or self.adjusted or self.transferred_in or self.transferred_out):
            # Version 1's totals only: `earned` bounds the others and the balance.
            return self.earned <= POINTS_LIMIT
        pending = self.pending_points if self.pending else 0
        return (
            self.earned + pending <= POINTS_LIMIT
            # What the lots hold (balance + debt) may all expire one day, and a tick cannot
            # be refused: credits beside `earned` (adjustments, transfers) are held to it.
            and self.expired + self.balance + self.debt + pending <= POINTS_LIMIT
            and abs(self.balance) + pending <= POINTS_LIMIT
            and abs(self.adjusted) <= POINTS_LIMIT
            and self.transferred_in <= POINTS_LIMIT
            and self.transferred_out <= POINTS_LIMIT
            and self.redeemed <= POINTS_LIMIT
            and self.reversed <= POINTS_LIMIT
            and self.expired <= POINTS_LIMIT
        )

    def credit_room(self, total: int = -1) -> int:
        """The most points a credit counted in `total` (default: `earned`) may add before it
        or the balance would pass POINTS_LIMIT."""
        counted = self.earned if total < 0 else total
        pending = self.pending_points if self.pending else 0
        expirable = self.expired + self.balance + self.debt  # what has expired or may
        return max(
            0, min(POINTS_LIMIT - counted, POINTS_LIMIT - self.balance, POINTS_LIMIT - expirable)
            - pending,
        )  # fmt: skip

    def clone(self) -> CustomerState:
        """A copy the engine may change. Lots and spend (small, changed by most events) are
        copied here; the containers that grow with history and change rarely (orders,
        actions, stamps, birthdays, redemptions) are shared, and copied by `own` right
        before a rule changes one of them."""
        # Slot by slot, not through __init__: 32 keyword arguments took four times as long,
        # once per decided customer. tests/engine/test_state.py checks every field is copied.
        copy = object.__new__(CustomerState)
        copy.customer_id = self.customer_id
        copy.version = self.version
        copy.clock = self.clock
        copy.ticks_seen = self.ticks_seen
        copy.enrolled = self.enrolled
        copy.signed_up_on = self.signed_up_on
        copy.birth_date = self.birth_date
        copy.referrer_id = self.referrer_id
        copy.referral_settled = self.referral_settled
        copy.tier = self.tier
        copy.debt = self.debt
        copy.lots_made = self.lots_made
        copy.referrals_qualified = self.referrals_qualified
        copy.earned = self.earned
        copy.redeemed = self.redeemed
        copy.reversed = self.reversed
        copy.expired = self.expired
        copy.lots = list(self.lots)
        copy.orders = self.orders
        copy.spend = list(self.spend)
        copy.spend_total = self.spend_total
        copy.actions = self.actions
        copy.stamps = self.stamps
        copy.birthday_years = self.birthday_years
        copy.redemption_ids = self.redemption_ids
        copy.adjusted = self.adjusted
        copy.transferred_in = self.transferred_in
        copy.transferred_out = self.transferred_out
        copy.pending = list(self.pending) if self.pending else []
        copy.pending_made = self.pending_made
        copy.campaigns = self.campaigns
        copy.membership = self.membership
        return copy

    def own_campaigns(self) -> dict[str, int]:
        self.campaigns = dict(self.campaigns)
        return self.campaigns

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
_ZERO = Decimal(0)
_MICROSECOND = timedelta(microseconds=1)


def _instant(value: datetime | None) -> int | None:
    return (value - _EPOCH) // _MICROSECOND if value is not None else None


def _parse_instant(value: int | None) -> datetime | None:
    return _EPOCH + timedelta(microseconds=value) if value is not None else None


def to_snapshot(state: CustomerState) -> dict[str, Any]:
    """A JSON-ready dict; `from_snapshot` inverts it exactly. Version 2's parts are written
    only when used, so a version 1 customer's snapshot stays as small as it was."""
    snapshot: dict[str, Any] = {
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
    if state.adjusted or state.transferred_in or state.transferred_out:
        snapshot["moved"] = [state.adjusted, state.transferred_in, state.transferred_out]
    if state.pending_made:
        snapshot["pending_made"] = state.pending_made
        snapshot["pending"] = [
            [_instant(p.matures_at), p.n, p.order_id, p.points] for p in state.pending
        ]
    if state.campaigns:
        snapshot["campaigns"] = dict(state.campaigns)
    if state.membership is not None:
        snapshot["membership"] = [state.membership[0], _instant(state.membership[1])]
    if state.spend and state.spend_total != sum((a for _, a in state.spend), _ZERO):
        # Amendments: spend kept for a longer window than the one in force counts in no
        # total yet, so the total is not the sum (PROGRAM.md "Amendments").
        snapshot["spend_total"] = str(state.spend_total)
    return snapshot


def _version_2(state: CustomerState, data: dict[str, Any]) -> CustomerState:
    moved = data.get("moved")
    if moved is not None:
        state.adjusted, state.transferred_in, state.transferred_out = moved
    if "pending_made" in data:
        state.pending_made = data["pending_made"]
        state.pending = [
            Pending(_EPOCH + timedelta(microseconds=m), n, order_id, points)
            for m, n, order_id, points in data["pending"]
        ]
    if "campaigns" in data:
        state.campaigns = dict(data["campaigns"])
    membership = data.get("membership")
    if membership is not None:
        state.membership = (membership[0], _EPOCH + timedelta(microseconds=membership[1]))
    if "spend_total" in data:
        state.spend_total = Decimal(data["spend_total"])
    return state


def from_snapshot(customer_id: str, data: dict[str, Any]) -> CustomerState:
    """The state `to_snapshot` gave. Snapshots from before the lifetime totals got them from
    migration 0006, which summed the ledger."""
    # Slot by slot, as `clone`: a cache miss reads one per customer, and the 32 keyword
    # arguments of __init__ cost 8% of it (cachegrind). tests/engine/test_state.py
    # round-trips every field, so a field left out here fails there.
    state = object.__new__(CustomerState)
    state.customer_id = customer_id
    state.version = data["v"]
    state.clock = _parse_instant(data["clock"])
    state.ticks_seen = data["ticks"]
    state.enrolled = data["enrolled"]
    signed_up_on, birth_date = data["signed_up_on"], data["birth_date"]
    state.signed_up_on = date.fromisoformat(signed_up_on) if signed_up_on else None
    state.birth_date = date.fromisoformat(birth_date) if birth_date else None
    state.referrer_id = data["referrer"]
    state.referral_settled = data["settled"]
    state.tier = data["tier"]
    state.debt = data["debt"]
    state.lots_made = data["lots_made"]
    state.referrals_qualified = data["qualified"]
    state.earned = data["earned"]
    state.redeemed = data["redeemed"]
    state.reversed = data["reversed"]
    state.expired = data["expired"]
    state.lots = [Lot(r, _parse_instant(e), n) for r, e, n in data["lots"]]
    state.orders = {
        oid: Order(Decimal(t), Decimal(r), pe, pr)
        for oid, (t, r, pe, pr) in data["orders"].items()
    }
    spend = [(_EPOCH + timedelta(microseconds=s), Decimal(a)) for s, a in data["spend"]]
    state.spend = spend
    state.spend_total = sum([a for _, a in spend], _ZERO)
    state.actions = dict(data["actions"])
    state.stamps = dict(data["stamps"])
    state.birthday_years = list(data["birthdays"])
    state.redemption_ids = set(data["redemptions"])
    # Version 2's parts, at their defaults unless the snapshot has them (_version_2).
    state.adjusted = state.transferred_in = state.transferred_out = 0
    state.pending = []
    state.pending_made = 0
    state.campaigns = {}
    state.membership = None
    return _version_2(state, data) if len(data) > _VERSION_1_KEYS else state


_VERSION_1_KEYS: Final = 23  # the keys every snapshot has; more means version 2 parts
