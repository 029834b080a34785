"""Calendar leaves: birthdays in a given year, and when a customer is next due for a tick."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from loyalty_ledger.engine.rules import History, Rules, history_of
from loyalty_ledger.engine.state import CustomerState

# Early is always safe (the tick re-checks exactly); a day covers any offset or DST gap.
_MARGIN = timedelta(days=1)
ANY_TICK = datetime.min.replace(tzinfo=UTC)  # due for every tick, whatever its instant


def birthday_in(birth_date: date, year: int) -> date:
    """The birthday in `year`; Feb 29 falls on Feb 28 in other years."""
    try:
        return date(year, birth_date.month, birth_date.day)
    except ValueError:
        return date(year, 2, 28)


def next_due_at(state: CustomerState, rules: Rules | History) -> datetime | None:
    """The earliest instant at which a tick could change this customer, or None for never.

    With amendments: by the version in force at the customer's clock, and no later than
    the next effective_at after it (a new version may move a tier threshold, a window or
    a birthday bonus: the tick then decides again).
    """
    history = history_of(rules)
    if not history.amendments:
        return _next_due_at(state, history.original)
    clock = state.clock or ANY_TICK
    due = _next_due_at(state, history.at(clock))
    change = history.next_change_after(clock)
    if change is not None and (due is None or change < due):
        return change
    return due


def _next_due_at(state: CustomerState, rules: Rules) -> datetime | None:
    # Once per decided customer: the earliest of the candidates, kept first on a tie as min()
    # would, without building a list. A late one (behind the clock) is due at any tick.
    clock = state.clock
    due: datetime | None = None
    if state.lots and state.lots[0].expires_at is not None:
        expires_at = state.lots[0].expires_at
        # A late credit can expire before the clock: any tick at all then expires it.
        due = ANY_TICK if clock and expires_at <= clock else expires_at
    if state.pending:  # sorted by maturity instant
        matures_at = state.pending[0].matures_at
        due = _earlier(due, ANY_TICK if clock and matures_at <= clock else matures_at)
    if state.membership is not None:
        ends_at = state.membership[1]
        due = _earlier(due, ANY_TICK if clock and ends_at <= clock else ends_at)
    if rules.levels and state.spend:
        due = _earlier(due, state.spend[0][0] + rules.window)  # spend is sorted
    birthday = _next_birthday(state, rules)
    if birthday is not None:
        # Positional: datetime's keyword arguments cost more than the conversion.
        local = datetime(birthday.year, birthday.month, birthday.day, 0, 0, 0, 0, rules.tz)
        due = _earlier(due, local.astimezone(UTC) - _MARGIN)
    return due


def _earlier(due: datetime | None, candidate: datetime) -> datetime:
    return candidate if due is None or candidate < due else due


def _next_birthday(state: CustomerState, rules: Rules) -> date | None:
    if not rules.birthday_bonus or state.signed_up_on is None or state.birth_date is None:
        return None
    if state.birthday_years:
        return birthday_in(state.birth_date, max(state.birthday_years) + 1)
    year = state.signed_up_on.year
    if birthday_in(state.birth_date, year) < state.signed_up_on:
        year += 1
    return birthday_in(state.birth_date, year)
