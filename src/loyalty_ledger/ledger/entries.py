"""Ledger entry types: one immutable row per effect, named after the effect.

Points are magnitudes (never negative); the kind says which way they move the
available balance, so conservation reads straight off the ledger:
balance = credit - redemption - reversal - expiry.
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


# Kinds whose points move the available balance, with the direction.
BALANCE_SIGN: dict[Kind, int] = {
    Kind.credit: 1,
    Kind.redemption: -1,
    Kind.reversal: -1,
    Kind.expiry: -1,
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
