"""The point-lot leaves: credit pays debt first, FIFO debit makes debt, expiry, month arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from loyalty_ledger.engine.lots import add_months, credit, credit_until, debit, expire, take
from loyalty_ledger.engine.state import CustomerState, Lot

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def customer(*lots: Lot, debt: int = 0) -> CustomerState:
    return CustomerState("c1", lots=list(lots), debt=debt, lots_made=len(lots))


# ---------------------------------------------------------------------- add_months


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        ("2026-01-31T10:00:00+00:00", 1, "2026-02-28T10:00:00+00:00"),
        ("2028-01-31T10:00:00+00:00", 1, "2028-02-29T10:00:00+00:00"),
        ("2026-03-31T00:00:00+00:00", 1, "2026-04-30T00:00:00+00:00"),
        ("2026-01-15T08:30:00+00:00", 1, "2026-02-15T08:30:00+00:00"),
        ("2026-11-30T23:59:59+00:00", 3, "2027-02-28T23:59:59+00:00"),
        ("2027-11-30T23:59:59+00:00", 3, "2028-02-29T23:59:59+00:00"),
        ("2026-12-31T12:00:00+00:00", 1, "2027-01-31T12:00:00+00:00"),
        ("2026-12-01T00:00:00+00:00", 12, "2027-12-01T00:00:00+00:00"),
        ("2026-03-01T12:00:00+00:00", 24, "2028-03-01T12:00:00+00:00"),
        ("2028-02-29T12:00:00+00:00", 12, "2029-02-28T12:00:00+00:00"),
        ("2028-02-29T12:00:00+00:00", 48, "2032-02-29T12:00:00+00:00"),
        ("2026-05-31T06:00:00+00:00", 13, "2027-06-30T06:00:00+00:00"),
        ("2026-03-01T12:00:00.123456+00:00", 1, "2026-04-01T12:00:00.123456+00:00"),
        ("2026-01-01T00:00:00+00:00", 0, "2026-01-01T00:00:00+00:00"),
    ],
    ids=[
        "jan-31-to-feb-28",
        "jan-31-to-feb-29-leap",
        "mar-31-to-apr-30",
        "mid-month",
        "over-year-end-clamped",
        "over-year-end-clamped-leap",
        "dec-to-jan",
        "twelve-months",
        "twenty-four-months",
        "leap-day-plus-a-year",
        "leap-day-plus-four-years",
        "thirteen-months-clamped",
        "keeps-microseconds",
        "zero-months",
    ],
)
def test_add_months(start: str, months: int, expected: str) -> None:
    result = add_months(at(start), months)
    assert result == at(expected)
    assert result.utcoffset() == timedelta(0)


# -------------------------------------------------------------------------- credit


def test_credit_adds_a_lot_expiring_months_later() -> None:
    state = customer()
    paid, lot = credit(state, 100, T0, 24)
    assert paid == 0
    assert lot == Lot(100, datetime(2028, 3, 1, 12, tzinfo=UTC), 1)
    assert state.lots == [lot]
    assert (state.lots_made, state.balance) == (1, 100)


def test_credit_without_expiry_never_expires() -> None:
    state = customer()
    _, lot = credit(state, 5, T0, 0)
    assert lot == Lot(5, None, 1)


def test_credit_pays_debt_first() -> None:
    state = customer(debt=30)
    paid, lot = credit(state, 100, T0, 24)
    assert paid == 30
    assert lot is not None and lot.remaining == 70
    assert (state.debt, state.balance) == (0, 70)


def test_credit_smaller_than_debt_makes_no_lot() -> None:
    state = customer(debt=100)
    assert credit(state, 40, T0, 24) == (40, None)
    assert (state.debt, state.lots, state.lots_made, state.balance) == (60, [], 0, -60)


def test_credit_equal_to_debt_makes_no_lot() -> None:
    state = customer(debt=40)
    assert credit(state, 40, T0, 24) == (40, None)
    assert (state.debt, state.lots, state.balance) == (0, [], 0)


def test_credit_of_zero_is_a_bug() -> None:
    with pytest.raises(AssertionError):
        credit(customer(), 0, T0, 24)


def test_credit_keeps_lots_in_expiry_then_creation_order() -> None:
    state = customer()
    credit(state, 1, T0 + timedelta(days=10), 1)  # n=1, expires Apr 11
    credit(state, 2, T0, 1)  # n=2, expires Apr 1: before n=1
    credit(state, 3, T0, 0)  # n=3, never: last
    credit(state, 4, T0, 1)  # n=4, expires Apr 1 like n=2: after it
    credit(state, 5, T0 - timedelta(days=40), 24)  # n=5, expires 2028: before never
    assert [lot.n for lot in state.lots] == [2, 4, 1, 5, 3]


# --------------------------------------------------------------------------- debit


def test_debit_takes_from_the_first_to_expire() -> None:
    early = Lot(30, T0, 1)
    late = Lot(50, T0 + timedelta(days=1), 2)
    state = customer(early, late)
    assert debit(state, 40) == 0
    assert state.lots == [Lot(40, T0 + timedelta(days=1), 2)]
    assert (state.debt, state.balance) == (0, 40)


def test_debit_partial_lot_keeps_its_expiry_and_number() -> None:
    state = customer(Lot(30, T0, 1), Lot(50, None, 2))
    assert debit(state, 10) == 0
    assert state.lots == [Lot(20, T0, 1), Lot(50, None, 2)]


def test_debit_of_a_whole_lot_removes_it() -> None:
    state = customer(Lot(30, T0, 1), Lot(50, None, 2))
    assert debit(state, 30) == 0
    assert state.lots == [Lot(50, None, 2)]


def test_debit_beyond_the_lots_becomes_debt() -> None:
    state = customer(Lot(30, T0, 1), Lot(50, None, 2), debt=0)
    assert debit(state, 100) == 20
    assert (state.lots, state.debt, state.balance) == ([], 20, -20)


def test_debit_adds_to_existing_debt() -> None:
    state = customer(debt=5)
    assert debit(state, 10) == 10
    assert (state.debt, state.balance) == (15, -15)


def test_debit_of_zero_is_a_bug() -> None:
    with pytest.raises(AssertionError):
        debit(customer(Lot(1, None, 1)), 0)


# ------------------------------------------------------------------ take (transfers)


def test_take_gives_the_parts_first_to_expire_first_with_their_expiry() -> None:
    early, late, never = Lot(30, T0, 1), Lot(50, T0 + timedelta(days=1), 2), Lot(9, None, 3)
    state = customer(early, late, never)
    assert take(state, 40) == [(30, T0), (10, T0 + timedelta(days=1))]
    assert state.lots == [Lot(40, T0 + timedelta(days=1), 2), never]
    assert (state.debt, state.balance) == (0, 49)


def test_take_all_empties_the_lots() -> None:
    state = customer(Lot(30, T0, 1), Lot(9, None, 2))
    assert take(state, 39) == [(30, T0), (9, None)]
    assert (state.lots, state.balance) == ([], 0)


def test_take_beyond_the_balance_is_a_bug() -> None:
    with pytest.raises(AssertionError):
        take(customer(Lot(30, T0, 1)), 31)
    with pytest.raises(AssertionError):
        take(customer(debt=5), 1)


# ------------------------------------------------------------ credit_until (transfers)


def test_credit_until_keeps_the_given_expiry_in_order() -> None:
    state = customer(Lot(5, T0 + timedelta(days=3), 1))
    assert credit_until(state, 7, T0) == (0, Lot(7, T0, 2))
    assert credit_until(state, 8, None) == (0, Lot(8, None, 3))
    assert [lot.n for lot in state.lots] == [2, 1, 3]


def test_credit_until_pays_debt_first() -> None:
    state = customer(debt=10)
    assert credit_until(state, 4, T0) == (4, None)
    assert credit_until(state, 9, T0) == (6, Lot(3, T0, 1))
    assert (state.debt, state.balance) == (0, 3)


def test_credit_until_an_instant_already_past_still_makes_the_lot() -> None:
    # a transferred part keeps its expiry even behind the recipient's clock: expire takes it
    state = customer()
    credit_until(state, 5, T0 - timedelta(days=1))
    assert expire(state, T0) == [Lot(5, T0 - timedelta(days=1), 1)]


# -------------------------------------------------------------------------- expire


def test_expire_at_or_before_the_clock() -> None:
    due = Lot(10, T0, 1)
    earlier = Lot(5, T0 - timedelta(days=1), 2)
    later = Lot(7, T0 + timedelta(microseconds=1), 3)
    never = Lot(9, None, 4)
    state = customer(earlier, due, later, never)
    assert expire(state, T0) == [earlier, due]
    assert state.lots == [later, never]
    assert state.balance == 16


def test_expire_nothing_due() -> None:
    state = customer(Lot(10, T0, 1))
    assert expire(state, T0 - timedelta(microseconds=1)) == []
    assert state.lots == [Lot(10, T0, 1)]


def test_expire_never_takes_never_expiring_lots() -> None:
    state = customer(Lot(10, None, 1))
    assert expire(state, datetime(9999, 12, 31, tzinfo=UTC)) == []


def test_expire_compares_instants_not_wall_clocks() -> None:
    # 13:00 in Berlin is 12:00 UTC: due at T0 though its wall clock reads later.
    berlin = datetime.fromisoformat("2026-03-01T13:00:00+01:00")
    state = customer(Lot(10, berlin, 1))
    assert expire(state, T0) == [Lot(10, berlin, 1)]


def test_expire_leaves_debt_alone() -> None:
    state = customer(debt=7)
    assert expire(state, T0) == []
    assert state.debt == 7


def test_lot_must_hold_points() -> None:
    with pytest.raises(AssertionError):
        Lot(0, None, 1)
