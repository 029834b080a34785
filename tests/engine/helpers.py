"""Builders for engine tests: programs by section, events by type, a reference driver, briefs.

Version 2's sections (`pending`, `campaigns`, `memberships`, `transfers`) are off in the
example program: `rules(pending=PENDING)` turns one on, so a version 1 row stays version 1.

The driver (`Book`) is the simplest reading of PROGRAM.md: one dict of states, every
customer event through `decide` with the whole dict as its book, every tick through
`decide_tick` with ALL states (not only the due ones).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

from loyalty_ledger import events as ev
from loyalty_ledger.engine import Decision, Rules, compile_rules, decide, decide_tick
from loyalty_ledger.engine.state import CustomerState
from loyalty_ledger.ledger.entries import BALANCE_SIGN, Entry, Kind
from loyalty_ledger.program import parse_program

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)

# PROGRAM.md's example program, one section per key; `rules(name=None)` drops a section.
SECTIONS: dict[str, str | None] = {
    "program": '[program]\nname = "Diamond Club"\ncurrency = "EUR"\ntimezone = "Europe/Berlin"\n',
    "earn": (
        '[earn]\npoints_per_unit = "1"\ncategory_multipliers = { shoes = "2" }\n'
        'channel_multipliers = { app = "1.5" }\n'
    ),
    "expiry": "[expiry]\nmonths = 24\n",
    "tiers": (
        "[tiers]\nwindow_days = 365\n"
        '[[tiers.levels]]\nname = "bronze"\nmin_spend = "0"\nmultiplier = "1"\n'
        '[[tiers.levels]]\nname = "silver"\nmin_spend = "500"\nmultiplier = "1.25"\n'
        '[[tiers.levels]]\nname = "gold"\nmin_spend = "2000"\nmultiplier = "1.5"\n'
    ),
    "signup": "[signup]\nbonus = 100\n",
    "birthday": "[birthday]\nbonus = 250\n",
    "referral": (
        '[referral]\nreferrer_bonus = 500\nreferee_bonus = 0\nmin_first_purchase = "20"\n'
        '[[referral.ladder]]\ncount = 5\nreward = "shaving-cream"\n'
        '[[referral.ladder]]\ncount = 10\nreward = "razor"\n'
    ),
    "actions": (
        '[[actions]]\nname = "newsletter_subscribed"\npoints = 50\nmax_per_customer = 1\n'
        '[[actions]]\nname = "review_written"\npoints = 20\nmax_per_customer = 10\n'
    ),
    "stamp_cards": (
        '[[stamp_cards]]\nid = "coffee-card"\nevery = 10\nmin_total = "3.00"\n'
        'categories = ["coffee"]\nreward = "free-coffee"\n'
    ),
    "rewards": '[[rewards]]\nid = "voucher-5"\ncost = 500\n',
    "redemption": "[redemption]\nmin_points = 100\n",
    # version 2: off unless a test gives the section's text
    "pending": None,
    "campaigns": None,
    "memberships": None,
    "transfers": None,
}

# PROGRAM.md's version 2 example sections (campaigns are built per test by `campaign`).
PENDING = "[pending]\ndays = 14\n"
TRANSFERS = "[transfers]\nmin_points = 100\n"
VIP = (
    '[[memberships]]\nid = "vip"\ndays = 365\nfee = "888.00"\nmember_fee = "88.00"\n'
    'member_fee_min_balance = 1000\nmultiplier = "1.05"\n'
)
PLUS = '[[memberships]]\nid = "plus"\ndays = 30\nfee = "10"\n'  # no multiplier: earns at 1
MEMBERSHIPS = VIP + PLUS


def campaign(
    cid: str = "double",
    starts_at: datetime | str = T0,
    ends_at: datetime | str = T0 + 2 * DAY,
    **fields: str | int | Sequence[str],
) -> str:
    """One [[campaigns]] entry; `fields` are its optional keys (multiplier, bonus, ...)."""
    lines = [
        "[[campaigns]]",
        f'id = "{cid}"',
        f'starts_at = "{_rfc3339(starts_at)}"',
        f'ends_at = "{_rfc3339(ends_at)}"',
    ]
    for key, value in fields.items():
        if isinstance(value, int):
            lines.append(f"{key} = {value}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = [" + ", ".join(f'"{v}"' for v in value) + "]")
    return "\n".join(lines) + "\n"


def _rfc3339(at: datetime | str) -> str:
    return at if isinstance(at, str) else at.isoformat()


def program_text(**changes: str | None) -> str:
    """The example program with sections replaced (a TOML string) or dropped (None)."""
    unknown = changes.keys() - SECTIONS.keys()
    assert not unknown, unknown
    sections = {**SECTIONS, **changes}
    return "\n".join(text for text in sections.values() if text is not None)


@cache
def _compiled(text: str) -> Rules:
    return compile_rules(parse_program(text))


def rules(**changes: str | None) -> Rules:
    return _compiled(program_text(**changes))


def timezone(zone: str) -> str:
    """A [program] section with another time zone."""
    return f'[program]\nname = "Diamond Club"\ncurrency = "EUR"\ntimezone = "{zone}"\n'


# ------------------------------------------------------------------------ events

_ids = itertools.count(1)
Instant = datetime | str


def _common(kind: str, at: Instant, event_id: str | None, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "event_id": event_id or f"{kind}-{next(_ids)}",
        "occurred_at": at,
        **{k: v for k, v in fields.items() if v is not None},
    }


def signup(
    customer: str = "c1",
    at: Instant = T0,
    *,
    birth_date: str | date | None = None,
    referred_by: str | None = None,
    newsletter: bool = False,
    event_id: str | None = None,
) -> ev.Signup:
    return ev.Signup.model_validate(
        _common(
            "signup",
            at,
            event_id,
            customer_id=customer,
            email=f"{customer}@example.org",
            birth_date=birth_date,
            referred_by=referred_by,
            newsletter=newsletter,
        )
    )


def purchase(
    customer: str = "c1",
    order: str = "o1",
    total: str = "10",
    at: Instant = T0,
    *,
    items: Sequence[tuple[str, int, str]] = (),
    channel: str = "web",
    currency: str = "EUR",
    event_id: str | None = None,
) -> ev.Purchase:
    """`items` as (category, quantity, unit_price)."""
    lines = [
        {"sku": f"sku-{i}", "category": c, "quantity": q, "unit_price": p}
        for i, (c, q, p) in enumerate(items)
    ]
    return ev.Purchase.model_validate(
        _common(
            "purchase",
            at,
            event_id,
            customer_id=customer,
            order_id=order,
            currency=currency,
            total=total,
            items=lines,
            channel=channel,
        )
    )


def refund(
    customer: str = "c1",
    order: str = "o1",
    amount: str = "10",
    at: Instant = T0,
    *,
    event_id: str | None = None,
) -> ev.Return:
    return ev.Return.model_validate(
        _common("return", at, event_id, customer_id=customer, order_id=order, amount=amount)
    )


def referral(
    customer: str = "c2", referrer: str = "c1", at: Instant = T0, *, event_id: str | None = None
) -> ev.Referral:
    return ev.Referral.model_validate(
        _common("referral", at, event_id, customer_id=customer, referrer_id=referrer)
    )


def redeem(
    customer: str = "c1",
    redemption: str = "r1",
    *,
    points: int | None = None,
    reward: str | None = None,
    at: Instant = T0,
    event_id: str | None = None,
) -> ev.Redemption:
    return ev.Redemption.model_validate(
        _common(
            "redemption",
            at,
            event_id,
            customer_id=customer,
            redemption_id=redemption,
            points=points,
            reward_id=reward,
        )
    )


def action(
    customer: str = "c1",
    name: str = "review_written",
    at: Instant = T0,
    *,
    event_id: str | None = None,
) -> ev.Action:
    return ev.Action.model_validate(
        _common("action", at, event_id, customer_id=customer, action=name)
    )


def adjust(
    customer: str = "c1",
    points: int = 50,
    at: Instant = T0,
    *,
    reason: str = "goodwill",
    event_id: str | None = None,
) -> ev.Adjustment:
    return ev.Adjustment.model_validate(
        _common("adjustment", at, event_id, customer_id=customer, points=points, reason=reason)
    )


def transfer(
    customer: str = "c1",
    to: str = "c2",
    points: int = 100,
    at: Instant = T0,
    *,
    event_id: str | None = None,
) -> ev.Transfer:
    return ev.Transfer.model_validate(
        _common("transfer", at, event_id, customer_id=customer, to_customer_id=to, points=points)
    )


def membership(
    customer: str = "c1",
    plan: str = "vip",
    paid: str = "888.00",
    at: Instant = T0,
    *,
    event_id: str | None = None,
) -> ev.Membership:
    return ev.Membership.model_validate(
        _common("membership", at, event_id, customer_id=customer, plan=plan, paid=paid)
    )


def tick(at: Instant, *, event_id: str | None = None) -> ev.Tick:
    return ev.Tick.model_validate(_common("tick", at, event_id))


# ------------------------------------------------------------------------ driver


class Book:
    """The reference driver: all states in one dict; a tick goes to every customer."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.states: dict[str, CustomerState] = {}
        self.entries: list[Entry] = []

    def apply(self, event: ev.Event) -> Decision:
        if isinstance(event, ev.Tick):
            decision = decide_tick(list(self.states.values()), event, self.rules)
        else:
            decision = decide(self.states, event, self.rules)
        self.states.update(decision.states)
        self.entries.extend(decision.entries)
        return decision

    def run(self, events: Iterable[ev.Event]) -> Book:
        for event in events:
            self.apply(event)
        return self

    def balance(self, customer: str) -> int:
        state = self.states.get(customer)
        return state.balance if state is not None else 0


def ledger_totals(entries: Iterable[Entry], customer: str) -> dict[Kind, int]:
    """Points per balance-moving kind for one customer, read off the entries."""
    totals = dict.fromkeys(BALANCE_SIGN, 0)
    for entry in entries:
        if entry.customer_id == customer and entry.kind in BALANCE_SIGN:
            totals[entry.kind] += entry.points
    return totals


def ledger_balance(entries: Iterable[Entry], customer: str) -> int:
    totals = ledger_totals(entries, customer)
    return sum(BALANCE_SIGN[kind] * points for kind, points in totals.items())


# ------------------------------------------------------------------------ briefs

_BRIEF: dict[Kind, tuple[str, ...]] = {
    Kind.enrolled: ("cause",),
    Kind.signed_up: (),
    Kind.credit: ("points", "cause", "ref"),
    Kind.debt_settled: ("points",),
    Kind.redemption: ("points", "reward"),
    Kind.reversal: ("points", "ref"),
    Kind.expiry: ("points",),
    Kind.order_placed: ("ref", "amount"),
    Kind.refund_applied: ("ref", "amount"),
    Kind.spend_lapsed: ("amount",),
    Kind.reward_issued: ("reward", "cause", "ref"),
    Kind.referred: ("ref",),
    Kind.referral_settled: ("ref", "cause"),
    Kind.referral_qualified: ("ref",),
    Kind.rejected: ("reason",),
    Kind.pending_created: ("points", "ref"),
    Kind.pending_matured: ("points", "ref"),
    Kind.pending_cancelled: ("points", "ref"),
    Kind.campaign_applied: ("ref", "amount"),
    Kind.adjustment_credit: ("points", "reason"),
    Kind.adjustment_debit: ("points", "reason"),
    Kind.transfer_out: ("points", "ref"),
    Kind.transfer_in: ("points", "ref"),
    Kind.membership_started: ("ref", "amount"),
    Kind.membership_renewed: ("ref", "amount"),
    Kind.membership_ended: ("ref",),
}


def brief(entry: Entry) -> str:
    """One readable line per entry: "c1 credit 59 purchase o1", "c1 tier bronze->silver"
    (every kind has its fields here: a new kind fails loudly, not silently unshown)."""
    if entry.kind is Kind.tier_changed:
        return f"{entry.customer_id} tier {entry.tier_from}->{entry.tier_to}"
    values = (getattr(entry, name) for name in _BRIEF[entry.kind])
    shown = [str(v) for v in values if v is not None]
    return " ".join([entry.customer_id, entry.kind.value, *shown])


def briefs(entries: Iterable[Entry]) -> list[str]:
    return [brief(entry) for entry in entries]
