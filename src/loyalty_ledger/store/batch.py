"""Write one batch in one transaction: inbox, ledger (COPY), snapshots, dead letters, position.

The source position travels with the effects: a batch is either wholly there,
position included, or not at all, so a crash at any instant loses nothing and
doubles nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import NamedTuple

import psycopg
from psycopg import errors, sql
from psycopg.types.json import Jsonb

from loyalty_ledger.errors import Conflict
from loyalty_ledger.ledger import anchors
from loyalty_ledger.ledger import key as ledger_key
from loyalty_ledger.ledger.chain import keyed_chain
from loyalty_ledger.ledger.entries import COLUMN_TYPES, COLUMNS, Entry
from loyalty_ledger.ledger.key import LedgerKey
from loyalty_ledger.store import chain, locks
from loyalty_ledger.store.db import Connection


class GenerationChanged(Conflict):
    """The writer's generation is no longer what it writes for: a promotion happened."""


class ProgramAmended(GenerationChanged):
    """The generation's program was amended after the batch was decided: decide it again
    under the new history (as after a promotion, the writer starts a new pipeline)."""


REFUSED_CHARS_MAX = 300  # of the database's message in a dead letter's reason


class InputRefused(Exception):
    """A value of the batch was refused for what it is, so one of its inputs is to blame: a
    data exception (SQLSTATE class 22), an integrity violation other than a unique one (23;
    a unique violation means another writer got there first), a program limit (54), or a
    value the driver could not format for COPY. The batch rolled back; `reason` says why in
    one line. Anything else (a lost connection, a fence, a serialization failure) is not an
    input's doing and propagates as it is."""

    @property
    def reason(self) -> str:
        cause = self.__cause__
        if isinstance(cause, psycopg.Error) and cause.sqlstate:
            said = cause.diag.message_primary or str(cause)
            where = "the database"
        else:
            said = f"{type(cause).__name__}: {cause}"
            where = "the database driver"
        line = " ".join(said.split())  # one line: the message may quote the value
        if len(line) > REFUSED_CHARS_MAX:
            line = line[:REFUSED_CHARS_MAX] + "…"
        return f"refused by {where}: {line}"


def _input_tied(error: BaseException) -> bool:
    if isinstance(error, psycopg.Error):
        state = error.sqlstate
        if state is None:  # raised by the driver while dumping a value
            return isinstance(error, psycopg.DataError)
        return state[:2] in ("22", "54") or (
            state[:2] == "23" and not isinstance(error, errors.UniqueViolation)
        )
    # Formatting a row for COPY: an int past int8, a decimal past numeric, a lone surrogate.
    return isinstance(error, OverflowError | ValueError)


class InboxRow(NamedTuple):
    """One valid input, in the inbox's column order (written to COPY as it is)."""

    event_id: str
    source: str
    position: int
    event_type: str
    customer_id: str | None
    occurred_at: datetime
    outcome: str  # accepted | rejected
    reason: str | None
    body_hash: bytes
    raw: str  # a valid input is valid JSON, hence UTF-8 without a raw NUL: text holds it exactly
    program_hash: str | None  # the version that decided it


class DeadLetter(NamedTuple):
    source: str
    position: int
    raw: bytes  # as it arrived, whatever the bytes
    reason: str


class Duplicate(NamedTuple):
    source: str
    position: int
    event_id: str
    same_body: bool


class Snapshot(NamedTuple):
    customer_id: str
    version: int
    state: str  # JSON
    next_due_at: datetime | None


class Member(NamedTuple):
    customer_id: str
    email: str
    name: str | None
    phone: str | None
    birth_date: date | None


class TickRow(NamedTuple):
    stream: str
    n: int
    at: datetime
    event_id: str


class OutboxRow(NamedTuple):
    """A message to publish after commit (an internal command), keyed for its partition."""

    kind: str
    key: str
    payload: str


@dataclass(frozen=True, slots=True)
class Position:
    source: str
    position: int  # inputs consumed
    byte_offset: int
    fingerprint: str


RecordPosition = Callable[[Connection], None]  # writes the source's position, in the batch


@dataclass(slots=True)
class Batch:
    record_position: RecordPosition
    generation_status: str = "live"  # what the writer's generation must be: live | candidate
    amendments: int | None = None  # the generation's amendments it was decided under
    inbox: list[InboxRow] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)
    ticks: list[TickRow] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)


_INBOX_TYPES = (
    "text",
    "text",
    "int8",
    "text",
    "text",
    "timestamptz",
    "text",
    "text",
    "bytea",
    "text",
    "text",
)


def _copy(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[tuple[object, ...]],
) -> None:
    """COPY in binary: about three times faster than text for these rows."""
    if not rows:
        return
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor().copy(statement) as copy:
        copy.set_types(list(types))
        for values in rows:
            copy.write_row(values)


_LEDGER_COLUMNS = (*COLUMNS, "hash")
_LEDGER_TYPES = (*COLUMN_TYPES, "bytea")


def write(conn: Connection, batch: Batch) -> None:
    """Write the whole batch in one transaction, then anchor the chain's new head outside the
    database; raises if any part is refused (InputRefused when an input's value is to blame)."""
    key = ledger_key.current() if batch.entries else None  # a bad key fails before any work
    head = _refusing(conn, batch, key)
    if head is not None and key is not None:
        anchors.append(ledger_key.anchor_file(), head, key)


def trial(conn: Connection, batch: Batch) -> InputRefused | None:
    """Write the batch and roll it back: would the database take it? Anchors nothing."""
    key = ledger_key.current() if batch.entries else None
    try:
        with conn.transaction() as outer:
            _refusing(conn, batch, key)  # a savepoint inside `outer`
            raise psycopg.Rollback(outer)
    except InputRefused as refused:
        return refused
    return None


def _refusing(conn: Connection, batch: Batch, key: LedgerKey | None) -> anchors.Anchor | None:
    try:
        return _write(conn, batch, key)
    except Exception as e:
        if _input_tied(e):
            raise InputRefused(str(e)) from e
        raise


def _write(conn: Connection, batch: Batch, key: LedgerKey | None) -> anchors.Anchor | None:
    """The batch in one transaction (a savepoint inside a caller's); the chain's new head."""
    with conn.transaction():
        batch.record_position(conn)  # first: a fenced writer fails before any work
        conn.execute(locks.APPEND)  # held to commit: see store.locks
        _check_generation(conn, batch.generation_status, batch.amendments)
        _copy(conn, "inbox", InboxRow._fields, _INBOX_TYPES, batch.inbox)
        head = _copy_ledger(conn, batch.entries, key)
        _SNAPSHOTS.write(conn, [(*s[:2], Jsonb(s.state, _as_is), s[3]) for s in batch.snapshots])
        _DEAD_LETTERS.write(conn, _first_per_position(batch.dead_letters))
        _DUPLICATES.write(conn, batch.duplicates)
        _MEMBERS.write(conn, batch.members)
        _write_small(conn, batch)
    return head


def _check_generation(conn: Connection, expected: str, amendments: int | None) -> None:
    # FOR SHARE, held to commit: an amendment (FOR UPDATE) waits for this batch, and this
    # batch, if it comes second, sees the amendment (generations.amendments).
    row = conn.execute(
        "SELECT name, status, amendments FROM public.generations "
        "WHERE schema_name = current_schema() FOR SHARE"
    ).fetchone()
    assert row is not None, "a writer's search_path names no generation"
    if row[1] != expected:
        raise GenerationChanged(f"generation {row[0]} is {row[1]} now, not {expected}")
    if amendments is not None and row[2] != amendments:
        raise ProgramAmended(
            f"generation {row[0]}'s program was amended ({row[2]} amendments, not {amendments})"
        )


def _copy_ledger(
    conn: Connection, entries: Sequence[Entry], key: LedgerKey | None
) -> anchors.Anchor | None:
    if not entries or key is None:
        return None
    hashes = keyed_chain(key.secret, chain.head_hash(conn, key), entries)
    rows = [(*entry, digest) for entry, digest in zip(entries, hashes, strict=True)]
    _copy(conn, "ledger", _LEDGER_COLUMNS, _LEDGER_TYPES, rows)
    return chain.advance(conn, len(entries), key)


@dataclass(frozen=True, slots=True)
class _Staged:
    """A temporary table to COPY a batch's rows into, and the statement merging it in.

    COPY and one INSERT ... SELECT beat executemany by far for thousands of rows.
    """

    name: str
    columns: tuple[tuple[str, str], ...]  # (column, type), in the rows' order
    merge: str

    def write(self, conn: Connection, rows: Sequence[tuple[object, ...]]) -> None:
        if not rows:
            return
        table = sql.Identifier(self.name)
        conn.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
                table,
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in self.columns
                ),
            )
        )
        _copy(conn, self.name, [c for c, _ in self.columns], [t for _, t in self.columns], rows)
        conn.execute(self.merge)


def _as_is(text: str) -> str:
    return text


# The state goes as binary jsonb (its JSON text behind a version byte) into a jsonb column:
# parsed once, by COPY, and a large one compressed once, in the temporary table, then taken
# as it is by the merge. As text it was compressed there, then expanded, parsed and
# compressed again (measured: about 5-10% of the snapshots' database time).
_SNAPSHOTS = _Staged(
    "snapshot_in",
    (
        ("customer_id", "text"),
        ("version", "int4"),
        ("state", "jsonb"),
        ("next_due_at", "timestamptz"),
    ),
    "INSERT INTO customer_state AS c (customer_id, version, state, next_due_at) "
    # An erased member's birth date never comes back, even from a state decided before the
    # erasure committed (the pipeline reloads such states from the next batch on).
    "SELECT i.customer_id, version, CASE WHEN e.customer_id IS NULL THEN state "
    "ELSE jsonb_set(state, '{birth_date}', 'null') END, next_due_at "
    "FROM snapshot_in i LEFT JOIN public.erasures e ON e.customer_id = i.customer_id "
    "ON CONFLICT (customer_id) DO UPDATE SET version = excluded.version, "
    "state = excluded.state, next_due_at = excluded.next_due_at, updated_at = now() "
    # A snapshot never goes back: an older version here means two writers.
    "WHERE c.version <= excluded.version",
)
_DEAD_LETTERS = _Staged(
    "dead_letter_in",
    (("source", "text"), ("position", "int8"), ("raw", "bytea"), ("reason", "text")),
    "INSERT INTO dead_letters (source, position, raw, reason) "
    "SELECT source, position, raw, reason FROM dead_letter_in "
    # A letter being redriven in this very transaction (resolved_at is its start, now())
    # whose input the database refused again stays open, with the new reason; any other
    # letter at this position is the same input read again.
    "ON CONFLICT (source, position) DO UPDATE SET status = 'open', resolved_at = NULL, "
    "resolution = NULL, reason = excluded.reason "
    "WHERE dead_letters.status = 'redriven' AND dead_letters.resolved_at = now()",
)
_DUPLICATES = _Staged(
    "duplicate_in",
    (("source", "text"), ("position", "int8"), ("event_id", "text"), ("same_body", "bool")),
    "INSERT INTO duplicates (source, position, event_id, same_body) "
    "SELECT source, position, event_id, same_body FROM duplicate_in "
    "ON CONFLICT (source, position) DO NOTHING",
)
_MEMBERS = _Staged(
    "member_in",
    (
        ("customer_id", "text"),
        ("email", "text"),
        ("name", "text"),
        ("phone", "text"),
        ("birth_date", "date"),
    ),
    "INSERT INTO members (customer_id, email, name, phone, birth_date) "
    "SELECT customer_id, email, name, phone, birth_date FROM member_in i "
    # an erased member's scrubbed signup (redriven, say) must not bring a row back
    "WHERE NOT EXISTS (SELECT FROM public.erasures e WHERE e.customer_id = i.customer_id) "
    "ON CONFLICT (customer_id) DO UPDATE SET email = excluded.email, name = excluded.name, "
    "phone = excluded.phone, birth_date = excluded.birth_date, updated_at = now()",
)


def _first_per_position(letters: list[DeadLetter]) -> list[DeadLetter]:
    """One letter per source position (a message read twice in a batch): the merge below
    updates on conflict, which PostgreSQL refuses for two rows of one INSERT."""
    first: dict[tuple[str, int], DeadLetter] = {}
    for letter in letters:
        first.setdefault((letter.source, letter.position), letter)
    return letters if len(first) == len(letters) else list(first.values())


def _write_small(conn: Connection, batch: Batch) -> None:
    """Outbox commands and ticks: a handful per batch."""
    with conn.cursor() as cur:
        if batch.outbox:
            cur.executemany(
                "INSERT INTO outbox (kind, key, payload) VALUES (%s, %s, %s)", batch.outbox
            )
        if batch.ticks:
            cur.executemany(
                "INSERT INTO ticks (stream, n, at, event_id) VALUES (%s, %s, %s, %s)", batch.ticks
            )


def write_file_position(conn: Connection, *, position: Position) -> None:
    write_positions(conn, positions=(position,))


def write_positions(conn: Connection, *, positions: Sequence[Position]) -> None:
    """Sources' positions, in the batch's transaction: a file's, or a group of HTTP requests'
    from several API keys."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO source_positions (source, position, byte_offset, fingerprint) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (source) DO UPDATE SET "
            "position = excluded.position, byte_offset = excluded.byte_offset, "
            "fingerprint = excluded.fingerprint, updated_at = now()",
            [(p.source, p.position, p.byte_offset, p.fingerprint) for p in positions],
        )
