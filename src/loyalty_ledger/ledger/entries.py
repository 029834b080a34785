"""Ledger entry types: one immutable row per effect, named after the effect.

Points are magnitudes (never negative); the kind says which way they move the
available balance, so conservation reads straight off the ledger (PROGRAM.md version 2):
balance = credit + adjustment_credit - adjustment_debit + transfer_in
          - redemption - reversal - expiry - transfer_out.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple


class Kind(StrEnum):
    enrolled = "enrolled"  # cause: signup | purchase | referral
    signed_up = "signed_up"
    credit = "credit"  # cause: signup | purchase | action | birthday | referrer | referee
    debt_settled = "debt_settled"  # part of the preceding credit that paid off debt
    redemption = "redemption"  # ref: redemption_id, reward: catalogue id or None
    reversal = "reversal"  # ref: order_id; points taken back by a return
    expiry = "expiry"  # expires_at: the lot's expiry instant
    order_placed = "order_placed"  # ref: order_id, amount: total
    refund_applied = "refund_applied"  # ref: order_id, amount: applied refund
    spend_lapsed = "spend_lapsed"  # amount: net spend that left the tier window
    tier_changed = "tier_changed"  # tier_from -> tier_to, amount: qualifying spend
    reward_issued = "reward_issued"  # reward, cause: stamp_card | referral_ladder, ref
    referred = "referred"  # ref: referrer_id
    referral_settled = "referral_settled"  # ref: referrer_id, cause: qualified | not_qualified
    referral_qualified = "referral_qualified"  # on the referrer; ref: referee id
    rejected = "rejected"  # reason, ref: the event's type
    # Version 2. A pending amount waits out the return window: made by a purchase
    # (expires_at: the instant it matures), matured into a `credit` (cause purchase) that
    # follows it, or cancelled by a return. None of them moves the balance.
    pending_created = "pending_created"  # ref: order_id, expires_at: matures at
    pending_matured = "pending_matured"  # ref: order_id; the credit entry follows
    pending_cancelled = "pending_cancelled"  # ref: order_id; points a return took from it
    # amount: the points it added beyond the base rules, signed (a multiplier below 1
    # takes some away); the purchase's order_placed entry shares its event_id.
    campaign_applied = "campaign_applied"  # ref: campaign id
    adjustment_credit = "adjustment_credit"  # reason: the agent's reason, expires_at: lot's
    adjustment_debit = "adjustment_debit"  # reason: the agent's reason
    transfer_out = "transfer_out"  # on the giver; ref: the recipient's id
    transfer_in = "transfer_in"  # on the recipient, one per lot part; ref: the giver's id,
    #                              expires_at: the part's own expiry instant (never later)
    membership_started = "membership_started"  # ref: plan, amount: paid, expires_at: end
    membership_renewed = "membership_renewed"  # ref: plan, amount: paid, expires_at: new end
    membership_ended = "membership_ended"  # ref: plan, expires_at: the end that passed


# Kinds that add points to the available balance and make a lot (a debt_settled entry
# after one says how much of it paid debt instead).
CREDIT_KINDS: frozenset[Kind] = frozenset({Kind.credit, Kind.adjustment_credit, Kind.transfer_in})


# Kinds whose points move the available balance, with the direction.
BALANCE_SIGN: dict[Kind, int] = {
    Kind.credit: 1,
    Kind.adjustment_credit: 1,
    Kind.transfer_in: 1,
    Kind.redemption: -1,
    Kind.reversal: -1,
    Kind.expiry: -1,
    Kind.adjustment_debit: -1,
    Kind.transfer_out: -1,
}


class Entry(NamedTuple):
    """One ledger row, its fields in column order; `seq` is given by the store.

    A NamedTuple, not a dataclass: hundreds of thousands are made per ingest and
    each is written to COPY as it is. The recorder in engine/decide.py asserts
    what the table's CHECKs assert (points >= 0, version >= 1).
    """

    customer_id: str
    version: int
    kind: Kind
    occurred_at: datetime
    event_id: str
    points: int = 0
    amount: Decimal | None = None
    cause: str | None = None
    ref: str | None = None
    reward: str | None = None
    tier_from: str | None = None
    tier_to: str | None = None
    reason: str | None = None
    expires_at: datetime | None = None


COLUMNS: tuple[str, ...] = (
    "customer_id",
    "version",
    "kind",
    "occurred_at",
    "event_id",
    "points",
    "amount",
    "cause",
    "ref",
    "reward",
    "tier_from",
    "tier_to",
    "reason",
    "expires_at",
)


# Database types of COLUMNS, for binary COPY.
COLUMN_TYPES: tuple[str, ...] = (
    "text", "int4", "text", "timestamptz", "text", "int8", "numeric", "text", "text", "text",
    "text", "text", "text", "timestamptz",
)  # fmt: skip

assert Entry._fields == COLUMNS


def row(entry: Entry) -> tuple[object, ...]:
    """The entry as a tuple in COLUMNS order, for COPY (it already is one)."""
    return tuple(entry)
