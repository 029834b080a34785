"""Invariants of the engine over generated programs and event streams (hypothesis, bounded).

Streams hold every event type over a few customers: ticks, late arrivals, returns of
orders placed earlier, redemptions of random sizes and ids; version 2 streams add
adjustments, transfers (also to oneself) and memberships, under programs that may have
pending points, campaigns, plans and transfers. They run through the reference driver
(helpers.Book: a tick goes to ALL states); the properties are checked after every
decision, so a failure shrinks to the first event that breaks one.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from helpers import DAY, T0, Book, campaign, ledger_totals
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from loyalty_ledger import events as ev
from loyalty_ledger.engine import (
    COMMAND_CLASSES,
    Decision,
    Rules,
    compile_rules,
    decide,
    decide_command,
    decide_tick,
)
from loyalty_ledger.engine.dates import ANY_TICK, next_due_at
from loyalty_ledger.engine.reasons import Reason
from loyalty_ledger.engine.state import (
    POINTS_LIMIT,
    CustomerState,
    Lot,
    from_snapshot,
    to_snapshot,
)
from loyalty_ledger.ledger.entries import BALANCE_SIGN, Entry, Kind
from loyalty_ledger.program import parse_program

CUSTOMERS = ("c1", "c2", "c3", "c4")
REDEMPTION_IDS = ("r1", "r2", "r3")
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,  # nothing written outside tests/engine; a failure prints its example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Version 2's properties check more per event (a probe per transfer), and version 1's
# results are already checked above: fewer examples keep the module under a minute.
SETTINGS_V2 = settings(SETTINGS, max_examples=100)
# Near the limit, a failure's shrinking re-runs every check per candidate for minutes; the
# minimal streams of the limit's failures are decision tests (test_decide.py) instead.
SETTINGS_V2_NO_SHRINK = settings(SETTINGS_V2, phases=[Phase.explicit, Phase.generate])
V1_KINDS = frozenset(Kind) - {
    Kind.pending_created,
    Kind.pending_matured,
    Kind.pending_cancelled,
    Kind.campaign_applied,
    Kind.adjustment_credit,
    Kind.adjustment_debit,
    Kind.transfer_out,
    Kind.transfer_in,
    Kind.membership_started,
    Kind.membership_renewed,
    Kind.membership_ended,
}

# ------------------------------------------------------------------------ programs


UNITS = ("1", "0.5", "2", "1.25", "1000")


def programs(units: tuple[str, ...] = UNITS, *, v2: bool = False) -> st.SearchStrategy[Rules]:
    return program_texts(units, v2=v2).map(lambda text: compile_rules(parse_program(text)))


@st.composite
def program_texts(draw: st.DrawFn, units: tuple[str, ...] = UNITS, *, v2: bool = False) -> str:
    """The example program's features, each on or off or with other figures; with `v2`,
    version 2's sections too."""
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
    tiers = draw(st.booleans())
    if tiers:
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
    if v2:
        parts.extend(_v2_sections(draw, tiers))
    return "\n".join(parts)


def _v2_sections(draw: st.DrawFn, tiers: bool) -> list[str]:
    """[pending], [[campaigns]] whose windows cover the streams' instants in part,
    [[memberships]] (vip's member fee within reach, plus without multiplier), [transfers]."""
    parts = []
    days = draw(st.sampled_from([None, 0, 1, 14, 60, 400]))  # 400: most returns find it
    if days is not None:
        parts.append(f"[pending]\ndays = {days}\n")
    multiplier = draw(st.sampled_from(["2", "0.5", "1"]))
    pool = [
        campaign("wide", T0 - 30 * DAY, T0 + 1000 * DAY, multiplier=multiplier, bonus=5),
        campaign("shoes", T0, T0 + 200 * DAY, multiplier="3", categories=["shoes"],
                 max_per_customer=2),
        campaign("app", T0 + 10 * DAY, T0 + 400 * DAY, channels=["app"], min_total="50",
                 bonus=10),
        campaign("socks", T0, T0 + 1000 * DAY, multiplier="0.5", categories=["tea"]),
    ]  # fmt: skip
    if tiers:
        pool.append(campaign("top", T0, T0 + 1000 * DAY, tiers=["silver", "gold"], bonus=1))
    parts.extend(c for c in pool if draw(st.booleans()))
    if draw(st.integers(0, 3)):
        parts.append(
            '[[memberships]]\nid = "vip"\ndays = 30\nfee = "888.00"\nmember_fee = "88.00"\n'
            'member_fee_min_balance = 300\nmultiplier = "2"\n'
            '[[memberships]]\nid = "plus"\ndays = 365\nfee = "10"\n'
        )
    least = draw(st.sampled_from([None, 0, 0, 50]))
    if least is not None:
        parts.append(f"[transfers]\nmin_points = {least}\n")
    return parts


# ------------------------------------------------------------------------- streams

STEPS = [timedelta(0), timedelta(hours=1), DAY, 10 * DAY, 45 * DAY, 200 * DAY, 400 * DAY]
LATE = [timedelta(minutes=1), 2 * DAY, 40 * DAY, 380 * DAY]
KINDS = [
    *["signup", "purchase", "purchase", "return", "referral"],
    *["redemption", "redemption", "action", "action", "tick"],
]
KINDS_V2 = [
    *KINDS,
    *["return", "adjustment", "adjustment", "transfer", "transfer", "transfer"],
    *["membership", "membership", "membership"],
]


TOP = Decimal("999999999999.999999")  # the largest amount on the wire
ENROLLED_ONLY = ("redemption", "action", "adjustment", "transfer", "membership")


def _money(draw: st.DrawFn, most_cents: int) -> str:
    cents = draw(st.integers(0, most_cents))
    return f"{cents // 100}.{cents % 100:02d}"


def warm_up(customers: tuple[str, ...]) -> list[ev.Event]:
    """Signed up with 500 points from support, the day before a stream: enough for the
    transfers and plans of version 2 streams to be accepted often."""
    out: list[ev.Event] = []
    for who in customers:
        common = {"occurred_at": T0 - DAY, "customer_id": who}
        out.append(
            ev.Signup(type="signup", event_id=f"w-{who}", email=f"{who}@example.org", **common)
        )
        out.append(
            ev.Adjustment(
                type="adjustment", event_id=f"w+{who}", points=500, reason="welcome", **common
            )
        )
    return out


@st.composite
def streams(
    draw: st.DrawFn, *, v2: bool = False, warm: tuple[str, ...] = CUSTOMERS[:3]
) -> list[ev.Event]:
    """Events over CUSTOMERS from T0 on; version 2's start with `warm` warmed up."""
    now = T0
    orders: list[tuple[str, str, Decimal]] = []
    seen: set[str] = set(warm) if v2 else set()
    bought: dict[str, dict[str, Any]] = {}  # each customer's last membership, to buy again
    out: list[ev.Event] = warm_up(warm) if v2 else []
    for n in range(draw(st.integers(1, 35))):
        now += draw(st.sampled_from(STEPS))
        at = now - draw(st.sampled_from(LATE)) if draw(st.integers(0, 7)) == 0 else now
        kind = draw(st.sampled_from(KINDS_V2 if v2 else KINDS))
        who = draw(st.sampled_from(CUSTOMERS))
        if kind in ENROLLED_ONLY and seen and draw(st.integers(0, 3)):
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
        if kind in ("adjustment", "transfer", "membership"):
            base.update(_fields_v2(draw, kind, who, bought))
        else:
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
            # mostly one of the latest orders: a return soon after its purchase
            owner, order, total = draw(st.sampled_from(orders[-2:]) | st.sampled_from(orders))
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


def _fields_v2(
    draw: st.DrawFn, kind: str, who: str, bought: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    if kind == "adjustment":
        points = draw(st.integers(-300, 300).filter(bool) | st.sampled_from([-(10**9), 10**9]))
        return {"points": points, "reason": "support"}
    if kind == "transfer":
        points = draw(st.integers(1, 60) | st.integers(1, 400))
        return {"to_customer_id": draw(st.sampled_from(CUSTOMERS)), "points": points}
    assert kind == "membership"
    if who in bought and draw(st.booleans()):  # a renewal, or the same plan after its end
        return bought[who]
    plan = draw(st.sampled_from(["vip", "vip", "plus", "plus", "nope"]))
    # vip costs 888, or 88 from a balance of 300; plus 10: mostly the right price
    paid = {"vip": ["888.00", "888", "88.00", "88", "5"], "plus": ["10", "10.00", "11"]}
    bought[who] = {"plan": plan, "paid": draw(st.sampled_from(paid.get(plan, ["10"])))}
    return bought[who]


OFFSETS = st.lists(st.timedeltas(-30 * DAY, 3 * 365 * DAY), min_size=1, max_size=3)

# ------------------------------------------------------------------------- checks


def frozen(states: dict[str, CustomerState]) -> dict[str, str]:
    """Deep copies as JSON text: `to_snapshot` shares containers with the live state."""
    return {cid: json.dumps(to_snapshot(s), sort_keys=True) for cid, s in states.items()}


def check_conservation(book: Book, customers: set[str]) -> None:
    """PROGRAM.md version 2: balance = earned + adjusted + transferred_in - redeemed -
    reversed - expired - transferred_out, each total the ledger's and within the limit."""
    for cid in customers:
        state = book.states[cid]
        totals = ledger_totals(book.entries, cid)
        balance = sum(BALANCE_SIGN[kind] * points for kind, points in totals.items())
        earned, redeemed = totals[Kind.credit], totals[Kind.redemption]
        reversed_, expired = totals[Kind.reversal], totals[Kind.expiry]
        adjusted = totals[Kind.adjustment_credit] - totals[Kind.adjustment_debit]
        moved_in, moved_out = totals[Kind.transfer_in], totals[Kind.transfer_out]
        assert balance == (
            earned + adjusted + moved_in - redeemed - reversed_ - expired - moved_out
        )
        assert state.balance == balance, cid
        # the lifetime totals are the ledger's, and within the points limit (PROGRAM.md "Bounds")
        assert (state.earned, state.redeemed, state.reversed, state.expired) == (
            earned,
            redeemed,
            reversed_,
            expired,
        )
        assert (state.adjusted, state.transferred_in, state.transferred_out) == (
            adjusted,
            moved_in,
            moved_out,
        )
        mine = [e for e in book.entries if e.customer_id == cid]
        check_pending(state, mine)
        totals_now = (balance, earned, adjusted, moved_in, moved_out, redeemed, reversed_, expired)
        for total in (*totals_now, state.pending_points):
            assert abs(total) <= POINTS_LIMIT, (cid, total)
        assert sum(lot.remaining for lot in state.lots) - state.debt == balance
        assert state.debt >= 0 and all(lot.remaining > 0 for lot in state.lots)
        assert state.debt == 0 or not state.lots, "debt is paid before any lot is made"
        settled = sum(e.points for e in mine if e.kind is Kind.debt_settled)
        assert settled <= earned + totals[Kind.adjustment_credit] + moved_in
        for entry in mine:
            if entry.kind in BALANCE_SIGN:
                assert entry.points > 0, entry
        refunds = sum(
            (e.amount for e in mine if e.kind is Kind.refund_applied and e.amount), Decimal(0)
        )
        assert refunds == sum((o.refunded for o in state.orders.values()), Decimal(0))


def check_pending(state: CustomerState, mine: list[Entry]) -> None:
    """Pending amounts are the ledger's: created, less matured, less cancelled; and every
    order's points are credited, pending, or cancelled by a return (which counts nowhere)."""
    points = defaultdict(int)
    for entry in mine:
        points[entry.kind] += entry.points
    cancelled = points[Kind.pending_cancelled]
    left = points[Kind.pending_created] - points[Kind.pending_matured] - cancelled
    assert state.pending_points == left >= 0
    assert [(p.matures_at, p.n) for p in state.pending] == sorted(
        (p.matures_at, p.n) for p in state.pending
    )
    purchases = sum(e.points for e in mine if e.kind is Kind.credit and e.cause == "purchase")
    assert sum(o.points_earned for o in state.orders.values()) == purchases + cancelled + left
    assert sum(o.points_reversed for o in state.orders.values()) == (
        points[Kind.reversal] + cancelled
    )
    assert {p.order_id for p in state.pending} <= set(state.orders)


def signed(entries: tuple[Entry, ...], cid: str, *, leave_out: Kind | None = None) -> int:
    """What these entries move `cid`'s available balance by."""
    return sum(
        BALANCE_SIGN[e.kind] * e.points
        for e in entries
        if e.customer_id == cid and e.kind in BALANCE_SIGN and e.kind is not leave_out
    )


def check_redemption(before: CustomerState | None, decision: Decision, cid: str) -> None:
    after = decision.states[cid]
    if decision.reason is None:
        assert before is not None and before.debt == 0
        assert after.debt == 0, "a redemption never creates debt"
        assert after.balance >= 0
        (redemption,) = [e for e in decision.entries if e.kind is Kind.redemption]
        step_2 = signed(decision.entries, cid, leave_out=Kind.redemption)  # expiry, maturity
        assert after.balance == before.balance + step_2 - redemption.points
    else:
        assert not [e for e in decision.entries if e.kind is Kind.redemption]


def check_no_overdraft(
    previous: dict[str, CustomerState], event: ev.Event, decision: Decision
) -> None:
    """(b) Only a return makes debt, and only its own customer's: what takes points away
    (a redemption, a negative adjustment, a transfer) is refused beyond the balance."""
    for cid, after in decision.states.items():
        known = previous.get(cid)
        debt = known.debt if known is not None else 0
        if after.debt > debt:
            assert isinstance(event, ev.Return) and cid == event.customer_id, (cid, event)
            reversed_now = sum(
                e.points
                for e in decision.entries
                if e.customer_id == cid and e.kind is Kind.reversal
            )
            assert after.debt - debt <= reversed_now
    taking = isinstance(event, ev.Redemption | ev.Transfer) or (
        isinstance(event, ev.Adjustment) and event.points < 0
    )
    if taking and decision.reason is None:
        giver = decision.states[event.customer_id]
        assert giver.debt == 0 and giver.balance >= 0


def life(lots: list[Lot]) -> tuple[int, int]:
    """(sum of points x expiry instant in microseconds, points that never expire)."""
    finite = sum(lot.remaining * _micros(lot.expires_at) for lot in lots if lot.expires_at)
    return finite, sum(lot.remaining for lot in lots if lot.expires_at is None)


def _micros(at: datetime) -> int:
    return (at - T0) // timedelta(microseconds=1)


def alive_after(lots: list[Lot], instant: datetime | None) -> int:
    """Points still there after `instant` (None: points that never expire)."""
    return sum(
        lot.remaining
        for lot in lots
        if lot.expires_at is None or (instant is not None and lot.expires_at > instant)
    )


def check_transfer_life(
    previous: dict[str, CustomerState], event: ev.Event, decision: Decision, rules: Rules
) -> None:
    """No transfer extends a point's life: across giver and recipient, neither the sum of
    points x expiry instant nor the points alive after any instant grows. "Before" is the
    giver after its step 2 (the same event sent to itself: rejected self_transfer, so
    steps 2 and 4 only) and the recipient as it was (its clock does not move)."""
    if not isinstance(event, ev.Transfer) or decision.reason is not None:
        return
    giver, recipient = event.customer_id, event.to_customer_id
    probe = decide(previous, event.model_copy(update={"to_customer_id": giver}), rules)
    assert probe.reason is Reason.self_transfer
    held = previous[recipient].lots if recipient in previous else []
    before = [*probe.states[giver].lots, *held]
    after = [*decision.states[giver].lots, *decision.states[recipient].lots]
    assert life(after)[0] <= life(before)[0] and life(after)[1] <= life(before)[1]
    for instant in {lot.expires_at for lot in before + after}:
        assert alive_after(after, instant) <= alive_after(before, instant), instant
    given = sum(e.points for e in decision.entries if e.kind is Kind.transfer_out)
    received = sum(e.points for e in decision.entries if e.kind is Kind.transfer_in)
    assert given == event.points and received <= given  # less only when cut at the limit


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


def check_return(previous: dict[str, CustomerState], event: ev.Event, decision: Decision) -> None:
    """A return takes what it reverses from the order's pending amount while there is one
    (never more than is left: the points were never credited), else from the lots."""
    if not isinstance(event, ev.Return) or decision.reason is not None:
        return
    cid, order = event.customer_id, event.order_id
    before, after = previous[cid], decision.states[cid]
    taken = after.orders[order].points_reversed - before.orders[order].points_reversed
    mine = [e for e in decision.entries if e.customer_id == cid and e.ref == order]
    reversed_now = sum(e.points for e in mine if e.kind is Kind.reversal)
    cancelled = sum(e.points for e in mine if e.kind is Kind.pending_cancelled)
    assert reversed_now + cancelled == taken
    waiting = any(p.order_id == order for p in before.pending)
    if waiting and not any(e.kind is Kind.pending_matured for e in mine):
        assert (reversed_now, cancelled) == (0, taken)
    else:
        assert cancelled == 0


def check_waiting(decision: Decision, rules: Rules) -> None:
    """With [pending], a purchase's points are credited only as a maturity, at the instant
    the purchase plus the wait; without it, nothing waits."""
    entries = decision.entries
    if rules.pending_wait is None:
        assert not {e.kind for e in entries} & {Kind.pending_created, Kind.pending_matured}
        return
    for i, entry in enumerate(entries):
        if entry.kind is Kind.pending_created:
            assert entry.expires_at == entry.occurred_at + rules.pending_wait
        if entry.kind is Kind.credit and entry.cause == "purchase":
            matured = entries[i - 1]
            assert i and matured.kind is Kind.pending_matured
            assert (matured.ref, matured.points) == (entry.ref, entry.points)
            assert matured.occurred_at == entry.occurred_at


STEP_2_AND_4 = {
    *(Kind.expiry, Kind.spend_lapsed, Kind.tier_changed, Kind.rejected),
    *(Kind.pending_matured, Kind.credit, Kind.debt_settled, Kind.membership_ended),
}


def check_steps_2_and_4_only(entries: tuple[Entry, ...]) -> None:
    assert {entry.kind for entry in entries} <= STEP_2_AND_4
    credits = [e for e in entries if e.kind is Kind.credit]  # only maturities credit
    assert all(e.cause == "purchase" for e in credits)
    assert len(credits) == len([e for e in entries if e.kind is Kind.pending_matured])


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
            check_steps_2_and_4_only(decision.entries)
        check_conservation(book, set(decision.states))  # (a)
        if isinstance(event, ev.Redemption):  # (b)
            check_redemption(previous.get(event.customer_id), decision, event.customer_id)
        check_no_overdraft(previous, event, decision)  # (b)
        check_transfer_life(previous, event, decision, rules)  # (i)
        check_return(previous, event, decision)
        check_waiting(decision, rules)
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


def run_due_only(rules: Rules, stream: list[ev.Event]) -> tuple[list[Entry], dict[str, str]]:
    """The pipeline's driver: a tick goes only to customers with next_due_at <= T; the
    others' clocks just move."""
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
    return entries, frozen(states)


@SETTINGS
@given(rules=programs(), stream=streams())
def test_ticks_to_due_customers_only_give_the_same_ledger(
    rules: Rules, stream: list[ev.Event]
) -> None:
    """(g) as the pipeline uses it: ticking only customers with next_due_at <= T, and just
    moving the others' clocks, gives the reference driver's ledger."""
    reference = Book(rules).run(stream)
    assert run_due_only(rules, stream) == (reference.entries, frozen(reference.states))


# ------------------------------------------------------------------------ version 2


@SETTINGS_V2
@given(rules=programs(v2=True), stream=streams(v2=True), offsets=OFFSETS)
def test_v2_invariants_hold_after_every_event(
    rules: Rules, stream: list[ev.Event], offsets: list[timedelta]
) -> None:
    """(a) version 2 conservation for every customer, (b) no overdraft but a return's debt,
    (e) purity, (f) round trip of version 2 state, (g) next_due_at covers maturities and
    membership ends, (i) no transfer extends a point's life; all after every event."""
    book = run_checked(rules, stream, offsets)
    check_conservation(book, set(book.states))
    for cid, seen in versions(book.entries).items():
        assert seen == list(range(1, len(seen) + 1)), cid


@SETTINGS_V2_NO_SHRINK
@given(
    rules=programs(units=("1000",), v2=True),
    stream=streams(v2=True, warm=CUSTOMERS[2:]),  # c1 and c2 start near the limit
    offsets=OFFSETS,
)
def test_v2_totals_stay_within_the_points_limit(
    rules: Rules, stream: list[ev.Event], offsets: list[timedelta]
) -> None:
    """(h) with pending points, adjustments of up to 10^9 and transfers to customers near
    the limit: every total (pending too) stays within it."""
    book = run_checked(rules, [*NEAR_THE_LIMIT, *stream], offsets)
    check_conservation(book, set(book.states))


@SETTINGS_V2
@given(rules=programs(v2=True), stream=streams(v2=True))
def test_v2_ticks_to_due_customers_only_give_the_same_ledger(
    rules: Rules, stream: list[ev.Event]
) -> None:
    """(g) next_due_at misses no maturity, membership end or transferred part already
    expired: the pipeline's driver gives the reference driver's ledger."""
    reference = Book(rules).run(stream)
    assert run_due_only(rules, stream) == (reference.entries, frozen(reference.states))


@SETTINGS_V2
@given(rules=programs(v2=True), stream=streams(v2=True))
def test_v2_customers_owned_apart_give_the_same_ledger(
    rules: Rules, stream: list[ev.Event]
) -> None:
    """Guarantee 3 as the pipeline keeps it: each event decided by the owner of its customer
    alone, a referrer's credit or a transfer's recipient as a command decided at its owner,
    gives every customer the entries one decider owning everyone gives."""
    reference = Book(rules).run(stream)
    states: dict[str, CustomerState] = {}
    entries: list[Entry] = []
    for event in stream:
        if isinstance(event, ev.Tick):
            decision = decide_tick(list(states.values()), event, rules)
        else:
            owner = event.customer_id
            decision = decide(states, event, rules, owns=owner.__eq__)
            assert set(decision.states) == {owner}
        states.update(decision.states)
        entries.extend(decision.entries)
        for command in decision.commands:
            assert isinstance(command, COMMAND_CLASSES)
            done = decide_command(states, command, rules)
            assert set(done.states) == {command.owner_id}
            states.update(done.states)
            entries.extend(done.entries)
    assert by_customer(entries) == by_customer(reference.entries)
    assert frozen(states) == frozen(reference.states)


def by_customer(entries: list[Entry]) -> dict[str, list[Entry]]:
    """Each customer's entries in order, without the event id (a command has its own)."""
    out: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        out[entry.customer_id].append(entry._replace(event_id=""))
    return dict(out)


# ---------------------------------------------------------- version 1 stays version 1

# Every version 2 section, none able to act on a version 1 stream: no wait, a campaign long
# over, plans no one buys, transfers no one sends.
INERT_V2 = (
    "[pending]\ndays = 0\n"
    + campaign("past", "2000-01-01T00:00:00Z", "2000-01-02T00:00:00Z", multiplier="5", bonus=9)
    + '[[memberships]]\nid = "vip"\ndays = 30\nfee = "10"\nmultiplier = "3"\n'
    + "[transfers]\nmin_points = 0\n"
)
VERSION_1_SNAPSHOT_KEYS = 23


@SETTINGS_V2
@given(text=program_texts(), stream=streams())
def test_a_version_1_program_and_stream_give_the_version_1_results(
    text: str, stream: list[ev.Event]
) -> None:
    """PROGRAM.md: "a version 1 program and stream give exactly the version 1 results": no
    version 2 entry kind, no version 2 total, snapshots as small as version 1's; and the
    same program with version 2 sections that never come into play gives the same ledger
    and states, entry for entry."""
    plain = Book(compile_rules(parse_program(text))).run(stream)
    assert {entry.kind for entry in plain.entries} <= V1_KINDS
    for state in plain.states.values():
        assert (state.adjusted, state.transferred_in, state.transferred_out) == (0, 0, 0)
        assert (state.pending, state.pending_made, state.campaigns, state.membership) == (
            [],
            0,
            {},
            None,
        )
        assert len(to_snapshot(state)) == VERSION_1_SNAPSHOT_KEYS
    with_v2 = Book(compile_rules(parse_program(text + "\n" + INERT_V2))).run(stream)
    assert with_v2.entries == plain.entries
    assert frozen(with_v2.states) == frozen(plain.states)


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
