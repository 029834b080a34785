"""Amendments in the engine (PROGRAM.md "Amendments"): the version in force at
max(customer's clock, occurred_at) decides an event and every effect of it; a tick follows
the version at its own instant; what earlier versions decided stays."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from helpers import (
    DAY,
    T0,
    action,
    purchase,
    referral,
    rules,
    signup,
    tick,
)

from loyalty_ledger import events as ev
from loyalty_ledger.engine import Decision, History, ReferrerCredit, decide, decide_command
from loyalty_ledger.engine.dates import next_due_at
from loyalty_ledger.engine.decide import decide_tick
from loyalty_ledger.engine.state import CustomerState, from_snapshot, to_snapshot
from loyalty_ledger.ledger.entries import Kind

E = T0 + 10 * DAY  # the amendment's effective_at
EARN_2 = '[earn]\npoints_per_unit = "2"\n'
TIERS = (
    "[tiers]\nwindow_days = {days}\n"
    '[[tiers.levels]]\nname = "bronze"\nmin_spend = "0"\nmultiplier = "1"\n'
    '[[tiers.levels]]\nname = "silver"\nmin_spend = "{silver}"\nmultiplier = "1"\n'
)


class Driver:
    """Every customer in one dict; a tick goes to every customer (as helpers.Book)."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.states: dict[str, CustomerState] = {}
        self.decisions: list[Decision] = []

    def run(self, *events: ev.Event) -> Driver:
        for event in events:
            if isinstance(event, ev.Tick):
                decision = decide_tick(list(self.states.values()), event, self.history)
            else:
                decision = decide(self.states, event, self.history)
            self.states.update(decision.states)
            self.decisions.append(decision)
        return self

    def credits(self, customer: str) -> list[int]:
        return [e.points for d in self.decisions for e in d.entries
                if e.customer_id == customer and e.kind == Kind.credit]  # fmt: skip


def doubled_from(at: datetime) -> History:
    return History(rules(signup=None), ((at, rules(signup=None, earn=EARN_2)),))


def test_the_version_at_the_event_instant_decides() -> None:
    d = Driver(doubled_from(E)).run(
        signup("c1", T0), purchase("c1", "o1", "10", E - DAY), purchase("c1", "o2", "10", E)
    )
    assert d.credits("c1") == [10, 20]  # before E at 1 point per euro, from E on at 2
    assert d.decisions[1].version != d.decisions[2].version  # each names its version


def test_a_late_event_is_decided_by_the_version_at_the_customers_clock() -> None:
    d = Driver(doubled_from(E)).run(
        signup("c1", T0),
        purchase("c1", "o1", "10", E + DAY),  # the clock passes E
        purchase("c1", "o2", "10", E - 5 * DAY),  # late: decided at the clock, by the amendment
        signup("c2", T0),
        purchase("c2", "o3", "10", E - 5 * DAY),  # c2's clock is before E: the original
    )
    assert d.credits("c1") == [20, 20]
    assert d.credits("c2") == [10]


def test_a_tick_follows_the_version_at_its_own_instant() -> None:
    lower = History(
        rules(tiers=TIERS.format(days=365, silver="500")),
        ((E, rules(tiers=TIERS.format(days=365, silver="100"))),),
    )
    d = Driver(lower).run(signup("c1", T0), purchase("c1", "o1", "200", T0 + DAY))
    assert d.states["c1"].tier == "bronze"
    d.run(tick(E - DAY))
    assert d.states["c1"].tier == "bronze"  # the original's threshold still
    d.run(tick(E + DAY))
    assert d.states["c1"].tier == "silver"  # the amendment's threshold from E on


def test_a_customer_is_due_at_the_next_effective_at() -> None:
    history = doubled_from(E)
    d = Driver(history).run(signup("c1", T0))
    state = d.states["c1"]
    assert next_due_at(state, history.original) is None  # nothing to expire or lapse
    assert next_due_at(state, history) == E  # but a new version may change what a tick does


def test_a_referrers_credit_follows_the_version_that_decided_the_referees_purchase() -> None:
    bonus_800 = '[referral]\nreferrer_bonus = 800\nreferee_bonus = 0\nmin_first_purchase = "20"\n'
    history = History(rules(signup=None), ((E, rules(signup=None, referral=bonus_800)),))
    d = Driver(history).run(
        signup("r", T0), signup("c1", T0), referral("c1", "r", T0),
        purchase("c1", "o1", "30", E + DAY),  # the referrer's clock is still T0
    )  # fmt: skip
    assert 800 in d.credits("r")
    # Owned elsewhere: the command carries the deciding instant, so its owner uses the
    # same version even when the cause's occurred_at is before E (a late purchase).
    late = Driver(history).run(signup("c2", T0), referral("c2", "r", T0))
    late.run(action("c2", "review_written", E + 2 * DAY))  # c2's clock passes E
    owns = lambda customer_id: customer_id != "r"  # noqa: E731
    decision = decide(late.states, purchase("c2", "o2", "30", E - DAY), history, owns)
    (command,) = decision.commands
    assert isinstance(command, ReferrerCredit) and command.decided_at == E + 2 * DAY
    credited = decide_command({"r": d.states["r"]}, command, history)
    assert [e.points for e in credited.entries if e.kind == Kind.credit] == [800]


def test_a_longer_window_brings_lapsed_spend_back() -> None:
    history = History(
        rules(tiers=TIERS.format(days=30, silver="500")),
        ((E + 30 * DAY, rules(tiers=TIERS.format(days=365, silver="500"))),),
    )
    d = Driver(history).run(signup("c1", T0), purchase("c1", "o1", "600", T0 + DAY))
    assert d.states["c1"].tier == "silver"
    d.run(tick(T0 + 35 * DAY))  # out of the 30-day window
    assert d.states["c1"].tier == "bronze"
    assert d.states["c1"].spend_total == 0
    # The state kept the spend (the longest window is 365 days) and said so in its snapshot.
    snapshot = to_snapshot(d.states["c1"])
    assert snapshot["spend_total"] == "0"
    assert from_snapshot("c1", snapshot).spend_total == 0
    d.run(tick(E + 31 * DAY))  # the 365-day window is in force: the 600 counts again
    assert d.states["c1"].tier == "silver"
    back = [e for e in d.decisions[-1].entries if e.kind == Kind.spend_lapsed]
    assert [e.amount for e in back] == [Decimal(-600)]  # negative: spend that came back


def test_without_amendments_a_history_is_its_one_version() -> None:
    one = rules()
    events = [signup("c1", T0), purchase("c1", "o1", "600", T0 + DAY), tick(T0 + 400 * DAY)]
    a = Driver(History(one)).run(*events)
    b_states: dict[str, CustomerState] = {}
    entries = []
    for event in events:
        if isinstance(event, ev.Tick):
            decision = decide_tick(list(b_states.values()), event, one)
        else:
            decision = decide(b_states, event, one)
        b_states.update(decision.states)
        entries.extend(decision.entries)
    assert [e for d in a.decisions for e in d.entries] == entries
