"""store.batch directly: one batch, one transaction, its COPY columns as the tables have them."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import partial

import pytest

from loyalty_ledger.ledger.entries import COLUMN_TYPES, COLUMNS, Entry, Kind
from loyalty_ledger.store import batch
from loyalty_ledger.store.batch import Batch, DeadLetter, InboxRow, Position
from loyalty_ledger.store.db import Connection, connect

AT = datetime(2026, 1, 5, 12, tzinfo=UTC)


def _types(conn: Connection, table: str) -> dict[str, str]:
    rows = conn.execute(
        # the table the batch's unqualified name finds: a generation's, or public's
        "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (table,),
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def test_copy_columns_are_the_tables_columns(database_url: str) -> None:
    """The rows written by binary COPY name the migrated tables' columns, with their types:
    the tuples in ledger/entries.py and store/batch.py cannot drift from the migrations."""
    with connect(database_url) as conn:
        ledger = _types(conn, "ledger")
        assert {c: ledger[c] for c in COLUMNS} == dict(zip(COLUMNS, COLUMN_TYPES, strict=True))
        inbox = _types(conn, "inbox")
        assert [inbox[c] for c in InboxRow._fields] == list(batch._INBOX_TYPES)
        for staged, table in ((batch._DEAD_LETTERS, "dead_letters"),
                              (batch._DUPLICATES, "duplicates"), (batch._MEMBERS, "members"),
                              (batch._SNAPSHOTS, "customer_state")):  # fmt: skip
            have = _types(conn, table)
            assert {c for c, _ in staged.columns} <= set(have), table


def _input(event_id: str, position: int) -> InboxRow:
    raw = f'{{"event_id": "{event_id}"}}'
    return InboxRow(event_id, "file:/x", position, "signup", "c1", AT, "accepted", None,
                    hashlib.sha256(raw.encode()).digest(), raw, None)  # fmt: skip


def _entry(event_id: str, points: int) -> Entry:
    return Entry("c1", 1, Kind.credit, AT, event_id, points, cause="signup")


def _position(n: int) -> partial[None]:
    return partial(batch.write_file_position, position=Position("file:/x", n, n, "f"))


def _count(conn: Connection, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_a_batch_commits_whole(database_url: str) -> None:
    with connect(database_url) as conn:
        done = Batch(_position(2), inbox=[_input("e1", 1)], entries=[_entry("e1", 50)],
                     dead_letters=[DeadLetter("file:/x", 2, b"\xff", "not utf-8")])  # fmt: skip
        batch.write(conn, done)
        assert [_count(conn, t) for t in ("inbox", "ledger", "dead_letters")] == [1, 1, 1]
        row = conn.execute("SELECT raw FROM dead_letters").fetchone()
        assert row == (b"\xff",)


def test_a_refused_input_leaves_nothing_and_is_named(database_url: str) -> None:
    """An entry the database refuses (points past int8) rolls the whole batch back, and
    `trial` says which input is to blame without writing anything."""
    with connect(database_url) as conn:
        bad = Batch(_position(2), inbox=[_input("e1", 1), _input("e2", 2)],
                    entries=[_entry("e1", 5), _entry("e2", 2**63)])  # fmt: skip
        assert isinstance(batch.trial(conn, bad), batch.InputRefused)
        with pytest.raises(batch.InputRefused):
            batch.write(conn, bad)
        assert [_count(conn, t) for t in ("inbox", "ledger", "source_positions")] == [0, 0, 0]


def test_the_same_input_twice_is_refused_by_the_inbox(database_url: str) -> None:
    """The inbox's key is the last line of exactly-once: a writer that lost its dedupe
    cannot apply an event twice."""
    with connect(database_url) as conn:
        batch.write(conn, Batch(_position(1), inbox=[_input("e1", 1)]))
        with pytest.raises(Exception, match="inbox"):
            batch.write(conn, Batch(_position(2), inbox=[_input("e1", 2)]))
        assert _count(conn, "inbox") == 1
