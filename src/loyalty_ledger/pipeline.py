"""The batch loop shared by every source: decode, dedupe, decide, write one transaction per batch.

The pipeline is the only writer of its customers while it runs (the caller
holds the writer lock), so it caches their state in memory; the snapshots in
`customer_state` are the truth on restart. Decided states stay in a batch
overlay until the batch commits, so a failed write leaves the cache as the
database has it.
"""

from __future__ import annotations

import hashlib
import json
from collections import ChainMap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from loyalty_ledger import events as ev
from loyalty_ledger.engine import CustomerState, Decision, Rules, decide, decide_tick
from loyalty_ledger.engine.dates import next_due_at
from loyalty_ledger.engine.state import from_snapshot, to_snapshot
from loyalty_ledger.store import batch as store_batch
from loyalty_ledger.store import reads
from loyalty_ledger.store.batch import Batch, Position
from loyalty_ledger.store.db import Connection

CACHE_CUSTOMERS_MAX = 2_000_000  # past this the cache starts over: correctness never needs it


@dataclass(frozen=True, slots=True)
class Line:
    """One raw input and where it came from."""

    position: int  # file: 1-based line number; Kafka: offset
    raw: bytes


@dataclass(slots=True)
class Counts:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    entries: int = 0

    def add(self, other: Counts) -> None:
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.entries += other.entries


@dataclass(slots=True)
class _Work:
    """One batch in the making: its rows and the states it decided."""

    batch: Batch
    counts: Counts = field(default_factory=Counts)
    overlay: dict[str, CustomerState] = field(default_factory=dict)
    due: dict[str, datetime | None] = field(default_factory=dict)  # next due of overlay states
    seen: dict[str, bytes] = field(default_factory=dict)  # event_id -> body hash


class Pipeline:
    def __init__(self, conn: Connection, rules: Rules, stream: str) -> None:
        self.conn = conn
        self.rules = rules
        self.stream = stream  # ticks are counted per stream (a file source, a partition)
        self.cache: dict[str, CustomerState] = {}
        self.due: dict[str, datetime | None] = {}
        self.ticks: list[datetime] = reads.ticks(conn, stream)

    # ------------------------------------------------------------- the batch

    def process(self, lines: Sequence[Line], position: Position) -> Counts:
        """Decide and write one batch in one transaction; returns what happened to its inputs."""
        work = _Work(Batch(position))
        decoded = [(line, ev.decode(line.raw)) for line in lines]
        events = [e for _, e in decoded if not isinstance(e, ev.Invalid)]
        work.seen = reads.known_event_ids(self.conn, {e.event_id for e in events})
        self._preload(events)
        ticks_before = len(self.ticks)
        try:
            for line, event in decoded:
                self._one(work, line, event)
            self._snapshot(work)
            store_batch.write(self.conn, work.batch)
        except BaseException:
            # Catch-ups touched cached states in place: start over from the database.
            del self.ticks[ticks_before:]
            self.cache.clear()
            self.due.clear()
            raise
        self._merge(work)
        return work.counts

    def _one(self, work: _Work, line: Line, event: ev.Event | ev.Invalid) -> None:
        source = work.batch.position.source
        raw = line.raw.decode("utf-8", errors="replace")
        if isinstance(event, ev.Invalid):
            work.batch.dead_letters.append(
                store_batch.DeadLetter(source, line.position, raw, event.reason)
            )
            work.counts.dead_lettered += 1
            return
        body_hash = hashlib.sha256(line.raw).digest()
        known = work.seen.get(event.event_id)
        if known is not None:
            same = known == body_hash
            work.batch.duplicates.append(
                store_batch.Duplicate(source, line.position, event.event_id, same)
            )
            work.counts.duplicates += 1
            return
        work.seen[event.event_id] = body_hash
        decision = self._decide(work, event)
        outcome = "accepted" if decision.reason is None else "rejected"
        customer_id = None if isinstance(event, ev.Tick) else event.customer_id
        work.batch.inbox.append(store_batch.InboxRow(
            event.event_id, source, line.position, event.type, customer_id, event.occurred_at,
            outcome, decision.reason, body_hash, raw,
        ))  # fmt: skip
        work.batch.entries.extend(decision.entries)
        work.counts.entries += len(decision.entries)
        if decision.reason is None:
            work.counts.accepted += 1
            if isinstance(event, ev.Signup):
                work.batch.members.append(store_batch.Member(
                    event.customer_id, event.email, event.name, event.phone, event.birth_date
                ))  # fmt: skip
        else:
            work.counts.rejected += 1

    def _decide(self, work: _Work, event: ev.Event) -> Decision:
        book = ChainMap(work.overlay, self.cache)
        if isinstance(event, ev.Tick):
            decision = decide_tick(self._due(work, event.occurred_at), event, self.rules)
            self.ticks.append(event.occurred_at)
            work.batch.ticks.append(
                store_batch.TickRow(self.stream, len(self.ticks), event.occurred_at, event.event_id)
            )
        else:
            for customer_id in _customers_of(event, book):
                self._catch_up(work, customer_id)
            decision = decide(book, event, self.rules)
        for customer_id, state in decision.states.items():
            if customer_id not in book or isinstance(event, ev.Tick):
                state.ticks_seen = len(self.ticks)  # new, or just brought up to this tick
            work.due[customer_id] = next_due_at(state, self.rules)
        work.overlay.update(decision.states)
        return decision

    # ----------------------------------------------------------------- state

    def _preload(self, events: Iterable[ev.Event]) -> None:
        """Load every customer the batch may touch, referrers included, in two queries."""
        wanted: set[str] = set()
        for event in events:
            if not isinstance(event, ev.Tick):
                wanted.update(_named_in(event))
        self._load(wanted - self.cache.keys())
        referrers = {
            s.referrer_id for c in wanted
            if (s := self.cache.get(c)) is not None and s.referrer_id and not s.referral_settled
        }  # fmt: skip
        self._load(referrers - self.cache.keys())

    def _load(self, customer_ids: set[str]) -> None:
        for customer_id, state, due in reads.snapshots(self.conn, customer_ids):
            self.cache[customer_id] = from_snapshot(customer_id, state)
            self.due[customer_id] = due

    def _catch_up(self, work: _Work, customer_id: str) -> None:
        """Fold ticks this customer was not due for into its clock: nothing else can change.

        In place, on the cache too: a later reload from the snapshot folds the
        same ticks in again, and a failed batch empties the cache.
        """
        state = work.overlay.get(customer_id) or self.cache.get(customer_id)
        if state is None or state.ticks_seen >= len(self.ticks):
            return
        clock = max(self.ticks[state.ticks_seen :])
        state.ticks_seen = len(self.ticks)
        if state.clock is None or clock > state.clock:
            state.clock = clock

    def _due(self, work: _Work, at: datetime) -> list[CustomerState]:
        """Customers a tick at `at` may change: due in the batch, the cache, or the database."""
        stored = reads.due_customers(self.conn, at)
        self._load({c for c in stored if c not in self.cache and c not in work.overlay})
        due: dict[str, CustomerState] = {}
        for customer_id, when in work.due.items():
            if when is not None and when <= at:
                due[customer_id] = work.overlay[customer_id]
        for customer_id, when in self.due.items():
            if when is not None and when <= at and customer_id not in work.due:
                due[customer_id] = self.cache[customer_id]
        return list(due.values())

    def _snapshot(self, work: _Work) -> None:
        for customer_id, state in work.overlay.items():
            work.batch.snapshots.append(store_batch.Snapshot(
                customer_id, state.version, json.dumps(to_snapshot(state), separators=(",", ":")),
                work.due[customer_id],
            ))  # fmt: skip

    def _merge(self, work: _Work) -> None:
        if len(self.cache) + len(work.overlay) > CACHE_CUSTOMERS_MAX:
            self.cache.clear()
            self.due.clear()
        self.cache.update(work.overlay)
        self.due.update(work.due)


def _named_in(event: ev.Event) -> list[str]:
    """Customer ids an event names: its customer and any referrer."""
    assert not isinstance(event, ev.Tick)
    named = [event.customer_id]
    if isinstance(event, ev.Signup) and event.referred_by:
        named.append(event.referred_by)
    elif isinstance(event, ev.Referral):
        named.append(event.referrer_id)
    return named


def _customers_of(event: ev.Event, book: ChainMap[str, CustomerState]) -> list[str]:
    """The customer and the referrer its purchase could credit."""
    named = _named_in(event)
    state = book.get(named[0])
    if state is not None and state.referrer_id and not state.referral_settled:
        named.append(state.referrer_id)
    return named
