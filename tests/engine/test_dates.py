"""Calendar leaves: birthdays in a year, and `next_due_at`, the instant a tick can first matter."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from helpers import (
    DAY,
    MEMBERSHIPS,
    PENDING,
    T0,
    TRANSFERS,
    Book,
    action,
    membership,
    purchase,
    rules,
    signup,
    tick,
    timezone,
    transfer,
)

from loyalty_ledger.engine import Rules, decide_tick
from loyalty_ledger.engine.dates import ANY_TICK, birthday_in, next_due_at
from loyalty_ledger.engine.state import CustomerState

T24 = datetime(2028, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("birth_date", "year", "expected"),
    [
        (date(1990, 6, 15), 2026, date(2026, 6, 15)),
        (date(2000, 2, 29), 2027, date(2027, 2, 28)),
        (date(2000, 2, 29), 2028, date(2028, 2, 29)),
        (date(1999, 2, 28), 2028, date(2028, 2, 28)),
        (date(1990, 12, 31), 2026, date(2026, 12, 31)),
    ],
    ids=["plain", "feb-29-in-a-common-year", "feb-29-in-a-leap-year", "feb-28", "dec-31"],
)
def test_birthday_in(birth_date: date, year: int, expected: date) -> None:
    assert birthday_in(birth_date, year) == expected


def test_nothing_pending_is_never_due() -> None:
    assert next_due_at(CustomerState("c1"), rules()) is None


def test_points_that_never_expire_are_never_due() -> None:
    state = Book(rules(expiry=None, tiers=None)).run([purchase(total="10")]).states["c1"]
    assert next_due_at(state, rules(expiry=None, tiers=None)) is None


def test_due_at_the_first_lot_expiry() -> None:
    program = rules(tiers=None)
    book = Book(program).run([purchase(total="10"), purchase(order="o2", at=T0 + DAY)])
    assert next_due_at(book.states["c1"], program) == T24


def test_due_when_the_first_spend_leaves_the_tier_window() -> None:
    program = rules(expiry=None)
    book = Book(program).run([purchase(total="10"), purchase(order="o2", at=T0 + DAY)])
    assert next_due_at(book.states["c1"], program) == T0 + 365 * DAY


def test_due_the_earliest_of_expiry_and_spend() -> None:
    program = rules(expiry="[expiry]\nmonths = 3\n")
    book = Book(program).run([purchase(total="10")])
    assert next_due_at(book.states["c1"], program) == datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "signed_up", "latest"),
    [
        # latest instant by which next_due_at must fire: local midnight of the birthday
        ("Europe/Berlin", "2026-03-01T12:00:00Z", "2026-06-14T22:00:00Z"),
        ("Asia/Tokyo", "2026-03-01T12:00:00Z", "2026-06-14T15:00:00Z"),
        ("America/Los_Angeles", "2026-03-01T12:00:00Z", "2026-06-15T07:00:00Z"),
        ("Europe/Berlin", "2026-06-20T12:00:00Z", "2027-06-14T22:00:00Z"),
    ],
    ids=["berlin", "tokyo", "los-angeles", "after-this-years-birthday"],
)
def test_birthday_due_no_later_than_its_local_midnight(
    zone: str, signed_up: str, latest: str
) -> None:
    program = rules(program=timezone(zone), expiry=None)
    book = Book(program).run([signup(birth_date="1990-06-15", at=signed_up)])
    state = book.states["c1"]
    due = next_due_at(state, program)
    limit = datetime.fromisoformat(latest)
    assert due is not None and limit - timedelta(days=2) <= due <= limit
    assert decide_tick([state], tick(limit), program).entries  # granted at local midnight
    quiet = decide_tick([state], tick(limit - timedelta(microseconds=1)), program)
    assert quiet.entries == ()


def test_birthday_due_the_year_after_the_last_granted() -> None:
    program = rules(expiry=None)
    book = Book(program).run([signup(birth_date="1990-06-15"), tick("2026-07-01T00:00:00Z")])
    state = book.states["c1"]
    assert state.birthday_years == [2026]
    due = next_due_at(state, program)
    assert due is not None
    assert datetime(2027, 6, 12, tzinfo=UTC) <= due <= datetime(2027, 6, 14, 22, tzinfo=UTC)


def test_no_birthday_bonus_no_birthday_due() -> None:
    program = rules(birthday=None, expiry=None)
    state = Book(program).run([signup(birth_date="1990-06-15")]).states["c1"]
    assert next_due_at(state, program) is None


def test_a_late_credit_already_expired_expires_on_any_tick() -> None:
    # PROGRAM.md: a tick moves the clock to max(clock, T) and expires lots at the clock.
    program, state = _late_expired_credit()
    changed = decide_tick([state], tick(datetime(2026, 2, 1, tzinfo=UTC)), program).entries
    assert [(e.kind, e.points) for e in changed] == [("expiry", 50)]


def test_late_credit_already_expired_is_due_for_any_tick() -> None:
    program, state = _late_expired_credit()
    due = next_due_at(state, program)
    assert due is not None and due <= datetime(2026, 2, 1, tzinfo=UTC)


def _late_expired_credit() -> tuple[Rules, CustomerState]:
    program = rules(program=timezone("UTC"), expiry="[expiry]\nmonths = 1\n", tiers=None)
    book = Book(program).run(
        [
            signup(at="2026-03-01T12:00:00Z"),  # clock: Mar 1, bonus lot ends Apr 1
            action(name="newsletter_subscribed", at="2026-01-20T12:00:00Z"),  # ends Feb 20
        ]
    )
    return program, book.states["c1"]


# ------------------------------------------------------------------------ version 2


def test_due_at_the_first_pending_maturity() -> None:
    program = rules(pending=PENDING, expiry=None, tiers=None)
    book = Book(program).run([purchase(total="10", at=T0 + DAY), purchase(order="o2", at=T0)])
    state = book.states["c1"]
    assert next_due_at(state, program) == T0 + 14 * DAY
    quiet = decide_tick([state], tick(T0 + 14 * DAY - timedelta(microseconds=1)), program)
    assert quiet.entries == ()
    assert decide_tick([state], tick(T0 + 14 * DAY), program).entries


def test_a_late_maturity_behind_the_clock_is_due_for_any_tick() -> None:
    program = rules(pending=PENDING, expiry=None, tiers=None)
    book = Book(program).run([purchase(total="10", at=T0 + 20 * DAY), purchase(order="o2", at=T0)])
    state = book.states["c1"]
    assert next_due_at(state, program) == ANY_TICK
    matured = decide_tick([state], tick(T0), program).entries
    assert [(e.kind, e.points) for e in matured] == [("pending_matured", 10), ("credit", 10)]


def test_due_at_the_membership_end() -> None:
    program = rules(memberships=MEMBERSHIPS, expiry=None, tiers=None, birthday=None)
    state = Book(program).run([signup(), membership()]).states["c1"]
    assert next_due_at(state, program) == T0 + 365 * DAY
    ended = decide_tick([state], tick(T0 + 365 * DAY), program).entries
    assert [(e.kind, e.ref) for e in ended] == [("membership_ended", "vip")]


def test_due_the_earliest_of_maturity_membership_and_expiry() -> None:
    program = rules(
        pending="[pending]\ndays = 400\n",
        memberships=MEMBERSHIPS,
        expiry="[expiry]\nmonths = 3\n",
        tiers=None,
        birthday=None,
    )
    book = Book(program).run([signup(), membership(plan="plus", paid="10"), purchase(total="9")])
    state = book.states["c1"]
    assert next_due_at(state, program) == T0 + 30 * DAY  # plus ends first
    state = Book(program).run([signup(), purchase(total="9")]).states["c1"]
    assert next_due_at(state, program) == datetime(2026, 6, 1, 12, tzinfo=UTC)  # the signup lot


def test_a_transferred_part_already_expired_is_due_for_any_tick() -> None:
    program = rules(transfers=TRANSFERS, tiers=None, birthday=None)
    book = Book(program).run(
        [
            purchase("c2", order="o9", total="10", at=T24 + 5 * DAY),
            signup("c1"),
            transfer(points=100, at=T0 + DAY),
        ]
    )
    assert next_due_at(book.states["c2"], program) == ANY_TICK
