"""Dead letters: list, show, redrive (re-validate; into the pipeline or back to Kafka), discard.

Every input stays in exactly one place: a redriven letter's input enters the
inbox (or duplicates) in the same transaction that marks the letter
`redriven`; a discarded one stays a dead letter, with its reason, for audit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from psycopg import sql
from psycopg.rows import class_row

from loyalty_ledger import events, log
from loyalty_ledger.engine import COMMAND_CLASSES
from loyalty_ledger.errors import UserError
from loyalty_ledger.generations import amendments, programs
from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.kafka.producer import producer
from loyalty_ledger.kafka.settings import ClientErrors, KafkaSettings, KafkaUnavailable
from loyalty_ledger.pipeline import Counts, Pipeline, commands
from loyalty_ledger.progress import Progress
from loyalty_ledger.projectors import runner
from loyalty_ledger.sources.address import SourceAddress, SourceAddressError, SourceKind
from loyalty_ledger.sources.line import Line
from loyalty_ledger.store.db import Connection
from loyalty_ledger.store.locks import one_file_writer

RAW_PREFIX_CHARS = 60
RAW_PREFIX_BYTES = 4 * (RAW_PREFIX_CHARS + 1)  # enough for that many characters of UTF-8
STATUSES = ("open", "redriven", "discarded")
REDRIVE_BATCH = 5_000  # letters per transaction
REDRIVE_HEADER = "loyalty-redrive-of"  # on a republished message: the letter's source:position
FLUSH_TIMEOUT_S = 30.0


class DeadLetterError(UserError):
    """A dead letter that does not exist or cannot do what was asked; the message says why."""


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    id: int
    source: str
    position: int
    reason: str
    raw: bytes  # the first bytes only: RAW_PREFIX_BYTES
    status: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    source: str
    position: int
    raw: bytes  # as it arrived
    reason: str
    status: str
    received_at: datetime
    resolved_at: datetime | None
    resolution: str | None


@dataclass(frozen=True, slots=True)
class Filter:
    """Which dead letters: all conditions must hold."""

    status: str = "open"  # or "all"
    reason: str | None = None  # a substring of the reason, any case
    source: str | None = None  # a prefix of the source
    ids: tuple[int, ...] = ()  # empty: any
    limit: int | None = None


def _where(chosen: Filter) -> tuple[sql.Composable, dict[str, Any]]:
    parts: list[sql.Composable] = [sql.SQL("true")]
    if chosen.status != "all":
        parts.append(sql.SQL("status = %(status)s"))
    if chosen.reason:
        parts.append(sql.SQL("strpos(lower(reason), lower(%(reason)s)) > 0"))
    if chosen.source:
        parts.append(sql.SQL("starts_with(source, %(source)s)"))
    if chosen.ids:
        parts.append(sql.SQL("id = ANY(%(ids)s)"))
    params = {"status": chosen.status, "reason": chosen.reason, "source": chosen.source,
              "ids": list(chosen.ids)}  # fmt: skip
    return sql.SQL(" AND ").join(parts), params


# ------------------------------------------------------------------ list, show


def listing(conn: Connection, chosen: Filter) -> list[DeadLetterRow]:
    where, params = _where(chosen)
    query = sql.SQL(
        "SELECT id, source, position, reason, substring(raw FROM 1 FOR %(bytes)s) AS raw, "
        "status, received_at "
        "FROM dead_letters WHERE {} ORDER BY id LIMIT %(limit)s"
    ).format(where)
    with conn.cursor(row_factory=class_row(DeadLetterRow)) as cur:
        cur.execute(query, {**params, "bytes": RAW_PREFIX_BYTES, "limit": chosen.limit})
        return cur.fetchall()


def get(conn: Connection, letter_id: int) -> DeadLetter:
    with conn.cursor(row_factory=class_row(DeadLetter)) as cur:
        cur.execute(
            "SELECT id, source, position, raw, reason, status, received_at, resolved_at, "
            "resolution FROM dead_letters WHERE id = %s",
            (letter_id,),
        )
        found = cur.fetchone()
    if found is None:
        raise DeadLetterError(
            f"no dead letter {letter_id}: see `loyalty dlq list --status all` for the ids"
        )
    return found


# ------------------------------------------------------------------ discard


def discard(conn: Connection, letter_id: int, why: str) -> DeadLetter:
    """Mark an open dead letter discarded, `why` kept as its resolution; it stays counted."""
    if not why.strip():
        raise DeadLetterError("--why must say why the input is discarded (it is kept for audit)")
    with conn.cursor(row_factory=class_row(DeadLetter)) as cur:
        cur.execute(
            "UPDATE dead_letters SET status = 'discarded', resolved_at = now(), resolution = %s "
            "WHERE id = %s AND status = 'open' RETURNING id, source, position, raw, reason, "
            "status, received_at, resolved_at, resolution",
            (why.strip(), letter_id),
        )
        done = cur.fetchone()
    if done is None:
        letter = get(conn, letter_id)  # raises for a missing one
        raise DeadLetterError(
            f"dead letter {letter_id} is {letter.status} already ({letter.resolution}): "
            "only open ones can be discarded"
        )
    log.get("dlq").info("discarded", id=letter_id, source=done.source, position=done.position)
    return done


# ------------------------------------------------------------------ redrive


@dataclass(frozen=True, slots=True)
class StillInvalid:
    id: int
    source: str
    position: int
    reason: str  # what the decoder says now


@dataclass(slots=True)
class RedriveResult:
    counts: Counts = field(default_factory=Counts)  # of the inputs redriven into the pipeline
    redriven: int = 0  # into this database's pipeline
    republished: int = 0  # back to Kafka
    still_invalid: list[StillInvalid] = field(default_factory=list)
    not_open: list[tuple[int, str]] = field(default_factory=list)  # named ids: (id, status)


def redrive(
    conn: Connection,
    chosen: Filter,
    kafka: KafkaSettings,
    progress: Progress | None = None,
) -> RedriveResult:
    """Re-validate the chosen open dead letters; the now-valid ones go where their source feeds.

    A file's (or stdin's) input enters the live pipeline at its original
    source and position; a Kafka message is republished to its topic, whose
    consumers own its customer. Still-invalid ones stay open. Redriving again
    changes nothing: only open letters are taken.
    """
    result = RedriveResult(not_open=_not_open(conn, chosen.ids))
    open_only = Filter("open", chosen.reason, chosen.source, chosen.ids)
    with one_file_writer(conn), _Targets(conn, kafka) as targets:
        total = _count(conn, open_only)
        done, after = 0, 0
        while letters := _open_batch(conn, open_only, after):
            after = letters[-1].id
            _redrive_batch(letters, targets, result)
            done += len(letters)
            if progress:
                progress(done, total)
    log.get("dlq").info(
        "redriven", redriven=result.redriven, republished=result.republished,
        accepted=result.counts.accepted, rejected=result.counts.rejected,
        duplicates=result.counts.duplicates, still_invalid=len(result.still_invalid),
    )  # fmt: skip
    return result


def _not_open(conn: Connection, ids: Sequence[int]) -> list[tuple[int, str]]:
    """The named ids that are not open; a missing one is an error, before anything is done."""
    if not ids:
        return []
    rows = conn.execute("SELECT id, status FROM dead_letters WHERE id = ANY(%s)", (list(ids),))
    found: dict[int, str] = {letter_id: status for letter_id, status in rows}
    missing = sorted(set(ids) - found.keys())
    if missing:
        raise DeadLetterError(
            f"no dead letter {', '.join(map(str, missing))}: see `loyalty dlq list --status all`"
        )
    return [(i, found[i]) for i in sorted(set(ids)) if found[i] != "open"]


def _count(conn: Connection, chosen: Filter) -> int:
    where, params = _where(chosen)
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM dead_letters WHERE {}").format(where), params
    ).fetchone()
    return int(row[0]) if row else 0


def _open_batch(conn: Connection, chosen: Filter, after: int) -> list[DeadLetter]:
    where, params = _where(chosen)
    # By id, after the last one seen: still-invalid letters stay open and must not come back.
    query = sql.SQL(
        "SELECT id, source, position, raw, reason, status, received_at, resolved_at, resolution "
        "FROM dead_letters WHERE {} AND id > %(after)s ORDER BY id LIMIT %(limit)s"
    ).format(where)
    with conn.cursor(row_factory=class_row(DeadLetter)) as cur:
        cur.execute(query, {**params, "after": after, "limit": REDRIVE_BATCH})
        return cur.fetchall()


def _redrive_batch(letters: Sequence[DeadLetter], targets: _Targets, result: RedriveResult) -> None:
    to_pipeline: list[tuple[DeadLetter, str]] = []  # (letter, event id)
    to_kafka: list[tuple[DeadLetter, _KafkaSource, str | None]] = []  # (letter, origin, key)
    for letter in letters:
        raw = letter.raw
        kafka = _KafkaSource.parse(letter.source, targets.kafka)
        decoded = commands.decode(raw) if kafka and kafka.command else events.decode(raw)
        if _lossy(letter):
            decoded = events.Invalid(LOSSY)
        if isinstance(decoded, events.Invalid):
            result.still_invalid.append(
                StillInvalid(letter.id, letter.source, letter.position, decoded.reason)
            )
        elif kafka is not None:
            key = decoded.owner_id if isinstance(decoded, COMMAND_CLASSES) else (
                None if isinstance(decoded, events.Tick) else decoded.customer_id)  # fmt: skip
            to_kafka.append((letter, kafka, key))
        else:
            assert not isinstance(decoded, COMMAND_CLASSES)  # files carry no commands
            to_pipeline.append((letter, decoded.event_id))
    if to_pipeline:
        counts = targets.into_pipeline(to_pipeline)
        result.counts.add(counts)
        result.redriven += len(to_pipeline) - counts.dead_lettered
    if to_kafka:
        result.republished += targets.republish(to_kafka)


LOSSY = (
    "its bytes were not utf-8 and are stored with replacement characters: the original is "
    "gone; discard it and send the input again"
)


def _lossy(letter: DeadLetter) -> bool:
    """Letters stored before raw became bytes (migration 0004) lost their bytes that were not
    UTF-8: redriving one would take in replacement characters (U+FFFD) the sender never sent.
    (A letter stored since keeps its bytes; if they are still not UTF-8, it stays invalid.)"""
    unreadable = "unicode" in letter.reason or "utf-8" in letter.reason
    return unreadable and "\ufffd".encode() in letter.raw


@dataclass(frozen=True, slots=True)
class _KafkaSource:
    """Where a Kafka dead letter came from, and where it goes back to."""

    topic: str
    partition: int
    command: bool  # from the internal topic: a command, not an input event

    @classmethod
    def parse(cls, source: str, settings: KafkaSettings) -> _KafkaSource | None:
        if SourceAddress.kind_of(source) is not SourceKind.kafka:
            return None
        try:
            address = SourceAddress.parse(source)
        except SourceAddressError:
            address = None
        if address is None or address.name not in (settings.inputs, settings.internal):
            raise DeadLetterError(
                f"dead letter from {source} is not from topic {settings.inputs} or "
                f"{settings.internal}: set LOYALTY_KAFKA_TOPIC_PREFIX to the prefix its "
                "consumers use"
            )
        assert address.partition is not None
        return cls(address.name, address.partition, address.name == settings.internal)


class _Targets:
    """The live pipeline and the Kafka producer, each made on first use and closed at the end."""

    def __init__(self, conn: Connection, kafka: KafkaSettings) -> None:
        self.conn = conn
        self.kafka = kafka
        self._pipeline: Pipeline | None = None
        self._generation = ""
        self._producer: Producer | None = None
        self._errors = ClientErrors()

    def __enter__(self) -> _Targets:
        return self

    def __exit__(self, *_: object) -> None:
        if self._pipeline is not None:
            self._pipeline.close()
        if self._producer is not None:
            self._producer.flush(0)

    def into_pipeline(self, letters: Sequence[tuple[DeadLetter, str]]) -> Counts:
        """One transaction: the inputs' effects, and their letters marked redriven."""
        pipeline = self._live_pipeline()
        lines = [Line(letter.source, letter.position, letter.raw) for letter, _ in letters]
        marks = [(letter.id, f"redriven into the inbox of generation {self._generation} "
                             f"as event {event_id}") for letter, event_id in letters]  # fmt: skip
        # Decoded as above, a letter is dead-lettered again only when the database refuses its
        # input: then it stays open, with that reason (see store.batch's dead letter merge).
        return pipeline.process(lines, partial(_mark_redriven, marks=marks))

    def _live_pipeline(self) -> Pipeline:
        if self._pipeline is None:
            self._generation = generations.live(self.conn).name
            # Under the generation's program history; amended meanwhile, the redrive's batch
            # is refused (ProgramAmended, a Conflict: run it again).
            count, history = amendments.load_history(self.conn, programs.adopt(self.conn, None))
            self._pipeline = Pipeline(
                self.conn, history, after_commit=runner.catch_up, amendments=count
            )
        return self._pipeline

    def republish(self, letters: Sequence[tuple[DeadLetter, _KafkaSource, str | None]]) -> int:
        """Send each to its topic, then mark the delivered ones redriven.

        At least once: a crash between delivery and marking leaves the letter
        open, and a second redrive sends it again; its consumer then counts
        the copy as a duplicate of the same event_id.
        """
        delivered: dict[int, str] = {}
        failures: list[str] = []
        try:
            for letter, origin, key in letters:
                self._send(letter, origin, key, partial(_delivered, letter.id, delivered, failures))
        finally:  # whatever was delivered is marked, even when a later send failed
            remaining = self._producer_for().flush(FLUSH_TIMEOUT_S)
            if delivered:
                with self.conn.transaction():
                    _mark_redriven(self.conn, marks=sorted(delivered.items()))
        if failures or remaining:
            why = failures[0] if failures else f"{remaining} not delivered in {FLUSH_TIMEOUT_S} s"
            raise KafkaUnavailable(
                f"kafka at {self.kafka.bootstrap}: republishing dead letters failed: {why}; "
                f"{len(delivered)} were republished and marked, the rest stay open"
            )
        return len(delivered)

    def _send(
        self, letter: DeadLetter, origin: _KafkaSource, key: str | None,
        report: Callable[[KafkaError | None, Message], None],
    ) -> None:  # fmt: skip
        producer = self._producer_for()
        topic = self.kafka.internal if origin.command else self.kafka.inputs
        # Keyed by customer, the partitioner finds the consumer that owns it; a tick (no
        # customer) goes back to the partition it was meant for.
        partition = -1 if key is not None else origin.partition
        headers: dict[str, str | bytes | None] = {
            REDRIVE_HEADER: f"{letter.source}:{letter.position}"
        }
        while True:
            try:
                producer.produce(topic, letter.raw, key, partition,
                                 on_delivery=report, headers=headers)  # fmt: skip
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
            except KafkaException as e:
                what = f"republishing dead letter {letter.id}"
                raise self._errors.unavailable(self.kafka, what, e) from e
        producer.poll(0)

    def _producer_for(self) -> Producer:
        if self._producer is None:
            self._producer = producer(
                self.kafka, inputs=True, compression="none", errors=self._errors
            )
        return self._producer


def _delivered(
    letter_id: int, delivered: dict[int, str], failures: list[str],
    error: KafkaError | None, message: Message,
) -> None:  # fmt: skip
    if error is not None:
        failures.append(str(error.str()))
        return
    delivered[letter_id] = (
        f"republished to {message.topic()} partition {message.partition()} "
        f"offset {message.offset()}"
    )


def _mark_redriven(conn: Connection, *, marks: Sequence[tuple[int, str]]) -> None:
    """In the transaction that takes the inputs in: a letter is redriven iff its input is in."""
    cur = conn.execute(
        "UPDATE dead_letters d SET status = 'redriven', resolved_at = now(), "
        "resolution = m.resolution FROM unnest(%s::bigint[], %s::text[]) AS m(id, resolution) "
        "WHERE d.id = m.id AND d.status = 'open'",
        ([i for i, _ in marks], [r for _, r in marks]),
    )
    if cur.rowcount != len(marks):  # someone discarded one meanwhile: take nothing in
        raise DeadLetterError(
            f"{len(marks) - cur.rowcount} of the dead letters being redriven are no longer open "
            "(discarded or redriven meanwhile): nothing of this batch was kept; run it again"
        )
