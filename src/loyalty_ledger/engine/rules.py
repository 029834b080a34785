"""The program compiled into lookups the engine reads on every event (absent sections filled in)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from loyalty_ledger import program as program_model
from loyalty_ledger.program import Program


@dataclass(frozen=True, slots=True)
class Level:
    name: str
    min_spend: Decimal
    multiplier: Decimal


@dataclass(frozen=True, slots=True)
class Card:
    id: str
    every: int
    min_total: Decimal
    categories: frozenset[str]
    reward: str


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    starts_at: datetime  # inclusive
    ends_at: datetime  # exclusive
    multiplier: Decimal
    bonus: int
    categories: frozenset[str]  # empty: every item, and purchases without items
    channels: frozenset[str]  # empty: every channel
    tiers: frozenset[str]  # empty: every tier
    min_total: Decimal
    max_per_customer: int | None


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    length: timedelta
    fee: Decimal
    member_fee: Decimal | None  # with member_fee_min_balance, or neither
    member_fee_min_balance: int
    multiplier: Decimal

    def price_for(self, balance: int) -> Decimal:
        """What a customer with this available balance pays for the plan."""
        if self.member_fee is not None and balance >= self.member_fee_min_balance:
            return self.member_fee
        return self.fee


@dataclass(frozen=True, slots=True)
class Rules:
    currency: str
    tz: ZoneInfo
    points_per_unit: Decimal
    category_multipliers: dict[str, Decimal]
    channel_multipliers: dict[str, Decimal]
    expiry_months: int  # 0: points never expire
    levels: tuple[Level, ...]  # empty: no tiers
    window: timedelta
    signup_bonus: int
    birthday_bonus: int
    referral_on: bool
    referrer_bonus: int
    referee_bonus: int
    min_first_purchase: Decimal
    ladder: dict[int, str]
    actions: dict[str, tuple[int, int | None]]  # name -> (points, max_per_customer)
    cards: tuple[Card, ...]
    reward_costs: dict[str, int]
    min_points: int
    # Version 2: every part off when its section is absent.
    pending_wait: timedelta | None = None  # None: purchase points are credited at once
    campaigns: tuple[Campaign, ...] = ()
    plans: dict[str, Plan] | None = None  # None: no [[memberships]]
    transfers_on: bool = False
    transfer_min_points: int = 0
    # The program's hash: which version decided an input (recorded in the inbox, shown by
    # the statement). Not a rule: the engine only passes it on.
    version: str = ""

    @property
    def first_tier(self) -> str | None:
        return self.levels[0].name if self.levels else None


def compile_rules(program: Program) -> Rules:
    return _compile(program, program_model.hash_of(program))


def _compile(program: Program, version: str) -> Rules:
    referral = program.referral
    tiers = program.tiers
    return Rules(
        currency=program.program.currency,
        tz=ZoneInfo(program.program.timezone),
        points_per_unit=program.earn.points_per_unit,
        category_multipliers=dict(program.earn.category_multipliers),
        channel_multipliers={str(k): v for k, v in program.earn.channel_multipliers.items()},
        expiry_months=program.expiry.months if program.expiry else 0,
        levels=tuple(Level(t.name, t.min_spend, t.multiplier) for t in tiers.levels)
        if tiers
        else (),
        window=timedelta(days=tiers.window_days if tiers else 365),
        signup_bonus=program.signup.bonus if program.signup else 0,
        birthday_bonus=program.birthday.bonus if program.birthday else 0,
        referral_on=referral is not None,
        referrer_bonus=referral.referrer_bonus if referral else 0,
        referee_bonus=referral.referee_bonus if referral else 0,
        min_first_purchase=referral.min_first_purchase if referral else Decimal(0),
        ladder={step.count: step.reward for step in referral.ladder} if referral else {},
        actions={a.name: (a.points, a.max_per_customer) for a in program.actions},
        cards=tuple(
            Card(c.id, c.every, c.min_total, frozenset(c.categories), c.reward)
            for c in program.stamp_cards
        ),
        reward_costs={r.id: r.cost for r in program.rewards},
        min_points=program.redemption.min_points if program.redemption else 0,
        pending_wait=timedelta(days=program.pending.days)
        if program.pending and program.pending.days
        else None,
        campaigns=tuple(_campaign(c) for c in program.campaigns),
        plans={p.id: _plan(p) for p in program.memberships} if program.memberships else None,
        transfers_on=program.transfers is not None,
        transfer_min_points=program.transfers.min_points if program.transfers else 0,
        version=version,
    )


def _campaign(c: program_model.Campaign) -> Campaign:
    return Campaign(
        c.id, c.starts_at, c.ends_at, c.multiplier, c.bonus, frozenset(c.categories),
        frozenset(c.channels), frozenset(c.tiers), c.min_total, c.max_per_customer,
    )  # fmt: skip


def _plan(p: program_model.MembershipPlan) -> Plan:
    return Plan(
        p.id, timedelta(days=p.days), p.fee, p.member_fee, p.member_fee_min_balance or 0,
        p.multiplier,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class History:
    """A program's versions (PROGRAM.md "Amendments"): the original, then each amendment in
    force from its `effective_at` on. The version deciding an event is the one in force at
    max(customer's clock, occurred_at); a tick's, the one in force at the tick's instant.

    A `Rules` alone is a history of one version (`history_of`); with no amendment the
    engine does exactly what it did before amendments existed.
    """

    original: Rules
    amendments: tuple[tuple[datetime, Rules], ...] = ()  # by effective_at, ascending

    def __post_init__(self) -> None:
        instants = [at for at, _ in self.amendments]
        assert instants == sorted(instants) and len(set(instants)) == len(instants), instants
        for _, rules in self.amendments:
            # What an amendment may not change (the loader refuses it): asserted here.
            assert rules.currency == self.original.currency
            assert rules.tz == self.original.tz
            assert bool(rules.levels) == bool(self.original.levels)

    def at(self, instant: datetime) -> Rules:
        """The version in force at `instant`: the latest whose effective_at is <= it."""
        if not self.amendments or instant < self.amendments[0][0]:
            return self.original
        chosen = self.original
        for effective_at, rules in self.amendments:
            if effective_at > instant:
                break
            chosen = rules
        return chosen

    def next_change_after(self, instant: datetime) -> datetime | None:
        """The first effective_at after `instant`, or None: where a version may change what
        a tick does to a customer (a tier threshold, a birthday bonus), so it is due then."""
        for effective_at, _ in self.amendments:
            if effective_at > instant:
                return effective_at
        return None

    @property
    def longest_window(self) -> timedelta:
        """The longest tier window of any version: spend older than it counts in no window,
        so a customer's state may forget it; younger spend may count again when a longer
        window comes into force."""
        return max([self.original.window, *(r.window for _, r in self.amendments)])

    @property
    def versions(self) -> tuple[Rules, ...]:
        return (self.original, *(rules for _, rules in self.amendments))


def history_of(rules: Rules | History) -> History:
    """A history as given, or a single version's."""
    return rules if isinstance(rules, History) else History(rules)
