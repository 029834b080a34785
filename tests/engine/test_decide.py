"""`decide` and `decide_tick` against PROGRAM.md: one row per rule outcome and rejection reason.

Each row runs its `given` events through the reference driver, then `when`, and checks the
entries `when` produced (as briefs, see helpers.brief), the decision's reason, balances and
state fields. The program is PROGRAM.md's example unless a row changes sections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from helpers import (
    DAY,
    MEMBERSHIPS,
    PENDING,
    SECTIONS,
    T0,
    TRANSFERS,
    Book,
    action,
    adjust,
    briefs,
    campaign,
    ledger_balance,
    membership,
    purchase,
    redeem,
    referral,
    refund,
    rules,
    signup,
    tick,
    timezone,
    transfer,
)

from loyalty_ledger import events as ev
from loyalty_ledger.engine import Decision, TransferCredit, decide, decide_command, decide_tick
from loyalty_ledger.engine.reasons import Reason
from loyalty_ledger.engine.state import Lot, Order, Pending, to_snapshot
from loyalty_ledger.ledger.entries import Kind

T24 = datetime(2028, 3, 1, 12, 0, tzinfo=UTC)  # T0 + 24 months: the example's expiry
SECOND = timedelta(seconds=1)

NO_TIERS: dict[str, str | None] = {"tiers": None}
UNLIMITED = SECTIONS["actions"] + '[[actions]]\nname = "app_opened"\npoints = 5\n'
ONE_MONTH = "[expiry]\nmonths = 1\n"
LADDER_ONE = (
    '[referral]\nreferrer_bonus = 500\nreferee_bonus = 30\nmin_first_purchase = "20"\n'
    '[[referral.ladder]]\ncount = 1\nreward = "razor"\n'
)
ANY_CARD = '[[stamp_cards]]\nid = "any-card"\nevery = 2\nreward = "mug"\n'
# 1000 points per unit: the largest purchase earns 999999999999999 points, 1 below the limit.
BIG_EARN = '[earn]\npoints_per_unit = "1000"\ncategory_multipliers = { shoes = "2" }\n'
BIG: dict[str, str | None] = {"earn": BIG_EARN, "tiers": None, "signup": None}
TOP = "999999999999.999999"  # the largest total on the wire
LIMIT = 10**15


def coffee(n: int, total: str = "3.00", category: str = "coffee") -> ev.Purchase:
    return purchase(
        order=f"coffee-{n}", total=total, items=[(category, 1, total)], at=T0 + n * SECOND
    )


@dataclass(frozen=True)
class Row:
    id: str
    when: ev.Event
    expect: list[str]
    given: tuple[ev.Event, ...] = ()
    program: dict[str, str | None] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    state: dict[str, dict[str, Any]] = field(default_factory=dict)


ROWS: list[Row] = [
    # ------------------------------------------------------------------ signup
    Row(
        "signup/bonus",
        signup(),
        ["c1 enrolled signup", "c1 signed_up", "c1 credit 100 signup"],
        balances={"c1": 100},
        state={"c1": {"enrolled": True, "signed_up_on": date(2026, 3, 1)}},
    ),
    Row(
        "signup/already_signed_up",
        signup(at=T0 + DAY),
        ["c1 rejected already_signed_up"],
        given=(signup(),),
        balances={"c1": 100},
    ),
    Row(
        "signup/after-a-purchase-enrolled-no-second-enrollment",
        signup(at=T0 + DAY),
        ["c1 signed_up", "c1 credit 100 signup"],
        given=(purchase(total="10"),),
        balances={"c1": 110},
    ),
    Row(
        "signup/referred_by-is-a-referral",
        signup("c2", referred_by="c1"),
        ["c2 enrolled signup", "c2 signed_up", "c2 credit 100 signup", "c2 referred c1"],
        balances={"c2": 100},
        state={"c2": {"referrer_id": "c1", "referral_settled": False}},
    ),
    Row(
        "signup/newsletter-is-the-action",
        signup(newsletter=True),
        [
            "c1 enrolled signup",
            "c1 signed_up",
            "c1 credit 100 signup",
            "c1 credit 50 action newsletter_subscribed",
        ],
        balances={"c1": 150},
        state={"c1": {"actions": {"newsletter_subscribed": 1}}},
    ),
    Row(
        "signup/newsletter-without-the-action-configured",
        signup(newsletter=True),
        ["c1 enrolled signup", "c1 signed_up", "c1 credit 100 signup"],
        program={"actions": None},
        balances={"c1": 100},
    ),
    Row(
        "signup/extras-refused-silently-referee_not_new-and-limit",
        signup(referred_by="c2", newsletter=True, at=T0 + DAY),
        ["c1 signed_up", "c1 credit 100 signup"],
        given=(purchase(total="10"), action(name="newsletter_subscribed")),
        balances={"c1": 160},
        state={"c1": {"referrer_id": None}},
    ),
    Row(
        "signup/extras-refused-silently-self_referral",
        signup(referred_by="c1"),
        ["c1 enrolled signup", "c1 signed_up", "c1 credit 100 signup"],
        balances={"c1": 100},
        state={"c1": {"referrer_id": None}},
    ),
    Row(
        "signup/no-signup-section-bonus-0-records-nothing",
        signup(),
        ["c1 enrolled signup", "c1 signed_up"],
        program={"signup": None},
        balances={"c1": 0},
    ),
    # ---------------------------------------------------------------- purchase
    Row(
        "purchase/no-items-total-floored-enrolls-without-bonus",
        purchase(total="59.90"),
        ["c1 enrolled purchase", "c1 order_placed o1 59.90", "c1 credit 59 purchase o1"],
        balances={"c1": 59},
        state={"c1": {"enrolled": True, "signed_up_on": None, "tier": "bronze"}},
    ),
    Row(
        "purchase/items-with-category-multiplier",
        purchase(total="65.55", items=[("shoes", 2, "30.00"), ("socks", 1, "5.55")]),
        ["c1 enrolled purchase", "c1 order_placed o1 65.55", "c1 credit 125 purchase o1"],
        balances={"c1": 125},
    ),
    Row(
        "purchase/items-not-total-are-the-base",
        purchase(total="1000", items=[("socks", 3, "1.10")]),
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 1000",
            "c1 credit 3 purchase o1",
            "c1 tier bronze->silver",
        ],
        balances={"c1": 3},
    ),
    Row(
        "purchase/channel-multiplier",
        purchase(total="10.00", channel="app"),
        ["c1 enrolled purchase", "c1 order_placed o1 10.00", "c1 credit 15 purchase o1"],
        balances={"c1": 15},
    ),
    Row(
        "purchase/floor-once-not-per-factor",
        purchase(total="0.99", channel="app"),  # 1.485 -> 1; floor(0.99) * 1.5 would be 0
        ["c1 enrolled purchase", "c1 order_placed o1 0.99", "c1 credit 1 purchase o1"],
        balances={"c1": 1},
    ),
    Row(
        "purchase/tier-multiplier-before-the-purchase-then-upgrade",
        purchase(total="600"),
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 600",
            "c1 credit 600 purchase o1",
            "c1 tier bronze->silver",
        ],
        balances={"c1": 600},
        state={"c1": {"tier": "silver"}},
    ),
    Row(
        "purchase/silver-tier-multiplier",
        purchase(order="o2", total="100", at=T0 + DAY),
        ["c1 order_placed o2 100", "c1 credit 125 purchase o2"],
        given=(purchase(total="600"),),
        balances={"c1": 725},
    ),
    Row(
        "purchase/all-multipliers-exact-then-floor",
        # 2 * 10.01 (shoes) * 1.5 (app) * 1.25 (silver) = 37.5375
        purchase(
            order="o2", total="10.01", items=[("shoes", 1, "10.01")], channel="app", at=T0 + DAY
        ),
        ["c1 order_placed o2 10.01", "c1 credit 37 purchase o2"],
        given=(purchase(total="600"),),
        balances={"c1": 637},
    ),
    Row(
        "purchase/zero-points-record-no-credit",
        purchase(total="0.50"),
        ["c1 enrolled purchase", "c1 order_placed o1 0.50"],
        balances={"c1": 0},
    ),
    Row(
        "purchase/currency_mismatch-state-created-not-enrolled",
        purchase(total="10", currency="USD"),
        ["c1 rejected currency_mismatch"],
        balances={"c1": 0},
        state={"c1": {"enrolled": False, "orders": {}, "clock": T0, "version": 1}},
    ),
    Row(
        "purchase/duplicate_order",
        purchase(total="20", at=T0 + DAY),
        ["c1 rejected duplicate_order"],
        given=(purchase(total="10"),),
        balances={"c1": 10},
    ),
    Row(
        "purchase/stamp-card-reward-at-every",
        coffee(10),
        [
            "c1 order_placed coffee-10 3.00",
            "c1 credit 3 purchase coffee-10",
            "c1 reward_issued free-coffee stamp_card coffee-card",
        ],
        given=tuple(coffee(n) for n in range(1, 10)),
        state={"c1": {"stamps": {"coffee-card": 10}}},
    ),
    Row(
        "purchase/stamp-card-reward-at-a-multiple-of-every",
        coffee(20),
        [
            "c1 order_placed coffee-20 3.00",
            "c1 credit 3 purchase coffee-20",
            "c1 reward_issued free-coffee stamp_card coffee-card",
        ],
        given=tuple(coffee(n) for n in range(1, 20)),
        state={"c1": {"stamps": {"coffee-card": 20}}},
    ),
    Row(
        "purchase/stamp-card-no-reward-between-multiples",
        coffee(11),
        ["c1 order_placed coffee-11 3.00", "c1 credit 3 purchase coffee-11"],
        given=tuple(coffee(n) for n in range(1, 11)),
        state={"c1": {"stamps": {"coffee-card": 11}}},
    ),
    Row(
        "purchase/stamp-card-other-category-no-stamp",
        coffee(1, category="tea"),
        ["c1 enrolled purchase", "c1 order_placed coffee-1 3.00", "c1 credit 3 purchase coffee-1"],
        state={"c1": {"stamps": {}}},
    ),
    Row(
        "purchase/stamp-card-one-shared-category-is-enough",
        purchase(total="8.00", items=[("tea", 1, "4.00"), ("coffee", 1, "4.00")]),
        ["c1 enrolled purchase", "c1 order_placed o1 8.00", "c1 credit 8 purchase o1"],
        state={"c1": {"stamps": {"coffee-card": 1}}},
    ),
    Row(
        "purchase/stamp-card-below-min_total-no-stamp",
        coffee(1, total="2.99"),
        ["c1 enrolled purchase", "c1 order_placed coffee-1 2.99", "c1 credit 2 purchase coffee-1"],
        state={"c1": {"stamps": {}}},
    ),
    Row(
        "purchase/no-items-no-categories-no-stamp",
        purchase(total="5.00"),
        ["c1 enrolled purchase", "c1 order_placed o1 5.00", "c1 credit 5 purchase o1"],
        state={"c1": {"stamps": {}}},
    ),
    Row(
        "purchase/card-without-categories-counts-any-purchase",
        purchase(order="o2", total="0", at=T0 + DAY),
        ["c1 order_placed o2 0", "c1 reward_issued mug stamp_card any-card"],
        given=(purchase(total="5.00"),),
        program={"stamp_cards": ANY_CARD},
        state={"c1": {"stamps": {"any-card": 2}}},
    ),
    # ------------------------------------------------------------------ return
    Row(
        "return/partial-floor-of-points-times-refunded-over-total",
        refund(amount="10.00", at=T0 + DAY),  # floor(59 * 10 / 59.90) = 9
        ["c1 refund_applied o1 10.00", "c1 reversal 9 o1"],
        given=(purchase(total="59.90"),),
        balances={"c1": 50},
    ),
    Row(
        "return/partial-then-full-reverses-the-rest",
        refund(amount="100", at=T0 + 2 * DAY),  # applied 49.90; target 59, 9 already reversed
        ["c1 refund_applied o1 49.90", "c1 reversal 50 o1"],
        given=(purchase(total="59.90"), refund(amount="10.00", at=T0 + DAY)),
        balances={"c1": 0},
    ),
    Row(
        "return/small-refund-with-nothing-to-reverse-yet",
        refund(amount="0.50", at=T0 + DAY),  # floor(59 * 0.5 / 59.90) = 0
        ["c1 refund_applied o1 0.50"],
        given=(purchase(total="59.90"),),
        balances={"c1": 59},
    ),
    Row(
        "return/already_refunded",
        refund(amount="1", at=T0 + 2 * DAY),
        ["c1 rejected already_refunded"],
        given=(purchase(total="59.90"), refund(amount="59.90", at=T0 + DAY)),
        balances={"c1": 0},
    ),
    Row(
        "return/zero-total-order-is-already_refunded",
        refund(amount="1", at=T0 + DAY),
        ["c1 rejected already_refunded"],
        given=(purchase(total="0"),),
        balances={"c1": 0},
    ),
    Row(
        "return/unknown_order",
        refund(order="o9"),
        ["c1 rejected unknown_order"],
        balances={"c1": 0},
        state={"c1": {"enrolled": False}},
    ),
    Row(
        "return/another-customers-order-is-unknown_order",
        refund("c2", order="o1", at=T0 + DAY),
        ["c2 rejected unknown_order"],
        given=(purchase(total="10"),),
    ),
    Row(
        "return/debt-when-the-lots-are-short",
        refund(amount="100", at=T0 + 2 * DAY),
        ["c1 refund_applied o1 100", "c1 reversal 100 o1"],
        given=(purchase(total="100"), redeem(points=100, at=T0 + DAY)),
        balances={"c1": -100},
        state={"c1": {"debt": 100, "lots": []}},
    ),
    Row(
        "return/later-credit-pays-debt-first",
        action(at=T0 + 3 * DAY),
        ["c1 credit 20 action review_written", "c1 debt_settled 20"],
        given=(
            purchase(total="100"),
            redeem(points=100, at=T0 + DAY),
            refund(amount="100", at=T0 + 2 * DAY),
        ),
        balances={"c1": -80},
        state={"c1": {"debt": 80, "lots": []}},
    ),
    Row(
        "return/credit-larger-than-debt-leaves-a-lot",
        purchase(order="o2", total="150", at=T0 + 3 * DAY),
        ["c1 order_placed o2 150", "c1 credit 150 purchase o2", "c1 debt_settled 100"],
        given=(
            purchase(total="100"),
            redeem(points=100, at=T0 + DAY),
            refund(amount="100", at=T0 + 2 * DAY),
        ),
        balances={"c1": 50},
        state={"c1": {"debt": 0, "lots": [Lot(50, datetime(2028, 3, 4, 12, tzinfo=UTC), 2)]}},
    ),
    Row(
        "return/spend-drops-tier-downgrades",
        refund(amount="200", at=T0 + DAY),
        ["c1 refund_applied o1 200", "c1 reversal 200 o1", "c1 tier silver->bronze"],
        given=(purchase(total="600"),),
        balances={"c1": 400},
        state={"c1": {"tier": "bronze"}},
    ),
    # ---------------------------------------------------------------- referral
    Row(
        "referral/accepted-sets-the-referrer-does-not-enroll",
        referral("c2", "c1"),
        ["c2 referred c1"],
        state={"c2": {"referrer_id": "c1", "referral_settled": False, "enrolled": False}},
    ),
    Row(
        "referral/self_referral",
        referral("c1", "c1"),
        ["c1 rejected self_referral"],
        state={"c1": {"referrer_id": None}},
    ),
    Row(
        "referral/already_referred",
        referral("c2", "c3", at=T0 + DAY),
        ["c2 rejected already_referred"],
        given=(referral("c2", "c1"),),
        state={"c2": {"referrer_id": "c1"}},
    ),
    Row(
        "referral/referee_not_new",
        referral("c2", "c1", at=T0 + DAY),
        ["c2 rejected referee_not_new"],
        given=(purchase("c2", total="10"),),
        state={"c2": {"referrer_id": None}},
    ),
    Row(
        "referral/settles-qualified-on-first-purchase",
        purchase("c2", total="20", at=T0 + DAY),  # exactly min_first_purchase
        [
            "c2 enrolled purchase",
            "c2 order_placed o1 20",
            "c2 credit 20 purchase o1",
            "c2 referral_settled c1 qualified",
            "c1 referral_qualified c2",
            "c1 credit 500 referrer c2",
        ],
        given=(signup("c1"), referral("c2", "c1")),
        balances={"c1": 600, "c2": 20},
        state={
            "c1": {"referrals_qualified": 1, "clock": T0},  # the referrer's clock stays
            "c2": {"referral_settled": True},
        },
    ),
    Row(
        "referral/settles-not-qualified-below-min_first_purchase",
        purchase("c2", total="19.99", at=T0 + DAY),
        [
            "c2 enrolled purchase",
            "c2 order_placed o1 19.99",
            "c2 credit 19 purchase o1",
            "c2 referral_settled c1 not_qualified",
        ],
        given=(signup("c1"), referral("c2", "c1")),
        balances={"c1": 100, "c2": 19},
        state={"c1": {"referrals_qualified": 0}, "c2": {"referral_settled": True}},
    ),
    Row(
        "referral/referrer-enrolled-when-it-qualifies",
        purchase("c2", total="25", at=T0 + DAY),
        [
            "c2 enrolled purchase",
            "c2 order_placed o1 25",
            "c2 credit 25 purchase o1",
            "c2 referral_settled c1 qualified",
            "c1 enrolled referral",
            "c1 referral_qualified c2",
            "c1 credit 500 referrer c2",
        ],
        given=(referral("c2", "c1"),),
        balances={"c1": 500},
        state={"c1": {"enrolled": True, "signed_up_on": None, "clock": None}},
    ),
    Row(
        "referral/ladder-reward-and-referee_bonus",
        purchase("c2", total="25", at=T0 + DAY),
        [
            "c2 enrolled purchase",
            "c2 order_placed o1 25",
            "c2 credit 25 purchase o1",
            "c2 referral_settled c1 qualified",
            "c1 referral_qualified c2",
            "c1 credit 500 referrer c2",
            "c1 reward_issued razor referral_ladder 1",
            "c2 credit 30 referee c1",
        ],
        given=(signup("c1"), referral("c2", "c1")),
        program={"referral": LADDER_ONE},
        balances={"c1": 600, "c2": 55},
    ),
    Row(
        "referral/ladder-reward-at-the-fifth",
        purchase("c6", order="o6", total="20", at=T0 + DAY),
        [
            "c6 enrolled purchase",
            "c6 order_placed o6 20",
            "c6 credit 20 purchase o6",
            "c6 referral_settled c1 qualified",
            "c1 referral_qualified c6",
            "c1 credit 500 referrer c6",
            "c1 reward_issued shaving-cream referral_ladder 5",
        ],
        given=(
            *(
                e
                for k in range(2, 6)
                for e in (referral(f"c{k}", "c1"), purchase(f"c{k}", f"o{k}", "20"))
            ),
            referral("c6", "c1"),
        ),
        balances={"c1": 2500},
        state={"c1": {"referrals_qualified": 5}},
    ),
    Row(
        "referral/only-the-first-order-settles",
        purchase("c2", order="o2", total="100", at=T0 + 2 * DAY),
        ["c2 order_placed o2 100", "c2 credit 100 purchase o2"],
        given=(referral("c2", "c1"), purchase("c2", total="10", at=T0 + DAY)),
        state={"c2": {"referral_settled": True}},
    ),
    Row(
        "referral/without-a-referral-section-never-qualifies",
        purchase("c2", total="100", at=T0 + DAY),
        [
            "c2 enrolled purchase",
            "c2 order_placed o1 100",
            "c2 credit 100 purchase o1",
            "c2 referral_settled c1 not_qualified",
        ],
        given=(signup("c1"), referral("c2", "c1")),
        program={"referral": None},
        balances={"c1": 100, "c2": 100},
        state={"c1": {"referrals_qualified": 0}},
    ),
    # -------------------------------------------------------------- redemption
    Row(
        "redemption/not_enrolled",
        redeem(points=100),
        ["c1 rejected not_enrolled"],
        state={"c1": {"enrolled": False}},
    ),
    Row(
        "redemption/points",
        redeem(points=150, at=T0 + DAY),
        ["c1 redemption 150"],
        given=(purchase(total="300"),),
        balances={"c1": 150},
        state={"c1": {"redemption_ids": {"r1"}}},
    ),
    Row(
        "redemption/reward_id-costs-the-catalogue",
        redeem(reward="voucher-5", at=T0 + DAY),
        ["c1 redemption 500 voucher-5"],
        given=(purchase(total="600"),),
        balances={"c1": 100},
    ),
    Row(
        "redemption/exactly-the-balance",
        redeem(points=300, at=T0 + DAY),
        ["c1 redemption 300"],
        given=(purchase(total="300"),),
        balances={"c1": 0},
    ),
    Row(
        "redemption/duplicate_redemption",
        redeem(points=100, at=T0 + 2 * DAY),
        ["c1 rejected duplicate_redemption"],
        given=(purchase(total="600"), redeem(points=100, at=T0 + DAY)),
        balances={"c1": 500},
    ),
    Row(
        "redemption/a-rejected-id-can-be-retried",
        redeem(points=100, at=T0 + 3 * DAY),
        ["c1 redemption 100"],
        given=(
            purchase(total="50"),
            redeem(points=100, at=T0 + DAY),
            purchase(order="o2", total="60", at=T0 + 2 * DAY),
        ),
        balances={"c1": 10},
    ),
    Row(
        "redemption/unknown_reward",
        redeem(reward="yacht", at=T0 + DAY),
        ["c1 rejected unknown_reward"],
        given=(purchase(total="600"),),
        balances={"c1": 600},
    ),
    Row(
        "redemption/below_minimum",
        redeem(points=99, at=T0 + DAY),
        ["c1 rejected below_minimum"],
        given=(purchase(total="600"),),
        balances={"c1": 600},
    ),
    Row(
        "redemption/insufficient_points",
        redeem(points=301, at=T0 + DAY),
        ["c1 rejected insufficient_points"],
        given=(purchase(total="300"),),
        balances={"c1": 300},
        state={"c1": {"redemption_ids": set()}},
    ),
    Row(
        "redemption/insufficient_points-in-debt",
        redeem("c1", "r2", points=100, at=T0 + 3 * DAY),
        ["c1 rejected insufficient_points"],
        given=(
            purchase(total="100"),
            redeem(points=100, at=T0 + DAY),
            refund(amount="100", at=T0 + 2 * DAY),
        ),
        balances={"c1": -100},
    ),
    Row(
        "redemption/no-redemption-section-no-minimum",
        redeem(points=1, at=T0 + DAY),
        ["c1 redemption 1"],
        given=(purchase(total="10"),),
        program={"redemption": None},
        balances={"c1": 9},
    ),
    # ------------------------------------------------------------------ action
    Row(
        "action/unknown_action-before-not_enrolled",
        action(name="dance"),
        ["c1 rejected unknown_action"],
        state={"c1": {"enrolled": False}},
    ),
    Row(
        "action/not_enrolled",
        action(),
        ["c1 rejected not_enrolled"],
        state={"c1": {"actions": {}}},
    ),
    Row(
        "action/credits-its-points",
        action(at=T0 + DAY),
        ["c1 credit 20 action review_written"],
        given=(signup(),),
        balances={"c1": 120},
        state={"c1": {"actions": {"review_written": 1}}},
    ),
    Row(
        "action/action_limit_reached",
        action(name="newsletter_subscribed", at=T0 + DAY),
        ["c1 rejected action_limit_reached"],
        given=(signup(), action(name="newsletter_subscribed")),
        balances={"c1": 150},
    ),
    Row(
        "action/limit-counts-the-signup-newsletter",
        action(name="newsletter_subscribed", at=T0 + DAY),
        ["c1 rejected action_limit_reached"],
        given=(signup(newsletter=True),),
        balances={"c1": 150},
    ),
    Row(
        "action/unlimited",
        action(name="app_opened", at=T0 + DAY),
        ["c1 credit 5 action app_opened"],
        given=(signup(), *(action(name="app_opened") for _ in range(12))),
        program={"actions": UNLIMITED},
        balances={"c1": 165},
        state={"c1": {"actions": {"app_opened": 13}}},
    ),
    # -------------------------------------------------------------------- tick
    Row(
        "tick/expiry-at-the-expiry-instant",
        tick(T24),
        ["c1 expiry 100"],
        given=(purchase(total="100"),),
        program=NO_TIERS,
        balances={"c1": 0},
        state={"c1": {"lots": [], "clock": T24}},
    ),
    Row(
        "tick/no-expiry-a-second-before",
        tick(T24 - SECOND),
        [],
        given=(purchase(total="100"),),
        program=NO_TIERS,
        balances={"c1": 100},
    ),
    Row(
        "tick/no-expiry-section-never-expires",
        tick(T0 + 100 * 365 * DAY),
        [],
        given=(purchase(total="100"),),
        program={"expiry": None, "tiers": None},
        balances={"c1": 100},
    ),
    Row(
        "tick/expiry-in-order-of-expiry-not-creation",
        tick(T24 + 20 * DAY),
        ["c1 expiry 20", "c1 expiry 30"],
        given=(
            purchase(order="o2", total="30", at=T0 + 10 * DAY),
            purchase(order="o1", total="20", at=T0),
        ),  # late: created second, expires first
        program=NO_TIERS,
    ),
    Row(
        "tick/fifo-same-expiry-by-creation",
        tick(T24),
        ["c1 expiry 30"],
        given=(signup(newsletter=True), redeem(points=120, at=T0 + DAY)),
        program=NO_TIERS,
        state={"c1": {"lots": []}},
    ),
    Row(
        "tick/fifo-redemption-takes-the-first-created-of-equal-expiry",
        tick(T0 + 2 * DAY),
        [],
        given=(signup(newsletter=True), redeem(points=120, at=T0 + DAY)),
        program=NO_TIERS,
        state={"c1": {"lots": [Lot(30, T24, 2)]}},
    ),
    Row(
        "tick/tier-downgrade-when-spend-leaves-the-window",
        tick(T0 + 365 * DAY),
        ["c1 spend_lapsed 600", "c1 tier silver->bronze"],
        given=(purchase(total="600"),),
        state={"c1": {"tier": "bronze", "spend": []}},
    ),
    Row(
        "tick/tier-kept-a-second-before-the-window-ends",
        tick(T0 + 365 * DAY - SECOND),
        [],
        given=(purchase(total="600"),),
        state={"c1": {"tier": "silver"}},
    ),
    Row(
        "tick/birthday",
        tick("2026-06-15T00:30:00+02:00"),  # Berlin's June 15, UTC's June 14
        ["c1 credit 250 birthday 2026"],
        given=(signup(birth_date="1990-06-15"),),
        balances={"c1": 350},
        state={"c1": {"birthday_years": [2026]}},
    ),
    Row(
        "tick/birthday-once-per-year",
        tick("2026-06-20T12:00:00Z"),
        [],
        given=(signup(birth_date="1990-06-15"), tick("2026-06-15T12:00:00Z")),
        balances={"c1": 350},
    ),
    Row(
        "tick/birthday-every-year-not-yet-granted",
        tick("2028-06-15T12:00:00Z"),
        [
            "c1 expiry 100",
            "c1 credit 250 birthday 2026",
            "c1 credit 250 birthday 2027",
            "c1 credit 250 birthday 2028",
        ],
        given=(signup(birth_date="1990-06-15"),),
        program=NO_TIERS,
        balances={"c1": 750},
    ),
    Row(
        "tick/birthday-not-the-day-before",
        tick("2026-06-14T12:00:00Z"),
        [],
        given=(signup(birth_date="1990-06-15"),),
    ),
    Row(
        "tick/birthday-feb-29-on-feb-28-in-a-common-year",
        tick("2027-02-28T12:00:00Z"),  # 2026's Feb 28 is before the signup
        ["c1 credit 250 birthday 2027"],
        given=(signup(birth_date="2000-02-29"),),
    ),
    Row(
        "tick/birthday-feb-29-not-on-feb-27",
        tick("2027-02-27T12:00:00Z"),
        [],
        given=(signup(birth_date="2000-02-29"),),
    ),
    Row(
        "tick/birthday-feb-29-not-on-feb-28-in-a-leap-year",
        tick("2028-02-28T12:00:00Z"),
        [],
        given=(signup(birth_date="2000-02-29"), tick("2027-03-01T12:00:00Z")),
    ),
    Row(
        "tick/birthday-feb-29-on-feb-29-in-a-leap-year",
        tick("2028-02-29T12:00:00Z"),
        ["c1 credit 250 birthday 2028"],
        given=(signup(birth_date="2000-02-29"), tick("2027-03-01T12:00:00Z")),
    ),
    Row(
        "tick/birthday-date-in-program-timezone-tokyo",
        tick("2026-06-14T15:30:00Z"),  # 00:30 on June 15 in Tokyo
        ["c1 credit 250 birthday 2026"],
        given=(signup(birth_date="1990-06-15"),),
        program={"program": timezone("Asia/Tokyo")},
    ),
    Row(
        "tick/birthday-date-in-program-timezone-utc",
        tick("2026-06-14T15:30:00Z"),
        [],
        given=(signup(birth_date="1990-06-15"),),
        program={"program": timezone("UTC")},
    ),
    Row(
        "tick/birthday-not-before-the-signup-date",
        tick("2026-12-31T12:00:00Z"),
        [],
        given=(signup(birth_date="1990-06-15", at="2026-06-20T12:00:00Z"),),
        balances={"c1": 100},
    ),
    Row(
        "tick/birthday-the-year-after-a-late-signup",
        tick("2027-06-15T12:00:00Z"),
        ["c1 credit 250 birthday 2027"],
        given=(signup(birth_date="1990-06-15", at="2026-06-20T12:00:00Z"),),
    ),
    Row(
        "tick/birthday-on-the-signup-date",
        tick("2026-06-15T20:00:00Z"),
        ["c1 credit 250 birthday 2026"],
        given=(signup(birth_date="1990-06-15", at="2026-06-15T08:00:00Z"),),
    ),
    Row(
        "tick/signup-date-in-program-timezone-tokyo",
        tick("2026-06-20T12:00:00Z"),  # signed up June 16 in Tokyo: after the birthday
        [],
        given=(signup(birth_date="1990-06-15", at="2026-06-15T16:00:00Z"),),
        program={"program": timezone("Asia/Tokyo")},
        state={"c1": {"signed_up_on": date(2026, 6, 16)}},
    ),
    Row(
        "tick/signup-date-in-program-timezone-utc",
        tick("2026-06-20T12:00:00Z"),  # signed up June 15 in UTC: on the birthday
        ["c1 credit 250 birthday 2026"],
        given=(signup(birth_date="1990-06-15", at="2026-06-15T16:00:00Z"),),
        program={"program": timezone("UTC")},
        state={"c1": {"signed_up_on": date(2026, 6, 15)}},
    ),
    Row(
        "tick/no-birthday-section-no-bonus",
        tick("2026-06-20T12:00:00Z"),
        [],
        given=(signup(birth_date="1990-06-15"),),
        program={"birthday": None},
        state={"c1": {"birthday_years": []}},
    ),
    Row(
        "tick/no-birthday-without-signup",
        tick("2026-06-20T12:00:00Z"),
        [],
        given=(purchase(total="10"),),
    ),
    Row(
        "tick/late-tick-leaves-the-clock",
        tick(T0),
        [],
        given=(purchase(total="10", at=T0 + 10 * DAY),),
        state={"c1": {"clock": T0 + 10 * DAY}},
    ),
    # ----------------------------------------------- steps 2 and 4 on rejections
    Row(
        "rejected/lots-expire-at-the-new-clock",
        redeem(reward="yacht", at=T24),
        ["c1 expiry 100", "c1 rejected unknown_reward"],
        given=(purchase(total="100"),),
        program=NO_TIERS,
        balances={"c1": 0},
        state={"c1": {"clock": T24}},
    ),
    Row(
        "rejected/tier-re-evaluated",
        action(name="dance", at=T0 + 400 * DAY),
        ["c1 spend_lapsed 600", "c1 tier silver->bronze", "c1 rejected unknown_action"],
        given=(purchase(total="600"),),
        state={"c1": {"tier": "bronze", "clock": T0 + 400 * DAY}},
    ),
    Row(
        "rejected/creates-the-state-not-enrolled",
        redeem("c9", points=100, at=T0 + DAY),
        ["c9 rejected not_enrolled"],
        state={"c9": {"enrolled": False, "clock": T0 + DAY, "version": 1, "tier": "bronze"}},
    ),
    # -------------------------------------------- points limit (PROGRAM.md "Bounds")
    Row(
        "limit/purchase-up-to-the-limit-is-accepted",
        purchase(order="o2", total="1"),
        ["c1 order_placed o2 1", "c1 credit 1000 purchase o2"],
        given=(purchase(total="999999999999"),),
        program=BIG,
        balances={"c1": LIMIT},
        state={"c1": {"earned": LIMIT}},
    ),
    Row(
        "limit/purchase-past-the-limit-points_limit",
        purchase(order="o2", total="1.001"),
        ["c1 rejected points_limit"],
        given=(purchase(total="999999999999"),),
        program=BIG,
        balances={"c1": LIMIT - 1000},
        state={"c1": {"earned": LIMIT - 1000, "version": 4}},
    ),
    Row(
        "limit/one-purchase-past-the-limit",
        purchase(total=TOP, items=[("shoes", 1, TOP)]),
        ["c1 rejected points_limit"],
        program=BIG,
        balances={"c1": 0},
        state={"c1": {"orders": {}, "enrolled": False, "earned": 0}},
    ),
    Row(
        "limit/steps-2-and-4-still-run",
        purchase(order="o2", total="1.001", at=T24),
        ["c1 expiry 999999999999000", "c1 rejected points_limit"],
        given=(purchase(total="999999999999"),),
        program=BIG,
        balances={"c1": 0},
        state={"c1": {"clock": T24, "expired": LIMIT - 1000, "earned": LIMIT - 1000}},
    ),
    Row(
        "limit/signup-bonus-past-the-limit",
        signup(at=T0 + DAY),
        ["c1 rejected points_limit"],
        given=(purchase(total=TOP),),
        program={**BIG, "signup": SECTIONS["signup"]},
        balances={"c1": LIMIT - 1},
        state={"c1": {"signed_up_on": None}},
    ),
    Row(
        "limit/action-past-the-limit",
        action(at=T0 + DAY),
        ["c1 rejected points_limit"],
        given=(signup(), purchase(total=TOP)),
        program=BIG,
        balances={"c1": LIMIT - 1},
        state={"c1": {"actions": {}}},
    ),
    Row(
        "limit/referee-past-the-limit-referrer-untouched",
        purchase("c2", "o9", TOP, items=[("shoes", 1, TOP)], at=T0 + DAY),
        ["c2 rejected points_limit"],
        given=(signup("c1"), signup("c2", referred_by="c1")),
        program=BIG,
        balances={"c1": 0, "c2": 0},
        state={
            "c1": {"referrals_qualified": 0, "version": 2},
            "c2": {"referral_settled": False, "orders": {}},
        },
    ),
    Row(
        "limit/referrer-bonus-cut-to-the-limit",
        purchase("c2", "o9", "20", at=T0 + DAY),
        [
            "c2 order_placed o9 20",
            "c2 credit 20000 purchase o9",
            "c2 referral_settled c1 qualified",
            "c1 referral_qualified c2",
            "c1 credit 1 referrer c2",
        ],
        given=(purchase(total=TOP), signup("c2", referred_by="c1")),
        program=BIG,
        balances={"c1": LIMIT, "c2": 20000},
        state={"c1": {"earned": LIMIT, "referrals_qualified": 1}},
    ),
    Row(
        "limit/referrer-at-the-limit-qualifies-without-points",
        purchase("c2", "o9", "20", at=T0 + DAY),
        [
            "c2 order_placed o9 20",
            "c2 credit 20000 purchase o9",
            "c2 referral_settled c1 qualified",
            "c1 referral_qualified c2",
            "c1 reward_issued razor referral_ladder 1",
            "c2 credit 30 referee c1",
        ],
        given=(
            purchase(total="999999999999"),
            purchase(order="o2", total="1"),
            signup("c2", referred_by="c1"),
        ),
        program={**BIG, "referral": LADDER_ONE},
        balances={"c1": LIMIT, "c2": 20030},
        state={"c1": {"earned": LIMIT, "referrals_qualified": 1}},
    ),
    Row(
        "limit/birthday-bonus-cut-to-the-limit",
        tick("2026-06-20T12:00:00Z"),
        ["c1 credit 1 birthday 2026"],
        given=(signup(birth_date="1990-06-15"), purchase(total=TOP)),
        program=BIG,
        balances={"c1": LIMIT},
    ),
    Row(
        "limit/birthday-at-the-limit-granted-without-points",
        tick("2026-06-20T12:00:00Z"),
        [],
        given=(
            signup(birth_date="1990-06-15"),
            purchase(total="999999999999"),
            purchase(order="o2", total="1"),
        ),
        program=BIG,
        balances={"c1": LIMIT},
        state={"c1": {"birthday_years": [2026]}},
    ),
    # ------------------------------------------------------------ late arrival
    Row(
        "late/clock-stays-points-dated-at-the-event",
        purchase(order="o2", total="10", at=T0),
        ["c1 order_placed o2 10", "c1 credit 10 purchase o2"],
        given=(purchase(total="10", at=T0 + 10 * DAY),),
        state={"c1": {"clock": T0 + 10 * DAY}},
    ),
    # ------------------------------------------------------- expiry month clamp
    Row(
        "clamp/jan-31-plus-1-month-is-feb-28",
        tick("2026-02-28T10:00:00Z"),
        ["c1 expiry 10"],
        given=(purchase(total="10", at="2026-01-31T10:00:00Z"),),
        program={"expiry": ONE_MONTH, "tiers": None},
    ),
    Row(
        "clamp/feb-28-not-before-10-00",
        tick("2026-02-28T09:59:59Z"),
        [],
        given=(purchase(total="10", at="2026-01-31T10:00:00Z"),),
        program={"expiry": ONE_MONTH, "tiers": None},
    ),
    Row(
        "clamp/jan-31-plus-1-month-is-feb-29-in-a-leap-year",
        tick("2028-02-29T10:00:00Z"),
        ["c1 expiry 10"],
        given=(
            purchase(total="10", at="2028-01-31T10:00:00Z"),
            tick("2028-02-28T10:00:00Z"),
        ),  # still there on Feb 28
        program={"expiry": ONE_MONTH, "tiers": None},
    ),
]


# ------------------------------------------------------------------------------------------
# Version 2 (PROGRAM.md "Version 2: what a shop runs day to day"): one row per new rule
# outcome and reason. Each row turns on only the sections it is about.

M14 = datetime(2028, 3, 15, 12, 0, tzinfo=UTC)  # T0 + 14 days + 24 months: a matured lot's expiry
WAIT: dict[str, str | None] = {"pending": PENDING}
MOVES: dict[str, str | None] = {"transfers": TRANSFERS}
PLANS: dict[str, str | None] = {"memberships": MEMBERSHIPS}
# c1 owes 100: a purchase's points redeemed, then the purchase returned.
IN_DEBT = (
    purchase(total="100"),
    redeem(points=100, at=T0 + DAY),
    refund(amount="100", at=T0 + 2 * DAY),
)
# c1 holds two lots: 100 expiring T24 (signup), 200 expiring T24 + 1 day (purchase).
TWO_LOTS = (signup("c1"), purchase("c1", total="200", at=T0 + DAY))
# c2 owes 120, c1 holds TWO_LOTS.
C2_IN_DEBT = (
    purchase("c2", order="o9", total="120"),
    redeem("c2", points=120, at=T0 + DAY),
    refund("c2", order="o9", amount="120", at=T0 + 2 * DAY),
    *TWO_LOTS,
)
# c2's clock is 5 days past T24; c1's signup lot expires at T24.
C2_AHEAD = (purchase("c2", order="o9", total="10", at=T24 + 5 * DAY), signup("c1"))


def shoes_and_socks(total: str = "20") -> ev.Purchase:
    return purchase(total=total, items=[("shoes", 1, "10"), ("socks", 1, "10")])


ROWS_V2: list[Row] = [
    # ---------------------------------------------------------------- pending
    Row(
        "pending/purchase-points-wait-as-the-orders-pending-amount",
        purchase(total="59.90"),
        ["c1 enrolled purchase", "c1 order_placed o1 59.90", "c1 pending_created 59 o1"],
        program=WAIT,
        balances={"c1": 0},
        state={
            "c1": {
                "earned": 0,
                "pending": [Pending(T0 + 14 * DAY, 1, "o1", 59)],
                "orders": {"o1": Order(Decimal("59.90"), Decimal(0), 59, 0)},
            }
        },
    ),
    Row(
        "pending/matures-at-a-tick-into-a-lot-dated-at-the-maturity",
        tick(T0 + 14 * DAY),
        ["c1 pending_matured 59 o1", "c1 credit 59 purchase o1"],
        given=(purchase(total="59.90"),),
        program=WAIT,
        balances={"c1": 59},
        state={"c1": {"earned": 59, "pending": [], "lots": [Lot(59, M14, 1)]}},
    ),
    Row(
        "pending/not-a-second-before-its-maturity",
        tick(T0 + 14 * DAY - SECOND),
        [],
        given=(purchase(total="59.90"),),
        program=WAIT,
        balances={"c1": 0},
        state={"c1": {"pending_points": 59}},
    ),
    Row(
        "pending/matures-in-step-2-of-the-customers-own-event",
        redeem(points=150, at=T0 + 14 * DAY),
        ["c1 pending_matured 200 o1", "c1 credit 200 purchase o1", "c1 redemption 150"],
        given=(purchase(total="200"),),
        program=WAIT,
        balances={"c1": 50},
    ),
    Row(
        "pending/cannot-be-redeemed",
        redeem(points=150, at=T0 + DAY),
        ["c1 rejected insufficient_points"],
        given=(purchase(total="200"),),
        program=WAIT,
        balances={"c1": 0},
        state={"c1": {"pending_points": 200}},
    ),
    Row(
        "pending/mature-by-maturity-instant-then-by-creation",
        tick(T0 + 15 * DAY),
        [
            "c1 pending_matured 10 o1",
            "c1 credit 10 purchase o1",
            "c1 pending_matured 30 o3",
            "c1 credit 30 purchase o3",
            "c1 pending_matured 20 o2",
            "c1 credit 20 purchase o2",
        ],
        given=(
            purchase(order="o3", total="30", at=T0 + DAY),
            purchase(order="o2", total="20", at=T0 + DAY),  # same maturity, created after o3
            purchase(order="o1", total="10", at=T0),  # late: created last, matures first
        ),
        program=WAIT,
        balances={"c1": 60},
    ),
    Row(
        "pending/late-purchase-whose-maturity-is-behind-the-clock-waits",
        purchase(order="o2", total="30", at=T0),
        ["c1 order_placed o2 30", "c1 pending_created 30 o2"],
        given=(purchase(total="10", at=T0 + 20 * DAY),),
        program=WAIT,
        balances={"c1": 0},
        state={
            "c1": {
                "pending": [
                    Pending(T0 + 14 * DAY, 2, "o2", 30),
                    Pending(T0 + 34 * DAY, 1, "o1", 10),
                ]
            }
        },
    ),
    Row(
        "pending/late-maturity-at-the-next-tick-even-an-earlier-one",
        tick(T0 + DAY),
        ["c1 pending_matured 30 o2", "c1 credit 30 purchase o2"],
        given=(purchase(total="10", at=T0 + 20 * DAY), purchase(order="o2", total="30", at=T0)),
        program=WAIT,
        balances={"c1": 30},
        state={"c1": {"clock": T0 + 20 * DAY, "lots": [Lot(30, M14, 1)]}},
    ),
    Row(
        "pending/return-takes-from-the-pending-amount-first",
        refund(amount="40", at=T0 + DAY),
        ["c1 refund_applied o1 40", "c1 pending_cancelled 40 o1"],
        given=(purchase(total="100"),),
        program=WAIT,
        balances={"c1": 0},
        state={
            "c1": {
                "reversed": 0,
                "debt": 0,
                "pending": [Pending(T0 + 14 * DAY, 1, "o1", 60)],
                "orders": {"o1": Order(Decimal(100), Decimal(40), 100, 40)},
            }
        },
    ),
    Row(
        "pending/full-return-cancels-all-of-it",
        refund(amount="100", at=T0 + DAY),
        ["c1 refund_applied o1 100", "c1 pending_cancelled 100 o1"],
        given=(purchase(total="100"),),
        program=WAIT,
        balances={"c1": 0},
        state={"c1": {"reversed": 0, "debt": 0, "pending": [], "earned": 0}},
    ),
    Row(
        "pending/what-a-return-left-matures",
        tick(T0 + 14 * DAY),
        ["c1 pending_matured 60 o1", "c1 credit 60 purchase o1"],
        given=(purchase(total="100"), refund(amount="40", at=T0 + DAY)),
        program=WAIT,
        balances={"c1": 60},
        state={"c1": {"earned": 60, "reversed": 0}},
    ),
    Row(
        "pending/return-after-maturity-reverses-the-rest",
        refund(amount="60", at=T0 + 15 * DAY),
        ["c1 refund_applied o1 60", "c1 reversal 60 o1"],
        given=(purchase(total="100"), refund(amount="40", at=T0 + DAY), tick(T0 + 14 * DAY)),
        program=WAIT,
        balances={"c1": 0},
        state={
            "c1": {"reversed": 60, "orders": {"o1": Order(Decimal(100), Decimal(100), 100, 100)}}
        },
    ),
    Row(
        "pending/a-matured-credit-pays-debt-first",
        tick(T0 + 29 * DAY),
        ["c1 pending_matured 50 o2", "c1 credit 50 purchase o2", "c1 debt_settled 50"],
        given=(
            purchase(total="100"),
            redeem(points=100, at=T0 + 14 * DAY),  # matured in its step 2, all redeemed
            purchase(order="o2", total="50", at=T0 + 15 * DAY),
            refund(amount="100", at=T0 + 16 * DAY),  # o1 matured: reversed, debt 100
        ),
        program=WAIT,
        balances={"c1": -50},
        state={"c1": {"debt": 50, "lots": [], "earned": 150, "reversed": 100}},
    ),
    Row(
        "pending/days-0-credits-at-once",
        purchase(total="10"),
        ["c1 enrolled purchase", "c1 order_placed o1 10", "c1 credit 10 purchase o1"],
        program={"pending": "[pending]\ndays = 0\n"},
        balances={"c1": 10},
        state={"c1": {"pending": []}},
    ),
    Row(
        "pending/zero-points-wait-for-nothing",
        purchase(total="0.50"),
        ["c1 enrolled purchase", "c1 order_placed o1 0.50"],
        program=WAIT,
        state={"c1": {"pending": [], "pending_made": 0}},
    ),
    Row(
        "pending/referral-bonuses-are-credited-at-once",
        purchase("c2", total="25", at=T0 + DAY),
        [
            "c2 enrolled purchase",
            "c2 order_placed o1 25",
            "c2 pending_created 25 o1",
            "c2 referral_settled c1 qualified",
            "c1 referral_qualified c2",
            "c1 credit 500 referrer c2",
            "c1 reward_issued razor referral_ladder 1",
            "c2 credit 30 referee c1",
        ],
        given=(signup("c1"), referral("c2", "c1")),
        program={**WAIT, "referral": LADDER_ONE},
        balances={"c1": 600, "c2": 30},
        state={"c2": {"pending_points": 25}},
    ),
    Row(
        "pending/points-count-toward-the-points-limit",
        purchase(order="o2", total="1.001"),
        ["c1 rejected points_limit"],
        given=(purchase(total="999999999999"),),
        program={**BIG, **WAIT},
        balances={"c1": 0},
        state={"c1": {"pending_points": LIMIT - 1000, "earned": 0}},
    ),
    # -------------------------------------------------------------- campaigns
    Row(
        "campaign/applies-from-starts_at-inclusive",
        purchase(total="100"),
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 100",
            "c1 campaign_applied double 100",
            "c1 credit 200 purchase o1",
        ],
        program={"campaigns": campaign(multiplier="2")},
        balances={"c1": 200},
        state={
            "c1": {
                "campaigns": {"double": 1},
                "orders": {"o1": Order(Decimal(100), Decimal(0), 200, 0)},
            }
        },
    ),
    Row(
        "campaign/not-a-second-before-starts_at",
        purchase(total="100", at=T0 - SECOND),
        ["c1 enrolled purchase", "c1 order_placed o1 100", "c1 credit 100 purchase o1"],
        program={"campaigns": campaign(multiplier="2")},
        state={"c1": {"campaigns": {}}},
    ),
    Row(
        "campaign/a-second-before-ends_at",
        purchase(total="100", at=T0 + 2 * DAY - SECOND),
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 100",
            "c1 campaign_applied double 100",
            "c1 credit 200 purchase o1",
        ],
        program={"campaigns": campaign(multiplier="2")},
    ),
    Row(
        "campaign/not-at-ends_at-exclusive",
        purchase(total="100", at=T0 + 2 * DAY),
        ["c1 enrolled purchase", "c1 order_placed o1 100", "c1 credit 100 purchase o1"],
        program={"campaigns": campaign(multiplier="2")},
        state={"c1": {"campaigns": {}}},
    ),
    Row(
        "campaign/window-compares-instants-whatever-the-offsets",
        # 13:30 UTC reads between 13:00 and 14:00 but is after 14:00+01:00 (13:00 UTC)
        purchase(total="100", at="2026-03-01T13:30:00+00:00"),
        ["c1 enrolled purchase", "c1 order_placed o1 100", "c1 credit 100 purchase o1"],
        program={
            "campaigns": campaign(
                starts_at="2026-03-01T13:00:00+01:00",
                ends_at="2026-03-01T14:00:00+01:00",
                multiplier="2",
            )
        },
    ),
    Row(
        "campaign/a-late-purchase-by-its-own-instant",
        purchase(total="100", at=T0),
        ["c1 order_placed o1 100", "c1 campaign_applied double 100", "c1 credit 200 purchase o1"],
        given=(purchase(order="o0", total="1", at=T0 + 10 * DAY),),
        program={"campaigns": campaign(multiplier="2")},
        state={"c1": {"clock": T0 + 10 * DAY, "campaigns": {"double": 1}}},
    ),
    Row(
        "campaign/channel-listed",
        purchase(total="100", channel="app"),  # 100 * 2 * 1.5
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 100",
            "c1 campaign_applied double 150",
            "c1 credit 300 purchase o1",
        ],
        program={"campaigns": campaign(multiplier="2", channels=["app", "web"])},
    ),
    Row(
        "campaign/channel-not-listed",
        purchase(total="100", channel="pos"),
        ["c1 enrolled purchase", "c1 order_placed o1 100", "c1 credit 100 purchase o1"],
        program={"campaigns": campaign(multiplier="2", channels=["app", "web"])},
        state={"c1": {"campaigns": {}}},
    ),
    Row(
        "campaign/tier-before-the-purchase-listed",
        purchase(order="o2", total="100", at=T0 + DAY),  # silver: 100 * 2 * 1.25
        ["c1 order_placed o2 100", "c1 campaign_applied double 125", "c1 credit 250 purchase o2"],
        given=(purchase(total="600"),),
        program={"campaigns": campaign(multiplier="2", tiers=["silver"])},
        balances={"c1": 850},
        state={"c1": {"campaigns": {"double": 1}}},
    ),
    Row(
        "campaign/tier-the-purchase-reaches-does-not-count",
        purchase(total="600"),
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 600",
            "c1 credit 600 purchase o1",
            "c1 tier bronze->silver",
        ],
        program={"campaigns": campaign(multiplier="2", tiers=["silver"])},
        state={"c1": {"campaigns": {}}},
    ),
    Row(
        "campaign/min_total-inclusive",
        purchase(total="50"),
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 50",
            "c1 campaign_applied double 50",
            "c1 credit 100 purchase o1",
        ],
        program={"campaigns": campaign(multiplier="2", min_total="50")},
    ),
    Row(
        "campaign/below-min_total",
        purchase(total="49.99"),
        ["c1 enrolled purchase", "c1 order_placed o1 49.99", "c1 credit 49 purchase o1"],
        program={"campaigns": campaign(multiplier="2", min_total="50")},
        state={"c1": {"campaigns": {}}},
    ),
    Row(
        "campaign/categories-multiply-only-the-items-they-match",
        shoes_and_socks(),  # shoes 10 * 2 (category) * 3 + socks 10
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 20",
            "c1 campaign_applied shoes 40",
            "c1 credit 70 purchase o1",
        ],
        program={"campaigns": campaign("shoes", multiplier="3", categories=["shoes"])},
        state={"c1": {"campaigns": {"shoes": 1}}},
    ),
    Row(
        "campaign/categories-no-item-matches",
        purchase(total="10", items=[("socks", 1, "10")]),
        ["c1 enrolled purchase", "c1 order_placed o1 10", "c1 credit 10 purchase o1"],
        program={"campaigns": campaign("shoes", multiplier="3", categories=["shoes"])},
        state={"c1": {"campaigns": {}}},
    ),
    Row(
        "campaign/with-categories-never-a-purchase-without-items",
        purchase(total="100"),
        ["c1 enrolled purchase", "c1 order_placed o1 100", "c1 credit 100 purchase o1"],
        program={"campaigns": campaign("shoes", multiplier="3", categories=["shoes"], bonus=5)},
        state={"c1": {"campaigns": {}}},
    ),
    Row(
        "campaign/max_per_customer",
        purchase(order="o2", total="100", at=T0 + DAY),
        ["c1 order_placed o2 100", "c1 credit 100 purchase o2"],
        given=(purchase(total="100"),),
        program={"campaigns": campaign(multiplier="2", max_per_customer=1)},
        balances={"c1": 300},
        state={"c1": {"campaigns": {"double": 1}}},
    ),
    Row(
        "campaign/every-applying-one-counts-the-highest-multiplier-wins",
        purchase(total="100"),
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 100",
            "c1 campaign_applied double 0",
            "c1 campaign_applied triple 200",
            "c1 credit 300 purchase o1",
        ],
        program={"campaigns": campaign(multiplier="2") + campaign("triple", multiplier="3")},
        state={"c1": {"campaigns": {"double": 1, "triple": 1}}},
    ),
    Row(
        "campaign/highest-multiplier-per-item",
        shoes_and_socks(),  # shoes 10 * 2 * max(2, 3) + socks 10 * 2
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 20",
            "c1 campaign_applied all 10",
            "c1 campaign_applied shoes 40",
            "c1 credit 80 purchase o1",
        ],
        program={
            "campaigns": campaign("all", multiplier="2")
            + campaign("shoes", multiplier="3", categories=["shoes"])
        },
    ),
    Row(
        "campaign/bonuses-summed",
        purchase(total="100"),
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 100",
            "c1 campaign_applied five 5",
            "c1 campaign_applied seven 7",
            "c1 credit 112 purchase o1",
        ],
        program={"campaigns": campaign("five", bonus=5) + campaign("seven", bonus=7)},
    ),
    Row(
        "campaign/bonus-on-a-zero-total",
        purchase(total="0"),
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 0",
            "c1 campaign_applied five 5",
            "c1 credit 5 purchase o1",
        ],
        program={"campaigns": campaign("five", bonus=5)},
    ),
    Row(
        "campaign/multiplier-below-1-lowers-the-items-it-matches",
        shoes_and_socks(),  # shoes 10 * 2 * 0.5 + socks 10
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 20",
            "c1 campaign_applied half -10",
            "c1 credit 20 purchase o1",
        ],
        program={"campaigns": campaign("half", multiplier="0.5", categories=["shoes"])},
    ),
    Row(
        "campaign/multiplier-below-1-loses-to-a-higher-one",
        purchase(total="100"),
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 100",
            "c1 campaign_applied half 0",
            "c1 campaign_applied double 100",
            "c1 credit 200 purchase o1",
        ],
        program={"campaigns": campaign("half", multiplier="0.5") + campaign(multiplier="2")},
    ),
    Row(
        "campaign/bonus-reversed-in-proportion",
        refund(amount="50", at=T0 + DAY),  # floor(110 * 50 / 100)
        ["c1 refund_applied o1 50", "c1 reversal 55 o1"],
        given=(purchase(total="100"),),
        program={"campaigns": campaign("ten", bonus=10)},
        balances={"c1": 55},
    ),
    Row(
        "campaign/bonus-waits-with-the-purchase",
        purchase(total="100"),
        [
            "c1 enrolled purchase",
            "c1 order_placed o1 100",
            "c1 campaign_applied ten 10",
            "c1 pending_created 110 o1",
        ],
        program={**WAIT, "campaigns": campaign("ten", bonus=10)},
        balances={"c1": 0},
    ),
    Row(
        "campaign/a-rejected-purchase-counts-nowhere",
        purchase(total="100", currency="USD"),
        ["c1 rejected currency_mismatch"],
        program={"campaigns": campaign(multiplier="2")},
        state={"c1": {"campaigns": {}}},
    ),
    # ------------------------------------------------------------ adjustments
    Row(
        "adjustment/not_enrolled",
        adjust(points=-5),
        ["c1 rejected not_enrolled"],
        state={"c1": {"adjusted": 0}},
    ),
    Row(
        "adjustment/credit-counted-in-adjusted-not-earned",
        adjust(points=50, at=T0 + DAY),
        ["c1 adjustment_credit 50 goodwill"],
        given=(signup(),),
        balances={"c1": 150},
        state={
            "c1": {"adjusted": 50, "earned": 100, "lots": [Lot(100, T24, 1), Lot(50, T24 + DAY, 2)]}
        },
    ),
    Row(
        "adjustment/debit-counted-in-adjusted-not-redeemed",
        adjust(points=-40, reason="double-booked", at=T0 + DAY),
        ["c1 adjustment_debit 40 double-booked"],
        given=(signup(),),
        balances={"c1": 60},
        state={"c1": {"adjusted": -40, "redeemed": 0, "lots": [Lot(60, T24, 1)]}},
    ),
    Row(
        "adjustment/debit-of-the-whole-balance",
        adjust(points=-100, at=T0 + DAY),
        ["c1 adjustment_debit 100 goodwill"],
        given=(signup(),),
        balances={"c1": 0},
        state={"c1": {"debt": 0}},
    ),
    Row(
        "adjustment/debit-below-the-redemption-minimum",
        adjust(points=-1, at=T0 + DAY),
        ["c1 adjustment_debit 1 goodwill"],
        given=(signup(),),
        balances={"c1": 99},
    ),
    Row(
        "adjustment/insufficient_points-for-a-negative-one",
        adjust(points=-101, at=T0 + DAY),
        ["c1 rejected insufficient_points"],
        given=(signup(),),
        balances={"c1": 100},
        state={"c1": {"adjusted": 0}},
    ),
    Row(
        "adjustment/pending-points-cannot-be-taken",
        adjust(points=-50, at=T0 + DAY),
        ["c1 rejected insufficient_points"],
        given=(purchase(total="200"),),
        program=WAIT,
        balances={"c1": 0},
        state={"c1": {"pending_points": 200}},
    ),
    Row(
        "adjustment/insufficient_points-in-debt",
        adjust(points=-1, at=T0 + 3 * DAY),
        ["c1 rejected insufficient_points"],
        given=IN_DEBT,
        balances={"c1": -100},
    ),
    Row(
        "adjustment/credit-pays-debt-first",
        adjust(points=150, at=T0 + 3 * DAY),
        ["c1 adjustment_credit 150 goodwill", "c1 debt_settled 100"],
        given=IN_DEBT,
        balances={"c1": 50},
        state={"c1": {"adjusted": 150, "debt": 0, "earned": 100}},
    ),
    Row(
        "adjustment/credits-and-debits-sum-signed",
        adjust(points=-20, at=T0 + 2 * DAY),
        ["c1 adjustment_debit 20 goodwill"],
        given=(signup(), adjust(points=50, at=T0 + DAY), adjust(points=-30, at=T0 + DAY)),
        balances={"c1": 100},
        state={"c1": {"adjusted": 0, "earned": 100, "redeemed": 0}},
    ),
    Row(
        "adjustment/past-the-limit-points_limit",
        adjust(points=1001, at=T0 + DAY),
        ["c1 rejected points_limit"],
        given=(purchase(total="999999999999"),),
        program=BIG,
        balances={"c1": LIMIT - 1000},
        state={"c1": {"adjusted": 0}},
    ),
    # -------------------------------------------------------------- transfers
    Row(
        "transfer/transfers_disabled-before-not_enrolled",
        transfer(),
        ["c1 rejected transfers_disabled"],
        state={"c1": {"transferred_out": 0}},
    ),
    Row(
        "transfer/not_enrolled",
        transfer(),
        ["c1 rejected not_enrolled"],
        program=MOVES,
    ),
    Row(
        "transfer/self_transfer-before-below_minimum",
        transfer(to="c1", points=1, at=T0 + DAY),
        ["c1 rejected self_transfer"],
        given=(signup(),),
        program=MOVES,
        balances={"c1": 100},
    ),
    Row(
        "transfer/below_minimum",
        transfer(points=99, at=T0 + DAY),
        ["c1 rejected below_minimum"],
        given=(signup(),),
        program=MOVES,
        balances={"c1": 100},
    ),
    Row(
        "transfer/insufficient_points",
        transfer(points=101, at=T0 + DAY),
        ["c1 rejected insufficient_points"],
        given=(signup(),),
        program=MOVES,
        balances={"c1": 100},
        state={"c1": {"transferred_out": 0}},
    ),
    Row(
        "transfer/pending-points-cannot-be-given",
        transfer(points=100, at=T0 + DAY),
        ["c1 rejected insufficient_points"],
        given=(purchase(total="200"),),
        program={**MOVES, **WAIT},
        balances={"c1": 0},
    ),
    Row(
        "transfer/lot-parts-move-the-recipient-is-enrolled-its-clock-stays",
        transfer(points=250, at=T0 + 2 * DAY),
        [
            "c1 transfer_out 250 c2",
            "c2 enrolled transfer",
            "c2 transfer_in 100 c1",
            "c2 transfer_in 150 c1",
        ],
        given=TWO_LOTS,
        program=MOVES,
        balances={"c1": 50, "c2": 250},
        state={
            "c1": {"transferred_out": 250, "earned": 300, "lots": [Lot(50, T24 + DAY, 2)]},
            "c2": {
                "enrolled": True,
                "signed_up_on": None,
                "clock": None,
                "transferred_in": 250,
                "earned": 0,
                "lots": [Lot(100, T24, 1), Lot(150, T24 + DAY, 2)],
            },
        },
    ),
    Row(
        "transfer/an-enrolled-recipients-clock-stays",
        transfer(points=100, at=T0 + 10 * DAY),
        ["c1 transfer_out 100 c2", "c2 transfer_in 100 c1"],
        given=(signup("c2"), signup("c1")),
        program=MOVES,
        balances={"c1": 0, "c2": 200},
        state={"c2": {"clock": T0, "lots": [Lot(100, T24, 1), Lot(100, T24, 2)]}},
    ),
    Row(
        "transfer/a-part-keeps-its-expiry-even-behind-the-recipients-clock",
        transfer(points=100, at=T0 + DAY),
        ["c1 transfer_out 100 c2", "c2 transfer_in 100 c1"],
        given=C2_AHEAD,
        program=MOVES,
        balances={"c1": 0, "c2": 110},
        state={
            "c2": {
                "clock": T24 + 5 * DAY,
                "lots": [Lot(100, T24, 2), Lot(10, datetime(2030, 3, 6, 12, tzinfo=UTC), 1)],
            }
        },
    ),
    Row(
        "transfer/an-expired-part-expires-at-the-recipients-next-step",
        tick(T0 + 2 * DAY),
        ["c2 expiry 100"],
        given=(*C2_AHEAD, transfer(points=100, at=T0 + DAY)),
        program=MOVES,
        balances={"c1": 0, "c2": 10},
        state={"c2": {"expired": 100, "transferred_in": 100, "clock": T24 + 5 * DAY}},
    ),
    Row(
        "transfer/each-part-pays-the-recipients-debt-first",
        transfer(points=150, at=T0 + 3 * DAY),
        [
            "c1 transfer_out 150 c2",
            "c2 transfer_in 100 c1",
            "c2 debt_settled 100",
            "c2 transfer_in 50 c1",
            "c2 debt_settled 20",
        ],
        given=C2_IN_DEBT,
        program=MOVES,
        balances={"c1": 150, "c2": 30},
        state={"c2": {"debt": 0, "transferred_in": 150, "lots": [Lot(30, T24 + DAY, 2)]}},
    ),
    Row(
        "transfer/min_points-defaults-to-0",
        transfer(points=1, at=T0 + DAY),
        ["c1 transfer_out 1 c2", "c2 enrolled transfer", "c2 transfer_in 1 c1"],
        given=(signup(),),
        program={"transfers": "[transfers]\n"},
        balances={"c1": 99, "c2": 1},
    ),
    Row(
        "transfer/the-recipients-credit-is-cut-to-the-limit",
        transfer(points=1500, at=T0 + DAY),
        ["c1 transfer_out 1500 c2", "c2 transfer_in 1000 c1"],
        given=(purchase("c2", order="o9", total="999999999999"), purchase(total="1.5")),
        program={**BIG, **MOVES},
        balances={"c1": 0, "c2": LIMIT},
        state={"c1": {"transferred_out": 1500}, "c2": {"transferred_in": 1000}},
    ),
    # ------------------------------------------------------------ memberships
    Row(
        "membership/not_enrolled",
        membership(),
        ["c1 rejected not_enrolled"],
        program=PLANS,
        state={"c1": {"membership": None}},
    ),
    Row(
        "membership/unknown_plan",
        membership(plan="gold-club", at=T0 + DAY),
        ["c1 rejected unknown_plan"],
        given=(signup(),),
        program=PLANS,
    ),
    Row(
        "membership/unknown_plan-without-memberships",
        membership(at=T0 + DAY),
        ["c1 rejected unknown_plan"],
        given=(signup(),),
    ),
    Row(
        "membership/starts-at-the-clock-for-its-days",
        membership(at=T0 + DAY),
        ["c1 membership_started vip 888.00"],
        given=(signup(),),
        program=PLANS,
        balances={"c1": 100},
        state={"c1": {"membership": ("vip", T0 + 366 * DAY)}},
    ),
    Row(
        "membership/a-late-one-starts-at-the-clock-not-its-instant",
        membership(at=T0 + DAY),
        ["c1 membership_started vip 888.00"],
        given=(signup(), purchase(total="10", at=T0 + 10 * DAY)),
        program=PLANS,
        state={"c1": {"membership": ("vip", T0 + 375 * DAY)}},
    ),
    Row(
        "membership/wrong_fee",
        membership(paid="88.00", at=T0 + DAY),
        ["c1 rejected wrong_fee"],
        given=(signup(),),
        program=PLANS,
        state={"c1": {"membership": None}},
    ),
    Row(
        "membership/fee-compared-as-decimals",
        membership(paid="888", at=T0 + DAY),
        ["c1 membership_started vip 888"],
        given=(signup(),),
        program=PLANS,
    ),
    Row(
        "membership/member_fee-at-the-balance-threshold",
        membership(paid="88.00", at=T0 + DAY),
        ["c1 membership_started vip 88.00"],
        given=(purchase(total="900"), signup()),
        program=PLANS,
        balances={"c1": 1000},
    ),
    Row(
        "membership/member_fee-applies-so-fee-is-wrong_fee",
        membership(paid="888.00", at=T0 + DAY),
        ["c1 rejected wrong_fee"],
        given=(purchase(total="900"), signup()),
        program=PLANS,
    ),
    Row(
        "membership/member_fee-a-point-short-is-wrong_fee",
        membership(paid="88.00", at=T0 + DAY),
        ["c1 rejected wrong_fee"],
        given=(purchase(total="899"), signup()),
        program=PLANS,
        balances={"c1": 999},
    ),
    Row(
        "membership/membership_active-for-another-plan",
        membership(plan="plus", paid="10", at=T0 + DAY),
        ["c1 rejected membership_active"],
        given=(signup(), membership()),
        program=PLANS,
        state={"c1": {"membership": ("vip", T0 + 365 * DAY)}},
    ),
    Row(
        "membership/membership_active-before-wrong_fee",
        membership(plan="plus", paid="1", at=T0 + DAY),
        ["c1 rejected membership_active"],
        given=(signup(), membership()),
        program=PLANS,
    ),
    Row(
        "membership/renewal-moves-the-end-days-later",
        membership(at=T0 + 100 * DAY),
        ["c1 membership_renewed vip 888.00"],
        given=(signup(), membership()),
        program=PLANS,
        state={"c1": {"membership": ("vip", T0 + 730 * DAY)}},
    ),
    Row(
        "membership/active-a-second-before-its-end",
        tick(T0 + 365 * DAY - SECOND),
        [],
        given=(signup(), membership()),
        program=PLANS,
        state={"c1": {"membership": ("vip", T0 + 365 * DAY)}},
    ),
    Row(
        "membership/ended-when-its-end-reaches-the-clock",
        tick(T0 + 365 * DAY),
        ["c1 membership_ended vip"],
        given=(signup(), membership()),
        program=PLANS,
        state={"c1": {"membership": None}},
    ),
    Row(
        "membership/after-its-end-a-new-one-starts",
        membership(at=T0 + 400 * DAY),
        ["c1 membership_ended vip", "c1 membership_started vip 888.00"],
        given=(signup(), membership()),
        program=PLANS,
        state={"c1": {"membership": ("vip", T0 + 765 * DAY)}},
    ),
    Row(
        "membership/after-its-end-another-plan",
        membership(plan="plus", paid="10", at=T0 + 400 * DAY),
        ["c1 membership_ended vip", "c1 membership_started plus 10"],
        given=(signup(), membership()),
        program=PLANS,
        state={"c1": {"membership": ("plus", T0 + 430 * DAY)}},
    ),
    Row(
        "membership/multiplier-while-active",
        purchase(total="100", at=T0 + DAY),
        ["c1 order_placed o1 100", "c1 credit 105 purchase o1"],
        given=(signup(), membership()),
        program=PLANS,
        balances={"c1": 205},
    ),
    Row(
        "membership/multiplier-on-top-of-channel-and-tier",
        purchase(order="o2", total="100", channel="app", at=T0 + DAY),  # 100*1.5*1.25*1.05
        ["c1 order_placed o2 100", "c1 credit 196 purchase o2"],
        given=(signup(), purchase(total="600"), membership()),
        program=PLANS,
    ),
    Row(
        "membership/multiplier-on-top-of-a-campaign",
        purchase(total="100", at=T0 + DAY),  # 100 * 2 * 1.05
        ["c1 order_placed o1 100", "c1 campaign_applied double 105", "c1 credit 210 purchase o1"],
        given=(signup(), membership()),
        program={**PLANS, "campaigns": campaign(multiplier="2")},
    ),
    Row(
        "membership/no-multiplier-once-ended",
        purchase(total="100", at=T0 + 365 * DAY),
        ["c1 membership_ended vip", "c1 order_placed o1 100", "c1 credit 100 purchase o1"],
        given=(signup(), membership()),
        program=PLANS,
    ),
    Row(
        "membership/plan-without-multiplier-earns-at-1",
        purchase(total="100", at=T0 + DAY),
        ["c1 order_placed o1 100", "c1 credit 100 purchase o1"],
        given=(signup(), membership(plan="plus", paid="10")),
        program=PLANS,
    ),
]

TABLE = ROWS + ROWS_V2


def _reason(expect: list[str], customer: str) -> str | None:
    for line in expect:
        who, kind, *rest = line.split()
        if who == customer and kind == Kind.rejected:
            return rest[0]
    return None


@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
def test_decision_table(row: Row) -> None:
    book = Book(rules(**row.program)).run(row.given)
    decision = book.apply(row.when)

    assert briefs(decision.entries) == row.expect
    subject = getattr(row.when, "customer_id", None)
    expected_reason = None if subject is None else _reason(row.expect, subject)
    assert decision.reason == expected_reason
    for customer, balance in row.balances.items():
        assert book.balance(customer) == balance, customer
        assert ledger_balance(book.entries, customer) == balance, customer
    for customer, fields in row.state.items():
        state = book.states[customer]
        for name, value in fields.items():
            assert getattr(state, name) == value, (customer, name)


def test_ids_are_unique() -> None:
    assert len({row.id for row in TABLE}) == len(TABLE)


def test_every_reason_has_a_row() -> None:
    covered = {line.split()[2] for row in TABLE for line in row.expect if " rejected " in line}
    assert covered == {reason.value for reason in Reason}


# ------------------------------------------------------------------ the points limit


def test_points_limit_drops_the_referrer_command_too() -> None:
    book = Book(rules(**BIG)).run([signup("c2", referred_by="c1")])
    big = purchase("c2", "o9", TOP, items=[("shoes", 1, TOP)], at=T0 + DAY)
    decision = decide(book.states, big, book.rules, owns=lambda customer: customer == "c2")
    assert (decision.reason, decision.commands, set(decision.states)) == (
        Reason.points_limit,
        (),
        {"c2"},
    )
    small = purchase("c2", "o9", "20", at=T0 + DAY)
    decision = decide(book.states, small, book.rules, owns=lambda customer: customer == "c2")
    assert decision.reason is None and len(decision.commands) == 1


def test_a_referrer_credit_command_is_cut_to_the_limit() -> None:
    book = Book(rules(**BIG)).run([purchase(total=TOP), signup("c2", referred_by="c1")])
    decision = decide(book.states, purchase("c2", "o9", "20"), book.rules, owns=lambda c: c == "c2")
    (command,) = decision.commands
    credited = decide_command(book.states, command, book.rules)
    assert briefs(credited.entries) == ["c1 referral_qualified c2", "c1 credit 1 referrer c2"]
    assert credited.states["c1"].balance == credited.states["c1"].earned == LIMIT


def test_a_decision_beyond_the_limit_is_a_bug() -> None:
    state = Book(rules()).run([signup()]).states["c1"].clone()
    state.earned = LIMIT + 1
    with pytest.raises(AssertionError, match="c1"):
        Decision((), {"c1": state}, None)


def test_lifetime_totals_follow_the_ledger() -> None:
    book = Book(rules(tiers=None)).run(
        [
            signup(),
            purchase(total="400"),
            refund(amount="100", at=T0 + DAY),
            redeem(points=150, at=T0 + 2 * DAY),
            tick(T24),
        ]
    )
    state = book.states["c1"]
    assert (state.earned, state.reversed, state.redeemed, state.expired) == (500, 100, 150, 250)
    assert state.balance == 0


# Each stream: c1 earns 100 points short of the limit, they expire, then 101 points reach
# c1 beside `earned` (an adjustment, a transfer), and expire in turn; or the other way round.
NEAR_THEN_EXPIRED = (purchase(total="999999999999.9"), tick(T24))
EXPIRING_BESIDE_EARNED = {
    "purchase-after-an-adjustment": (
        BIG,
        (
            purchase(total="0"),
            adjust(points=500),
            tick(T24),
            purchase(order="o2", total=TOP, at=T24 + DAY),
            tick("2030-03-02T12:00:00Z"),
        ),
    ),
    "adjustment": (
        BIG,
        (*NEAR_THEN_EXPIRED, adjust(points=101, at=T24 + DAY), tick("2030-03-02T12:00:00Z")),
    ),
    "transfer": (
        {**BIG, "transfers": "[transfers]\n"},
        (
            *NEAR_THEN_EXPIRED,
            purchase("c2", order="o2", total="0.101", at=T24),
            transfer("c2", "c1", points=101, at=T24),
            tick("2030-03-02T12:00:00Z"),
        ),
    ),
}


@pytest.mark.parametrize("case", EXPIRING_BESIDE_EARNED)
def test_credits_beside_earned_never_take_expired_past_the_limit(case: str) -> None:
    """PROGRAM.md "Bounds": no point total (`expired` among them) goes beyond 10^15; a tick
    is no customer's event to reject. Version 1 leant on `earned` bounding every other
    total; adjustment and transfer credits make lots outside `earned`, which expire too."""
    program, stream = EXPIRING_BESIDE_EARNED[case]
    book = Book(rules(**program))
    for event in stream:
        book.apply(event)
        for state in book.states.values():
            totals = (state.balance, state.earned, state.adjusted, state.redeemed)
            totals += (state.reversed, state.expired, state.transferred_in)
            totals += (state.transferred_out, state.pending_points)
            assert all(abs(total) <= LIMIT for total in totals), (state.customer_id, totals)


# ------------------------------------------------- a transfer to a recipient owned elsewhere


def test_a_transfer_to_a_recipient_owned_elsewhere_is_a_command_with_the_lot_parts() -> None:
    book = Book(rules(**MOVES)).run([*C2_IN_DEBT])
    event = transfer(points=150, at=T0 + 3 * DAY)
    decision = decide(book.states, event, book.rules, owns=lambda customer: customer == "c1")
    assert briefs(decision.entries) == ["c1 transfer_out 150 c2"]
    assert set(decision.states) == {"c1"}
    (command,) = decision.commands
    assert isinstance(command, TransferCredit)
    assert (command.command_id, command.recipient_id, command.giver_id) == (
        f"{event.event_id}/transfer",
        "c2",
        "c1",
    )
    assert (command.parts, command.occurred_at) == (
        ((100, T24), (50, T24 + DAY)),
        event.occurred_at,
    )
    # decided at the owner, it gives what one decider owning both gives
    credited = decide_command(book.states, command, book.rules)
    together = decide(book.states, event, book.rules)
    assert briefs(credited.entries) == briefs(together.entries)[1:]
    assert to_snapshot(credited.states["c2"]) == to_snapshot(together.states["c2"])
    assert {e.event_id for e in credited.entries} == {command.command_id}


# ---------------------------------------------------------------- details of entries


def test_pending_entries_carry_the_maturity_instant() -> None:
    book = Book(rules(**WAIT)).run([purchase(total="10")])
    (created,) = [e for e in book.entries if e.kind is Kind.pending_created]
    assert (created.occurred_at, created.expires_at) == (T0, T0 + 14 * DAY)
    matured = book.apply(tick(T0 + 20 * DAY)).entries
    assert [(e.kind, e.occurred_at, e.expires_at) for e in matured] == [
        (Kind.pending_matured, T0 + 14 * DAY, None),
        (Kind.credit, T0 + 14 * DAY, M14),
    ]


def test_adjustment_credit_carries_its_lot_expiry_and_reason() -> None:
    book = Book(rules()).run([signup()])
    (entry,) = book.apply(adjust(points=5, reason="late parcel", at=T0 + DAY)).entries
    assert (entry.kind, entry.reason, entry.expires_at) == (
        Kind.adjustment_credit,
        "late parcel",
        T24 + DAY,
    )


def test_transfer_in_entries_carry_their_parts_expiry() -> None:
    book = Book(rules(**MOVES)).run(TWO_LOTS)
    entries = book.apply(transfer(points=250, at=T0 + 2 * DAY)).entries
    moved = [(e.kind, e.customer_id, e.ref, e.points, e.expires_at) for e in entries]
    assert moved == [
        (Kind.transfer_out, "c1", "c2", 250, None),
        (Kind.enrolled, "c2", None, 0, None),
        (Kind.transfer_in, "c2", "c1", 100, T24),
        (Kind.transfer_in, "c2", "c1", 150, T24 + DAY),
    ]


def test_membership_entries_carry_the_fee_and_the_end() -> None:
    book = Book(rules(**PLANS, expiry=None)).run([signup(), membership(paid="888.0")])
    (started,) = [e for e in book.entries if e.kind is Kind.membership_started]
    assert (started.amount, started.expires_at) == (Decimal("888.0"), T0 + 365 * DAY)
    (renewed,) = book.apply(membership(at=T0 + DAY)).entries
    assert (renewed.kind, renewed.amount, renewed.expires_at) == (
        Kind.membership_renewed,
        Decimal("888.00"),
        T0 + 730 * DAY,
    )
    (ended,) = book.apply(tick(T0 + 800 * DAY)).entries
    assert (ended.kind, ended.ref, ended.occurred_at, ended.expires_at) == (
        Kind.membership_ended,
        "vip",
        T0 + 800 * DAY,
        T0 + 730 * DAY,
    )


def test_campaign_shares_add_up_to_what_campaigns_added() -> None:
    # floors per share telescope: the shares sum to the points beyond the base rules
    program = rules(
        campaigns=campaign("a", multiplier="1.3", channels=["app"])
        + campaign("b", multiplier="1.7", categories=["shoes"], bonus=3)
        + campaign("c", multiplier="0.9", categories=["socks"]),
        tiers=None,
    )
    event = purchase(
        total="7.77",
        items=[("shoes", 3, "1.11"), ("socks", 1, "2.22"), ("hats", 1, "0.99")],
        channel="app",
    )
    entries = decide({}, event, program).entries
    shares = {e.ref: e.amount for e in entries if e.kind is Kind.campaign_applied}
    (credited,) = [e.points for e in entries if e.kind is Kind.credit]
    base = decide({}, event, rules(tiers=None)).entries
    (plain,) = [e.points for e in base if e.kind is Kind.credit]
    # shoes 3.33 * 2 * 1.7, socks 2.22 * max(1.3, 0.9), hats 0.99 * 1.3; all * 1.5 (app)
    assert credited == int((Decimal("11.322") + Decimal("2.886") + Decimal("1.287")) * 3 / 2) + 3
    assert set(shares) == {"a", "b", "c"}
    assert sum(shares.values()) == credited - plain


# ---------------------------------------------------------------- details of entries


def test_credit_entry_carries_the_lot_expiry() -> None:
    decision = decide({}, signup(), rules())
    credit = next(e for e in decision.entries if e.kind is Kind.credit)
    assert credit.expires_at == T24
    assert credit.occurred_at == T0
    assert credit.event_id == decision.entries[0].event_id


def test_credit_without_expiry_never_expires() -> None:
    decision = decide({}, signup(), rules(expiry=None))
    credit = next(e for e in decision.entries if e.kind is Kind.credit)
    assert credit.expires_at is None


@pytest.mark.parametrize(
    ("at", "expires_at"),
    [
        ("2026-01-31T10:00:00Z", "2026-02-28T10:00:00Z"),
        ("2028-01-31T10:00:00Z", "2028-02-29T10:00:00Z"),
        ("2026-03-31T23:30:00Z", "2026-04-30T23:30:00Z"),
        ("2026-12-31T00:00:00Z", "2027-01-31T00:00:00Z"),
        # UTC arithmetic: Feb 1 00:30 in Berlin is Jan 31 in UTC
        ("2026-02-01T00:30:00+01:00", "2026-02-28T23:30:00Z"),
    ],
    ids=["common-year", "leap-year", "30-day-month", "year-end", "utc-not-local"],
)
def test_expiry_month_clamp(at: str, expires_at: str) -> None:
    decision = decide({}, purchase(total="10", at=at), rules(expiry=ONE_MONTH))
    credit = next(e for e in decision.entries if e.kind is Kind.credit)
    assert credit.expires_at == datetime.fromisoformat(expires_at)


def test_expiry_entry_names_the_lot_expiry_at_the_tick_instant() -> None:
    book = Book(rules(tiers=None)).run([purchase(total="100")])
    decision = book.apply(tick(T24 + DAY))
    (entry,) = decision.entries
    assert entry.kind is Kind.expiry
    assert entry.expires_at == T24
    assert entry.occurred_at == T24 + DAY


def test_tier_change_records_from_to_and_qualifying_spend() -> None:
    decision = decide({}, purchase(total="2500"), rules())
    change = decision.entries[-1]
    assert (change.kind, change.tier_from, change.tier_to) == (Kind.tier_changed, "bronze", "gold")
    assert change.amount == 2500


def test_rejection_entry_refs_the_event_type() -> None:
    decision = decide({}, action(name="dance"), rules())
    (entry,) = decision.entries
    assert (entry.reason, entry.ref) == ("unknown_action", "action")


def test_enrollment_records_the_starting_tier() -> None:
    decision = decide({}, signup(), rules())
    assert decision.entries[0].tier_to == "bronze"


def test_no_tiers_no_tier_and_no_spend() -> None:
    decision = decide({}, purchase(total="5000"), rules(tiers=None))
    state = decision.states["c1"]
    assert (state.tier, state.spend) == (None, [])
    assert Kind.tier_changed not in {e.kind for e in decision.entries}


def test_window_days_defaults_to_365() -> None:
    tiers = SECTIONS["tiers"].replace("window_days = 365\n", "")
    book = Book(rules(tiers=tiers)).run([purchase(total="600")])
    assert briefs(book.apply(tick(T0 + 365 * DAY - SECOND)).entries) == []
    assert briefs(book.apply(tick(T0 + 365 * DAY)).entries) == [
        "c1 spend_lapsed 600",
        "c1 tier silver->bronze",
    ]


def test_return_spend_counts_in_the_window_until_it_lapses() -> None:
    # 600 at T0, -200 at T0+100d: silver -> bronze; at T0+365d the +600 lapses alone,
    # qualifying spend is max(0, -200) = 0.
    book = Book(rules()).run([purchase(total="600"), refund(amount="200", at=T0 + 100 * DAY)])
    assert book.states["c1"].tier == "bronze"
    decision = book.apply(tick(T0 + 365 * DAY))
    assert briefs(decision.entries) == ["c1 spend_lapsed 600"]
    assert book.states["c1"].spend == [(T0 + 100 * DAY, -200)]


def test_decision_holds_only_touched_customers() -> None:
    book = Book(rules()).run([signup("c1"), signup("c2"), signup("c3")])
    decision = book.apply(action("c2", at=T0 + DAY))
    assert set(decision.states) == {"c2"}


def test_tick_goes_through_every_given_customer_in_id_order() -> None:
    book = Book(rules(tiers=None)).run([purchase("c2", total="10"), purchase("c1", total="20")])
    decision = decide_tick(list(book.states.values()), tick(T24), book.rules)
    assert briefs(decision.entries) == ["c1 expiry 20", "c2 expiry 10"]
    assert decision.reason is None


def test_redemption_id_is_used_up_only_when_accepted() -> None:
    book = Book(rules()).run([purchase(total="50"), redeem(points=100, at=T0 + DAY)])
    assert book.states["c1"].redemption_ids == set()
    book.apply(purchase(order="o2", total="100", at=T0 + 2 * DAY))
    assert book.apply(redeem(points=100, at=T0 + 3 * DAY)).reason is None
    assert book.states["c1"].redemption_ids == {"r1"}
    assert book.apply(redeem(points=10, at=T0 + 4 * DAY)).reason == Reason.duplicate_redemption


# ----------------------------------------------- money beyond 28 significant digits


def test_item_lines_are_exact_beyond_28_digits() -> None:
    # 3191 * 1304896279.811911 * 0.186009 * 0.129111 = 10^11 - 10^-18 (29 digits):
    # floor 99999999999; rounded to 28 digits it is 10^11.
    earn = '[earn]\npoints_per_unit = "0.129111"\ncategory_multipliers = { socks = "0.186009" }\n'
    event = purchase(total="1", items=[("socks", 3191, "1304896279.811911")])
    decision = decide({}, event, rules(earn=earn, tiers=None))
    assert briefs(decision.entries) == [
        "c1 enrolled purchase",
        "c1 order_placed o1 1",
        "c1 credit 99999999999 purchase o1",
    ]


def test_refunds_are_exact_beyond_28_digits() -> None:
    # floor(999999999999999 * 896690070210.631894 / 999999999999.999997) = 896690070210630;
    # with the product rounded to 28 digits it is 896690070210631.
    total = "999999999999.999997"
    book = Book(rules(earn=BIG_EARN, tiers=None)).run([purchase(total=total)])
    assert book.states["c1"].earned == 999999999999999
    decision = book.apply(refund(amount="896690070210.631894", at=T0 + DAY))
    assert briefs(decision.entries)[-1] == "c1 reversal 896690070210630 o1"
    book.apply(refund(amount=total, at=T0 + 2 * DAY))  # applies the rest
    assert book.states["c1"].orders["o1"].refunded == Decimal(total)
    assert book.states["c1"].reversed == 999999999999999
    assert book.apply(refund(amount="1", at=T0 + 3 * DAY)).reason == Reason.already_refunded
