"""The batch loop shared by every source: decode, dedupe, decide, write one transaction per batch.

A pipeline is the only writer of the customers it owns while it runs (a file
ingest holds the writer lock; a consumer owns its partitions, fenced by
generation), so it caches their state in memory; the snapshots in
`customer_state` are the truth on restart. Decided states stay in a batch
overlay until the batch commits, so a failed write leaves the cache as the
database has it.

No input can stop a source (no poison pill): when the database refuses a batch
because of one input's value (store.batch.InputRefused), the shortest refused
prefix of the batch, each decided afresh from what committed and written in a
transaction that is rolled back, ends at that input; it becomes a dead letter
of the same batch with the database's reason, and the batch is decided and
written again, with its own source position. The happy path pays nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from loyalty_ledger import events as ev
from loyalty_ledger import log
from loyalty_ledger.engine import (
    CustomerState,
    Decision,
    ReferrerCredit,
    Rules,
    decide,
    decide_command,
    decide_tick,
)
from loyalty_ledger.engine.dates import next_due_at
from loyalty_ledger.engine.state import from_snapshot, to_snapshot
from loyalty_ledger.pipeline import commands
from loyalty_ledger.sources.line import FILE_STREAM, Line
from loyalty_ledger.store import batch as store_batch
from loyalty_ledger.store import reads
from loyalty_ledger.store.batch import Batch, InputRefused, RecordPosition
from loyalty_ledger.store.db import Connection, sibling
from loyalty_ledger.text import printable

CACHE_CUSTOMERS_MAX = 2_000_000  # past this the cache starts over: correctness never needs it


class Routing(Protocol):
    """Which tick stream each customer belongs to, and whether this pipeline may change it."""

    def stream_of(self, customer_id: str) -> str: ...

    def owns(self, customer_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class OneStream:
    """Every customer in one stream, owned here: the file source."""

    stream: str = FILE_STREAM

    def stream_of(self, customer_id: str) -> str:
        return self.stream

    def owns(self, customer_id: str) -> bool:
        return True


@dataclass(slots=True)
class Counts:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    entries: int = 0
    commands: int = 0

    def add(self, other: Counts) -> None:
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.entries += other.entries
        self.commands += other.commands

    @property
    def inputs(self) -> int:
        return self.accepted + self.rejected + self.duplicates + self.dead_lettered

    def since(self, before: Counts) -> Counts:
        """What changed from `before` to these counts (negative where they went down)."""
        return Counts(*(getattr(self, f.name) - getattr(before, f.name) for f in fields(Counts)))


@dataclass(slots=True)
class _Work:
    """One batch in the making: its rows and the states it decided."""

    batch: Batch
    counts: Counts = field(default_factory=Counts)
    overlay: dict[str, CustomerState] = field(default_factory=dict)
    due: dict[str, datetime | None] = field(default_factory=dict)  # next due of overlay states
    seen: dict[str, reads.Known] = field(default_factory=dict)  # event_id -> hash, position
    ids: set[str] = field(default_factory=set)  # of the batch's valid inputs


@dataclass(frozen=True, slots=True)
class _Sent:
    """A batch as submitted: enough to decide it again without an input the database refused."""

    lines: Sequence[Line]
    record_position: RecordPosition
    counts: Counts  # what its decision counted


Decoded = ev.Event | ReferrerCredit | ev.Invalid


class _Book(Mapping[str, CustomerState]):
    """The batch's decided states over the cache; `get` is hot (a ChainMap's is slow)."""

    __slots__ = ("cache", "overlay")

    def __init__(self, overlay: dict[str, CustomerState], cache: dict[str, CustomerState]) -> None:
        self.overlay = overlay
        self.cache = cache

    def get(self, key: str, default: Any = None) -> Any:
        state = self.overlay.get(key)
        return state if state is not None else self.cache.get(key, default)

    def __getitem__(self, key: str) -> CustomerState:
        state = self.get(key)
        if state is None:
            raise KeyError(key)
        return state  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return key in self.overlay or key in self.cache

    def __iter__(self) -> Iterator[str]:
        yield from self.overlay
        yield from (k for k in self.cache if k not in self.overlay)

    def __len__(self) -> int:
        return len(self.overlay) + sum(1 for k in self.cache if k not in self.overlay)


class Pipeline:
    def __init__(
        self,
        conn: Connection,
        rules: Rules,
        routing: Routing | None = None,
        after_commit: Callable[[Connection], object] | None = None,
        *,
        replay: bool = False,
    ) -> None:
        self.conn = conn  # reads; batches are written on a second connection, in order
        self.rules = rules
        self.routing: Routing = routing or OneStream()
        # e.g. the projections' catch-up: after each commit, on a connection of its own
        self.after_commit = after_commit
        # A re-run into a candidate generation: members (PII, shared) are the live one's.
        self.replay = replay
        self._erased_after = datetime.min.replace(tzinfo=UTC)  # the cache starts empty
        self.cache: dict[str, CustomerState] = {}
        self.due: dict[str, datetime | None] = {}
        self._ticks: dict[str, list[datetime]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._writer_conn: Connection | None = None
        self._in_flight: Future[None] | None = None
        self._sent: _Sent | None = None  # the batch in flight
        self._in_flight_seen: dict[str, reads.Known] = {}
        self._projector: ThreadPoolExecutor | None = None
        self._projector_conn: Connection | None = None
        self._projecting: Future[object] | None = None

    # ------------------------------------------------------------- the batch

    def process(self, lines: Sequence[Line], record_position: RecordPosition) -> Counts:
        """Decide and write one batch in one transaction; returns what happened to its inputs.

        `record_position` runs inside that transaction: the source's offsets
        commit with the effects, or neither does.
        """
        counts = self.submit(lines, record_position)
        counts.add(self.wait())
        return counts

    def submit(self, lines: Sequence[Line], record_position: RecordPosition) -> Counts:
        """Decide a batch, then write it on the writer thread while the caller reads the next.

        The batch's states join the cache before it commits, so the next batch
        is decided on top of them; if a write fails, `wait` (or the next
        `submit`) raises, the cache is dropped and nothing after that batch
        is written. One batch at most is in flight. The counts returned
        include any correction of the batch before (see `wait`).
        """
        try:
            work = self._decide_batch(lines, record_position)
            late = self._wait_write()
            if late is not None:  # decided on states of the batch before that did not commit
                work = self._decide_batch(lines, record_position)
        except BaseException:
            self.forget()  # catch-ups touched cached states in place: start over from the database
            raise
        self._merge(work)
        self._in_flight_seen = {k: v for k, v in work.seen.items() if k in work.ids}
        self._sent = _Sent(lines, record_position, work.counts)
        self._in_flight = self._writer().submit(self._write, work.batch)
        counts = Counts()
        counts.add(work.counts)
        if late is not None:
            counts.add(late)
        return counts

    def wait(self) -> Counts:
        """Until the batch in flight is committed and the projections have caught up with it;
        raises what its write or the catch-up raised. Returns the correction to the counts of
        that batch when an input was refused and dead-lettered (zero counts otherwise)."""
        late = self._wait_write()
        projecting, self._projecting = self._projecting, None  # the writer is idle now
        if projecting is not None:
            projecting.result()
        return late or Counts()

    def _wait_write(self) -> Counts | None:
        """None, or the batch in flight was refused for an input and is now written without
        it (the cache is empty then): the correction to its counts."""
        in_flight, self._in_flight = self._in_flight, None
        sent, self._sent = self._sent, None
        if in_flight is None:
            return None
        try:
            in_flight.result()
            return None
        except InputRefused as e:
            if self.replay:  # a re-run's inputs are in the live inbox: a dead letter would
                self._in_flight_seen = {}  # count one twice, so it fails as it always did
                self.forget()
                raise e.__cause__ or e from None
            refused = e
        except BaseException:
            self._in_flight_seen = {}
            self.forget()
            raise
        assert sent is not None
        self._in_flight_seen = {}
        try:
            return self._rewrite(sent, refused)
        finally:
            self.forget()  # every trial decided on the cache: start over from the database

    def close(self) -> None:
        try:
            self.wait()
        finally:
            for executor in (self._executor, self._projector):
                if executor is not None:
                    executor.shutdown()
            for conn in (self._writer_conn, self._projector_conn):
                if conn is not None:
                    conn.close()

    def _decide_batch(
        self, lines: Sequence[Line], record_position: RecordPosition,
        refused: Mapping[int, str] | None = None,
    ) -> _Work:  # fmt: skip
        """The batch's rows; `refused` inputs (by index) become dead letters with that reason."""
        work = _Work(Batch(record_position, "candidate" if self.replay else "live"))
        self._forget_erased()
        decoded = [(line, _decode(line)) for line in lines]
        if refused:
            decoded = [(line, ev.Invalid(refused[i]) if i in refused else item)
                       for i, (line, item) in enumerate(decoded)]  # fmt: skip
        work.ids = {_id_of(d) for _, d in decoded if not isinstance(d, ev.Invalid)}
        # The batch in flight may not have committed yet: its ids are known all the same.
        known = reads.known_event_ids(self.conn, _findable(work.ids))
        work.seen = {**known, **self._in_flight_seen}
        self._preload(d for _, d in decoded)
        for line, item in decoded:
            self._one(work, line, item)
        self._snapshot(work)
        return work

    def _rewrite(self, sent: _Sent, refused: InputRefused) -> Counts:
        """Write a batch refused for one of its inputs' values without that input (and any
        other found so), dead-lettered with the database's reason; returns the correction to
        the batch's counts. Raises what is not an input's doing."""
        conn = self._writer_conn
        assert conn is not None
        culprits: dict[int, str] = {}
        while True:
            at, refused = self._culprit(conn, sent, culprits, refused)
            culprits[at] = refused.reason
            line = sent.lines[at]
            log.get("pipeline").warning("input_refused", source=line.source,
                                        position=line.position, reason=refused.reason)  # fmt: skip
            self.forget()
            work = self._decide_batch(sent.lines, sent.record_position, culprits)
            try:
                store_batch.write(conn, work.batch)
                break
            except InputRefused as again:  # another input: find it the same way
                refused = again
        if self.after_commit is not None:
            self._project(self.after_commit)
        return work.counts.since(sent.counts)

    def _culprit(
        self, conn: Connection, sent: _Sent, culprits: Mapping[int, str], refused: InputRefused
    ) -> tuple[int, InputRefused]:
        """The input ending the shortest refused prefix of the batch (earlier culprits
        dead-lettered), and what refused that prefix. By bisection: decisions depend on order,
        so each prefix is decided afresh; the empty one is taken, the whole batch is not."""
        taken, not_taken = 0, len(sent.lines)
        while not_taken - taken > 1:
            middle = (taken + not_taken) // 2
            self.forget()
            work = self._decide_batch(sent.lines[:middle], sent.record_position, culprits)
            found = store_batch.trial(conn, work.batch)
            if found is None:
                taken = middle
            else:
                not_taken, refused = middle, found
        at = not_taken - 1
        empty = Batch(sent.record_position, "candidate" if self.replay else "live")
        if at in culprits or (at == 0 and store_batch.trial(conn, empty) is not None):
            # Refused whatever the inputs: not an input's doing, so as any other failure.
            raise refused.__cause__ or refused
        return at, refused

    def _writer(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._writer_conn = sibling(self.conn)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="ledger-writer")
        return self._executor

    def _write(self, batch: Batch) -> None:
        conn = self._writer_conn
        assert conn is not None
        store_batch.write(conn, batch)
        if self.after_commit is not None:
            self._project(self.after_commit)

    def _project(self, after_commit: Callable[[Connection], object]) -> None:
        """Start the catch-up of what just committed, overlapped with the next batch's write
        (the database's work, mostly); one at most in flight, so the projections trail the
        ledger by one batch at most, and by none once `wait` returns."""
        previous, self._projecting = self._projecting, None
        if previous is not None:
            previous.result()
        if self._projector is None:
            self._projector_conn = sibling(self.conn)
            self._projector = ThreadPoolExecutor(1, thread_name_prefix="projector")
        assert self._projector_conn is not None
        self._projecting = self._projector.submit(after_commit, self._projector_conn)

    def forget(self, streams: Iterable[str] | None = None) -> None:
        """Drop cached state (of these streams): another owner may change it from now on."""
        if streams is None:
            self.cache.clear()
            self.due.clear()
            self._ticks.clear()
            return
        gone = set(streams)
        for customer_id in [c for c in self.cache if self.routing.stream_of(c) in gone]:
            del self.cache[customer_id]
            self.due.pop(customer_id, None)
        for stream in gone:
            self._ticks.pop(stream, None)

    def _one(self, work: _Work, line: Line, item: Decoded) -> None:
        why = item.reason if isinstance(item, ev.Invalid) else self._misrouted(line, item)
        if why is not None:
            # Escaped: a reason may quote the input (a NUL or a lone surrogate would be refused).
            work.batch.dead_letters.append(
                store_batch.DeadLetter(line.source, line.position, line.raw, printable(why))
            )
            work.counts.dead_lettered += 1
            return
        assert not isinstance(item, ev.Invalid)
        body_hash = hashlib.sha256(line.raw).digest()
        event_id = _id_of(item)
        known = work.seen.get(event_id)
        if known is not None:
            work.counts.duplicates += 1
            if (known.source, known.position) != (line.source, line.position):
                work.batch.duplicates.append(store_batch.Duplicate(
                    line.source, line.position, event_id, known.body_hash == body_hash
                ))  # fmt: skip
            # else the same message read again (an offset reset): one input, already counted
            return
        work.seen[event_id] = reads.Known(body_hash, line.source, line.position)
        decision = self._decide(work, line, item)
        self._record(work, line, item, decision, body_hash)

    def _misrouted(self, line: Line, item: ev.Event | ReferrerCredit) -> str | None:
        customer_id = _customer_of(item)
        if customer_id is None or self.routing.stream_of(customer_id) == line.stream:
            return None
        return (
            f"misrouted: customer {customer_id!r} belongs to {self.routing.stream_of(customer_id)}"
            f", not {line.stream}; key messages by customer_id with the murmur2 partitioner"
        )

    def _record(
        self,
        work: _Work,
        line: Line,
        item: ev.Event | ReferrerCredit,
        decision: Decision,
        body_hash: bytes,
    ) -> None:
        # Decoded, the input is valid JSON: UTF-8 (strict decoding raises on anything else, a
        # bug) without a raw NUL, so the inbox's text column holds it byte for byte.
        raw = line.raw.decode("utf-8")
        outcome = "accepted" if decision.reason is None else "rejected"
        if isinstance(item, ReferrerCredit):
            event_type, occurred_at = commands.COMMAND_TYPE, item.occurred_at
        else:
            event_type, occurred_at = item.type, item.occurred_at
        work.batch.inbox.append(store_batch.InboxRow(
            _id_of(item), line.source, line.position, event_type, _customer_of(item),
            occurred_at, outcome, decision.reason, body_hash, raw,
        ))  # fmt: skip
        work.batch.entries.extend(decision.entries)
        work.counts.entries += len(decision.entries)
        for command in decision.commands:
            work.batch.outbox.append(store_batch.OutboxRow(
                commands.COMMAND_TYPE, command.referrer_id, commands.encode(command).decode()
            ))  # fmt: skip
        work.counts.commands += len(decision.commands)
        if decision.reason is not None:
            work.counts.rejected += 1
            return
        work.counts.accepted += 1
        if isinstance(item, ev.Signup) and not self.replay:
            work.batch.members.append(store_batch.Member(
                item.customer_id, item.email, item.name, item.phone, item.birth_date
            ))  # fmt: skip

    def _decide(self, work: _Work, line: Line, item: ev.Event | ReferrerCredit) -> Decision:
        book = _Book(work.overlay, self.cache)
        if isinstance(item, ev.Tick):
            decision = self._decide_tick(work, line.stream, item)
        else:
            for customer_id in _customers_of(item, book):
                self._catch_up(work, customer_id)
            if isinstance(item, ReferrerCredit):
                decision = decide_command(book, item, self.rules)
            else:
                decision = decide(book, item, self.rules, self.routing.owns)
        for customer_id, state in decision.states.items():
            if customer_id not in book:  # new: it has seen every tick of its stream so far
                state.ticks_seen = len(self._stream_ticks(self.routing.stream_of(customer_id)))
            work.due[customer_id] = next_due_at(state, self.rules)
        work.overlay.update(decision.states)
        return decision

    def _decide_tick(self, work: _Work, stream: str, tick: ev.Tick) -> Decision:
        decision = decide_tick(self._due_now(work, stream, tick.occurred_at), tick, self.rules)
        ticks = self._stream_ticks(stream)
        ticks.append(tick.occurred_at)
        for state in decision.states.values():
            state.ticks_seen = len(ticks)
        work.batch.ticks.append(
            store_batch.TickRow(stream, len(ticks), tick.occurred_at, tick.event_id)
        )
        return decision

    # ----------------------------------------------------------------- state

    def _stream_ticks(self, stream: str) -> list[datetime]:
        ticks = self._ticks.get(stream)
        if ticks is None:
            ticks = self._ticks[stream] = reads.ticks(self.conn, stream)
        return ticks

    def _preload(self, items: Iterable[Decoded]) -> None:
        """Load every customer the batch may touch, referrers included, in two queries."""
        wanted: set[str] = set()
        for item in items:
            wanted.update(_named_in(item))
        # Only owned customers are cached: another owner may change the others meanwhile.
        wanted = {c for c in _findable(wanted) if self.routing.owns(c)}
        self._load(wanted - self.cache.keys())
        referrers = {
            s.referrer_id for c in wanted
            if (s := self.cache.get(c)) is not None and s.referrer_id and not s.referral_settled
        }  # fmt: skip
        self._load({r for r in referrers - self.cache.keys() if self.routing.owns(r)})

    def _forget_erased(self) -> None:
        """Cached states of members erased since the last batch hold PII: reload them.

        The batch write scrubs stored snapshots of erased members as well, so a
        batch decided just before an erasure commits cannot write it back.
        """
        erased, self._erased_after = reads.erased_since(self.conn, self._erased_after)
        for customer_id in erased:
            self.cache.pop(customer_id, None)
            self.due.pop(customer_id, None)

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
        if state is None:
            return
        ticks = self._stream_ticks(self.routing.stream_of(customer_id))
        if state.ticks_seen >= len(ticks):
            return
        clock = max(ticks[state.ticks_seen :])
        state.ticks_seen = len(ticks)
        if state.clock is None or clock > state.clock:
            state.clock = clock

    def _due_now(self, work: _Work, stream: str, at: datetime) -> list[CustomerState]:
        """Customers of `stream` a tick at `at` may change: due in the batch, cache or database."""
        mine = self.routing.stream_of
        stored = [c for c in reads.due_customers(self.conn, at) if mine(c) == stream]
        self._load({c for c in stored if c not in self.cache and c not in work.overlay})
        due: dict[str, CustomerState] = {}
        for customer_id, when in work.due.items():
            if when is not None and when <= at and mine(customer_id) == stream:
                due[customer_id] = work.overlay[customer_id]
        for customer_id, when in self.due.items():
            fresh = customer_id not in work.due  # else its overlay state was looked at above
            if fresh and when is not None and when <= at and mine(customer_id) == stream:
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


def _findable(ids: set[str]) -> set[str]:
    """The ids the database can hold. One with a NUL or a lone surrogate was never stored
    (the driver refuses to send it), so it is not looked up; the write refuses its row, and
    it becomes a dead letter. One scan of them all when none is such (nearly always)."""
    joined = "".join(ids)
    if "\x00" not in joined and (joined.isascii() or _encodes(joined)):
        return ids
    return {i for i in ids if "\x00" not in i and _encodes(i)}


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _decode(line: Line) -> Decoded:
    return commands.decode(line.raw) if line.command else ev.decode(line.raw)


def _id_of(item: ev.Event | ReferrerCredit) -> str:
    return item.command_id if isinstance(item, ReferrerCredit) else item.event_id


def _customer_of(item: ev.Event | ReferrerCredit) -> str | None:
    if isinstance(item, ReferrerCredit):
        return item.referrer_id
    return None if isinstance(item, ev.Tick) else item.customer_id


def _named_in(item: Decoded) -> list[str]:
    """Customer ids an input names: its customer and any referrer."""
    if isinstance(item, ev.Invalid | ev.Tick):
        return []
    if isinstance(item, ReferrerCredit):
        return [item.referrer_id]
    named = [item.customer_id]
    if isinstance(item, ev.Signup) and item.referred_by:
        named.append(item.referred_by)
    elif isinstance(item, ev.Referral):
        named.append(item.referrer_id)
    return named


def _customers_of(item: ev.Event | ReferrerCredit, book: _Book) -> list[str]:
    """The customer and the referrer its purchase could credit."""
    named = _named_in(item)
    state = book.get(named[0])
    if state is not None and state.referrer_id and not state.referral_settled:
        named.append(state.referrer_id)
    return named
