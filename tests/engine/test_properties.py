"""Invariants of the engine over generated programs and event streams (hypothesis, bounded).

Streams hold every event type over a few customers: ticks, late arrivals, returns of
orders placed earlier, redemptions of random sizes and ids. They run through the reference
driver (helpers.Book: a tick goes to ALL states); the properties are checked after every
decision, so a failure shrinks to the first event that breaks one.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from helpers import DAY, T0, Book, ledger_totals
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty_ledger import events as ev
from loyalty_ledger.engine import Decision, Rules, compile_rules, decide, decide_tick
from loyalty_ledger.engine.dates import ANY_TICK, next_due_at
from loyalty_ledger.engine.reasons import Reason
from loyalty_ledger.engine.state import POINTS_LIMIT, CustomerState, from_snapshot, to_snapshot
from loyalty_ledger.ledger.entries import Entry, Kind
from loyalty_ledger.program import parse_program

CUSTOMERS = ("c1", "c2", "c3", "c4")
REDEMPTION_IDS = ("r1", "r2", "r3")
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,  # nothing written outside tests/engine; a failure prints its example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------------ programs


@st.composite
def programs(draw: st.DrawFn, units: tuple[str, ...] = ("1", "0.5", "2", "1.25", "1000")) -> Rules:
    """The example program's features, each on or off or with other figures."""
    zone = draw(st.sampled_from(["UTC", "Europe/Berlin", "Asia/Tokyo", "America/Los_Angeles"]))
    # 1000 points per unit: a few of the largest purchases reach the points limit.
    unit = draw(st.sampled_from(units))
    shoes = draw(st.sampled_from(["1", "2", "0.5"]))
    parts = [
        f'[program]\nname = "p"\ncurrency = "EUR"\ntimezone = "{zone}"\n',
        f'[earn]\npoints_per_unit = "{unit}"\ncategory_multipliers = {{ shoes = "{shoes}" }}\n'
        'channel_multipliers = { app = "1.5", pos = "0.75" }\n',
    ]
    months = draw(st.sampled_from([None, 0, 1, 3, 24]))
    if months is not None:
        parts.append(f"[expiry]\nmonths = {months}\n")
    if draw(st.booleans()):
        window = draw(st.sampled_from([None, 30, 365]))
        parts.append(
            "[tiers]\n"
            + (f"window_days = {window}\n" if window else "")
            + '[[tiers.levels]]\nname = "bronze"\nmin_spend = "0"\nmultiplier = "1"\n'
            '[[tiers.levels]]\nname = "silver"\nmin_spend = "100"\nmultiplier = "1.25"\n'
            '[[tiers.levels]]\nname = "gold"\nmin_spend = "400"\nmultiplier = "1.5"\n'
        )
    signup_bonus = draw(st.sampled_from([None, 0, 100]))
    if signup_bonus is not None:
        parts.append(f"[signup]\nbonus = {signup_bonus}\n")
    if draw(st.booleans()):
        parts.append("[birthday]\nbonus = 250\n")
    if draw(st.integers(0, 2)):
        referrer = draw(st.sampled_from([0, 500]))
        referee = draw(st.sampled_from([0, 30]))
        least = draw(st.sampled_from(["0", "20"]))
        parts.append(
            f"[referral]\nreferrer_bonus = {referrer}\nreferee_bonus = {referee}\n"
            f'min_first_purchase = "{least}"\n'
            '[[referral.ladder]]\ncount = 1\nreward = "pen"\n'
            '[[referral.ladder]]\ncount = 2\nreward = "razor"\n'
        )
    least_points = draw(st.sampled_from([None, 0, 50]))
    if least_points is not None:
        parts.append(f"[redemption]\nmin_points = {least_points}\n")
    review_limit = draw(st.sampled_from(["", "max_per_customer = 2\n"]))
    parts.append(
        '[[actions]]\nname = "newsletter_subscribed"\npoints = 50\nmax_per_customer = 1\n'
        f'[[actions]]\nname = "review_written"\npoints = 20\n{review_limit}'
        '[[actions]]\nname = "liked"\npoints = 0\n'
    )
    if draw(st.booleans()):
        parts.append(
            '[[stamp_cards]]\nid = "coffee"\nevery = 2\nmin_total = "3"\n'
            'categories = ["coffee"]\nreward = "free-coffee"\n'
            '[[stamp_cards]]\nid = "any"\nevery = 3\nreward = "mug"\n'
        )
    parts.append('[[rewards]]\nid = "voucher"\ncost = 60\n[[rewards]]\nid = "gift"\ncost = 400\n')
    return compile_rules(parse_program("\n".join(parts)))


# ------------------------------------------------------------------------- streams

STEPS = [timedelta(0), timedelta(hours=1), DAY, 10 * DAY, 45 * DAY, 200 * DAY, 400 * DAY]
LATE = [timedelta(minutes=1), 2 * DAY, 40 * DAY, 380 * DAY]
KINDS = [
    *["signup", "purchase", "purchase", "return", "referral"],
    *["redemption", "redemption", "action", "action", "tick"],
]


TOP = Decimal("999999999999.999999")  # the largest amount on the wire


def _money(draw: st.DrawFn, most_cents: int) -> str:
    cents = draw(st.integers(0, most_cents))
    return f"{cents // 100}.{cents % 100:02d}"


@st.composite
def streams(draw: st.DrawFn) -> list[ev.Event]:
    now = T0
    orders: list[tuple[str, str, Decimal]] = []
    seen: set[str] = set()
    out: list[ev.Event] = []
    for n in range(draw(st.integers(1, 35))):
        now += draw(st.sampled_from(STEPS))
        at = now - draw(st.sampled_from(LATE)) if draw(st.integers(0, 7)) == 0 else now
        kind = draw(st.sampled_from(KINDS))
        who = draw(st.sampled_from(CUSTOMERS))
        if kind in ("redemption", "action") and seen and draw(st.integers(0, 3)):
            who = draw(st.sampled_from(sorted(seen)))  # mostly customers likely enrolled
        if kind in ("signup", "purchase"):
            seen.add(who)
        base: dict[str, Any] = {
            "type": kind,
            "event_id": f"e{n}",
            "occurred_at": at,
            "channel": draw(st.sampled_from(["web", "app", "pos"])),
        }
        if kind != "tick":
            base["customer_id"] = who
        base.update(_fields(draw, kind, who, n, orders))
        out.append(ev.EVENT_CLASSES[kind].model_validate(base))
    return out


def _fields(
    draw: st.DrawFn, kind: str, who: str, n: int, orders: list[tuple[str, str, Decimal]]
) -> dict[str, Any]:
    if kind == "signup":
        return {
            "email": f"{who}@example.org",
            "birth_date": draw(st.none() | st.dates(date(1960, 1, 1), date(2030, 12, 31))),
            "referred_by": draw(st.none() | st.sampled_from(CUSTOMERS)),
            "newsletter": draw(st.booleans()),
        }
    if kind == "purchase":
        items = [
            {
                "sku": f"s{i}",
                "category": draw(st.sampled_from(["shoes", "coffee", "tea"])),
                "quantity": draw(st.integers(1, 3)),
                "unit_price": _money(draw, 20000),
            }
            for i in range(draw(st.integers(0, 3)))
        ]
        if items and draw(st.booleans()):
            total = str(sum(Decimal(i["unit_price"]) * i["quantity"] for i in items))
        elif not draw(st.integers(0, 2)):  # near the largest total on the wire
            total = draw(st.sampled_from([str(TOP), "999999999999", "400000000000"]))
        else:
            total = _money(draw, 60000)
        order = f"o{n}" if not orders or draw(st.integers(0, 9)) else orders[-1][1]
        currency = "EUR" if draw(st.integers(0, 15)) else "USD"
        orders.append((who, order, Decimal(total)))
        return {"order_id": order, "currency": currency, "total": total, "items": items}
    if kind == "return":
        if orders and draw(st.integers(0, 9)):
            owner, order, total = draw(st.sampled_from(orders))
            share = draw(st.sampled_from(["all", "half", "more", "cent", "any"]))
            amount = {
                "all": total,
                "half": (total / 2).quantize(Decimal("0.01")),
                "more": total + 1,
                "cent": Decimal("0.01"),
                "any": Decimal(_money(draw, 30000)),
            }[share]
            return {
                "customer_id": owner,
                "order_id": order,
                "amount": str(min(max(amount, Decimal("0.01")), TOP)),
            }
        return {"order_id": f"o-unknown-{n}", "amount": "5.00"}
    if kind == "referral":
        return {"referrer_id": draw(st.sampled_from(CUSTOMERS))}
    if kind == "redemption":
        target: dict[str, Any]
        if draw(st.booleans()):
            target = {
                "points": draw(st.integers(1, 30) | st.integers(1, 120) | st.integers(1, 800))
            }
        else:
            target = {"reward_id": draw(st.sampled_from(["voucher", "gift", "yacht"]))}
        return {"redemption_id": draw(st.sampled_from(REDEMPTION_IDS)), **target}
    if kind == "action":
        name = draw(st.sampled_from(["newsletter_subscribed", "review_written", "liked", "x"]))
        return {"action": name}
    return {}


OFFSETS = st.lists(st.timedeltas(-30 * DAY, 3 * 365 * DAY), min_size=1, max_size=3)

# ------------------------------------------------------------------------- checks


def frozen(states: dict[str, CustomerState]) -> dict[str, str]:
    """Deep copies as JSON text: `to_snapshot` shares containers with the live state."""
    return {cid: json.dumps(to_snapshot(s), sort_keys=True) for cid, s in states.items()}


def check_conservation(book: Book, customers: set[str]) -> None:
    for cid in customers:
        state = book.states[cid]
        totals = ledger_totals(book.entries, cid)
        earned, redeemed = totals[Kind.credit], totals[Kind.redemption]
        reversed_, expired = totals[Kind.reversal], totals[Kind.expiry]
        balance = earned - redeemed - reversed_ - expired
        assert state.balance == balance, cid
        # the lifetime totals are the ledger's, and within the points limit (PROGRAM.md "Bounds")
        assert (state.earned, state.redeemed, state.reversed, state.expired) == (
            earned,
            redeemed,
            reversed_,
            expired,
        )
        for total in (balance, earned, redeemed, reversed_, expired):
            assert abs(total) <= POINTS_LIMIT, (cid, total)
        assert sum(lot.remaining for lot in state.lots) - state.debt == balance
        assert state.debt >= 0 and all(lot.remaining > 0 for lot in state.lots)
        assert state.debt == 0 or not state.lots, "debt is paid before any lot is made"
        mine = [e for e in book.entries if e.customer_id == cid]
        # the state's orders agree with the ledger's purchase credits and reversals
        assert sum(o.points_earned for o in state.orders.values()) == sum(
            e.points for e in mine if e.kind is Kind.credit and e.cause == "purchase"
        )
        assert sum(o.points_reversed for o in state.orders.values()) == reversed_
        settled = sum(e.points for e in mine if e.kind is Kind.debt_settled)
        assert settled <= earned
        for entry in mine:
            if entry.kind in (Kind.credit, Kind.redemption, Kind.reversal, Kind.expiry):
                assert entry.points > 0, entry
        refunds = sum(
            (e.amount for e in mine if e.kind is Kind.refund_applied and e.amount), Decimal(0)
        )
        assert refunds == sum((o.refunded for o in state.orders.values()), Decimal(0))


def check_redemption(before: CustomerState | None, decision: Decision, cid: str) -> None:
    after = decision.states[cid]
    if decision.reason is None:
        assert before is not None and before.debt == 0
        assert after.debt == 0, "a redemption never creates debt"
        assert after.balance >= 0
        (redemption,) = [e for e in decision.entries if e.kind is Kind.redemption]
        expired = sum(e.points for e in decision.entries if e.kind is Kind.expiry)
        assert after.balance == before.balance - expired - redemption.points
    else:
        assert not [e for e in decision.entries if e.kind is Kind.redemption]


def check_round_trip(decision: Decision) -> None:
    for cid, state in decision.states.items():
        text = json.dumps(to_snapshot(state))
        assert from_snapshot(cid, json.loads(text)) == state
        assert state.spend_total == sum((a for _, a in state.spend), Decimal(0))


def check_quiet_until_due(state: CustomerState, rules: Rules, instants: list[datetime]) -> None:
    """A tick before `next_due_at` changes nothing but the clock (g)."""
    due = next_due_at(state, rules)
    if due is not None and due != ANY_TICK:
        instants = [*instants, due - timedelta(microseconds=1)]
    for at in instants:
        if due is not None and due <= at:
            continue
        decision = decide_tick(
            [state], ev.Tick(type="tick", event_id="probe", occurred_at=at), rules
        )
        assert decision.entries == (), (at, due)
        after = decision.states[state.customer_id]
        clock = at if state.clock is None or at > state.clock else state.clock
        assert after.clock == clock
        assert dataclasses.replace(after, clock=state.clock, ticks_seen=state.ticks_seen) == state


def run_checked(rules: Rules, stream: list[ev.Event], offsets: list[timedelta]) -> Book:
    book = Book(rules)
    for event in stream:
        before = frozen(book.states)
        previous = dict(book.states)
        decision = book.apply(event)
        assert frozen(previous) == before, "decide mutated its input states"  # (e)
        assert decision.reason is None or not isinstance(event, ev.Tick)
        if decision.reason is Reason.points_limit:  # nothing of the rule stands, anywhere
            assert not isinstance(event, ev.Tick)
            assert set(decision.states) == {event.customer_id} and not decision.commands
            kinds = {entry.kind for entry in decision.entries}
            assert kinds <= {Kind.expiry, Kind.spend_lapsed, Kind.tier_changed, Kind.rejected}
        check_conservation(book, set(decision.states))  # (a)
        if isinstance(event, ev.Redemption):  # (b)
            check_redemption(previous.get(event.customer_id), decision, event.customer_id)
        check_round_trip(decision)  # (f)
        for state in decision.states.values():  # (g)
            start = state.clock or T0
            check_quiet_until_due(state, rules, [start + offset for offset in offsets])
    return book


def versions(entries: list[Entry]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for entry in entries:
        out[entry.customer_id].append(entry.version)
    return out


# ----------------------------------------------------------------------- properties


@SETTINGS
@given(rules=programs(), stream=streams(), offsets=OFFSETS)
def test_invariants_hold_after_every_event(
    rules: Rules, stream: list[ev.Event], offsets: list[timedelta]
) -> None:
    """(a) conservation, (b) no overdraft, (e) purity, (f) round trip, (g) next_due_at."""
    book = run_checked(rules, stream, offsets)
    check_conservation(book, set(book.states))
    # (c) each customer's versions are 1..n, in ledger order, and the state knows n
    for cid, seen in versions(book.entries).items():
        assert seen == list(range(1, len(seen) + 1)), cid
        assert book.states[cid].version == len(seen)
    for cid, state in book.states.items():
        assert state.version == len(versions(book.entries).get(cid, []))


NEAR_THE_LIMIT = tuple(
    ev.Purchase(
        type="purchase",
        event_id=f"near-{customer}",
        occurred_at=T0 - DAY,
        customer_id=customer,
        order_id=f"near-{customer}",
        currency="EUR",
        total=Decimal("999999999999.9"),
    )
    for customer in CUSTOMERS[:2]  # c3 and c4 stay new: they can still be referred
)


@SETTINGS
@given(rules=programs(units=("1000",)), stream=streams(), offsets=OFFSETS)
def test_totals_stay_within_the_points_limit(
    rules: Rules, stream: list[ev.Event], offsets: list[timedelta]
) -> None:
    """(h) PROGRAM.md "Bounds": c1 and c2 start 100 points or less below the limit; events
    that would pass it are rejected points_limit, referrer and birthday credits are cut (the
    checks after every event: totals are the ledger's and within the limit)."""
    book = run_checked(rules, [*NEAR_THE_LIMIT, *stream], offsets)
    check_conservation(book, set(book.states))


@SETTINGS
@given(rules=programs(), stream=streams())
def test_same_stream_same_ledger(rules: Rules, stream: list[ev.Event]) -> None:
    """(d) determinism: two runs of one stream give identical entries and states."""
    first, second = Book(rules).run(stream), Book(rules).run(stream)
    assert first.entries == second.entries
    assert frozen(first.states) == frozen(second.states)


@SETTINGS
@given(rules=programs(), stream=streams())
def test_ticks_to_due_customers_only_give_the_same_ledger(
    rules: Rules, stream: list[ev.Event]
) -> None:
    """(g) as the pipeline uses it: ticking only customers with next_due_at <= T, and just
    moving the others' clocks, gives the reference driver's ledger."""
    reference = Book(rules).run(stream)
    states: dict[str, CustomerState] = {}
    entries: list[Entry] = []
    for event in stream:
        if isinstance(event, ev.Tick):
            at = event.occurred_at
            due = [
                s for s in states.values() if (d := next_due_at(s, rules)) is not None and d <= at
            ]
            decision = decide_tick(due, event, rules)
            for cid, state in states.items():
                if cid not in decision.states and (state.clock is None or at > state.clock):
                    moved = state.clone()
                    moved.clock = at
                    states[cid] = moved
        else:
            decision = decide(states, event, rules)
        states.update(decision.states)
        entries.extend(decision.entries)
    assert entries == reference.entries
    assert frozen(states) == frozen(reference.states)


def test_an_empty_book_decides_a_lone_event() -> None:
    rules = compile_rules(
        parse_program(
            '[program]\nname="p"\ncurrency="EUR"\ntimezone="UTC"\n[earn]\npoints_per_unit="1"\n'
        )
    )
    event = ev.Redemption(
        type="redemption",
        event_id="e",
        occurred_at=T0,
        customer_id="c1",
        redemption_id="r",
        points=1,
    )
    assert decide({}, event, rules).reason == "not_enrolled"
