"""The figures `loyalty compare` reads off a generation, folded from a batch's rows in memory.

Pure: a preview (pipeline/preview.py) hands over the rows a re-run would have
written, and this folds them as the projections behind the `customers` view
would have: `balance` (points by kind), `tier` (the last tier an `enrolled` or
`tier_changed` entry names), `customer_value` (enrolled, rewards) and
`customer_membership` (fees), and the inbox's rejections by reason. A test
holds the two equal on the same inputs (tests/generations/test_preview.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from loyalty_ledger.ledger.entries import BALANCE_SIGN, Entry, Kind
from loyalty_ledger.store.batch import Batch

# balance.sql: the column each kind moves, and the sign (balance moves with BALANCE_SIGN).
_POINTS: dict[Kind, tuple[str, int]] = {
    Kind.credit: ("earned", 1),
    Kind.redemption: ("redeemed", 1),
    Kind.reversal: ("reversed", 1),
    Kind.expiry: ("expired", 1),
    Kind.adjustment_credit: ("adjusted", 1),
    Kind.adjustment_debit: ("adjusted", -1),
    Kind.transfer_in: ("transferred_in", 1),
    Kind.transfer_out: ("transferred_out", 1),
    Kind.pending_created: ("pending", 1),
    Kind.pending_matured: ("pending", -1),
    Kind.pending_cancelled: ("pending", -1),
}
_TIER_KINDS = frozenset({Kind.enrolled, Kind.tier_changed})
_FEE_KINDS = frozenset({Kind.membership_started, Kind.membership_renewed})


@dataclass(slots=True)
class CustomerTotals:
    """One customer's row of the `customers` view, the columns compare reads."""

    enrolled: bool = False
    balance: int = 0
    earned: int = 0
    redeemed: int = 0
    reversed: int = 0
    expired: int = 0
    adjusted: int = 0  # signed
    transferred_in: int = 0
    transferred_out: int = 0
    pending: int = 0
    tier: str | None = None
    rewards: int = 0
    membership_fees: Decimal = Decimal(0)


@dataclass(slots=True)
class Tally:
    """Every customer's totals, rewards issued by reward, and rejected inputs by reason."""

    customers: dict[str, CustomerTotals] = field(default_factory=dict)
    rewards: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    inputs: int = 0  # read from the inbox replayed, whoever decided them
    arrival: int = 0  # the last one's arrival there

    def merge(self, other: Tally) -> None:
        """Another tally of other customers (a shard's) into this one."""
        assert not self.customers.keys() & other.customers.keys(), "shards share a customer"
        self.customers.update(other.customers)
        self.rewards.update(other.rewards)
        self.rejected.update(other.rejected)
        self.inputs = max(self.inputs, other.inputs)  # both read every input
        self.arrival = max(self.arrival, other.arrival)

    def add(self, batch: Batch, ticks: bool = True) -> None:
        """Fold one batch's inbox rows and ledger entries in, in order; `ticks` False: its
        ticks' rows are another tally's to count (every shard decides every tick)."""
        for row in batch.inbox:
            if row.outcome == "rejected" and (ticks or row.customer_id is not None):
                assert row.reason is not None, "a rejected input without its reason"
                self.rejected[row.reason] += 1
        for entry in batch.entries:
            self._entry(entry)

    def _entry(self, entry: Entry) -> None:
        kind = entry.kind
        totals = self.customers.get(entry.customer_id)
        if totals is None:
            totals = self.customers[entry.customer_id] = CustomerTotals()
        moved = _POINTS.get(kind)
        if moved is not None:
            column, sign = moved
            setattr(totals, column, getattr(totals, column) + sign * entry.points)
            totals.balance += BALANCE_SIGN.get(kind, 0) * entry.points
        elif kind in _TIER_KINDS:
            totals.enrolled = totals.enrolled or kind is Kind.enrolled
            if entry.tier_to is not None:
                totals.tier = entry.tier_to
        elif kind is Kind.reward_issued:
            totals.rewards += 1
            self.rewards[str(entry.reward)] += 1
        elif kind in _FEE_KINDS and entry.amount is not None:
            totals.membership_fees += entry.amount

    def enrolled(self) -> dict[str, CustomerTotals]:
        """The `customers` view's rows: enrolled customers only."""
        return {c: t for c, t in self.customers.items() if t.enrolled}
