"""Point lots: credit (debt first), FIFO debit (debt for what is missing), expiry. Pure leaves."""

from __future__ import annotations

import bisect
import calendar
from datetime import UTC, datetime

from loyalty_ledger.engine.state import CustomerState, Lot

_NEVER = datetime.max.replace(tzinfo=UTC)


_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_in(year: int, month: int) -> int:
    # calendar.monthrange also computes the weekday: a tenth of the engine's time, unused.
    if month == 2 and calendar.isleap(year):
        return 29
    return _DAYS[month - 1]


def add_months(at: datetime, months: int) -> datetime:
    """`at` plus calendar months, the day clamped to the month's last day."""
    index = at.month - 1 + months
    year, month = at.year + index // 12, index % 12 + 1
    day = min(at.day, _days_in(year, month))
    # The constructor, not at.replace(year=..., ...): keywords cost twice as much, per credit.
    return datetime(
        year, month, day, at.hour, at.minute, at.second, at.microsecond, at.tzinfo, fold=at.fold
    )


def _order(lot: Lot) -> tuple[datetime, int]:
    return (lot.expires_at or _NEVER, lot.n)


def credit(state: CustomerState, points: int, at: datetime, months: int) -> tuple[int, Lot | None]:
    """Add `points` at `at`: pay off debt first, then a new lot. Returns (debt paid, lot)."""
    return credit_until(state, points, add_months(at, months) if months else None)


def credit_until(
    state: CustomerState, points: int, expires_at: datetime | None
) -> tuple[int, Lot | None]:
    """Add `points` expiring at `expires_at` (None: never): debt first, then a new lot."""
    assert points > 0
    paid = min(points, state.debt)
    state.debt -= paid
    if paid == points:
        return paid, None
    state.lots_made += 1
    lot = Lot(points - paid, expires_at, state.lots_made)
    lots = state.lots
    if not lots or _order(lots[-1]) <= _order(lot):
        lots.append(lot)  # the usual case: credits come in time order, so do their expiries
    else:
        bisect.insort(lots, lot, key=_order)
    return paid, lot


def debit(state: CustomerState, points: int) -> int:
    """Take `points` from the lots, first to expire first; returns what became debt."""
    assert points > 0
    left = points
    while left and state.lots:
        lot = state.lots[0]
        if lot.remaining > left:
            state.lots[0] = Lot(lot.remaining - left, lot.expires_at, lot.n)
            left = 0
        else:
            left -= lot.remaining
            del state.lots[0]
    state.debt += left
    return left


def take(state: CustomerState, points: int) -> list[tuple[int, datetime | None]]:
    """Take `points` (at most the lots hold) first to expire first, as a debit does; returns
    the parts taken, each (points, its lot's expiry instant), for a transfer to carry."""
    assert 0 < points <= state.balance
    parts: list[tuple[int, datetime | None]] = []
    left = points
    while left:
        lot = state.lots[0]
        if lot.remaining > left:
            state.lots[0] = Lot(lot.remaining - left, lot.expires_at, lot.n)
            parts.append((left, lot.expires_at))
            left = 0
        else:
            left -= lot.remaining
            parts.append((lot.remaining, lot.expires_at))
            del state.lots[0]
    return parts


def expire(state: CustomerState, clock: datetime) -> list[Lot]:
    """Remove every lot whose expiry instant is at or before `clock`; returns them."""
    gone: list[Lot] = []
    while state.lots and state.lots[0].expires_at is not None and state.lots[0].expires_at <= clock:
        gone.append(state.lots.pop(0))
    return gone
