"""Decide one input event's effects by PROGRAM.md. Pure: no I/O, no clock, no randomness.

`decide` never changes the states it is given: it works on clones and returns
them, with the ledger entries, in a `Decision`. Steps 2 and 4 of PROGRAM.md
("the clock moves, lots expire, the tier is re-evaluated") run for rejected
events too. No point total of a customer leaves [-POINTS_LIMIT, POINTS_LIMIT]:
an event that would take its own customer's there is rejected `points_limit`,
a credit to another customer or a birthday credit is cut to fit (PROGRAM.md "Bounds").
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Context, Decimal, getcontext, setcontext

from loyalty_ledger import events as ev
from loyalty_ledger.engine import lots
from loyalty_ledger.engine.dates import birthday_in
from loyalty_ledger.engine.reasons import Reason
from loyalty_ledger.engine.rules import Campaign, History, Rules, history_of
from loyalty_ledger.engine.state import POINTS_LIMIT, CustomerState, Order, Pending, new_customer
from loyalty_ledger.ledger.entries import Entry, Kind

# Money on the wire has up to 18 digits, factors up to 10 and quantities 7: a purchase's
# points before the floor reach about 70 digits. Every decision computes in this context,
# wide enough that sums and products are exact before the floor. It is made the thread's
# context for the call itself, not a copy (`localcontext` copies it per call, a few percent
# of a decision): arithmetic only sets its flags, which nothing reads.
_EXACT = Context(prec=200)
_ZERO = Decimal(0)
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class ReferrerCredit:
    """A qualified referral to apply to a referrer this decider does not own (guarantee 3).

    Carried to the referrer's owner as an internal command and decided there by
    `decide_command`, once per `command_id`, at the instant of its cause.
    """

    command_id: str
    referrer_id: str
    referee_id: str
    occurred_at: datetime
    # The instant whose program version decided the referee's event (PROGRAM.md
    # "Amendments": every effect follows that version); None: occurred_at.
    decided_at: datetime | None = None

    @property
    def owner_id(self) -> str:
        return self.referrer_id


@dataclass(frozen=True, slots=True)
class TransferCredit:
    """A transfer's credit to a recipient this decider does not own (guarantee 3).

    Carries the lot parts taken from the giver, each with its expiry instant (None: never),
    so the recipient's lots expire when the giver's would have; decided by `decide_command`
    at the owner, once per `command_id`, at the transfer's instant.
    """

    command_id: str
    recipient_id: str
    giver_id: str
    parts: tuple[tuple[int, datetime | None], ...]
    occurred_at: datetime
    decided_at: datetime | None = None  # as ReferrerCredit's

    @property
    def owner_id(self) -> str:
        return self.recipient_id


Command = ReferrerCredit | TransferCredit
COMMAND_CLASSES = (ReferrerCredit, TransferCredit)


@dataclass(frozen=True, slots=True)
class Decision:
    entries: tuple[Entry, ...]
    states: dict[str, CustomerState]  # new states of every customer touched
    reason: Reason | None  # None: accepted
    commands: tuple[Command, ...] = ()
    version: str = ""  # the hash of the program version that decided (Rules.version)

    def __post_init__(self) -> None:
        # Paired with CHECK (points <= 10^15) on the ledger and the balance projection's CHECK.
        # `earned` bounds every other total (state.py); they are asserted where they grow.
        for state in self.states.values():
            assert state.earned <= POINTS_LIMIT, (state.customer_id, state.earned)


def _owns_everyone(_customer_id: str) -> bool:
    return True


class _Context:
    """One decision in the making: the rules deciding it, the entries it records (numbering
    each customer's versions), the states it touched, the commands it sends."""

    # A plain class, built positionally: one is made per input, on the critical path.
    __slots__ = (
        "book", "commands", "decided_at", "entries", "event_id", "longest_window", "owns",
        "rules", "touched",
    )  # fmt: skip

    def __init__(
        self,
        rules: Rules,
        event_id: str,
        book: Mapping[str, CustomerState],
        owns: Callable[[str], bool],
        decided_at: datetime,
        longest_window: timedelta | None,
    ) -> None:
        self.rules = rules
        self.event_id = event_id
        self.book = book
        self.owns = owns
        # With amendments: the instant whose version decides (commands carry it on) and the
        # longest tier window of any version (spend younger than it may count again).
        self.decided_at = decided_at
        self.longest_window = longest_window
        self.entries: list[Entry] = []
        self.touched: dict[str, CustomerState] = {}
        self.commands: list[Command] = []

    def again(self) -> _Context:
        """A fresh context for the same input: nothing recorded, nothing touched."""
        return _Context(
            self.rules, self.event_id, self.book, self.owns, self.decided_at, self.longest_window
        )

    def customer(self, customer_id: str) -> CustomerState:
        state = self.touched.get(customer_id)
        if state is None:
            known = self.book.get(customer_id)
            state = known.clone() if known else new_customer(customer_id, self.rules.first_tier)
            self.touched[customer_id] = state
        return state

    def add(
        self,
        state: CustomerState,
        kind: Kind,
        at: datetime,
        *,
        points: int = 0,
        amount: Decimal | None = None,
        cause: str | None = None,
        ref: str | None = None,
        reward: str | None = None,
        tier_from: str | None = None,
        tier_to: str | None = None,
        reason: str | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        """Record an entry on `state`, its next version. The fields are spelled out, not
        `**fields`: a keyword dict per entry was a tenth of a decision."""
        # Paired with CHECK (points >= 0) and CHECK (version >= 1) on the ledger table.
        assert points >= 0, (kind, points)
        assert at.tzinfo is not None
        state.version += 1
        self.entries.append(Entry(
            state.customer_id, state.version, kind, at, self.event_id, points, amount, cause,
            ref, reward, tier_from, tier_to, reason, expires_at,
        ))  # fmt: skip


def decide(
    book: Mapping[str, CustomerState],
    event: ev.Event,
    rules: Rules | History,
    owns: Callable[[str], bool] = _owns_everyone,
) -> Decision:
    """Decide a customer event; `book` holds every known customer it may touch.

    The version of the program in force at max(customer's clock, occurred_at) decides it
    and all its effects. `owns` says which customers this decider may change; a
    qualified referral whose referrer it does not own becomes a `ReferrerCredit`
    command instead, a transfer to a recipient it does not own a `TransferCredit`.
    """
    assert not isinstance(event, ev.Tick), "ticks go to decide_tick"
    history = history_of(rules)
    at = event.occurred_at
    known = book.get(event.customer_id)
    if known is not None and known.clock is not None and known.clock > at:
        at = known.clock
    ctx = _context(history, at, event.event_id, book, owns)
    saved = getcontext()
    setcontext(_EXACT)  # see _EXACT
    try:
        return _decide(event, ctx)
    finally:
        setcontext(saved)


def _context(
    history: History,
    decided_at: datetime,
    event_id: str,
    book: Mapping[str, CustomerState],
    owns: Callable[[str], bool] = _owns_everyone,
) -> _Context:
    # The longest window is None without amendments: the one window is the longest (the
    # usual, faster path).
    longest = history.longest_window if history.amendments else None
    return _Context(history.at(decided_at), event_id, book, owns, decided_at, longest)


def _decide(event: ev.Event, ctx: _Context) -> Decision:
    assert not isinstance(event, ev.Tick)
    state = ctx.customer(event.customer_id)
    at = event.occurred_at
    _advance(state, at, ctx)
    reason = _RULES[event.type](state, event, ctx)
    if reason is None and not state.within_limit():
        # The rule's effects on every customer, and its commands, are dropped: decided
        # again from the book with steps 2 and 4 only. Rare, so the usual path copies nothing.
        ctx = ctx.again()
        state = ctx.customer(event.customer_id)
        _advance(state, at, ctx)
        reason = Reason.points_limit
    if reason is not None:
        ctx.add(state, Kind.rejected, at, reason=reason.value, ref=event.type)
    _evaluate_tier(state, ctx)
    return Decision(
        tuple(ctx.entries), ctx.touched, reason, tuple(ctx.commands), ctx.rules.version
    )


def decide_command(
    book: Mapping[str, CustomerState], command: Command, rules: Rules | History
) -> Decision:
    """Apply a referrer's share of a qualified referral, or a transfer's credit, decided
    where the referee or the giver is owned, under the version that decided its cause."""
    decided_at = command.decided_at or command.occurred_at
    ctx = _context(history_of(rules), decided_at, command.command_id, book)
    saved = getcontext()
    setcontext(_EXACT)
    try:
        owner = ctx.customer(command.owner_id)
        if isinstance(command, ReferrerCredit):
            _credit_referrer(owner, command.referee_id, command.occurred_at, ctx)
        else:
            _receive(owner, command.giver_id, command.parts, command.occurred_at, ctx)
    finally:
        setcontext(saved)
    return Decision(tuple(ctx.entries), ctx.touched, None, version=ctx.rules.version)


def decide_tick(
    states: Iterable[CustomerState], tick: ev.Tick, rules: Rules | History
) -> Decision:
    """Apply a tick to the given customers (those due), in customer_id order, under the
    version in force at the tick's instant."""
    at = tick.occurred_at
    ctx = _context(history_of(rules), at, tick.event_id, {})
    saved = getcontext()
    setcontext(_EXACT)
    try:
        for known in sorted(states, key=lambda s: s.customer_id):
            state = known.clone()
            ctx.touched[state.customer_id] = state
            _advance(state, at, ctx)
            _grant_birthdays(state, at, ctx)
    finally:
        setcontext(saved)
    return Decision(tuple(ctx.entries), ctx.touched, None, version=ctx.rules.version)


# ----------------------------------------------------------------- steps 2 and 4


def _advance(state: CustomerState, at: datetime, ctx: _Context) -> None:
    """Step 2: the clock moves to max(clock, at), pending amounts mature, lots expire, a
    membership whose end passed ends, the tier is re-evaluated."""
    clock = at if state.clock is None or at > state.clock else state.clock
    state.clock = clock
    if state.pending and state.pending[0].matures_at <= clock:
        _mature(state, clock, ctx)
    for lot in lots.expire(state, clock):
        state.expired += lot.remaining
        assert state.expired <= POINTS_LIMIT, state.customer_id
        ctx.add(state, Kind.expiry, clock, points=lot.remaining, expires_at=lot.expires_at)
    if state.membership is not None and state.membership[1] <= clock:
        plan, ends_at = state.membership
        state.membership = None
        ctx.add(state, Kind.membership_ended, clock, ref=plan, expires_at=ends_at)
    _evaluate_tier(state, ctx)


def _mature(state: CustomerState, clock: datetime, ctx: _Context) -> None:
    """Credit every pending amount due by `clock`, by maturity instant, then creation."""
    while state.pending and state.pending[0].matures_at <= clock:
        due = state.pending.pop(0)
        ctx.add(
            state, Kind.pending_matured, due.matures_at, points=due.points, ref=due.order_id
        )
        _credit(state, due.points, due.matures_at, "purchase", due.order_id, ctx)


def _lapse(state: CustomerState, ctx: _Context) -> None:
    """Spend that left the window: out of the state and of the qualifying total."""
    assert state.clock is not None
    cutoff = state.clock - ctx.rules.window
    spend = state.spend  # sorted by instant
    if spend and spend[0][0] <= cutoff:
        lapsed = _ZERO
        while spend and spend[0][0] <= cutoff:
            lapsed += spend.pop(0)[1]
        state.spend_total -= lapsed
        if lapsed:
            ctx.add(state, Kind.spend_lapsed, state.clock, amount=lapsed)


def _lapse_amended(state: CustomerState, ctx: _Context, longest: timedelta) -> None:
    """With amendments the window may grow: the state keeps spend as long as the longest
    window of any version, and the qualifying total is what lies in the window in force.
    A spend_lapsed entry's amount is then the change, negative when spend comes back."""
    assert state.clock is not None
    spend = state.spend
    forgotten = state.clock - longest
    while spend and spend[0][0] <= forgotten:
        spend.pop(0)
    cutoff = state.clock - ctx.rules.window
    in_window = sum((amount for at, amount in spend if at > cutoff), _ZERO)
    lapsed = state.spend_total - in_window
    if lapsed:
        state.spend_total = in_window
        ctx.add(state, Kind.spend_lapsed, state.clock, amount=lapsed)


def _evaluate_tier(state: CustomerState, ctx: _Context) -> None:
    levels = ctx.rules.levels
    if not levels:
        return
    assert state.clock is not None
    if ctx.longest_window is None:
        _lapse(state, ctx)
    else:
        _lapse_amended(state, ctx, ctx.longest_window)
    qualifying = max(_ZERO, state.spend_total)
    tier = levels[0].name
    for level in levels:
        if level.min_spend <= qualifying:
            tier = level.name
    if tier != state.tier:
        ctx.add(
            state,
            Kind.tier_changed,
            state.clock,
            tier_from=state.tier,
            tier_to=tier,
            amount=qualifying,
        )
        state.tier = tier


# ------------------------------------------------------------------ shared leaves


def _enroll(state: CustomerState, at: datetime, cause: str, ctx: _Context) -> None:
    if not state.enrolled:
        state.enrolled = True
        ctx.add(state, Kind.enrolled, at, cause=cause, tier_to=state.tier)


def _credit(
    state: CustomerState, points: int, at: datetime, cause: str, ref: str | None, ctx: _Context
) -> None:
    if points == 0:
        return  # a credit of 0 records nothing
    paid, lot = lots.credit(state, points, at, ctx.rules.expiry_months)
    state.earned += points
    expires_at = lot.expires_at if lot else None
    ctx.add(state, Kind.credit, at, points=points, cause=cause, ref=ref, expires_at=expires_at)
    if paid:
        ctx.add(state, Kind.debt_settled, at, points=paid)


def _credit_until(
    state: CustomerState,
    points: int,
    at: datetime,
    expires_at: datetime | None,
    kind: Kind,
    ctx: _Context,
    *,
    ref: str | None = None,
    reason: str | None = None,
) -> None:
    """A credit of another kind than `credit` (an adjustment, a transfer's part): debt
    first, then a lot expiring at `expires_at`; the caller counts it in its total."""
    paid, _lot = lots.credit_until(state, points, expires_at)
    ctx.add(state, kind, at, points=points, ref=ref, reason=reason, expires_at=expires_at)
    if paid:
        ctx.add(state, Kind.debt_settled, at, points=paid)


def _tier_multiplier(state: CustomerState, rules: Rules) -> Decimal:
    for level in rules.levels:
        if level.name == state.tier:
            return level.multiplier
    return _ONE


def _membership_multiplier(state: CustomerState, rules: Rules) -> Decimal:
    # Step 2 ended a membership whose end passed: one still held is active.
    if state.membership is None or rules.plans is None:
        return _ONE
    plan = rules.plans.get(state.membership[0])
    return plan.multiplier if plan is not None else _ONE


def _purchase_points(event: ev.Purchase, state: CustomerState, rules: Rules) -> int:
    """floor(base * points_per_unit * channel, tier and membership multipliers), exact until
    the floor; without campaigns (they go to `_campaign_points`)."""
    if event.items:
        base = _ZERO
        for item in event.items:
            factor = rules.category_multipliers.get(item.category, _ONE)
            base += item.quantity * item.unit_price * factor
    else:
        base = event.total
    return int(base * _factor(event, state, rules))  # int() rounds toward zero


def _factor(event: ev.Purchase, state: CustomerState, rules: Rules) -> Decimal:
    channel = rules.channel_multipliers.get(event.channel, _ONE)
    factor = rules.points_per_unit * channel * _tier_multiplier(state, rules)
    return factor * _membership_multiplier(state, rules) if state.membership else factor


def _applying(event: ev.Purchase, state: CustomerState, rules: Rules) -> list[Campaign]:
    """The campaigns that apply to this purchase (PROGRAM.md version 2), in program order."""
    at, found = event.occurred_at, []
    categories = {item.category for item in event.items}
    for c in rules.campaigns:
        if not c.starts_at <= at < c.ends_at or event.total < c.min_total:
            continue
        if (c.channels and event.channel not in c.channels) or (
            c.tiers and state.tier not in c.tiers
        ):
            continue
        if c.categories and not c.categories & categories:
            continue
        if c.max_per_customer is not None and state.campaigns.get(c.id, 0) >= c.max_per_customer:
            continue
        found.append(c)
    return found


def _campaign_points(
    event: ev.Purchase, state: CustomerState, rules: Rules, applying: list[Campaign]
) -> tuple[int, list[tuple[Campaign, int]]]:
    """The purchase's points with campaigns, and what each campaign added beyond the base
    rules. Each item takes the highest multiplier of the campaigns that match it (the first
    in program order wins a tie); the shares telescope, so they sum to the whole uplift."""
    uplift: dict[str, Decimal] = {c.id: _ZERO for c in applying}
    base = _ZERO
    if event.items:
        for item in event.items:
            value = item.quantity * item.unit_price
            value *= rules.category_multipliers.get(item.category, _ONE)
            base += value
            winner = _best(c for c in applying if not c.categories or item.category in c.categories)
            if winner is not None:
                uplift[winner.id] += value * (winner.multiplier - _ONE)
    else:
        base = event.total
        winner = _best(c for c in applying if not c.categories)
        if winner is not None:
            uplift[winner.id] += base * (winner.multiplier - _ONE)
    factor = _factor(event, state, rules)
    running, before = base, int(base * factor)
    shares = []
    for c in applying:
        running += uplift[c.id]
        after = int(running * factor)
        shares.append((c, after - before + c.bonus))
        before = after
    return before + sum(c.bonus for c in applying), shares


def _best(matching: Iterable[Campaign]) -> Campaign | None:
    best: Campaign | None = None
    for c in matching:
        if best is None or c.multiplier > best.multiplier:
            best = c
    return best


# ------------------------------------------------------------------- the rules


def _signup(state: CustomerState, event: ev.Event, ctx: _Context) -> Reason | None:
    assert isinstance(event, ev.Signup)
    if state.signed_up_on is not None:
        return Reason.already_signed_up
    at = event.occurred_at
    _enroll(state, at, "signup", ctx)
    state.signed_up_on = at.astimezone(ctx.rules.tz).date()
    state.birth_date = event.birth_date
    ctx.add(state, Kind.signed_up, at)
    _credit(state, ctx.rules.signup_bonus, at, "signup", None, ctx)
    # The extras are not events of their own: a refusal leaves the signup standing.
    if event.referred_by is not None:
        _refer(state, event.referred_by, at, ctx)
    if event.newsletter and "newsletter_subscribed" in ctx.rules.actions:
        _act(state, "newsletter_subscribed", at, ctx)
    return None


def _purchase(state: CustomerState, event: ev.Event, ctx: _Context) -> Reason | None:
    assert isinstance(event, ev.Purchase)
    rules = ctx.rules
    if event.currency != rules.currency:
        return Reason.currency_mismatch
    if event.order_id in state.orders:
        return Reason.duplicate_order
    at = event.occurred_at
    _enroll(state, at, "purchase", ctx)
    first_order = not state.orders
    applying = _applying(event, state, rules) if rules.campaigns else []
    ctx.add(state, Kind.order_placed, at, amount=event.total, ref=event.order_id)
    if applying:
        points, shares = _campaign_points(event, state, rules, applying)
        counts = state.own_campaigns()
        for campaign, share in shares:
            counts[campaign.id] = counts.get(campaign.id, 0) + 1
            ctx.add(state, Kind.campaign_applied, at, amount=Decimal(share), ref=campaign.id)
    else:
        points = _purchase_points(event, state, rules)
    if rules.pending_wait is None:
        _credit(state, points, at, "purchase", event.order_id, ctx)
    elif points:
        _make_pending(state, points, at, event.order_id, ctx)
    state.own_orders()[event.order_id] = Order(event.total, _ZERO, points, 0)
    if rules.levels:
        bisect.insort(state.spend, (at, event.total))
        state.spend_total += event.total
    _stamp(state, event, ctx)
    if first_order and state.referrer_id is not None and not state.referral_settled:
        _settle_referral(state, event, ctx)
    return None


def _make_pending(
    state: CustomerState, points: int, at: datetime, order_id: str, ctx: _Context
) -> None:
    # A maturity already behind the clock (a late purchase) waits for the next step 2.
    assert ctx.rules.pending_wait is not None
    matures_at = at + ctx.rules.pending_wait
    state.pending_made += 1
    pending = Pending(matures_at, state.pending_made, order_id, points)
    queue = state.pending
    if not queue or (queue[-1].matures_at, queue[-1].n) <= (matures_at, pending.n):
        queue.append(pending)
    else:
        bisect.insort(queue, pending, key=lambda p: (p.matures_at, p.n))
    ctx.add(state, Kind.pending_created, at, points=points, ref=order_id, expires_at=matures_at)


def _stamp(state: CustomerState, event: ev.Purchase, ctx: _Context) -> None:
    categories = {item.category for item in event.items}
    for card in ctx.rules.cards:
        if card.categories and not card.categories & categories:
            continue
        if card.min_total > event.total:
            continue
        stamps = state.stamps.get(card.id, 0) + 1
        state.own_stamps()[card.id] = stamps
        if stamps % card.every == 0:
            ctx.add(
                state,
                Kind.reward_issued,
                event.occurred_at,
                reward=card.reward,
                cause="stamp_card",
                ref=card.id,
            )


def _settle_referral(state: CustomerState, event: ev.Purchase, ctx: _Context) -> None:
    rules, at = ctx.rules, event.occurred_at
    referrer_id = state.referrer_id
    assert referrer_id is not None and referrer_id != state.customer_id
    state.referral_settled = True
    qualified = rules.referral_on and event.total >= rules.min_first_purchase
    cause = "qualified" if qualified else "not_qualified"
    ctx.add(state, Kind.referral_settled, at, ref=referrer_id, cause=cause)
    if not qualified:
        return
    if ctx.owns(referrer_id):
        _credit_referrer(ctx.customer(referrer_id), state.customer_id, at, ctx)
    else:
        command_id = f"{ctx.event_id}/referrer"
        ctx.commands.append(
            ReferrerCredit(command_id, referrer_id, state.customer_id, at, ctx.decided_at)
        )
    _credit(state, rules.referee_bonus, at, "referee", referrer_id, ctx)


def _credit_referrer(referrer: CustomerState, referee_id: str, at: datetime, ctx: _Context) -> None:
    # The referrer's clock does not move: no expiry or tier step for it here.
    rules = ctx.rules
    _enroll(referrer, at, "referral", ctx)
    referrer.referrals_qualified += 1
    ctx.add(referrer, Kind.referral_qualified, at, ref=referee_id)
    # Not the referee's event to reject: what would pass the limit is dropped.
    bonus = min(rules.referrer_bonus, referrer.credit_room())
    _credit(referrer, bonus, at, "referrer", referee_id, ctx)
    reward = rules.ladder.get(referrer.referrals_qualified)
    if reward is not None:
        ctx.add(
            referrer,
            Kind.reward_issued,
            at,
            reward=reward,
            cause="referral_ladder",
            ref=str(referrer.referrals_qualified),
        )


def _return(state: CustomerState, event: ev.Event, ctx: _Context) -> Reason | None:
    assert isinstance(event, ev.Return)
    order = state.orders.get(event.order_id)
    if order is None:
        return Reason.unknown_order
    left = order.total - order.refunded
    if left <= _ZERO:
        return Reason.already_refunded
    at = event.occurred_at
    applied = min(event.amount, left)
    refunded = order.refunded + applied
    target = int((order.points_earned * refunded) // order.total)
    taken = target - order.points_reversed
    assert taken >= 0
    ctx.add(state, Kind.refund_applied, at, amount=applied, ref=event.order_id)
    # What is still pending is taken first: those points were never credited.
    cancelled = _cancel_pending(state, event.order_id, taken, at, ctx) if state.pending else 0
    reversed_now = taken - cancelled
    if reversed_now:
        lots.debit(state, reversed_now)
        state.reversed += reversed_now
        assert state.reversed <= POINTS_LIMIT, state.customer_id
        ctx.add(state, Kind.reversal, at, points=reversed_now, ref=event.order_id)
    state.own_orders()[event.order_id] = Order(
        order.total, refunded, order.points_earned, order.points_reversed + taken
    )
    if ctx.rules.levels:
        bisect.insort(state.spend, (at, -applied))
        state.spend_total -= applied
    return None


def _cancel_pending(
    state: CustomerState, order_id: str, points: int, at: datetime, ctx: _Context
) -> int:
    """Take up to `points` from the order's pending amount; returns how many it took."""
    for index, pending in enumerate(state.pending):
        if pending.order_id != order_id:
            continue
        cancelled = min(points, pending.points)
        if cancelled == pending.points:
            del state.pending[index]
        elif cancelled:
            state.pending[index] = replace(pending, points=pending.points - cancelled)
        if cancelled:
            ctx.add(state, Kind.pending_cancelled, at, points=cancelled, ref=order_id)
        return cancelled
    return 0


def _referral(state: CustomerState, event: ev.Event, ctx: _Context) -> Reason | None:
    assert isinstance(event, ev.Referral)
    return _refer(state, event.referrer_id, event.occurred_at, ctx)


def _refer(state: CustomerState, referrer_id: str, at: datetime, ctx: _Context) -> Reason | None:
    if referrer_id == state.customer_id:
        return Reason.self_referral
    if state.referrer_id is not None:
        return Reason.already_referred
    if state.orders:
        return Reason.referee_not_new
    state.referrer_id = referrer_id
    state.referral_settled = False
    ctx.add(state, Kind.referred, at, ref=referrer_id)
    return None


def _redemption(state: CustomerState, event: ev.Event, ctx: _Context) -> Reason | None:
    assert isinstance(event, ev.Redemption)
    if not state.enrolled:
        return Reason.not_enrolled
    if event.redemption_id in state.redemption_ids:
        return Reason.duplicate_redemption
    if event.reward_id is not None:
        cost = ctx.rules.reward_costs.get(event.reward_id)
        if cost is None:
            return Reason.unknown_reward
    else:
        assert event.points is not None
        cost = event.points
    if cost < ctx.rules.min_points:
        return Reason.below_minimum
    if cost > state.balance:
        return Reason.insufficient_points
    debt = lots.debit(state, cost)
    assert debt == 0, "a redemption never creates debt"
    state.redeemed += cost
    assert state.redeemed <= POINTS_LIMIT, state.customer_id
    state.own_redemption_ids().add(event.redemption_id)
    ctx.add(
        state,
        Kind.redemption,
        event.occurred_at,
        points=cost,
        ref=event.redemption_id,
        reward=event.reward_id,
    )
    return None


def _action(state: CustomerState, event: ev.Event, ctx: _Context) -> Reason | None:
    assert isinstance(event, ev.Action)
    if event.action not in ctx.rules.actions:
        return Reason.unknown_action
    if not state.enrolled:
        return Reason.not_enrolled
    return _act(state, event.action, event.occurred_at, ctx)


def _act(state: CustomerState, name: str, at: datetime, ctx: _Context) -> Reason | None:
    points, limit = ctx.rules.actions[name]
    done = state.actions.get(name, 0)
    if limit is not None and done >= limit:
        return Reason.action_limit_reached
    state.own_actions()[name] = done + 1
    _credit(state, points, at, "action", name, ctx)
    return None


def _adjustment(state: CustomerState, event: ev.Event, ctx: _Context) -> Reason | None:
    assert isinstance(event, ev.Adjustment)
    if not state.enrolled:
        return Reason.not_enrolled
    points, at = event.points, event.occurred_at
    if points < 0 and -points > state.balance:
        return Reason.insufficient_points
    state.adjusted += points
    if points > 0:
        months = ctx.rules.expiry_months
        expires_at = lots.add_months(at, months) if months else None
        _credit_until(state, points, at, expires_at, Kind.adjustment_credit, ctx,
                      reason=event.reason)  # fmt: skip
    else:
        debt = lots.debit(state, -points)
        assert debt == 0, "an adjustment never creates debt"
        ctx.add(state, Kind.adjustment_debit, at, points=-points, reason=event.reason)
    return None


def _transfer(state: CustomerState, event: ev.Event, ctx: _Context) -> Reason | None:
    assert isinstance(event, ev.Transfer)
    rules, at, points = ctx.rules, event.occurred_at, event.points
    if not rules.transfers_on:
        return Reason.transfers_disabled
    if not state.enrolled:
        return Reason.not_enrolled
    if event.to_customer_id == state.customer_id:
        return Reason.self_transfer
    if points < rules.transfer_min_points:
        return Reason.below_minimum
    if points > state.balance:
        return Reason.insufficient_points
    parts = tuple(lots.take(state, points))
    state.transferred_out += points
    recipient_id = event.to_customer_id
    ctx.add(state, Kind.transfer_out, at, points=points, ref=recipient_id)
    if ctx.owns(recipient_id):
        _receive(ctx.customer(recipient_id), state.customer_id, parts, at, ctx)
    else:
        command_id = f"{ctx.event_id}/transfer"
        ctx.commands.append(
            TransferCredit(command_id, recipient_id, state.customer_id, parts, at, ctx.decided_at)
        )
    return None


def _receive(
    recipient: CustomerState,
    giver_id: str,
    parts: tuple[tuple[int, datetime | None], ...],
    at: datetime,
    ctx: _Context,
) -> None:
    """A transfer's credit: one per lot part, each keeping its expiry instant (a part already
    expired by the recipient's clock expires at its next step 2 or tick). The recipient's
    clock does not move, as a referrer's; what would pass the limit is dropped."""
    _enroll(recipient, at, "transfer", ctx)
    for points, expires_at in parts:
        points = min(points, recipient.credit_room(recipient.transferred_in))
        if not points:
            continue
        recipient.transferred_in += points
        _credit_until(recipient, points, at, expires_at, Kind.transfer_in, ctx, ref=giver_id)


def _membership(state: CustomerState, event: ev.Event, ctx: _Context) -> Reason | None:
    assert isinstance(event, ev.Membership)
    if not state.enrolled:
        return Reason.not_enrolled
    plan = ctx.rules.plans.get(event.plan) if ctx.rules.plans else None
    if plan is None:
        return Reason.unknown_plan
    held = state.membership  # step 2 ended it if its end passed: held is active
    if held is not None and held[0] != plan.id:
        return Reason.membership_active
    if event.paid != plan.price_for(state.balance):
        return Reason.wrong_fee
    at, clock = event.occurred_at, state.clock
    assert clock is not None
    if held is not None:
        ends_at = held[1] + plan.length
        kind = Kind.membership_renewed
    else:
        ends_at = clock + plan.length
        kind = Kind.membership_started
    state.membership = (plan.id, ends_at)
    ctx.add(state, kind, at, ref=plan.id, amount=event.paid, expires_at=ends_at)
    return None


def _grant_birthdays(state: CustomerState, at: datetime, ctx: _Context) -> None:
    bonus = ctx.rules.birthday_bonus
    if not bonus or state.signed_up_on is None or state.birth_date is None:
        return
    today = at.astimezone(ctx.rules.tz).date()
    granted = set(state.birthday_years)
    for year in range(state.signed_up_on.year, today.year + 1):
        if year in granted:
            continue
        if state.signed_up_on <= birthday_in(state.birth_date, year) <= today:
            state.own_birthday_years().append(year)
            # A tick is no customer's event to reject: what would pass the limit is dropped.
            _credit(state, min(bonus, state.credit_room()), at, "birthday", str(year), ctx)


_Rule = Callable[[CustomerState, ev.Event, _Context], Reason | None]
_RULES: dict[str, _Rule] = {
    "signup": _signup,
    "purchase": _purchase,
    "return": _return,
    "referral": _referral,
    "redemption": _redemption,
    "action": _action,
    "adjustment": _adjustment,
    "transfer": _transfer,
    "membership": _membership,
}
