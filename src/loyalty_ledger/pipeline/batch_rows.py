"""Decide one batch of inputs and build the store's rows for it (a store.batch.Batch).

Each input is admitted (or dead-lettered, or counted as a duplicate), decided
on the batch's overlay over the state cache, and recorded: its inbox row, its
ledger entries, its outbox commands, a signup's member row, a tick's row; the
batch ends with a snapshot of every state it decided. Nothing is written here
and the cache is not changed but for tick catch-ups (see tick_streams).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from loyalty_ledger import events as ev
from loyalty_ledger.engine import (
    COMMAND_CLASSES,
    Command,
    CustomerState,
    Decision,
    History,
    Rules,
    decide,
    decide_command,
    decide_tick,
)
from loyalty_ledger.engine.dates import next_due_at
from loyalty_ledger.engine.rules import history_of
from loyalty_ledger.engine.state import to_snapshot
from loyalty_ledger.pipeline import commands
from loyalty_ledger.pipeline.admit import (
    Admitted,
    DeadLetter,
    admit,
    customer_of,
    decode,
    event_id_of,
    findable,
    named_in,
)
from loyalty_ledger.pipeline.state_cache import Book, StateCache
from loyalty_ledger.pipeline.tick_streams import TickStreams
from loyalty_ledger.pipeline.types import Counts, Outcome, Routing, Status, Target
from loyalty_ledger.sources.line import Line
from loyalty_ledger.store import batch as store_batch
from loyalty_ledger.store import reads
from loyalty_ledger.store.batch import Batch, RecordPosition
from loyalty_ledger.store.db import Connection


@dataclass(slots=True)
class Work:
    """One batch in the making: its rows and the states it decided."""

    batch: Batch
    book: Book  # `overlay` over the cache
    counts: Counts = field(default_factory=Counts)
    due: dict[str, datetime | None] = field(default_factory=dict)  # next due of overlay states
    seen: dict[str, reads.Known] = field(default_factory=dict)  # event_id -> hash, position
    ids: set[str] = field(default_factory=set)  # of the batch's valid inputs
    outcomes: list[Outcome] = field(default_factory=list)  # one per input, in order

    @property
    def overlay(self) -> dict[str, CustomerState]:
        return self.book.overlay


class BatchRows:
    """Decides batches for one pipeline on its cache and tick streams, reading on `conn`
    (None: a preview's store, empty)."""

    def __init__(
        self,
        conn: Connection | None,
        rules: Rules | History,
        routing: Routing,
        target: Target,
        cache: StateCache,
        streams: TickStreams,
        amendments: int | None = None,
    ) -> None:
        self.conn = conn
        self.rules = history_of(rules)
        self.amendments = amendments
        self.routing = routing
        self.target = target
        self.cache = cache
        self.streams = streams

    def empty(self, record_position: RecordPosition) -> Batch:
        """A batch that only records the source's position."""
        return Batch(record_position, self.target.generation_status, self.amendments)

    def decide(
        self,
        lines: Sequence[Line],
        record_position: RecordPosition,
        in_flight_seen: Mapping[str, reads.Known],
        refused: Mapping[int, str] | None = None,
    ) -> Work:
        """The batch's rows; `refused` inputs (by index) become dead letters with that reason.
        `in_flight_seen`: the ids of the batch in flight, which may not have committed yet."""
        work = Work(self.empty(record_position), self.cache.book({}))
        self.cache.forget_erased()
        items = [decode(line) for line in lines]
        if refused:
            items = [ev.Invalid(refused[i]) if i in refused else item
                     for i, item in enumerate(items)]  # fmt: skip
        work.ids = {event_id_of(d) for d in items if not isinstance(d, ev.Invalid)}
        known = {} if self.conn is None else reads.known_event_ids(self.conn, findable(work.ids))
        work.seen = {**known, **in_flight_seen}
        self.cache.preload(items)
        counts, seen, routing, outcomes = work.counts, work.seen, self.routing, work.outcomes
        for line, item in zip(lines, items, strict=True):
            admitted = admit(line, item, seen, routing)
            if isinstance(admitted, Admitted):
                decision = self._decide(work, line, admitted.item)
                self._record(work, line, admitted, decision)
                outcomes.append(_outcome(admitted, decision, work.book))
            elif isinstance(admitted, DeadLetter):
                work.batch.dead_letters.append(admitted)
                counts.dead_lettered += 1
                outcomes.append(Outcome("invalid", admitted.reason, None, None))
            else:
                counts.duplicates += 1
                if admitted.row is not None:
                    work.batch.duplicates.append(admitted.row)
                assert not isinstance(item, ev.Invalid)
                outcomes.append(Outcome("duplicate", None, event_id_of(item), customer_of(item)))
        if self.target.stored:
            self._snapshot(work)
        return work

    def _decide(self, work: Work, line: Line, item: ev.Event | Command) -> Decision:
        book = work.book
        if isinstance(item, ev.Tick):
            decision = self._decide_tick(work, line.stream, item)
        else:
            overlay, states = book.overlay, self.cache.states
            for customer_id in _customers_of(item, book):
                state = overlay.get(customer_id) or states.get(customer_id)
                self.streams.catch_up(state, customer_id)
            if isinstance(item, COMMAND_CLASSES):
                decision = decide_command(book, item, self.rules)
            else:
                decision = decide(book, item, self.rules, self.routing.owns)
        for customer_id, state in decision.states.items():
            if customer_id not in book:  # new: it has seen every tick of its stream so far
                state.ticks_seen = len(self.streams.ticks(self.routing.stream_of(customer_id)))
            work.due[customer_id] = next_due_at(state, self.rules)
        book.overlay.update(decision.states)
        return decision

    def _decide_tick(self, work: Work, stream: str, tick: ev.Tick) -> Decision:
        due = self.streams.due_now(self.cache, work.overlay, work.due, stream, tick.occurred_at)
        decision = decide_tick(due, tick, self.rules)
        ticks = self.streams.ticks(stream)
        ticks.append(tick.occurred_at)
        for state in decision.states.values():
            state.ticks_seen = len(ticks)
        work.batch.ticks.append(
            store_batch.TickRow(stream, len(ticks), tick.occurred_at, tick.event_id)
        )
        return decision

    def _record(self, work: Work, line: Line, admitted: Admitted, decision: Decision) -> None:
        # Decoded, the input is valid JSON: UTF-8 (strict decoding raises on anything else, a
        # bug) without a raw NUL, so the inbox's text column holds it byte for byte.
        raw = line.raw.decode("utf-8")
        item, batch, counts = admitted.item, work.batch, work.counts
        outcome = "accepted" if decision.reason is None else "rejected"
        if isinstance(item, COMMAND_CLASSES):
            event_type, occurred_at = commands.type_of(item), item.occurred_at
        else:
            event_type, occurred_at = item.type, item.occurred_at
        batch.inbox.append(store_batch.InboxRow(
            admitted.event_id, line.source, line.position, event_type, admitted.customer_id,
            occurred_at, outcome, decision.reason, admitted.body_hash, raw,
            decision.version or None,
        ))  # fmt: skip
        batch.entries.extend(decision.entries)
        counts.entries += len(decision.entries)
        for command in decision.commands:
            batch.outbox.append(store_batch.OutboxRow(
                commands.type_of(command), command.owner_id, commands.encode(command).decode()
            ))  # fmt: skip
        counts.commands += len(decision.commands)
        if decision.reason is not None:
            counts.rejected += 1
            return
        counts.accepted += 1
        if isinstance(item, ev.Signup) and self.target.writes_members:
            batch.members.append(store_batch.Member(
                item.customer_id, item.email, item.name, item.phone, item.birth_date
            ))  # fmt: skip

    def _snapshot(self, work: Work) -> None:
        snapshots, due = work.batch.snapshots, work.due
        for customer_id, state in work.overlay.items():
            snapshots.append(store_batch.Snapshot(
                customer_id, state.version, _json(to_snapshot(state)), due[customer_id]
            ))  # fmt: skip


def _json(snapshot: dict[str, Any]) -> str:
    """A snapshot's JSON text: orjson writes it several times faster than `json` (a snapshot
    per customer per batch, on the deciding thread). What orjson refuses (an int beyond 64
    bits, a lone surrogate) goes through `json` as before, for the database to judge."""
    try:
        return orjson.dumps(snapshot).decode()
    except orjson.JSONEncodeError:
        return json.dumps(snapshot, separators=(",", ":"))


def _outcome(admitted: Admitted, decision: Decision, book: Book) -> Outcome:
    """The answer to an admitted input: its customer's balance and tier just after it."""
    status: Status = "accepted" if decision.reason is None else "rejected"
    customer_id = admitted.customer_id
    state = None if customer_id is None else book.get(customer_id)
    if state is None:  # a tick, or a rejected input of a customer never seen
        return Outcome(status, decision.reason, admitted.event_id, customer_id)
    return Outcome(
        status, decision.reason, admitted.event_id, customer_id, state.balance, state.tier
    )


def _customers_of(item: ev.Event | Command, book: Book) -> list[str]:
    """The customer and the referrer its purchase could credit."""
    named = named_in(item)
    state = book.get(named[0])
    if state is not None and state.referrer_id and not state.referral_settled:
        named.append(state.referrer_id)
    return named
